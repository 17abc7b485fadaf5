import Foundation

/// A real etcd (Debian's etcd-server) for one test, listening on loopback inside a namespace
/// the test made: started, waited for until healthy (bounded), killed and reaped on `stop`.
public final class LocalEtcd {
    public let endpoint: String
    private let pid: pid_t

    /// Starts etcd in `ns` with its data under `dir`; throws when it is not healthy in 10 s.
    public init(in ns: TestNamespace, dir: TempDirectory, clientPort: Int = 23790, peerPort: Int = 23800) throws {
        endpoint = "http://127.0.0.1:\(clientPort)"
        pid = try Shell.spawn(["/usr/bin/nsenter", "--net=\(ns.path)", try Shell.which("etcd"), "--data-dir", dir.file("etcd"),
                               "--listen-client-urls", endpoint, "--advertise-client-urls", endpoint,
                               "--listen-peer-urls", "http://127.0.0.1:\(peerPort)"], log: dir.file("etcd.log"))
        var healthy = false
        for _ in 0..<100 where !healthy {
            healthy = (try? ns.run(["etcdctl", "--endpoints", endpoint, "endpoint", "health"]))?.ok == true
            if !healthy { usleep(100_000) }
        }
        guard healthy else {
            stop()
            throw Shell.Failure(command: "etcd in \(ns.name)", result: .init(status: 1, stdout: "", stderr: "not healthy within 10 s (log: \(dir.file("etcd.log")))"))
        }
    }

    public func stop() {
        kill(pid, SIGKILL)
        waitpid(pid, nil, 0)
    }
}
