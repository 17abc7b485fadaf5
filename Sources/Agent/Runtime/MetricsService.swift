import ClusterState
import Foundation
import Metrics
import NIOCore
import Prometheus
import ServiceLifecycle

/// The process-wide Prometheus registry. The agent command bootstraps swift-metrics with it
/// once; library code only uses the swift-metrics API.
public enum AgentMetrics {
    public static let registry = PrometheusCollectorRegistry()

    public static func bootstrap() {
        MetricsSystem.bootstrap(PrometheusMetricsFactory(registry: registry))
    }
}

/// Serves `/metrics` on `metrics.listen`, and `/healthz` and `/readyz` as the control socket
/// does (HTTP probes cannot reach a unix socket). Store gauges are refreshed on each scrape so
/// they are never stale and cost nothing between scrapes.
struct MetricsService: AgentActor {
    let agent: NodeAgent

    func run() async throws {
        let listen = agent.config.metrics.listen
        guard let (host, port) = ConfigLoader.parseHostPort(listen) else { try? await gracefulShutdown(); return }
        agent.board.register("metrics", gatesReadiness: false)
        let store = agent.store
        let board = agent.board
        let agent = agent
        let server = ControlServer(socketPath: "", group: agent.group, logger: agent.logger) { request in
            if let probe = ControlAPI.probe(request.path, board: board) { return probe }
            guard request.path == "/metrics" else { return .error(.notFound, "try /metrics, /healthz or /readyz") }
            let snapshot = await store.snapshot()
            for kind in ObjectKind.allCases {
                Gauge(label: "nodenet_store_objects", dimensions: [("kind", kind.rawValue)]).record(snapshot.count(of: kind))
            }
            Gauge(label: "nodenet_store_version").record(Double(snapshot.version))
            return ControlReply(body: AgentMetrics.registry.emitToBuffer() + Array(agent.extraMetricsText.utf8),
                                contentType: "text/plain; version=0.0.4")
        }
        let channel: any Channel
        do {
            channel = try await server.bind(host: host, port: port)
        } catch {
            agent.board.failed("metrics", "cannot listen on \(listen): \(error)")
            agent.logger.error("metrics disabled: cannot listen", metadata: ["listen": "\(listen)", "error": "\(error)"])
            try? await gracefulShutdown()  // the agent runs on without metrics
            return
        }
        agent.board.reconciled("metrics", seconds: 0, message: "http://\(listen)/metrics")
        try? await gracefulShutdown()
        try? await channel.close()
    }
}
