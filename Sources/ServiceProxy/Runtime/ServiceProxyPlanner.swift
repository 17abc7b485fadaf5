import ClusterState

/// Turns store events into transactions. Events only mark services dirty (cheap, so a burst
/// of thousands costs nothing until the next sync); `plan` then rebuilds just those services
/// and diffs just their parts. A `.resync` event, a failed transaction or the periodic timer
/// ask for a full plan instead: everything rebuilt and compared with what the kernel holds.
public struct ServiceProxyPlanner: Sendable {
    public private(set) var desired: DesiredState
    public private(set) var dirtyServices: Set<NamespacedName> = []
    public private(set) var dirtySlices: Set<NamespacedName> = []
    public private(set) var needsFullSync = true
    /// When the oldest change not yet planned arrived (network programming latency).
    public private(set) var oldestPendingChange: ContinuousClock.Instant?
    /// False until the first plan: what steered the kernel's flows before this process is
    /// unknown, so there is no old state to diff against. Every full plan (the first one, after
    /// a failure, periodically) compares flows with the present instead: it deletes UDP flows
    /// whose reply source is not a current endpoint of their port (`StaleConntrack.offEndpointFilters`),
    /// so a restart neither cuts every UDP flow (kubernetes#122740) nor leaves flows on
    /// endpoints removed while no agent ran (kubernetes#126468).
    private var hasPlanned = false

    public struct Plan: Sendable {
        public var operations: [RulesetOperation]
        public var conntrack: [ConntrackFilter]
        public var full: Bool
        /// Services rebuilt (all of them on a full plan).
        public var services: Int
    }

    public init(configuration: ProxyConfiguration) {
        desired = DesiredState(configuration: configuration)
    }

    /// A new configuration (the node's zone): the next plan is a full one built with it.
    public mutating func reconfigure(_ configuration: ProxyConfiguration) {
        desired = DesiredState(configuration: configuration)
        needsFullSync = true
    }

    public var hasWork: Bool { needsFullSync || !dirtyServices.isEmpty || !dirtySlices.isEmpty }

    /// Notes what an event touches. Returns true when a sync is needed.
    @discardableResult
    public mutating func record(_ event: StoreEvent) -> Bool {
        switch event {
        case .resync:
            needsFullSync = true
        case .synced:
            break
        case .changed(_, let changes):
            let before = dirtyServices.count + dirtySlices.count
            defer {
                if oldestPendingChange == nil, dirtyServices.count + dirtySlices.count > before { oldestPendingChange = .now }
            }
            for c in changes {
                switch c.key.kind {
                case .service:
                    dirtyServices.insert(NamespacedName(c.key.namespace, c.key.name))
                case .endpointSlice:
                    dirtySlices.insert(NamespacedName(c.key.namespace, c.key.name))
                    for case .endpointSlice(let s)? in [c.old, c.new] {
                        if let owner = s.service { dirtyServices.insert(owner) }
                    }
                default:
                    continue
                }
            }
        }
        return hasWork
    }

    public mutating func requestFullSync() { needsFullSync = true }

    /// The transaction that brings `applied` (what the kernel holds) to the snapshot's state.
    /// - Parameter applied: what the kernel holds; read only by a full plan (an incremental plan
    ///   follows a successful sync, so the kernel holds the previous desired state).
    /// - Parameter recreatingTypeofMaps: see `RulesetDiff.operations(recreatingTypeofMaps:)`.
    public mutating func plan(snapshot: ClusterSnapshot, applied: RulesetModel?, recreatingTypeofMaps: Bool = false) -> Plan {
        plan(objects: snapshot, full: snapshot, applied: applied, recreatingTypeofMaps: recreatingTypeofMaps)
    }

    /// The same, reading an incremental plan's services from `objects` (the actor's mirror of
    /// the store); `full` is read only when the plan is a full one (nil then: take a snapshot).
    mutating func plan(objects: some ServiceObjects, full snapshot: ClusterSnapshot?, applied: RulesetModel?,
                       recreatingTypeofMaps: Bool = false) -> Plan {
        defer {
            hasPlanned = true
            oldestPendingChange = nil
            dirtyServices = []
            dirtySlices = []
            needsFullSync = false
        }
        precondition(!needsFullSync || snapshot != nil, "a full plan reads a snapshot")
        let oldUDP = desired.udpPorts
        if needsFullSync, let snapshot {
            desired = DesiredState(snapshot: snapshot, configuration: desired.configuration)
            var ops = RulesetDiff.operations(from: applied, to: desired.model, recreatingTypeofMaps: recreatingTypeofMaps)
            // What the affinity map learned before (another process, a removed endpoint while
            // no agent ran) is checked against the present: entries of tuples without affinity
            // or pointing at an endpoint that is gone are deleted.
            var keep: [TableFamily: [ElementKey: Set<ElementKey>]] = [:]
            for byFamily in desired.affinity.values {
                for (family, tuples) in byFamily { keep[family, default: [:]].merge(tuples) { $0.union($1) } }
            }
            for family in TableFamily.allCases where applied?.tables[family]?.sets[SharedName.affinity] != nil {
                ops.append(.purgeAffinity(family, map: SharedName.affinity, keep: keep[family] ?? [:], strict: true))
            }
            var filters: [ConntrackFilter] = []
            for id in Set(oldUDP.keys).union(desired.udpPorts.keys) {
                if hasPlanned { filters += StaleConntrack.filters(old: oldUDP[id] ?? [:], new: desired.udpPorts[id] ?? [:]) }
                filters += StaleConntrack.offEndpointFilters(desired.udpPorts[id] ?? [:])
            }
            return Plan(operations: ops, conntrack: filters.sorted(), full: true, services: desired.model.contributions.count)
        }
        // Only the dirty services' parts are compared: copy those out of the model before it
        // changes (the model itself stays uniquely owned, so updating it copies nothing).
        // Services that lost an element to another one are rebuilt after the dirty ones: the
        // owner may just have released it.
        let waiting = desired.conflicted.subtracting(dirtyServices)
        let order = dirtyServices.sorted() + (dirtyServices.isEmpty ? [] : waiting.sorted())
        var oldScope: [TableFamily: Contribution] = [:]
        for id in order {
            for (family, c) in desired.model.contributions[id] ?? [:] { oldScope[family, default: Contribution()].formUnion(c) }
        }
        var before = desired.model.slice(oldScope)
        // The counted chains and sets as they were, in case this batch adds or drops a count.
        let countedBefore = desired.model.countedParts()
        var filters: [ConntrackFilter] = []
        var purges: [TableFamily: [ElementKey: Set<ElementKey>]] = [:]
        for id in order {
            let oldAffinity = desired.affinity[id] ?? [:]
            desired.update(service: id, in: objects)
            filters += StaleConntrack.filters(old: oldUDP[id] ?? [:], new: desired.udpPorts[id] ?? [:])
            // Learned ClientIP choices of an endpoint that went (or of a tuple that lost its
            // affinity) are deleted in the same transaction.
            let newAffinity = desired.affinity[id] ?? [:]
            for (family, tuples) in oldAffinity {
                for (tuple, endpoints) in tuples {
                    let keep = newAffinity[family]?[tuple] ?? []
                    if !endpoints.isSubset(of: keep) { purges[family, default: [:]][tuple] = keep }
                }
            }
        }
        for id in dirtySlices { desired.updateSlice(id, in: objects) }
        let recounted = desired.refreshCountedChains()
        var scope = oldScope
        for id in order {
            for (family, c) in desired.model.contributions[id] ?? [:] { scope[family, default: Contribution()].formUnion(c) }
        }
        for family in recounted {
            let after = desired.model.countedParts()
            var c = Contribution()
            c.chains = Set(SharedName.countedChains)
            c.sets = Set(countedBefore[family]?.sets.keys.map { $0 } ?? []).union(after[family]?.sets.keys.map { $0 } ?? [])
            scope[family, default: Contribution()].formUnion(c)
            for (name, chain) in countedBefore[family]?.chains ?? [:] { before.tables[family]?.chains[name] = chain }
            for (name, set) in countedBefore[family]?.sets ?? [:] where before.tables[family]?.sets[name] == nil {
                before.tables[family]?.sets[name] = set
            }
        }
        before.addMissingSharedSets(scope, from: desired.model)
        var ops = RulesetDiff.operations(from: before, to: desired.model, scope: scope, recreatingTypeofMaps: recreatingTypeofMaps)
        for (family, keep) in purges.sorted(by: { $0.key < $1.key }) {
            ops.append(.purgeAffinity(family, map: SharedName.affinity, keep: keep, strict: false))
        }
        return Plan(operations: ops, conntrack: filters.sorted(), full: false, services: order.count)
    }
}

extension RulesetModel {
    /// Just the chains, sets and elements named by `scope` (plus both tables, empty).
    func slice(_ scope: [TableFamily: Contribution]) -> RulesetModel {
        var out = RulesetModel()
        for (family, table) in tables {
            var t = TableModel(family: family)
            let c = scope[family] ?? Contribution()
            for name in c.chains { t.chains[name] = table.chains[name] }
            // Declarations only: the elements that matter are the scoped ones below (a count
            // set may hold thousands of other services' tuples).
            for name in c.sets { if let set = table.sets[name] { t.sets[name] = NFSet(set.spec) } }
            for (name, keys) in c.elements {
                guard let set = table.sets[name] else { continue }
                var part = t.sets[name] ?? NFSet(set.spec)
                for k in keys { if let v = set.elements[k] { part.elements[k] = v } }
                t.sets[name] = part
            }
            out.tables[family] = t
        }
        return out
    }

    /// Per family: the counted chains, and the counted sets' declarations.
    func countedParts() -> [TableFamily: (chains: [String: NFChain], sets: [String: NFSet])] {
        var out: [TableFamily: (chains: [String: NFChain], sets: [String: NFSet])] = [:]
        for (family, table) in tables {
            var chains: [String: NFChain] = [:], sets: [String: NFSet] = [:]
            for name in SharedName.countedChains { chains[name] = table.chains[name] }
            for (name, set) in table.sets where isCountedSet(name) { sets[name] = NFSet(set.spec) }
            out[family] = (chains, sets)
        }
        return out
    }

    /// Declares (empty) the shared maps the scope touches that the slice lacks, so the diff
    /// compares their elements instead of creating them.
    mutating func addMissingSharedSets(_ scope: [TableFamily: Contribution], from full: RulesetModel) {
        for (family, c) in scope {
            // (Not the sets whose own existence is compared: a counted set new in this batch.)
            for name in c.elements.keys where tables[family]?.sets[name] == nil && !c.sets.contains(name) {
                if let spec = full.tables[family]?.sets[name]?.spec { tables[family]?.sets[name] = NFSet(spec) }
            }
        }
    }
}
