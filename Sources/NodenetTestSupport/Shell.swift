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
    @discardableResult
    public static func run(_ argv: [String], stdin: String? = nil, environment: [String: String]? = nil, timeout: Double = 60) throws -> Result {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: argv[0].contains("/") ? argv[0] : try which(argv[0]))
        p.arguments = Array(argv.dropFirst())
        if let environment { p.environment = environment }
        let out = Pipe(), err = Pipe(), input = Pipe()
        p.standardOutput = out
        p.standardError = err
        p.standardInput = stdin == nil ? FileHandle.nullDevice : input
        try p.run()
        let deadline = Date().addingTimeInterval(timeout)
        // Drain both pipes while waiting so a chatty child never blocks on a full pipe.
        let outData = LockedData(), errData = LockedData()
        let group = DispatchGroup()
        if let stdin {
            // Written beside the draining, and with the throwing write: a child may exit without
            // reading its input (a plugin refusing its environment), and Foundation's
            // non-throwing `write(_:)` traps on the EPIPE that follows, killing the whole test run.
            group.enter()
            DispatchQueue.global().async {
                try? input.fileHandleForWriting.write(contentsOf: Data(stdin.utf8))
                try? input.fileHandleForWriting.close()
                group.leave()
            }
        }
        for (pipe, sink) in [(out, outData), (err, errData)] {
            group.enter()
            DispatchQueue.global().async {
                sink.append(pipe.fileHandleForReading.readDataToEndOfFile())
                group.leave()
            }
        }
        while p.isRunning, Date() < deadline { usleep(2000) }
        if p.isRunning { p.terminate(); usleep(100_000); if p.isRunning { kill(p.processIdentifier, SIGKILL) } }
        p.waitUntilExit()
        group.wait()
        return Result(status: p.terminationStatus, stdout: outData.string, stderr: errData.string)
    }

    /// Starts `argv` (an absolute path first) in the background and returns its pid; the caller
    /// stops and reaps it. Standard input is /dev/null, output and errors go to `log` (appended)
    /// or /dev/null; `environment` replaces the test's when given. posix_spawn, not Process:
    /// Foundation's Process stalls later Process calls while a long-lived child it started
    /// still runs. The child gets a clean signal mask and default handlers: the test process
    /// blocks some signals, and a child inheriting that would ignore SIGTERM or miss SIGCHLD.
    public static func spawn(_ argv: [String], log: String? = nil, environment: [String: String]? = nil) throws -> pid_t {
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, log ?? "/dev/null", O_WRONLY | O_CREAT | O_APPEND, 0o644)
        posix_spawn_file_actions_adddup2(&actions, 1, 2)
        var attr = posix_spawnattr_t()
        posix_spawnattr_init(&attr)
        defer { posix_spawnattr_destroy(&attr) }
        var empty = sigset_t(), defaults = sigset_t()
        sigemptyset(&empty)
        sigemptyset(&defaults)
        for s in [SIGTERM, SIGINT, SIGCHLD, SIGPIPE, SIGHUP] { sigaddset(&defaults, s) }
        posix_spawnattr_setsigmask(&attr, &empty)
        posix_spawnattr_setsigdefault(&attr, &defaults)
        posix_spawnattr_setflags(&attr, Int16(POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF))
        var cargs = argv.map { strdup($0) } + [nil]
        defer { cargs.forEach { free($0) } }
        var cenv = environment.map { $0.map { strdup("\($0.key)=\($0.value)") } + [nil] }
        defer { cenv?.forEach { free($0) } }
        var pid: pid_t = 0
        let rc = cenv == nil ? posix_spawn(&pid, argv[0], &actions, &attr, &cargs, environ)
                             : posix_spawn(&pid, argv[0], &actions, &attr, &cargs, &cenv!)
        guard rc == 0 else {
            throw Failure(command: argv.joined(separator: " "), result: .init(status: rc, stdout: "", stderr: "posix_spawn: \(String(cString: strerror(rc)))"))
        }
        return pid
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

final class LockedData: @unchecked Sendable {
    // @unchecked: every access goes through `lock`.
    private let lock = NSLock()
    private var data = Data()
    func append(_ d: Data) { lock.lock(); data.append(d); lock.unlock() }
    var string: String { lock.lock(); defer { lock.unlock() }; return String(decoding: data, as: UTF8.self) }
}

/// True when tests may touch the kernel (root) and `ip` exists.
public var isPrivileged: Bool {
    getuid() == 0 && (try? Shell.which("ip")) != nil
}
