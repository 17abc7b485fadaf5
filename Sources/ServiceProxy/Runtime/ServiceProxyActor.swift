import ClusterState
import Foundation
import IPAddressing
import Logging
import Metrics

/// The service proxy: keeps nodenet's nftables tables equal to the store's Services and
/// EndpointSlices.
///
/// Start: a full sync against what the kernel holds (never a flush: existing flows, affinity
/// entries and counters survive an agent restart). Then store events mark services dirty and a
/// sync follows after `coalesceDelay` (a burst becomes one transaction). Every
/// `fullSyncInterval`, and after any failed transaction, the next sync is a full one.
///
/// Status is pushed, not polled: `onEvent` hears of every sync (applied or failed) with the
/// status after it, and of every store version the kernel holds without a sync.
public actor ServiceProxyActor {
    /// What `onEvent` reports.
    public enum Event: Sendable {
        /// A sync ended, applied or failed (`lastError`): the status right after it.
        case synced(ServiceProxyStatus)
        /// A store event with nothing for the proxy while the kernel holds everything else:
        /// the kernel holds the desired state of `version` too (no sync, no new counts).
        case applied(version: UInt64)
    }

    public let store: ClusterStore
    public private(set) var configuration: ProxyConfiguration
    /// True from planning to the end of a sync's transaction.
    private var syncing = false
    /// Wakes the run loop (set while `run()` runs).
    private var wake: (@Sendable () -> Void)?
    private let backend: any RulesetBackend
    private let logger: Logger
    private let onEvent: (@Sendable (Event) -> Void)?
    private var planner: ServiceProxyPlanner
    private var current = ServiceProxyStatus()
    /// The chains (with their rules) believed to be in the kernel after the last sync: rules are
    /// taken from here when the backend cannot read them back. Chains only, never the whole
    /// model: a copy of the model would share its set storage with the planner's, so the next
    /// incremental plan would copy every element (O(cluster) per change: 8-170 ms at 10,000
    /// services in the agent) and replacing the copy would free them all again.
    private var believed: RulesetModel?
    /// The Services and EndpointSlices as of the last recorded event: an incremental sync reads
    /// them here, with no hop to the store's thread (see `ServiceMirror`). Nil until the first
    /// full sync builds it from a snapshot.
    private var mirror: ServiceMirror?
    /// Events recorded while a full sync waits for its snapshot (the actor is reentrant there):
    /// replayed into the mirror built from it, and those newer than the snapshot are recorded
    /// again after the plan (which did not see them) so the next sync takes them.
    private var recordedDuringSnapshot: [StoreEvent]?

    private let syncTimer = Metrics.Timer(label: "nodenet_proxy_sync_seconds")
    private let transactionSize = Recorder(label: "nodenet_proxy_transaction_operations")
    private let failureCounter = Counter(label: "nodenet_proxy_sync_failures_total")
    private let conntrackCounter = Counter(label: "nodenet_proxy_conntrack_deletes_total")
    private let lastSuccessGauge = Gauge(label: "nodenet_proxy_last_successful_sync_timestamp_seconds")
    private let programmingTimer = Metrics.Timer(label: "nodenet_proxy_network_programming_seconds")

    /// - Parameter onEvent: called on the actor after each sync and each version applied
    ///   without one; it must not block (the agent's status board takes a lock and returns).
    public init(store: ClusterStore, configuration: ProxyConfiguration, backend: any RulesetBackend, logger: Logger,
                onEvent: (@Sendable (Event) -> Void)? = nil) {
        self.store = store
        self.configuration = configuration
        self.backend = backend
        self.logger = logger
        self.onEvent = onEvent
        planner = ServiceProxyPlanner(configuration: configuration)
    }

    /// The status, with counts taken from the model now (counting walks every chain, so it is
    /// done when someone asks, not on every sync).
    public func status() -> ServiceProxyStatus {
        var s = current
        let model = planner.desired.model
        s.services = model.contributions.count
        s.endpoints = planner.desired.endpointCount
        s.chains = model.chainCount
        s.rules = model.ruleCount
        s.sets = model.setCount
        s.elements = model.elementCount
        s.skipped = planner.desired.skipped
        s.tables = model.tables.keys.sorted().map { "\($0.rawValue) \(configuration.tableName)" }
        return s
    }

    /// The desired ruleset in `nft -f` syntax (`nodenet status --rules`).
    public func rulesText() -> String { NftRenderer(tableName: configuration.tableName).ruleset(planner.desired.model) }

    /// Runs until cancelled.
    public func run() async {
        let events = await store.subscribe()
        // A kernel without a feature the shape needs: say which, and program nothing.
        while !Task.isCancelled {
            do {
                try await backend.checkKernelFeatures()
                break
            } catch {
                fail("\(error)")
                guard (try? await Task.sleep(for: .seconds(30))) != nil else { return }
            }
        }
        await syncOnce()
        // Events that arrive while a sync runs are taken by the next one (bursts coalesce by
        // themselves); an optional delay waits for more before starting. A failed sync is
        // retried, as a full one, after 1 s.
        await StoreSyncLoop.run(
            events: events, fullSyncInterval: configuration.fullSyncInterval, delay: configuration.coalesceDelay,
            wake: { [weak self] kick in await self?.setWake(kick) },
            record: { [weak self] event in await self?.record(event) ?? false },
            requestFullSync: { [weak self] in await self?.requestFullSync() },
            sync: { [weak self] in
                guard let self else { return nil }
                await self.syncOnce()
                return await self.planner.needsFullSync ? .seconds(1) : nil
            })
    }

    /// The node's zone changed (topology-aware routing): every service is rebuilt with it in one
    /// full sync against the kernel; elements move, nothing is flushed.
    public func setNodeZone(_ zone: String?) {
        guard zone != configuration.nodeZone else { return }
        configuration.nodeZone = zone
        planner.reconfigure(configuration)
        wake?()
    }

    /// The node's primary addresses changed (its Node object arrived after the start, or got
    /// an InternalIP of the other family): NodePorts move to them in one full sync, as with a
    /// zone change (issue 22: a dual-stack node's second family never answered otherwise).
    public func setNodeAddresses(_ addresses: [IPAddress]) {
        guard addresses != configuration.nodeAddresses else { return }
        configuration.nodeAddresses = addresses
        planner.reconfigure(configuration)
        wake?()
    }

    private func record(_ event: StoreEvent) -> Bool {
        mirror?.record(event)
        recordedDuringSnapshot?.append(event)
        let work = planner.record(event)
        // An event with nothing for the proxy (a Pod, a Node) while the kernel holds everything
        // else: the kernel holds that version's state too.
        // Not while a sync is applying (the actor is reentrant at its awaits): the kernel may not
        // hold that sync's changes yet.
        if !work, !syncing, current.inSync, case .changed(let version, _) = event, version > current.appliedVersion ?? 0 {
            current.appliedVersion = version
            onEvent?(.applied(version: version))
        }
        return work
    }
    private func requestFullSync() { planner.requestFullSync() }
    private func setWake(_ kick: @escaping @Sendable () -> Void) { wake = kick }

    /// One sync: plan, apply, delete stale UDP flows, update status and metrics.
    public func syncOnce() async {
        guard planner.hasWork else { return }
        syncing = true
        defer { syncing = false }
        let started = ContinuousClock.now
        let full = planner.needsFullSync
        var kernel: RulesetModel?
        if full {
            do {
                kernel = try await backend.currentState()?.without(configuration.foreignObjects)
                if let b = believed { kernel = kernel?.assumingRules(from: b) }
            } catch {
                fail("reading the kernel's ruleset: \(error)")
                return
            }
        }
        let plan: ServiceProxyPlanner.Plan
        let version: UInt64
        let pendingSince: ContinuousClock.Instant?
        let snapshotTaken: ContinuousClock.Instant
        if let mirror, !full {
            // Incremental: the changed objects are in the mirror already (no await before the
            // plan, so no event can slip between the read and the plan).
            pendingSince = planner.oldestPendingChange
            snapshotTaken = ContinuousClock.now
            plan = planner.plan(objects: mirror, full: nil, applied: kernel, recreatingTypeofMaps: backend.recreatesTypeofMaps)
            version = mirror.version
        } else {
            recordedDuringSnapshot = []
            let snapshot = await store.snapshot()
            let during = recordedDuringSnapshot ?? []
            recordedDuringSnapshot = nil
            var rebuilt = ServiceMirror(snapshot)
            for e in during { rebuilt.record(e) }
            mirror = rebuilt
            pendingSince = planner.oldestPendingChange
            snapshotTaken = ContinuousClock.now
            plan = planner.plan(objects: snapshot, full: snapshot, applied: kernel, recreatingTypeofMaps: backend.recreatesTypeofMaps)
            for e in during { if case .changed(let v, _) = e, v > snapshot.version { planner.record(e) } }
            version = snapshot.version
        }
        let size = plan.operations.reduce(0) { $0 + $1.weight }
        let planned = ContinuousClock.now
        do {
            try await backend.apply(plan.operations)
        } catch {
            fail("transaction of \(size) operations: \(error)")
            return
        }
        let applied = ContinuousClock.now
        believed = planner.desired.model.chainsOnly
        current.appliedVersion = max(current.appliedVersion ?? 0, version)
        if !plan.conntrack.isEmpty {
            do {
                conntrackCounter.increment(by: try await backend.deleteConntrack(plan.conntrack))
            } catch {
                // Rules are right; stale flows age out. Worth a line, not a resync.
                logger.warning("stale UDP conntrack cleanup failed", metadata: ["error": "\(error)"])
            }
        }
        let elapsed = ContinuousClock.now - started
        syncTimer.recordNanoseconds(elapsed.components.seconds * 1_000_000_000 + elapsed.components.attoseconds / 1_000_000_000)
        transactionSize.record(size)
        updateStatus(seconds: Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18, size: size, full: full)
        let now = Date().timeIntervalSince1970
        current.lastSuccessfulSync = now
        lastSuccessGauge.record(now)
        if let since = pendingSince {
            let latency = ContinuousClock.now - since
            programmingTimer.recordNanoseconds(latency.components.seconds * 1_000_000_000 + latency.components.attoseconds / 1_000_000_000)
            current.lastProgrammingSeconds = Double(latency.components.seconds) + Double(latency.components.attoseconds) / 1e18
        } else {
            current.lastProgrammingSeconds = nil
        }
        // Where the event-to-kernel time went (debug level: the phases of this sync, and the
        // wait from the first change to the sync's start).
        logger.debug("service rules synced", metadata: [
            "full": "\(full)", "operations": "\(size)", "services": "\(plan.services)",
            "waited_ms": "\(pendingSince.map { Self.ms(started - $0) } ?? "-")", "snapshot_ms": "\(Self.ms(snapshotTaken - started))",
            "plan_ms": "\(Self.ms(planned - snapshotTaken))", "apply_ms": "\(Self.ms(applied - planned))",
            "total_ms": "\(Self.ms(ContinuousClock.now - started))",
        ])
        // The counts walk the fixed chains and sets only (element-only: O(1) per service), so
        // they are taken once per sync rather than on every read.
        onEvent?(.synced(status()))
    }

    private static func ms(_ d: Duration) -> String {
        String(format: "%.3f", Double(d.components.seconds) * 1e3 + Double(d.components.attoseconds) / 1e15)
    }

    private func fail(_ message: String) {
        planner.requestFullSync()
        believed = nil
        failureCounter.increment()
        current.failures += 1
        current.lastError = message
        current.inSync = false
        logger.error("service rules sync failed; next sync is a full one", metadata: ["error": "\(message)"])
        onEvent?(.synced(status()))
    }

    private func updateStatus(seconds: Double, size: Int, full: Bool) {
        current.syncs += 1
        if full { current.fullSyncs += 1 }
        current.lastSyncSeconds = seconds
        current.lastTransactionSize = size
        current.lastError = nil
        current.inSync = true
    }
}
