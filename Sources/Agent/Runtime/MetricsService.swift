import ClusterState
import Foundation
import Metrics
import NIOCore
import Prometheus
import ServiceLifecycle
import Synchronization

/// The process-wide Prometheus registry. The agent command bootstraps swift-metrics with it
/// once; library code only uses the swift-metrics API, and MetricCatalog gives every family
/// its HELP text and buckets.
public enum AgentMetrics {
    public static let registry = PrometheusCollectorRegistry()

    public static func bootstrap() {
        MetricsSystem.bootstrap(CatalogMetricsFactory(registry: registry))
        // Counters alerts watch exist at zero from the start (MetricCatalog.zeroAtStart).
        for (name, family) in MetricCatalog.families where family.zeroAtStart {
            _ = registry.makeCounter(name: name, labels: [], help: family.help)
        }
        let compiler: String
        #if compiler(>=6.3)
        compiler = "6.3"
        #elseif compiler(>=6.2)
        compiler = "6.2"
        #else
        compiler = "6.1"
        #endif
        registry.makeGauge(name: "nodenet_build_info", labels: [("version", nodenetVersion), ("swift", compiler)],
                           help: MetricCatalog.help("nodenet_build_info")).set(to: 1)
    }

    /// Refreshes what is read rather than recorded: the store, readiness, each actor, the
    /// source, what actors registered with `onScrape`, and the process.
    static func refresh(agent: NodeAgent) async {
        let snapshot = await agent.store.snapshot()
        for kind in ObjectKind.allCases {
            Metrics.Gauge(label: "nodenet_store_objects", dimensions: [("kind", kind.rawValue)]).record(snapshot.count(of: kind))
        }
        Metrics.Gauge(label: "nodenet_store_version").record(Double(snapshot.version))
        Metrics.Gauge(label: "nodenet_ready").record(agent.board.isReady ? 1 : 0)
        for row in agent.board.rows {
            let up = row.state == .inSync || row.state == .pending || row.state == .disabled
            Metrics.Gauge(label: "nodenet_actor_up", dimensions: [("actor", row.name)]).record(up ? 1 : 0)
        }
        let kind = agent.config.source.rawValue
        let dims = [("source", kind)]
        if let remote = agent.remoteSource?.status() {
            Metrics.Gauge(label: "nodenet_source_connected", dimensions: dims).record(remote.connected ? 1 : 0)
            Metrics.Gauge(label: "nodenet_source_synced", dimensions: dims).record(remote.synced ? 1 : 0)
            Metrics.Gauge(label: "nodenet_source_last_sync_timestamp_seconds", dimensions: dims)
                .record(remote.lastSync?.timeIntervalSince1970 ?? 0)
            sourceCounters.advance("nodenet_source_watch_restarts_total", dims, to: remote.watchRestarts)
            sourceCounters.advance("nodenet_source_relists_total", dims, to: remote.relists)
        } else {
            // The embedded store: always there; its last sync is the agent's start.
            Metrics.Gauge(label: "nodenet_source_connected", dimensions: dims).record(1)
            Metrics.Gauge(label: "nodenet_source_synced", dimensions: dims).record(snapshot.synced ? 1 : 0)
            Metrics.Gauge(label: "nodenet_source_last_sync_timestamp_seconds", dimensions: dims).record(agent.startedAt.timeIntervalSince1970)
            sourceCounters.advance("nodenet_source_watch_restarts_total", dims, to: 0)
            sourceCounters.advance("nodenet_source_relists_total", dims, to: 0)
        }
        for hook in agent.scrapeHooks.withLock({ Array($0.values) }) { await hook() }
        ProcessMetrics.refresh(registry: registry)
    }

    /// Counters whose source of truth is a running total elsewhere (SourceStatus): the
    /// Prometheus counter is moved forward by the difference since the last scrape.
    static let sourceCounters = TotalsFollower()
}

/// Moves Prometheus counters forward to totals kept elsewhere (a counter only increments).
final class TotalsFollower: Sendable {
    private let seen = Mutex<[String: Int]>([:])

    func advance(_ name: String, _ dims: [(String, String)], to total: Int) {
        let key = name + dims.map { "|\($0.0)=\($0.1)" }.joined()
        let delta = seen.withLock { seen -> Int in
            let last = seen[key] ?? 0
            seen[key] = max(total, last)
            return max(0, total - last)
        }
        Metrics.Counter(label: name, dimensions: dims).increment(by: delta)
    }
}

/// The process_* families every Prometheus client library exports, from /proc/self.
enum ProcessMetrics {
    private static let cpu = Mutex<Double>(0)

    static func refresh(registry: PrometheusCollectorRegistry) {
        func gauge(_ name: String, _ value: Double) {
            registry.makeGauge(name: name, labels: [], help: MetricCatalog.help(name)).set(to: value)
        }
        let ticks = Double(sysconf(Int32(_SC_CLK_TCK)))
        // /proc/self/stat: fields after the command (which may hold spaces) in parentheses.
        if let stat = try? String(contentsOfFile: "/proc/self/stat", encoding: .utf8),
           let close = stat.lastIndex(of: ")") {
            let f = stat[stat.index(after: close)...].split(separator: " ").map(String.init)
            // f[0] is field 3 (state): utime 14, stime 15, threads 20, starttime 22, vsize 23, rss 24.
            if f.count > 21, let utime = Double(f[11]), let stime = Double(f[12]), ticks > 0 {
                let total = (utime + stime) / ticks
                let delta = cpu.withLock { last -> Double in
                    defer { last = max(last, total) }
                    return max(0, total - last)
                }
                registry.makeCounter(name: "process_cpu_seconds_total", labels: [], help: MetricCatalog.help("process_cpu_seconds_total"))
                    .increment(by: delta)
                if let threads = Double(f[17]) { gauge("process_threads", threads) }
                if let start = Double(f[19]), let boot = bootTime() { gauge("process_start_time_seconds", boot + start / ticks) }
                if let vsize = Double(f[20]) { gauge("process_virtual_memory_bytes", vsize) }
                if let rss = Double(f[21]) { gauge("process_resident_memory_bytes", rss * Double(sysconf(Int32(_SC_PAGESIZE)))) }
            }
        }
        if let fds = try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd") {
            gauge("process_open_fds", Double(fds.count))
        }
        var limit = rlimit()
        if getrlimit(__rlimit_resource_t(RLIMIT_NOFILE.rawValue), &limit) == 0 { gauge("process_max_fds", Double(limit.rlim_cur)) }
    }

    private static func bootTime() -> Double? {
        guard let stat = try? String(contentsOfFile: "/proc/stat", encoding: .utf8) else { return nil }
        for line in stat.split(separator: "\n") where line.hasPrefix("btime ") {
            return Double(line.dropFirst(6).trimmingCharacters(in: .whitespaces))
        }
        return nil
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
        let board = agent.board
        let agent = self.agent
        let server = ControlServer(socketPath: "", group: agent.group, logger: agent.logger) { request in
            if let probe = ControlAPI.probe(request.path, board: board) { return probe }
            guard request.path == "/metrics" else { return .error(.notFound, "try /metrics, /healthz or /readyz") }
            await AgentMetrics.refresh(agent: agent)
            return ControlReply(body: AgentMetrics.registry.emitToBuffer() + Array(agent.extraMetricsText.utf8), contentType: "text/plain; version=0.0.4")
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
