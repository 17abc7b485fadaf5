import Foundation

/// Runs programs for tests: `ip`, `nft`, `dig`, the built `nodenet` binary.
public enum Shell {
    public struct Result: Sendable {
        public var status: Int32
        public var stdout: String
        public var stderr: String
        public var ok: Bool { status == 0 }
    }

    public struct Failure: Error, CustomStringConvertible {
        public var command: String
        public var result: Result
        public var description: String { "`\(command)` exited \(result.status): \(result.stderr)\(result.stdout)" }
    }

    /// Runs `argv` to completion (bounded by `timeout` seconds: killed after that).
    /// `environment` replaces the test's when given. posix_spawn and waitpid (ChildProcess), not
    /// Foundation's Process, whose exit monitor can miss a child and then wait for ever.
    @discardableResult
    public static func run(_ argv: [String], stdin: String? = nil, environment: [String: String]? = nil, timeout: Double = 60) throws -> Result {
        ignoreSIGPIPE
        let path = argv[0].contains("/") ? argv[0] : try which(argv[0])
        var outPipe: [Int32] = [0, 0], errPipe: [Int32] = [0, 0], inPipe: [Int32] = [-1, -1]
        guard cloexecPipe(&outPipe), cloexecPipe(&errPipe), stdin == nil || cloexecPipe(&inPipe) else {
            throw Failure(command: argv.joined(separator: " "), result: .init(status: -1, stdout: "", stderr: "pipe2: \(String(cString: strerror(errno)))"))
        }
        let child: ChildProcess
        do {
            child = try ChildProcess([path] + argv.dropFirst(), stdin: stdin == nil ? nil : inPipe[0],
                                     stdout: outPipe[1], stderr: errPipe[1], environment: environment)
        } catch {
            for fd in outPipe + errPipe + inPipe where fd >= 0 { close(fd) }
            throw error
        }
        close(outPipe[1]); close(errPipe[1])
        if stdin != nil { close(inPipe[0]) }
        // Input written beside the draining (a child may read its input only after writing a
        // lot, or exit without reading it: the write end is non-blocking and EPIPE just ends it).
        var input = Array((stdin ?? "").utf8)[...]
        var inFD: Int32 = stdin == nil ? -1 : inPipe[1]
        if inFD >= 0 {
            _ = fcntl(inFD, F_SETFL, fcntl(inFD, F_GETFL) | O_NONBLOCK)
            if input.isEmpty { close(inFD); inFD = -1 }
        }
        var out = [UInt8](), err = [UInt8]()
        var open = [outPipe[0]: true, errPipe[0]: true]
        let deadline = Date().addingTimeInterval(timeout)
        var exitedAt: Date?
        var buffer = [UInt8](repeating: 0, count: 65536)
        while true {
            if exitedAt == nil, child.terminationStatus != nil { exitedAt = Date() }
            let now = Date()
            // After the child exits, its output is drained to EOF; a grandchild that kept the
            // pipes open (a daemon it started) gets two seconds, not the whole timeout.
            if open.values.allSatisfy({ !$0 }) && exitedAt != nil { break }
            if let exitedAt, now.timeIntervalSince(exitedAt) > 2 { break }
            if exitedAt == nil, now >= deadline {
                kill(child.pid, SIGTERM)
                if child.wait(timeout: 0.1) == nil { kill(child.pid, SIGKILL) }
                child.waitUntilExit()
                exitedAt = Date()
                continue
            }
            var fds = open.filter(\.value).map { pollfd(fd: $0.key, events: Int16(POLLIN), revents: 0) }
            if inFD >= 0 { fds.append(pollfd(fd: inFD, events: Int16(POLLOUT), revents: 0)) }
            _ = poll(&fds, nfds_t(fds.count), 20)
            for f in fds where f.revents != 0 {
                if f.fd == inFD {
                    let n = input.withUnsafeBytes { write(inFD, $0.baseAddress, $0.count) }
                    if n > 0 { input = input.dropFirst(n) }
                    if input.isEmpty || (n < 0 && errno != EAGAIN && errno != EINTR) { close(inFD); inFD = -1 }
                    continue
                }
                let n = buffer.withUnsafeMutableBytes { read(f.fd, $0.baseAddress, $0.count) }
                if n > 0 {
                    if f.fd == outPipe[0] { out += buffer[..<n] } else { err += buffer[..<n] }
                } else if n == 0 || (errno != EAGAIN && errno != EINTR) {
                    open[f.fd] = false
                }
            }
        }
        if inFD >= 0 { close(inFD) }
        close(outPipe[0]); close(errPipe[0])
        let status = child.waitUntilExit()
        return Result(status: status, stdout: String(decoding: out, as: UTF8.self), stderr: String(decoding: err, as: UTF8.self))
    }

    /// pipe(2) with both ends close-on-exec (Glibc does not export pipe2): only the child that
    /// gets an end as 0, 1 or 2 holds it, or EOF would wait for every other child started since.
    private static func cloexecPipe(_ fds: inout [Int32]) -> Bool {
        guard pipe(&fds) == 0 else { return false }
        for fd in fds { _ = fcntl(fd, F_SETFD, FD_CLOEXEC) }
        return true
    }

    /// Writing to a pipe whose reader has exited raises SIGPIPE, which would kill the whole test
    /// process; ignored once, so the write fails with EPIPE instead.
    private static let ignoreSIGPIPE: Void = { signal(SIGPIPE, SIG_IGN); return () }()

    /// Starts `argv` (an absolute path first) in the background and returns its pid; the caller
    /// stops and reaps it. Standard input is /dev/null, output and errors go to `log` (appended)
    /// or /dev/null; `environment` replaces the test's when given. posix_spawn, not Process:
    /// Foundation's Process stalls later Process calls while a long-lived child it started
    /// still runs, and its exit monitor can miss a child.
    public static func spawn(_ argv: [String], log: String? = nil, environment: [String: String]? = nil) throws -> pid_t {
        var fd: Int32? = nil
        if let log {
            let opened = open(log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0o644)
            guard opened >= 0 else {
                throw Failure(command: argv.joined(separator: " "), result: .init(status: -1, stdout: "", stderr: "open \(log): \(String(cString: strerror(errno)))"))
            }
            fd = opened
        }
        defer { if let fd { close(fd) } }
        return try ChildProcess(argv, stdout: fd, stderr: fd, environment: environment).pid
    }

    /// Like `run`, but throws unless the command exits 0.
    @discardableResult
    public static func check(_ argv: [String], stdin: String? = nil, timeout: Double = 60) throws -> Result {
        let r = try run(argv, stdin: stdin, timeout: timeout)
        guard r.ok else { throw Failure(command: argv.joined(separator: " "), result: r) }
        return r
    }

    public static func which(_ name: String) throws -> String {
        let path = ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin"
        let dirs: [String] = path.split(separator: ":").map(String.init) + ["/usr/sbin", "/sbin", "/usr/bin"]
        for dir in dirs {
            let path = "\(dir)/\(name)"
            if FileManager.default.isExecutableFile(atPath: path) { return path }
        }
        throw Failure(command: name, result: Result(status: 127, stdout: "", stderr: "\(name) not found in PATH"))
    }
}

/// True when tests may touch the kernel (root) and `ip` exists.
public var isPrivileged: Bool {
    getuid() == 0 && (try? Shell.which("ip")) != nil
}
