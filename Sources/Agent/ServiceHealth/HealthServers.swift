import ClusterState
import Foundation
import Logging
import NIOCore
import NIOPosix
import Synchronization

/// The HTTP listeners of the health check node ports: one per port and node address, opened
/// when a service gets a port and closed when it loses it. Counts change without touching the
/// listener: the handlers read the current target at each request.
actor HealthCheckPortServers {
    /// Port -> the target it answers for; read by the listeners' handlers on the event loops.
    final class Table: Sendable {
        let targets = Mutex<[UInt16: HealthCheckTarget]>([:])
        func get(_ port: UInt16) -> HealthCheckTarget? { targets.withLock { $0[port] } }
        func set(_ port: UInt16, _ t: HealthCheckTarget?) { targets.withLock { $0[port] = t } }
    }

    private let table = Table()
    private let group: MultiThreadedEventLoopGroup
    private let logger: Logger
    /// The node's addresses to listen on ("0.0.0.0" when the node's address is unknown).
    private var hosts: [String]
    private let proxyHealthy: @Sendable () -> Bool
    private var channels: [UInt16: [any Channel]] = [:]
    /// Ports that could not be opened, with why (shown in `nodenet status`, retried by `retry`).
    private(set) var failures: [UInt16: String] = [:]

    init(group: MultiThreadedEventLoopGroup, logger: Logger, hosts: [String], proxyHealthy: @escaping @Sendable () -> Bool) {
        self.group = group
        self.logger = logger
        self.hosts = hosts
        self.proxyHealthy = proxyHealthy
    }

    var openPorts: [UInt16] { channels.keys.sorted() }
    var served: [HealthCheckTarget] { table.targets.withLock { $0.values.sorted { $0.port < $1.port } } }

    /// Applies changed targets (from `HealthCheckTargets.update`).
    func apply(_ changes: [(old: HealthCheckTarget?, new: HealthCheckTarget?)]) async {
        for (old, new) in changes {
            if let old, old.port != new?.port, table.get(old.port)?.service == old.service {
                table.set(old.port, nil)
                await close(old.port)
            }
            if let new {
                table.set(new.port, new)
                if channels[new.port] == nil { await open(new.port) }
            }
        }
    }

    /// The node's addresses changed (its Node object arrived after the start, or gained an
    /// InternalIP of the other family): every port is served on the new set.
    func setHosts(_ new: [String]) async {
        guard new != hosts else { return }
        hosts = new
        for port in channels.keys.sorted() { await close(port) }
        for port in table.targets.withLock({ $0.keys.sorted() }) { await open(port) }
    }

    /// Tries again the ports that failed to open (taken by another process at the time).
    func retry() async {
        for port in failures.keys.sorted() where table.get(port) != nil && channels[port] == nil { await open(port) }
    }

    func closeAll() async {
        for port in channels.keys.sorted() { await close(port) }
    }

    private func open(_ port: UInt16) async {
        let table = self.table
        let proxyHealthy = self.proxyHealthy
        let server = ControlServer(socketPath: "", group: group, logger: logger) { _ in
            guard let target = table.get(port) else { return .error(.serviceUnavailable, "no service on this health check port") }
            return HealthReplies.service(target, proxyHealthy: proxyHealthy())
        }
        var opened: [any Channel] = []
        for host in hosts {
            do {
                opened.append(try await server.bind(host: host, port: Int(port)))
            } catch {
                for c in opened { try? await c.close() }
                failures[port] = "cannot listen on \(host):\(port): \(error)"
                logger.warning("health check node port not served", metadata: ["port": "\(port)", "error": "\(error)"])
                return
            }
        }
        channels[port] = opened
        failures[port] = nil
        logger.info("health check node port open", metadata: ["port": "\(port)", "service": "\(table.get(port)?.service.description ?? "-")"])
    }

    private func close(_ port: UInt16) async {
        failures[port] = nil
        guard let open = channels.removeValue(forKey: port) else { return }
        for c in open { try? await c.close() }
        logger.info("health check node port closed", metadata: ["port": "\(port)"])
    }
}

/// The replies of the health endpoints, as kube-proxy writes them.
enum HealthReplies {
    static let headers = [("X-Content-Type-Options", "nosniff")]

    /// `/healthz` and `/livez` of the proxy health server: both follow the rules' sync;
    /// `/healthz` also fails while the node is being deleted (not eligible), as kube-proxy's does.
    static func proxy(path: String, verdict: ProxyHealth.Verdict) -> ControlReply {
        switch path {
        case "/healthz":
            return ControlReply(status: verdict.healthy && verdict.nodeEligible ? .ok : .serviceUnavailable,
                                body: HealthBodies.proxy(verdict, eligibility: true), headers: headers)
        case "/livez":
            return ControlReply(status: verdict.healthy ? .ok : .serviceUnavailable,
                                body: HealthBodies.proxy(verdict, eligibility: false), headers: headers)
        default:
            return .error(.notFound, "try /healthz or /livez")
        }
    }

    /// A health check node port, any path: 200 when the node has ready local endpoints and the
    /// proxy is healthy, else 503, the body the same either way; the endpoint count also as
    /// `X-Load-Balancing-Endpoint-Weight`.
    static func service(_ target: HealthCheckTarget, proxyHealthy: Bool) -> ControlReply {
        ControlReply(status: target.localEndpoints > 0 && proxyHealthy ? .ok : .serviceUnavailable,
                     body: HealthBodies.service(target, proxyHealthy: proxyHealthy),
                     headers: headers + [("X-Load-Balancing-Endpoint-Weight", "\(target.localEndpoints)")])
    }
}
