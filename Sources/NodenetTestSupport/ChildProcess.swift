import Foundation

/// A child process started with posix_spawn and reaped with waitpid on its own pid.
///
/// Why not Foundation's `Process`: on Linux it learns of a child's exit through a shared
/// SIGCHLD monitor, and in a long test process that runs hundreds of children (agents, `ip`,
/// `nft`, shells) the monitor sometimes never sees one: the child is a zombie, `isRunning` stays
/// true and `waitUntilExit()` blocks for ever. A CI run hung 15 minutes in one such wait
/// (PackagingTests, a script that had exited at once). Here the exit is read straight from the
/// kernel with waitpid, so it cannot be missed.
public final class ChildProcess: @unchecked Sendable {
    // @unchecked: `exitStatus` is written under `lock`; the rest is immutable.
    public let pid: pid_t
    private let lock = NSLock()
    private var exitStatus: Int32?

    /// The raw wait status turned into what `Process.terminationStatus` reported: the exit code,
    /// or the signal number for a child killed by a signal.
    static func decode(_ status: Int32) -> Int32 {
        let signal = status & 0x7f
        return signal == 0 ? (status >> 8) & 0xff : signal
    }

    /// Starts `argv` (argv[0] an absolute path). `stdin`, `stdout`, `stderr` are descriptors the
    /// child gets as 0, 1, 2 (nil: /dev/null). `environment` replaces the test's when given. The
    /// child gets a clean signal mask and default handlers: the test process blocks some
    /// signals, and a child inheriting that would ignore SIGTERM or miss SIGCHLD.
    public init(_ argv: [String], stdin: Int32? = nil, stdout: Int32? = nil, stderr: Int32? = nil,
                environment: [String: String]? = nil) throws {
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        for (target, fd, mode) in [(Int32(0), stdin, O_RDONLY), (1, stdout, O_WRONLY), (2, stderr, O_WRONLY)] {
            if let fd { posix_spawn_file_actions_adddup2(&actions, fd, target) }
            else { posix_spawn_file_actions_addopen(&actions, target, "/dev/null", mode, 0) }
        }
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
            throw Shell.Failure(command: argv.joined(separator: " "),
                                result: .init(status: rc, stdout: "", stderr: "posix_spawn: \(String(cString: strerror(rc)))"))
        }
        self.pid = pid
    }

    /// The exit status once the child has exited (reaping it), else nil. Never blocks.
    public var terminationStatus: Int32? {
        lock.lock(); defer { lock.unlock() }
        if let exitStatus { return exitStatus }
        var status: Int32 = 0
        if waitpid(pid, &status, WNOHANG) == pid { exitStatus = Self.decode(status) }
        return exitStatus
    }

    public var isRunning: Bool { terminationStatus == nil }

    /// Blocks until the child exits; returns its status.
    @discardableResult
    public func waitUntilExit() -> Int32 {
        lock.lock(); defer { lock.unlock() }
        if let exitStatus { return exitStatus }
        var status: Int32 = 0
        while waitpid(pid, &status, 0) == -1, errno == EINTR {}
        exitStatus = Self.decode(status)
        return exitStatus!
    }

    /// Waits up to `timeout` seconds; returns the status, or nil if the child still runs.
    public func wait(timeout: Double) -> Int32? {
        let deadline = Date().addingTimeInterval(timeout)
        while true {
            if let s = terminationStatus { return s }
            if Date() >= deadline { return nil }
            usleep(5_000)
        }
    }

    public func signal(_ sig: Int32) {
        if isRunning { kill(pid, sig) }
    }
}
