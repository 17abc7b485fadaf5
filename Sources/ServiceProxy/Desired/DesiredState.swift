import ClusterState

/// An object the proxy did not program, and why (shown in status).
public struct SkippedObject: Hashable, Sendable, Comparable, CustomStringConvertible {
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

    /// An empty state: both tables with their fixed chains and maps, no services.
    public init(configuration: ProxyConfiguration) {
        self.configuration = configuration
        for family in TableFamily.allCases { model.tables[family] = skeleton(family, configuration) }
    }

    /// The full state of a snapshot.
    public init(snapshot: ClusterSnapshot, configuration: ProxyConfiguration) {
        self.init(configuration: configuration)
        for id in snapshot.services.keys.sorted() { update(service: id, in: snapshot) }
        for id in snapshot.endpointSlices.keys { updateSlice(id, in: snapshot) }
    }

    /// Services that were refused an element because another service owns it.
    public private(set) var conflicted: Set<NamespacedName> = []

    public var skipped: [SkippedObject] {
        (serviceProblems.values.flatMap { $0 } + orphanSlices.values).sorted()
    }

    /// Rebuilds one service's part from the snapshot (removes it when the service is gone).
    public mutating func update(service id: NamespacedName, in snapshot: ClusterSnapshot) {
        remove(service: id)
        udpPorts[id] = nil
        guard let service = snapshot.services[id] else { return }
        let slices = snapshot.endpointSlices(for: id)
        var problems: [String] = []
        for family in TableFamily.allCases {
            let fragment = buildFragment(service, slices: slices, family: family, config: configuration, problems: &problems)
            insert(fragment, of: id, family: family, problems: &problems)
            if !fragment.udp.isEmpty { udpPorts[id, default: [:]].merge(fragment.udp) { a, _ in a } }
        }
        // The same slice problem is found once per port or family: report it once.
        let unique = Array(Set(problems)).sorted().map { SkippedObject("Service \(id)", $0) }
        serviceProblems[id] = unique.isEmpty ? nil : unique
    }

    /// Re-checks whether a slice belongs to a known service.
    public mutating func updateSlice(_ id: NamespacedName, in snapshot: ClusterSnapshot) {
        orphanSlices[id] = nil
        guard let slice = snapshot.endpointSlices[id] else { return }
        guard let owner = slice.service else {
            orphanSlices[id] = SkippedObject("EndpointSlice \(id)", "no \(EndpointSlice.serviceNameLabel) label")
            return
        }
        if snapshot.services[owner] == nil {
            orphanSlices[id] = SkippedObject("EndpointSlice \(id)", "service \(owner) does not exist")
        }
    }

    private mutating func remove(service id: NamespacedName) {
        serviceProblems[id] = nil
        conflicted.remove(id)
        guard let byFamily = model.contributions.removeValue(forKey: id) else { return }
        for (family, c) in byFamily {
            // Moved out and back so the dictionaries stay uniquely referenced (no copy).
            guard var table = model.tables.removeValue(forKey: family) else { continue }
            for name in c.chains { table.chains[name] = nil }
            for name in c.sets { table.sets[name] = nil }
            for (set, keys) in c.elements {
                for k in keys { table.sets[set]?.elements[k] = nil }
            }
            model.tables[family] = table
        }
    }

    private mutating func insert(_ f: ServiceFragment, of id: NamespacedName, family: TableFamily, problems: inout [String]) {
        guard var table = model.tables.removeValue(forKey: family) else { return }
        var c = Contribution()
        for chain in f.chains where table.chains[chain.name] == nil {
            table.chains[chain.name] = chain
            c.chains.insert(chain.name)
        }
        for set in f.sets where table.sets[set.name] == nil {
            table.sets[set.name] = set
            c.sets.insert(set.name)
        }
        for (set, elements) in f.elements {
            for (key, verdict) in elements {
                // Another service already owns this address/port (e.g. a shared externalIP):
                // the first one (by name, on a full build) keeps it.
                if table.sets[set]?.elements[key] != nil {
                    problems.append("\(key) in \(set) is already used by another service")
                    conflicted.insert(id)
                    continue
                }
                table.sets[set]?.elements[key] = .some(verdict)
                c.elements[set, default: []].insert(key)
            }
        }
        model.tables[family] = table
        if !c.isEmpty { model.contributions[id, default: [:]][family] = c }
    }
}
