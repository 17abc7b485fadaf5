import Foundation

/// The built `nodenet` binary, run the way an operator runs it: as a process inside a node
/// namespace, with its own stateDir and runDir.
public final class AgentProcess: @unchecked Sendable {
    // @unchecked: `process` is only touched from the test that owns this object.
    public let namespace: TestNamespace
    public let stateDir: String
    public let runDir: String
    public let logPath: String
    public var socket: String { runDir + "/nodenet.sock" }
    private var process: ChildProcess?
    public let extraArgs: [String]
    public let environment: [String: String]

    /// The nodenet binary next to the test bundle (override with NODENET_BIN).
    public static var binary: String {
        if let b = ProcessInfo.processInfo.environment["NODENET_BIN"] { return b }
        var dir = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
        while dir.path != "/" {
            let candidate = dir.appendingPathComponent("nodenet").path
            if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
            dir = dir.deletingLastPathComponent()
        }
        return FileManager.default.currentDirectoryPath + "/.build/debug/nodenet"
    }

    /// The CNI plugin executable built next to `binary` (override with NODENET_CNI_BIN): what a
    /// runtime execs as /opt/cni/bin/nodenet.
    public static var cniBinary: String {
        if let b = ProcessInfo.processInfo.environment["NODENET_CNI_BIN"] { return b }
        return URL(fileURLWithPath: binary).deletingLastPathComponent().appendingPathComponent("nodenet-cni").path
    }

    public init(namespace: TestNamespace, directory: TempDirectory, args: [String] = [], environment: [String: String] = [:],
                logName: String? = nil) {
        self.namespace = namespace
        stateDir = directory.file("state-\(namespace.name)")
        runDir = directory.file("run-\(namespace.name)")
        logPath = directory.file("agent-\(logName ?? namespace.name).log")
        extraArgs = args
        self.environment = environment
    }

    public var pid: Int32? { process?.pid }

    /// Starts the agent (nsenter into the namespace) and waits until its control socket answers.
    public func start(waitReady: Bool = true, timeout: Double = 20) throws {
        // No DNS lame-duck pause unless the test asks for one: every stop would otherwise wait
        // the default 5 s, which over the suite's hundreds of agent stops is most of its time.
        let lameDuck = extraArgs.contains("--dns-lame-duck") ? [] : ["--dns-lame-duck", "0"]
        let argv = [try Shell.which("nsenter"), "--net=\(namespace.path)", Self.binary, "agent", "--state-dir", stateDir,
                    "--run-dir", runDir, "--metrics-listen", ""] + lameDuck + extraArgs
        var env = ProcessInfo.processInfo.environment
        env.merge(environment) { _, new in new }
        let log = open(logPath, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC, 0o644)
        guard log >= 0 else { throw Shell.Failure(command: "open \(logPath)", result: .init(status: errno, stdout: "", stderr: String(cString: strerror(errno)))) }
        defer { close(log) }
        let p = try ChildProcess(argv, stdout: log, stderr: log, environment: env)
        process = p
        guard waitReady else { return }
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            if let status = p.terminationStatus { throw Shell.Failure(command: "nodenet agent", result: .init(status: status, stdout: "", stderr: self.log(tail: 30))) }
            if let r = try? cli(["status", "--json"]), r.ok, r.stdout.contains("\"ready\" : true") { return }
            usleep(50_000)
        }
        throw Shell.Failure(command: "nodenet agent (not ready in \(timeout)s)", result: .init(status: -1, stdout: "", stderr: self.log(tail: 30)))
    }

    /// Runs a `nodenet` client command against this agent's socket.
    @discardableResult
    public func cli(_ args: [String], stdin: String? = nil) throws -> Shell.Result {
        try Shell.run([Self.binary] + args + ["--socket", socket], stdin: stdin, timeout: 30)
    }

    public func apply(_ manifest: String) throws -> Shell.Result {
        try cli(["apply", "-f", "-"], stdin: manifest)
    }

    /// SIGTERM without waiting: a cluster signals every agent first, so their DNS lame-duck
    /// periods run at once instead of one after another.
    public func terminate() {
        process?.signal(SIGTERM)
    }

    /// SIGTERM and wait for a clean exit; returns the exit status.
    @discardableResult
    public func stop(timeout: Double = 15) -> Int32? {
        guard let p = process else { return nil }
        p.signal(SIGTERM)
        if p.wait(timeout: timeout) == nil { p.signal(SIGKILL) }
        process = nil
        return p.waitUntilExit()
    }

    /// Waits for the process to exit by itself; returns its status, or nil if still running.
    public func waitForExit(timeout: Double) -> Int32? {
        guard let p = process else { return nil }
        return p.wait(timeout: timeout)
    }

    /// kill -9, as a crash would.
    public func crash() {
        guard let p = process else { return }
        p.signal(SIGKILL)
        p.waitUntilExit()
        process = nil
    }

    public func log(tail lines: Int = 50) -> String {
        let text = (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? ""
        return text.split(separator: "\n").suffix(lines).joined(separator: "\n")
    }

    deinit { if process?.isRunning == true { crash() } }
}
