import CoreMetrics
import Prometheus

/// Every metric family nodenet exports, with its HELP text and, for histograms, its buckets.
///
/// Modules record metrics through the swift-metrics API (`Counter(label:)`, `Timer(label:)`,
/// `Gauge(label:)`, `Recorder(label:)`) and stay free of Prometheus; `CatalogMetricsFactory`
/// gives each family the help and buckets listed here. To add a metric anywhere in nodenet:
/// record it under its full Prometheus name (`nodenet_<module>_<what>_<unit>`, counters ending
/// in `_total`, durations in `_seconds` through a swift-metrics Timer) and add one line here.
/// `MetricsEndToEndTests` scrapes a running agent and fails on a family without HELP or on
/// anything else `promtool check metrics` reports.
///
/// Counters alerts watch (errors, failures, repairs) are listed in `zeroAtStart` when they
/// have no labels: an alert on `increase(x[5m]) > 0` sees nothing for a series that does not
/// exist yet. Labelled ones are created at zero where their label values become known
/// (`StatusBoard.register` for `nodenet_reconcile_errors_total`, the CNI service for
/// `nodenet_cni_operations_total`).
public enum MetricCatalog {
    public enum Buckets: Sendable {
        case duration([Duration])
        case value([Double])
    }

    public struct Family: Sendable {
        public let help: String
        public let buckets: Buckets?
        public let zeroAtStart: Bool

        public init(_ help: String, buckets: Buckets? = nil, zeroAtStart: Bool = false) {
            self.help = help
            self.buckets = buckets
            self.zeroAtStart = zeroAtStart
        }
    }

    /// Durations of in-node work: CNI calls, reconciles and syncs take 0.2-20 ms, so the
    /// buckets are 1 ms apart from 1 to 6 ms (a 2 ms and a 5 ms sync land in different
    /// buckets), then widen to the 10 s a stuck call would show.
    public static let latencyBuckets: Buckets = .duration(
        [.microseconds(250), .microseconds(500)] + (1...6).map { .milliseconds($0) }
            + [8, 10, 15, 25, 50, 100, 250, 500].map { .milliseconds($0) }
            + [.seconds(1), .milliseconds(2500), .seconds(5), .seconds(10)])

    /// Sizes (operations in one kernel transaction, objects in one batch): powers of about 3.
    public static let sizeBuckets: Buckets = .value([1, 3, 10, 30, 100, 300, 1000, 3000, 10000, 30000, 100000])

    public static let families: [String: Family] = [
        // Agent
        "nodenet_build_info": .init("Always 1; the labels carry the nodenet version and the Swift compiler it was built with."),
        "nodenet_ready": .init("1 once every actor completed its first reconcile (the readiness probe's answer), else 0."),
        "nodenet_reconcile_duration_seconds": .init("Time of each actor's reconcile, by actor.", buckets: latencyBuckets),
        "nodenet_reconcile_errors_total": .init("Failed reconciles, by actor."),
        "nodenet_actor_up": .init("1 while the actor's last reconcile succeeded (state in-sync or pending), 0 in error or starting, by actor."),
        "nodenet_store_objects": .init("Objects in the cluster state store, by kind."),
        "nodenet_store_version": .init("The cluster state store's version: it grows by one per committed change."),
        "nodenet_apply_requests_total": .init("Manifests applied through the control API (nodenet apply).", zeroAtStart: true),
        "nodenet_apply_errors_total": .init("Manifests refused by the control API (invalid documents).", zeroAtStart: true),
        // Sources (etcd, Kubernetes API); the embedded store is always connected and synced.
        "nodenet_source_connected": .init("1 while the last request or watch to the cluster state source worked, by source kind."),
        "nodenet_source_synced": .init("1 once every feed of the source completed a first list into the store, by source kind."),
        "nodenet_source_last_sync_timestamp_seconds": .init("Unix time of the source's last full list applied to the store, by source kind."),
        "nodenet_source_watch_restarts_total": .init("Watches started again after the first (stream ended, stalled or failed), by source kind."),
        "nodenet_source_relists_total": .init("Full lists after the first (compaction, 410 Gone, broken stream), by source kind."),
        // CNI and IPAM
        "nodenet_cni_operations_total": .init("CNI calls the agent answered, by command (ADD, DEL, CHECK, GC, STATUS, VERSION) and result (success, error)."),
        "nodenet_cni_operation_duration_seconds": .init("Time the agent took to answer a CNI call, by command.", buckets: latencyBuckets),
        "nodenet_cni_attachments": .init("Pod interfaces attached on this node."),
        "nodenet_ipam_addresses_used": .init("Pod addresses allocated, by pod subnet."),
        "nodenet_ipam_addresses_free": .init("Pod addresses still free, by pod subnet."),
        // Node routes
        "nodenet_routes_repairs_total": .init("Routes, neighbours and FDB entries put back after something else changed them.", zeroAtStart: true),
        "nodenet_routes_full_reconciles_total": .init("Full comparisons of the node's routes with the desired set."),
        "nodenet_routes_peers": .init("Peer nodes this node routes to."),
        "nodenet_routes_peers_failing": .init("Peer nodes whose routes are not in sync."),
        // Service proxy (Sources/ServiceProxy)
        "nodenet_proxy_sync_seconds": .init("Time of each service rule sync: desired state, diff and one nftables transaction.", buckets: latencyBuckets),
        "nodenet_proxy_transaction_operations": .init("nftables operations in each service rule transaction.", buckets: sizeBuckets),
        "nodenet_proxy_sync_failures_total": .init("Service rule syncs that failed (the kernel refused the transaction).", zeroAtStart: true),
        "nodenet_proxy_conntrack_deletes_total": .init("Conntrack entries deleted for removed UDP endpoints.", zeroAtStart: true),
        "nodenet_proxy_last_successful_sync_timestamp_seconds": .init("Unix time of the last service rule sync the kernel took (kube-proxy's sync_proxy_rules_last_timestamp_seconds)."),
        "nodenet_policy_sync_seconds": .init("Time of each NetworkPolicy sync: the changes into the policy engine and one nftables transaction.", buckets: latencyBuckets),
        "nodenet_policy_sync_failures_total": .init("NetworkPolicy syncs that failed (the next one reads the kernel back).", zeroAtStart: true),
        "nodenet_policy_programming_seconds": .init("From a Pod, Namespace or NetworkPolicy change in the store to the kernel enforcing it.", buckets: latencyBuckets),
        "nodenet_cluster_policy_denied_packets_total": .init("Packets a ClusterNetworkPolicy Deny rule refused (the rule's kernel counter, read at each scrape), by policy and rule (its name, else ingress[i] / egress[i]); a series appears with the rule's first denial."),
        "nodenet_policy_denied_packets_total": .init("Packets the NetworkPolicy tables refused (the reject rules' counters, read at each scrape), by family (ipv4, ipv6) and direction (ingress, egress; DNS queries to the node's responder are egress)."),
        "nodenet_proxy_network_programming_seconds": .init("From a Service or EndpointSlice change in the store to the kernel holding it (kube-proxy's network_programming_duration_seconds).", buckets: latencyBuckets),
        // Process (the names every Prometheus client library uses)
        "process_cpu_seconds_total": .init("Total user and system CPU time spent in seconds."),
        "process_resident_memory_bytes": .init("Resident memory size in bytes."),
        "process_virtual_memory_bytes": .init("Virtual memory size in bytes."),
        "process_open_fds": .init("Number of open file descriptors."),
        "process_max_fds": .init("Maximum number of open file descriptors."),
        "process_start_time_seconds": .init("Start time of the process since unix epoch in seconds."),
        "process_threads": .init("Number of OS threads in the process."),
    ]

    public static func help(_ name: String) -> String { families[name]?.help ?? "" }
}

/// swift-metrics' factory over the Prometheus registry, with the help text and buckets of
/// `MetricCatalog` (PrometheusMetricsFactory gives every family an empty help and one bucket
/// set). The registry requires one help text per family: always taking it from the catalog
/// keeps every registration of a name consistent.
struct CatalogMetricsFactory: MetricsFactory {
    let registry: PrometheusCollectorRegistry
    private let inner: PrometheusMetricsFactory

    init(registry: PrometheusCollectorRegistry) {
        self.registry = registry
        inner = PrometheusMetricsFactory(registry: registry)
    }

    func makeCounter(label: String, dimensions: [(String, String)]) -> any CounterHandler {
        registry.makeCounter(name: label, labels: dimensions, help: MetricCatalog.help(label))
    }

    func makeFloatingPointCounter(label: String, dimensions: [(String, String)]) -> any FloatingPointCounterHandler {
        registry.makeCounter(name: label, labels: dimensions, help: MetricCatalog.help(label))
    }

    func makeRecorder(label: String, dimensions: [(String, String)], aggregate: Bool) -> any RecorderHandler {
        guard aggregate else { return registry.makeGauge(name: label, labels: dimensions, help: MetricCatalog.help(label)) }
        let buckets: [Double]
        if case .value(let b) = MetricCatalog.families[label]?.buckets { buckets = b } else { buckets = inner.defaultValueHistogramBuckets }
        return registry.makeValueHistogram(name: label, labels: dimensions, buckets: buckets, help: MetricCatalog.help(label))
    }

    func makeMeter(label: String, dimensions: [(String, String)]) -> any MeterHandler {
        registry.makeGauge(name: label, labels: dimensions, help: MetricCatalog.help(label))
    }

    func makeTimer(label: String, dimensions: [(String, String)]) -> any TimerHandler {
        let buckets: [Duration]
        if case .duration(let b) = MetricCatalog.families[label]?.buckets { buckets = b } else {
            guard case .duration(let b) = MetricCatalog.latencyBuckets else { fatalError("latencyBuckets are durations") }
            buckets = b
        }
        return registry.makeDurationHistogram(name: label, labels: dimensions, buckets: buckets, help: MetricCatalog.help(label))
    }

    func destroyCounter(_ handler: any CounterHandler) { inner.destroyCounter(handler) }
    func destroyFloatingPointCounter(_ handler: any FloatingPointCounterHandler) { inner.destroyFloatingPointCounter(handler) }
    func destroyRecorder(_ handler: any RecorderHandler) { inner.destroyRecorder(handler) }
    func destroyMeter(_ handler: any MeterHandler) { inner.destroyMeter(handler) }
    func destroyTimer(_ handler: any TimerHandler) { inner.destroyTimer(handler) }
}
