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
    /// Every object not (fully) programmed, with the reason (`description`: "Kind ns/name: reason").
    public var skipped: [SkippedObject] = []
    /// The tables the proxy owns ("ip nodenet", "ip6 nodenet"): `nodenet status` lists them as
    /// the row's kernel objects, in sync or in error with the last transaction's error.
    public var tables: [String] = []
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
