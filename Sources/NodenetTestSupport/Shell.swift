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
        if let stdin {
            input.fileHandleForWriting.write(Data(stdin.utf8))
            try? input.fileHandleForWriting.close()
        }
        let deadline = Date().addingTimeInterval(timeout)
        // Drain both pipes while waiting so a chatty child never blocks on a full pipe.
        let outData = LockedData(), errData = LockedData()
        let group = DispatchGroup()
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

    /// Starts `argv` (an absolute path first) in the background with its standard streams on
    /// /dev/null and returns its pid; the caller stops it. posix_spawn, not Process: Foundation's
    /// Process stalls later Process calls while a long-lived child it started still runs.
    public static func spawn(_ argv: [String]) throws -> pid_t {
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        for fd: Int32 in 0...2 { posix_spawn_file_actions_addopen(&actions, fd, "/dev/null", fd == 0 ? O_RDONLY : O_WRONLY, 0) }
        var cargs = argv.map { strdup($0) } + [nil]
        defer { cargs.forEach { free($0) } }
        var pid: pid_t = 0
        let rc = posix_spawn(&pid, argv[0], &actions, nil, &cargs, environ)
        guard rc == 0 else { throw Failure(command: argv.joined(separator: " "), result: .init(status: rc, stdout: "", stderr: "posix_spawn failed")) }
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
