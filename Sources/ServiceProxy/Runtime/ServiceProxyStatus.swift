/// What `nodenet status` shows for the proxy.
public struct ServiceProxyStatus: Sendable, Codable, Equatable {
    /// Services with rules (per family counted once).
    public var services = 0
    public var endpoints = 0
    public var chains = 0
    public var rules = 0
    public var sets = 0
    public var elements = 0
    public var syncs = 0
    public var fullSyncs = 0
    public var failures = 0
    public var lastSyncSeconds: Double?
    /// Operations (rules + elements + objects) in the last transaction.
    public var lastTransactionSize = 0
    public var lastError: String?
    /// "Kind ns/name: reason" for every object not (fully) programmed.
    public var skipped: [String] = []
    /// True once the kernel holds the state of the store at some point.
    public var inSync = false
    /// Wall-clock time (Unix seconds) of the last successful sync (kube-proxy's /healthz
    /// `lastUpdated`, and the metric `nodenet_proxy_last_successful_sync_timestamp_seconds`).
    public var lastSuccessfulSync: Double?
    /// Store event to kernel for the changes of the last sync (seconds), kube-proxy's network
    /// programming latency; nil for a sync no event asked for (start, periodic check).
    public var lastProgrammingSeconds: Double?
    /// The store version whose Services and EndpointSlices the kernel holds: advanced by each
    /// successful sync, and by store events that change nothing here while nothing is pending.
    /// `nodenet status` reads the row in sync only when this is the store's current version.
    public var appliedVersion: UInt64?

    public init() {}
}
