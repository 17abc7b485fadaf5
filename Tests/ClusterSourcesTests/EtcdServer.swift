import Foundation
import NodenetTestSupport
@testable import ClusterSources

/// A real etcd (Debian's etcd-server) for one test: loopback only, free ports, its own data
/// directory, stopped by pid in every path (`stop()` from a `defer`, and from deinit).
final class EtcdServer: @unchecked Sendable {
    // @unchecked: `process` is only touched from the test's own task (start, stop, deinit).
    let directory = TempDirectory()
    let clientPort: Int
    let peerPort: Int
    private var process: ChildProcess?
    /// Directory with ca.crt, server.crt/key and client.crt/key (see KubernetesTLSTests.makePKI):
    /// serve https and require client certificates.
    let pki: TempDirectory?
    var endpoint: String { "\(pki == nil ? "http" : "https")://127.0.0.1:\(clientPort)" }

    static var available: Bool { (try? Shell.which("etcd")) != nil }

    init(pki: TempDirectory? = nil) throws {
        self.pki = pki
        clientPort = try freePort()
        peerPort = try freePort()
        try start()
    }

    deinit { stop() }

    /// Starts etcd (again, on the same ports and data) and waits until it answers.
    func start() throws {
        let peer = "http://127.0.0.1:\(peerPort)"
        var arguments = [
            try Shell.which("etcd"), "--name", "test", "--data-dir", directory.file("data"),
            "--listen-client-urls", endpoint, "--advertise-client-urls", endpoint,
            "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
            "--initial-cluster", "test=\(peer)",
            // Progress notifications every second so stall detection is testable.
            "--experimental-watch-progress-notify-interval", "1s",
        ]
        var curlTLS: [String] = []
        if let pki {
            arguments += ["--cert-file", pki.file("server.crt"), "--key-file", pki.file("server.key"),
                             "--trusted-ca-file", pki.file("ca.crt"), "--client-cert-auth"]
            curlTLS = ["--cacert", pki.file("ca.crt"), "--cert", pki.file("client.crt"), "--key", pki.file("client.key")]
        }
        let logPath = directory.file("etcd.log")
        if !FileManager.default.fileExists(atPath: logPath) { _ = directory.write("etcd.log", "") }
        let log = open(logPath, O_WRONLY | O_APPEND | O_CLOEXEC)
        defer { if log >= 0 { close(log) } }
        let p = try ChildProcess(arguments, stdout: log >= 0 ? log : nil, stderr: log >= 0 ? log : nil)
        process = p
        let deadline = Date().addingTimeInterval(20)
        while Date() < deadline {
            if let r = try? Shell.run(["curl", "-s", "-m", "1"] + curlTLS + [endpoint + "/health"], timeout: 3), r.stdout.contains("true") { return }
            if !p.isRunning { break }
            usleep(100_000)
        }
        stop()
        throw EtcdTestError(message: "etcd did not become healthy on \(endpoint): \(self.log(tail: 2000))")
    }

    /// SIGTERM by pid, then SIGKILL if it lingers; waits for the exit.
    func stop() {
        guard let p = process else { return }
        process = nil
        p.signal(SIGTERM)
        if p.wait(timeout: 5) == nil { p.signal(SIGKILL) }
        p.waitUntilExit()
    }

    func log(tail: Int) -> String {
        let text = (try? String(contentsOfFile: directory.file("etcd.log"), encoding: .utf8)) ?? ""
        return String(text.suffix(tail))
    }

    // try!: a non-empty endpoint list without TLS cannot fail.
    func client() -> EtcdClient { try! EtcdClient(endpoints: [endpoint]) }
}

struct EtcdTestError: Error, CustomStringConvertible {
    var message: String
    var description: String { message }
}

/// A TCP port on 127.0.0.1 that was free a moment ago (bind to 0, read, close).
func freePort() throws -> Int {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    guard fd >= 0 else { throw EtcdTestError(message: "socket: errno \(errno)") }
    defer { close(fd) }
    var addr = sockaddr_in()
    addr.sin_family = sa_family_t(AF_INET)
    addr.sin_addr.s_addr = inet_addr("127.0.0.1")
    addr.sin_port = 0
    var len = socklen_t(MemoryLayout<sockaddr_in>.size)
    let ok = withUnsafeMutablePointer(to: &addr) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, len) == 0 && getsockname(fd, $0, &len) == 0 }
    }
    guard ok else { throw EtcdTestError(message: "bind: errno \(errno)") }
    return Int(UInt16(bigEndian: addr.sin_port))
}

/// Polls `condition` until it holds or `timeout` passes.
func eventually(timeout: Duration = .seconds(15), _ condition: () async -> Bool) async -> Bool {
    let deadline = ContinuousClock.now + timeout
    while ContinuousClock.now < deadline {
        if await condition() { return true }
        try? await Task.sleep(for: .milliseconds(50))
    }
    return await condition()
}
