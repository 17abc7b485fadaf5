import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// A root filesystem booted with systemd as PID 1 (`systemd-nspawn -b --private-network`), to
/// test the package and its unit as an operator meets them on a node. The container has its own
/// network namespace with nothing but loopback (and what its own units create there); commands
/// run in it with `nsenter -t <its PID 1> -a`. testing.md, "A real systemd", says why each
/// flag is there.
public final class BootedContainer: @unchecked Sendable {
    // @unchecked: used only by the test that owns it.
    public let root: String
    public let logPath: String
    private var nspawn: pid_t = 0
    /// The container's PID 1 as this machine sees it.
    public private(set) var leader: pid_t = 0

    public init(root: String, logPath: String) {
        self.root = root
        self.logPath = logPath
    }

    /// Starts systemd-nspawn on `root` and waits until the container's systemd finished booting
    /// (`is-system-running`: running or degraded); returns that state. posix_spawn, not
    /// Foundation's Process (Shell.spawn).
    @discardableResult
    public func boot(timeout: Double = 120) throws -> String {
        precondition(nspawn == 0, "already booted")
        let argv = [try Shell.which("systemd-nspawn"), "-q", "-b", "-D", root, "--private-network", "--register=no", "--keep-unit"]
        let pid: pid_t
        do {
            pid = try Shell.spawn(argv, log: logPath)
        } catch {
            throw failure("posix_spawn systemd-nspawn", "\(error)")
        }
        nspawn = pid
        leader = 0
        let deadline = Date().addingTimeInterval(timeout)
        while leader == 0 {
            if let status = reap() { throw failure("systemd-nspawn", "exited \(status) before the container's systemd started") }
            leader = Self.childSystemd(of: pid) ?? 0
            if leader == 0 {
                guard Date() < deadline else { throw failure("systemd-nspawn", "no systemd in the container after \(timeout)s") }
                usleep(20_000)
            }
        }
        var state = ""
        while Date() < deadline {
            if let status = reap() { throw failure("systemd-nspawn", "exited \(status) while booting") }
            let r = try run(["systemctl", "is-system-running"], timeout: 10)
            state = r.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
            if state == "running" || state == "degraded" { return state }
            usleep(100_000)
        }
        throw failure("booting", "systemd in the container is still '\(state)' after \(timeout)s")
    }

    /// Runs `argv` inside the container (all its namespaces).
    @discardableResult
    public func run(_ argv: [String], stdin: String? = nil, timeout: Double = 60) throws -> Shell.Result {
        precondition(leader != 0, "not booted")
        return try Shell.run(["/usr/bin/nsenter", "-t", String(leader), "-a"] + argv, stdin: stdin,
                             environment: ["PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8", "DEBIAN_FRONTEND": "noninteractive"],
                             timeout: timeout)
    }

    @discardableResult
    public func check(_ argv: [String], stdin: String? = nil, timeout: Double = 60) throws -> Shell.Result {
        let r = try run(argv, stdin: stdin, timeout: timeout)
        guard r.ok else { throw Shell.Failure(command: argv.joined(separator: " "), result: r) }
        return r
    }

    /// `systemctl reboot` or `poweroff` inside, then waits for systemd-nspawn to end (a reboot
    /// ends it too: booting again is the caller's, as systemd-nspawn@.service does).
    public func shutdown(reboot: Bool = false, timeout: Double = 60) throws {
        guard nspawn != 0 else { return }
        _ = try? run(["systemctl", reboot ? "reboot" : "poweroff"], timeout: 10)
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            if reap() != nil { return }
            usleep(50_000)
        }
        kill()
        throw failure("shutdown", "the container did not stop within \(timeout)s")
    }

    /// Ends systemd-nspawn at once (it takes the container's processes and mounts with it).
    public func kill() {
        guard nspawn != 0 else { return }
        Glibc.kill(nspawn, SIGKILL)
        var status: Int32 = 0
        waitpid(nspawn, &status, 0)
        nspawn = 0
        leader = 0
    }

    /// The console output so far (the boot log), for failure messages.
    public func log(tail lines: Int = 40) -> String {
        let text = (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? ""
        return text.split(separator: "\n").suffix(lines).joined(separator: "\n")
    }

    deinit { kill() }

    /// systemd-nspawn's exit status once it has ended (and forgets it), else nil.
    private func reap() -> Int32? {
        var status: Int32 = 0
        guard nspawn != 0, waitpid(nspawn, &status, WNOHANG) == nspawn else { return nil }
        nspawn = 0
        leader = 0
        return (status >> 8) & 0xff
    }

    /// The child of `pid` that runs systemd (the container's init once it has exec'd).
    private static func childSystemd(of pid: pid_t) -> pid_t? {
        guard let children = try? String(contentsOfFile: "/proc/\(pid)/task/\(pid)/children", encoding: .utf8) else { return nil }
        for child in children.split(separator: " ").compactMap({ pid_t($0) }) {
            let comm = (try? String(contentsOfFile: "/proc/\(child)/comm", encoding: .utf8)) ?? ""
            if comm.trimmingCharacters(in: .whitespacesAndNewlines) == "systemd" { return child }
        }
        return nil
    }

    private func failure(_ what: String, _ message: String) -> Shell.Failure {
        Shell.Failure(command: what, result: .init(status: -1, stdout: "", stderr: "\(message)\n\(log())"))
    }
}
