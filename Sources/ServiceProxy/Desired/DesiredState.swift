import ClusterState

/// An object the proxy did not program, and why (shown in status).
public struct SkippedObject: Hashable, Sendable, Comparable, CustomStringConvertible, Codable {
    /// "Kind ns/name" ("Service ns1/web", "EndpointSlice ns1/web-ipv4").
    public var object: String
    public var reason: String

    public init(_ object: String, _ reason: String) {
        self.object = object
        self.reason = reason
    }

    public var description: String { "\(object): \(reason)" }
    public static func < (a: Self, b: Self) -> Bool { (a.object, a.reason) < (b.object, b.reason) }
}

/// The desired ruleset plus the bookkeeping that lets it be updated one service at a time.
public struct DesiredState: Sendable {
    public private(set) var model = RulesetModel()
    public let configuration: ProxyConfiguration
    /// Problems found per service (bad node ports, unresolvable ports, conflicting elements).
    public private(set) var serviceProblems: [NamespacedName: [SkippedObject]] = [:]
    /// Slices that name a service that does not exist (or name none).
    public private(set) var orphanSlices: [NamespacedName: SkippedObject] = [:]
    /// Per service: its UDP ports and their endpoints (see `StaleConntrack`).
    public private(set) var udpPorts: [NamespacedName: [String: UDPServicePort]] = [:]
    /// Per service, per family: ClientIP affinity tuples and the endpoints each may be sent to.
    public private(set) var affinity: [NamespacedName: [TableFamily: [ElementKey: Set<ElementKey>]]] = [:]
    /// Per family: how many services use each hairpin pair, endpoint count and timeout. An
    /// element (or counted set and rule) exists while its count is above zero.
    private var hairpinUse: [TableFamily: [ElementKey: Int]] = [:]
    private var clusterCountUse: [TableFamily: [Int: Int]] = [:]
    private var localCountUse: [TableFamily: [Int: Int]] = [:]
    private var timeoutUse: [TableFamily: [Int: Int]] = [:]
    /// What each service counts for (its elements are in the model and its contribution).
    private var counted: [NamespacedName: [TableFamily: CountedParts]] = [:]

    struct CountedParts: Sendable {
        var hairpin: Set<ElementKey>
        var clusterCounts: Set<Int>
        var localCounts: Set<Int>
        var timeouts: Set<Int>
        var endpoints: Int

        init(_ f: ServiceFragment) {
            hairpin = f.hairpin
            clusterCounts = f.clusterCounts
            localCounts = f.localCounts
            timeouts = f.timeouts
            endpoints = f.elements[SharedName.backends]?.count ?? 0
        }
    }
    /// Families whose counted chains must be rewritten (a count or timeout came or went).
    private var countsChanged: Set<TableFamily> = []

    /// Services whose endpoints are counted right now (for status, maintained incrementally).
    public private(set) var endpointCount = 0

    /// An empty state: both tables with their fixed chains and sets, no services.
    public init(configuration: ProxyConfiguration) {
        self.configuration = configuration
        for family in TableFamily.allCases { model.tables[family] = skeleton(family, configuration) }
    }

    /// The full state of a snapshot.
    public init(snapshot: ClusterSnapshot, configuration: ProxyConfiguration) {
        self.init(configuration: configuration)
        for id in snapshot.services.keys.sorted() { update(service: id, in: snapshot) }
        for id in snapshot.endpointSlices.keys { updateSlice(id, in: snapshot) }
        refreshCountedChains()
    }

    /// Services that were refused an element because another service owns it.
    public private(set) var conflicted: Set<NamespacedName> = []

    public var skipped: [SkippedObject] {
        (serviceProblems.values.flatMap { $0 } + orphanSlices.values).sorted()
    }

    /// Rebuilds one service's part from the snapshot (removes it when the service is gone).
    /// Call `refreshCountedChains()` after a batch of updates.
    public mutating func update(service id: NamespacedName, in objects: some ServiceObjects) {
        remove(service: id)
        udpPorts[id] = nil
        affinity[id] = nil
        guard let service = objects.service(id) else { return }
        let slices = objects.slices(for: id)
        var problems: [String] = []
        for family in TableFamily.allCases {
            let fragment = buildFragment(service, slices: slices, family: family, config: configuration, problems: &problems)
            insert(fragment, of: id, family: family, problems: &problems)
            if !fragment.udp.isEmpty { udpPorts[id, default: [:]].merge(fragment.udp) { a, _ in a } }
            if !fragment.affinity.isEmpty { affinity[id, default: [:]][family] = fragment.affinity }
        }
        // The same slice problem is found once per port or family: report it once.
        let unique = Array(Set(problems)).sorted().map { SkippedObject("Service \(id)", $0) }
        serviceProblems[id] = unique.isEmpty ? nil : unique
    }

    /// Re-checks whether a slice belongs to a known service.
    public mutating func updateSlice(_ id: NamespacedName, in objects: some ServiceObjects) {
        orphanSlices[id] = nil
        guard let slice = objects.slice(id) else { return }
        guard let owner = slice.service else {
            orphanSlices[id] = SkippedObject("EndpointSlice \(id)", "no \(EndpointSlice.serviceNameLabel) label")
            return
        }
        if objects.service(owner) == nil {
            orphanSlices[id] = SkippedObject("EndpointSlice \(id)", "service \(owner) does not exist")
        }
    }

    /// Declares the sets and rewrites the rules of the endpoint counts and affinity timeouts in
    /// use, where they changed. Returns the families touched.
    @discardableResult
    public mutating func refreshCountedChains() -> Set<TableFamily> {
        let changed = countsChanged
        for family in changed {
            guard var table = model.tables.removeValue(forKey: family) else { continue }
            setCountedChains(&table, configuration, clusterCounts: Set(clusterCountUse[family, default: [:]].keys),
                             localCounts: Set(localCountUse[family, default: [:]].keys), timeouts: Set(timeoutUse[family, default: [:]].keys))
            model.tables[family] = table
        }
        countsChanged = []
        return changed
    }

    private mutating func remove(service id: NamespacedName) {
        serviceProblems[id] = nil
        conflicted.remove(id)
        if let byFamily = counted.removeValue(forKey: id) {
            for (family, f) in byFamily { release(f, family: family) }
        }
        guard let byFamily = model.contributions.removeValue(forKey: id) else { return }
        for (family, c) in byFamily {
            // Moved out and back so the dictionaries stay uniquely referenced (no copy).
            guard var table = model.tables.removeValue(forKey: family) else { continue }
            for (set, keys) in c.elements where set != SharedName.hairpin {
                for k in keys { table.sets[set]?.elements[k] = nil }
            }
            for k in c.elements[SharedName.hairpin] ?? [] where hairpinUse[family]?[k] == nil {
                table.sets[SharedName.hairpin]?.elements[k] = nil
            }
            model.tables[family] = table
        }
    }

    /// Drops one service's counts (hairpin pairs, endpoint counts, timeouts).
    private mutating func release(_ f: CountedParts, family: TableFamily) {
        for k in f.hairpin { Self.decrement(&hairpinUse[family, default: [:]], k) }
        for n in f.clusterCounts where Self.decrement(&clusterCountUse[family, default: [:]], n) && n > CountRules.cluster {
            countsChanged.insert(family)
        }
        for n in f.localCounts where Self.decrement(&localCountUse[family, default: [:]], n) && n > CountRules.local {
            countsChanged.insert(family)
        }
        for t in f.timeouts where Self.decrement(&timeoutUse[family, default: [:]], t) { countsChanged.insert(family) }
        endpointCount -= f.endpoints
    }

    /// Returns true when the count reached zero (the key is gone).
    private static func decrement<K: Hashable>(_ counts: inout [K: Int], _ key: K) -> Bool {
        guard let n = counts[key] else { return false }
        if n <= 1 {
            counts[key] = nil
            return true
        }
        counts[key] = n - 1
        return false
    }

    /// Returns true when the key is new.
    private static func increment<K: Hashable>(_ counts: inout [K: Int], _ key: K) -> Bool {
        counts[key, default: 0] += 1
        return counts[key] == 1
    }

    private mutating func insert(_ f: ServiceFragment, of id: NamespacedName, family: TableFamily, problems: inout [String]) {
        guard var table = model.tables.removeValue(forKey: family) else { return }
        var c = Contribution()
        for (set, elements) in f.elements {
            // Counted sets beyond the fixed ones are declared when first used (their rule
            // follows in `refreshCountedChains`).
            if table.sets[set] == nil, isCountedSet(set) { table.sets[set] = NFSet(SetSpec(set, key: TupleTypes(family: family).tuple)) }
            for (key, value) in elements {
                // Another service already owns this address/port (e.g. a shared externalIP):
                // the first one (by name, on a full build) keeps it.
                if table.sets[set]?.elements[key] != nil {
                    problems.append("\(key) in \(set) is already used by another service")
                    conflicted.insert(id)
                    continue
                }
                table.sets[set]?.elements[key] = .some(value)
                c.elements[set, default: []].insert(key)
            }
        }
        for k in f.hairpin {
            if Self.increment(&hairpinUse[family, default: [:]], k) { table.sets[SharedName.hairpin]?.elements[k] = .some(nil) }
            c.elements[SharedName.hairpin, default: []].insert(k)
        }
        for n in f.clusterCounts where Self.increment(&clusterCountUse[family, default: [:]], n) && n > CountRules.cluster {
            countsChanged.insert(family)
        }
        for n in f.localCounts where Self.increment(&localCountUse[family, default: [:]], n) && n > CountRules.local {
            countsChanged.insert(family)
        }
        for t in f.timeouts where Self.increment(&timeoutUse[family, default: [:]], t) { countsChanged.insert(family) }
        endpointCount += f.elements[SharedName.backends]?.count ?? 0
        model.tables[family] = table
        counted[id, default: [:]][family] = CountedParts(f)
        if !c.isEmpty { model.contributions[id, default: [:]][family] = c }
    }
}
