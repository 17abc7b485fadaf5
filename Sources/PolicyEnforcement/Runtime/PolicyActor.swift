import ClusterState
import Foundation
import IPAddressing
import Logging
import Metrics
import Netlink
import ServiceProxy

public struct PolicyConfiguration: Sendable, Equatable {
    public var nodeName: String
    /// The node's DNS responder addresses (169.254.20.10, the cluster DNS Service IP).
    public var dnsAddresses: [IPAddress]
    /// Every so often the kernel is read back and compared whole (repairs edits behind nodenet's back).
    public var fullSyncInterval: Duration

    public init(nodeName: String, dnsAddresses: [IPAddress] = [], fullSyncInterval: Duration = .seconds(60)) {
        self.nodeName = nodeName
        self.dnsAddresses = dnsAddresses
        self.fullSyncInterval = fullSyncInterval
    }
}

public struct PolicyStatus: Sendable, Equatable, Codable {
    public var inSync = false
    /// The store version whose policies, pods and namespaces the kernel holds.
    public var appliedVersion: UInt64?
    public var policies = 0
    /// ClusterNetworkPolicies (the Admin and Baseline tiers).
    public var clusterPolicies = 0
    public var isolatedIngress = 0
    public var isolatedEgress = 0
    public var identities = 0
    public var elements = 0
    public var syncs = 0
    public var fullSyncs = 0
    public var failures = 0
    public var lastError: String?
    public var lastSyncSeconds: Double?
    /// Store change to kernel, for the last sync a change asked for.
    public var lastProgrammingSeconds: Double?
    /// Policies that select nothing here or name ports no pod has: worth a line, not an error.
    public var notes: [String] = []
    /// The kernel objects this actor owns (the two tables), each in sync or with the error of
    /// the last transaction.
    public var objects: [KernelObjectStatus] = []
    /// Failed syncs in a row (the retry waits 1 s, doubling to 30 s).
    public var consecutiveFailures = 0

    public init() {}
}

/// Enforces NetworkPolicy on this node: keeps the `nodenet-policy` tables equal to what the
/// store's policies, pods and namespaces compile to.
///
/// Start: a full sync against what the kernel holds (never a flush: while the agent is down or
/// restarting the kernel keeps enforcing the last state, and the first sync changes only what
/// differs). Then each store change that concerns policy (pods, namespaces, attachments,
/// policies, the own Node) is one transaction of element changes. A failed transaction changes
/// nothing (one nf_tables batch) and the next sync reads the kernel back and is a full one.
public actor PolicyActor {
    public let store: ClusterStore
    public let configuration: PolicyConfiguration
    private let backend: any RulesetBackend
    private let logger: Logger
    /// NetworkPolicy and the cluster-wide tiers.
    private var engine: EnforcementEngine
    /// The kernel holds `engine.model` as of the last successful transaction (false: read it
    /// back and compare whole).
    private var kernelKnown = false
    /// What changed since the last sync (read from the newest snapshot when it runs).
    private var dirtyPods: Set<NamespacedName> = []
    private var dirtyNamespaces: Set<String> = []
    private var dirtyPolicies: Set<NamespacedName> = []
    private var dirtyClusterPolicies: Set<String> = []
    private var dirtyNode = true
    private var dirty = true
    private var pendingSince: ContinuousClock.Instant?
    private var syncing = false
    private var current = PolicyStatus()
    private var waiters: [(version: UInt64, continuation: CheckedContinuation<Bool, Never>, id: Int)] = []
    private var nextWaiter = 0
    private var wake: (@Sendable () -> Void)?
    private let onSync: @Sendable (PolicyStatus) -> Void

    private let syncTimer = Metrics.Timer(label: "nodenet_policy_sync_seconds")
    private let failureCounter = Counter(label: "nodenet_policy_sync_failures_total")
    private let programmingTimer = Metrics.Timer(label: "nodenet_policy_programming_seconds")
    /// The reject rules' counters (nil: not read), followed by `nodenet_policy_denied_packets_total`.
    private let deniedReader: (any DeniedPacketReader)?
    private var deniedTotals = DeniedPacketTotals()
    private var tierDeniedTotals = TierDeniedTotals()
    private var readingDenied = false
    private let deniedCounters: [DeniedPacketKey: Counter]

    public init(store: ClusterStore, configuration: PolicyConfiguration, backend: any RulesetBackend, logger: Logger,
                deniedPackets: (any DeniedPacketReader)? = nil, onSync: @escaping @Sendable (PolicyStatus) -> Void = { _ in }) {
        self.store = store
        self.configuration = configuration
        self.backend = backend
        self.logger = logger
        self.onSync = onSync
        deniedReader = deniedPackets
        // Every series exists from the start (at zero), so `increase()` sees the first denial.
        var counters: [DeniedPacketKey: Counter] = [:]
        if deniedPackets != nil {
            for key in DeniedPacketKey.all {
                let c = Counter(label: "nodenet_policy_denied_packets_total", dimensions: key.dimensions)
                c.increment(by: 0)
                counters[key] = c
            }
        }
        deniedCounters = counters
        engine = EnforcementEngine(dnsAddresses: configuration.dnsAddresses)
    }

    /// Reads the reject rules' counters and moves `nodenet_policy_denied_packets_total` forward
    /// by what they counted since the last read (the metrics scrape calls this). Returns the
    /// kernel's totals, nil when they could not be read (or a read is already under way).
    @discardableResult
    public func refreshDeniedPackets() async -> [DeniedPacketKey: UInt64]? {
        // One read at a time: two overlapping reads could apply their totals out of order.
        guard let reader = deniedReader, !readingDenied else { return nil }
        readingDenied = true
        defer { readingDenied = false }
        let totals: [DeniedPacketKey: UInt64]
        do {
            totals = try await reader.read()
        } catch {
            logger.debug("cannot read the policy reject counters", metadata: ["error": "\(error)"])
            return nil
        }
        for (key, delta) in deniedTotals.advance(to: totals) where delta > 0 { deniedCounters[key]?.increment(by: Int64(clamping: delta)) }
        // The tiers' Deny rules, per policy and rule (series appear with their first denial).
        if let records = try? await reader.readRules() {
            for d in tierDeniedTotals.advance(to: TierTables.deniedPackets(records, engine.tierDesired)) {
                Counter(label: "nodenet_cluster_policy_denied_packets_total", dimensions: [("policy", d.policy), ("rule", d.rule)])
                    .increment(by: Int64(clamping: d.packets))
            }
        }
        return totals
    }

    /// The status, with the isolated pod counts taken now (they walk the local pods: done when
    /// someone asks, not on every sync).
    public func status() -> PolicyStatus {
        var s = current
        s.isolatedIngress = engine.desired.isolatedPodCount(.ingress)
        s.isolatedEgress = engine.desired.isolatedPodCount(.egress)
        return s
    }

    /// The compiled desired state (explanations; tests).
    public func desiredState() -> PolicyDesired { engine.desired }

    /// The compiled tiers (explanations; tests).
    public func tierState() -> TierDesired { engine.tierDesired }

    /// The tables in `nft -f` syntax.
    public func rulesText() -> String { NftRenderer(tableName: PolicyTables.tableName).ruleset(engine.model) }

    /// Waits until the kernel holds the policy state of store version `version` (or a later
    /// one): what a CNI ADD waits for before it returns, so a pod's first packet meets its
    /// policies. False when `timeout` passes first.
    public func waitApplied(version: UInt64, timeout: Duration) async -> Bool {
        if let v = current.appliedVersion, v >= version { return true }
        wake?()
        let id = nextWaiter
        nextWaiter += 1
        let timer = Task { [weak self] in
            try? await Task.sleep(for: timeout)
            await self?.expire(id)
        }
        defer { timer.cancel() }
        return await withCheckedContinuation { c in waiters.append((version, c, id)) }
    }

    private func expire(_ id: Int) {
        guard let i = waiters.firstIndex(where: { $0.id == id }) else { return }
        waiters.remove(at: i).continuation.resume(returning: false)
    }

    private func advance(to version: UInt64) {
        current.appliedVersion = max(current.appliedVersion ?? 0, version)
        let v = current.appliedVersion!
        var keep: [(version: UInt64, continuation: CheckedContinuation<Bool, Never>, id: Int)] = []
        for w in waiters { if w.version <= v { w.continuation.resume(returning: true) } else { keep.append(w) } }
        waiters = keep
    }

    /// Runs until cancelled.
    public func run() async {
        let events = await store.subscribe()
        // What the kernel counted before this process (an earlier run's tables are kept) is
        // not this process's counter: the baseline.
        if let totals = try? await deniedReader?.read() { _ = deniedTotals.advance(to: totals) }
        await syncOnce()
        // The tier rules' baseline needs the desired tiers (their comments name the rules).
        if let records = try? await deniedReader?.readRules() {
            _ = tierDeniedTotals.advance(to: TierTables.deniedPackets(records, engine.tierDesired))
        }
        // A failed transaction is retried (as a full sync) after 1 s, doubling to 30 s.
        await StoreSyncLoop.run(
            events: events, fullSyncInterval: configuration.fullSyncInterval,
            wake: { [weak self] kick in await self?.setWake(kick) },
            record: { [weak self] event in await self?.record(event) ?? false },
            requestFullSync: { [weak self] in await self?.requestFullSync() },
            sync: { [weak self] in
                guard let self else { return nil }
                await self.syncOnce()
                return await self.retryDelay
            })
        for w in waiters { w.continuation.resume(returning: false) }
        waiters = []
    }

    private func setWake(_ kick: @escaping @Sendable () -> Void) { wake = kick }

    /// After a sync: the pause before retrying (nil when nothing is left to do).
    private var retryDelay: Duration? {
        dirty ? .seconds(min(30, 1 << min(5, max(0, current.consecutiveFailures - 1)))) : nil
    }

    private func requestFullSync() {
        kernelKnown = false
        dirty = true
    }

    private func record(_ event: StoreEvent) -> Bool {
        switch event {
        case .changed(let version, let changes):
            var work = false
            for change in changes {
                switch change.key.kind {
                case .pod: dirtyPods.insert(NamespacedName(change.key.namespace, change.key.name))
                case .attachment:
                    for o in [change.old, change.new] {
                        if case .attachment(let a)? = o { dirtyPods.insert(a.pod ?? NamespacedName("", a.keyName)) }
                    }
                case .namespace: dirtyNamespaces.insert(change.key.name)
                case .networkPolicy: dirtyPolicies.insert(NamespacedName(change.key.namespace, change.key.name))
                case .clusterNetworkPolicy: dirtyClusterPolicies.insert(change.key.name)
                case .node where change.key.name == configuration.nodeName: dirtyNode = true
                default: continue
                }
                work = true
            }
            if work {
                dirty = true
                if pendingSince == nil { pendingSince = .now }
                return true
            }
            // Nothing for policy, and the kernel holds everything before it: it holds this too.
            if !dirty, !syncing, current.inSync { advance(to: version) }
            return false
        case .resync:
            requestFullSync()
            return true
        case .synced:
            return false
        }
    }

    /// One sync: the changes since the last one into the engine, its element operations in one
    /// transaction. A full one (start, resync, after a failure, periodic) loads everything and
    /// compares the engine's model with what the kernel holds.
    public func syncOnce() async {
        guard dirty, !syncing else { return }
        syncing = true
        defer { syncing = false }
        let started = ContinuousClock.now
        let since = pendingSince
        pendingSince = nil
        dirty = false
        let full = !kernelKnown
        let snapshot = await store.snapshot()
        let ops: [RulesetOperation]
        if full {
            let kernel: RulesetModel?
            do {
                // Chains come back without their rules: the diff rewrites them in the same
                // transaction (atomic: never a moment without them); elements are compared.
                kernel = try await backend.currentState()
            } catch {
                fail("reading the kernel's policy tables: \(error)")
                return
            }
            var inputs = PolicyInputs(snapshot: snapshot, nodeName: configuration.nodeName, policies: snapshot.networkPolicies,
                                      dnsAddresses: configuration.dnsAddresses)
            inputs.clusterPolicies = snapshot.clusterNetworkPolicies
            if current.syncs == 0, let kernel { engine.seedNumbers(from: kernel, for: inputs) }
            engine.load(inputs, recordOperations: false)
            engine.setLocalSubnets(snapshot.nodes[configuration.nodeName]?.podCIDRs ?? [])
            engine.discardOperations()
            ops = RulesetDiff.operations(from: kernel, to: engine.model)
        } else {
            var changes = PolicyChanges()
            if !dirtyPods.isEmpty {
                let attached = PolicyInputs.attachedAddresses(snapshot)
                for id in dirtyPods {
                    changes.pods[id] = .some(PolicyInputs.podInfo(id, snapshot: snapshot, nodeName: configuration.nodeName, attached: attached[id]))
                }
            }
            for name in dirtyNamespaces { changes.namespaces[name] = .some(snapshot.namespaces[name].map(PolicyInputs.namespaceLabels)) }
            for id in dirtyPolicies { changes.policies[id] = .some(snapshot.networkPolicies[id]) }
            for name in dirtyClusterPolicies { changes.clusterPolicies[name] = .some(snapshot.clusterNetworkPolicies[name]) }
            engine.apply(changes)
            if dirtyNode { engine.setLocalSubnets(snapshot.nodes[configuration.nodeName]?.podCIDRs ?? []) }
            ops = engine.takeOperations()
        }
        dirtyPods = []
        dirtyNamespaces = []
        dirtyPolicies = []
        dirtyClusterPolicies = []
        dirtyNode = false
        let size = ops.reduce(0) { $0 + $1.weight }
        if !ops.isEmpty {
            do {
                try await backend.apply(ops)
            } catch {
                fail("transaction of \(size) operations: \(error)")
                return
            }
        }
        kernelKnown = true
        if current.consecutiveFailures > 0 {
            logger.notice("policy rules in sync again", metadata: ["after failures": "\(current.consecutiveFailures)"])
        }
        current.consecutiveFailures = 0
        current.objects = TableFamily.allCases.map { KernelObjectStatus(kind: "table", name: "\($0.rawValue) \(PolicyTables.tableName)") }
        let elapsed = ContinuousClock.now - started
        syncTimer.record(duration: elapsed)
        current.syncs += 1
        if full { current.fullSyncs += 1 }
        current.inSync = true
        current.lastError = nil
        current.lastSyncSeconds = elapsed.seconds
        let desired = engine.desired
        current.policies = snapshot.networkPolicies.count
        current.clusterPolicies = snapshot.clusterNetworkPolicies.count
        current.identities = desired.identities.count
        current.elements = engine.model.elementCount
        current.notes = desired.unresolvedNamedPorts.sorted { $0.key < $1.key }.prefix(10).map {
            "\($0.key): named port \($0.value.sorted().joined(separator: ", ")) matches no destination pod"
        }
        if let since {
            let latency = ContinuousClock.now - since
            programmingTimer.record(duration: latency)
            current.lastProgrammingSeconds = latency.seconds
        }
        advance(to: snapshot.version)
        if !ops.isEmpty {
            logger.debug("policy rules synced", metadata: ["full": "\(full)", "operations": "\(size)"])
        }
        onSync(current)
    }

    private func fail(_ message: String) {
        kernelKnown = false
        dirty = true
        failureCounter.increment()
        current.failures += 1
        current.consecutiveFailures += 1
        // Each error once when it appears, not at every retry.
        if message != current.lastError {
            logger.error("policy rules sync failed; retrying with a full sync", metadata: ["error": "\(message)"])
        }
        current.lastError = message
        current.inSync = false
        current.objects = TableFamily.allCases.map {
            KernelObjectStatus(kind: "table", name: "\($0.rawValue) \(PolicyTables.tableName)", error: message)
        }
        onSync(current)
    }
}

extension Duration {
    var seconds: Double { Double(components.seconds) + Double(components.attoseconds) / 1e18 }
}
