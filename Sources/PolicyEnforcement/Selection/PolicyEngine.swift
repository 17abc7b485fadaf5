import ClusterState
import IPAddressing
import ServiceProxy

/// One batch of changes to what policy enforcement reads (nil: removed).
public struct PolicyChanges: Sendable {
    public var pods: [NamespacedName: PolicyInputs.PodInfo?] = [:]
    public var namespaces: [String: [String: String]?] = [:]
    public var policies: [NamespacedName: NetworkPolicy?] = [:]
    /// ClusterNetworkPolicies by name (the tiers: `EnforcementEngine`; PolicyEngine ignores them).
    public var clusterPolicies: [String: ClusterNetworkPolicy?] = [:]

    public init(pods: [NamespacedName: PolicyInputs.PodInfo?] = [:], namespaces: [String: [String: String]?] = [:],
                policies: [NamespacedName: NetworkPolicy?] = [:], clusterPolicies: [String: ClusterNetworkPolicy?] = [:]) {
        self.pods = pods
        self.namespaces = namespaces
        self.policies = policies
        self.clusterPolicies = clusterPolicies
    }

    public var isEmpty: Bool { pods.isEmpty && namespaces.isEmpty && policies.isEmpty && clusterPolicies.isEmpty }
}

/// Selection and rule resolution, kept up to date change by change: `PolicyDesired` and the
/// tables' model (`model`) with the element operations that take the kernel from the previous
/// state to the new one (`takeOperations`). The work of a change is bounded by what it touches:
/// a pod's addresses, the policies whose selectors can match the identities it creates or ends,
/// the policies that changed; never a walk over every pod or element.
public struct PolicyEngine: Sendable {
    public let everyNodeLocal: Bool
    public private(set) var desired = PolicyDesired()
    public private(set) var inputs = PolicyInputs()
    /// The tables as they must be in the kernel.
    public private(set) var model = RulesetModel()

    private var identityNumbers = NumberAllocator<Identity>()
    private var namespaceNumbers = NumberAllocator<String>()
    /// Pods refer to their identity by number: an `Identity` (namespace, labels, named ports)
    /// is hashed once per pod change, to find its number, and never again; everything else is
    /// keyed by the number (`desired.identities` gives the labels back).
    private var identityOf: [NamespacedName: UInt32] = [:]
    private var members: [UInt32: Set<NamespacedName>] = [:]
    private var localMembers: [UInt32: Int] = [:]
    private var byNamespace: [String: Set<UInt32>] = [:]
    /// The candidate policies of each namespace's identities (`canSee` asks only those).
    private var index = PolicyIndex()
    private var contributions: [NamespacedName: Contribution] = [:]
    /// Keys by the group whose elements they share, groups by local identity, and the keys each
    /// group's elements in the model were computed from.
    private var keysByGroup: [AllowGroup: Set<AllowKey>] = [:]
    private var groupsByLocal: [UInt32: Set<AllowGroup>] = [:]
    private var emittedKeys: [AllowGroup: Set<AllowKey>] = [:]
    private var dirtyGroups: Set<AllowGroup> = []
    /// eg-dns elements per local source address.
    private var dnsElements: [IPAddress: Set<ElementKey>] = [:]
    private var pending = ElementDelta()
    /// Off while a full load builds a model that is then compared whole with the kernel's.
    private var recording = true

    struct Contribution: Sendable {
        var allows: [AllowKey: Set<RuleRef>] = [:]
        var isolates: [PolicyDirection: Set<UInt32>] = [:]
        var unresolved: [RuleRef: Set<String>] = [:]
    }

    public init(everyNodeLocal: Bool = false, dnsAddresses: [IPAddress] = []) {
        self.everyNodeLocal = everyNodeLocal
        for family in TableFamily.allCases { model.tables[family] = PolicyTables.skeleton(family) }
        if !dnsAddresses.isEmpty { setDNSAddresses(dnsAddresses) }
    }

    // MARK: inputs

    /// Identity and namespace numbers an earlier run wrote to the kernel's maps (address ->
    /// number), taken over for the pods that still hold those addresses, so that a restart
    /// finds every element already right. Call before the first `load`.
    public mutating func seedNumbers(from kernel: RulesetModel, for all: PolicyInputs) {
        var byAddress: [IPAddress: UInt32] = [:], nsByAddress: [IPAddress: UInt32] = [:]
        for table in kernel.tables.values {
            for (set, into) in [(PolicyTables.Names.identity, 0), (PolicyTables.Names.namespace, 1)] {
                for (k, v) in table.sets[set]?.elements ?? [:] {
                    guard case .address(let a)? = k.values.first, case .data(let d)?? = v, case .slot(let n)? = d.values.first else { continue }
                    if into == 0 { byAddress[a] = n } else { nsByAddress[a] = n }
                }
            }
        }
        var identities: [Identity: UInt32] = [:], namespaces: [String: UInt32] = [:]
        var pods = all.pods
        if !all.dnsAddresses.isEmpty {
            pods[PolicyInputs.dnsPodID] = PolicyInputs.PodInfo(id: PolicyInputs.dnsPodID, labels: PolicyInputs.dnsPodLabels,
                                                              ips: all.dnsAddresses, ports: PolicyInputs.dnsPodPorts, local: false)
        }
        for (id, pod) in pods {
            for ip in pod.ips {
                if let n = byAddress[ip] { identities[Identity(namespace: id.namespace, labels: pod.labels, ports: pod.ports)] = n }
                if let n = nsByAddress[ip] { namespaces[id.namespace] = n }
            }
        }
        identityNumbers.seed(identities)
        namespaceNumbers.seed(namespaces)
    }

    /// Everything at once (a full compile): the same path as a change. `recordOperations`
    /// false when the caller compares `model` with the kernel's tables itself (a full sync):
    /// the per-element operations would be thrown away.
    public mutating func load(_ all: PolicyInputs, recordOperations: Bool = true) {
        recording = recordOperations
        defer { recording = true }
        if inputs.pods.isEmpty { reserve(pods: all.pods.count) }
        if all.dnsAddresses != inputs.dnsAddresses { setDNSAddresses(all.dnsAddresses) }
        var c = PolicyChanges()
        c.pods.reserveCapacity(all.pods.count)
        for (name, labels) in all.namespaces { c.namespaces[name] = .some(labels) }
        for name in inputs.namespaces.keys where all.namespaces[name] == nil { c.namespaces[name] = .some(nil) }
        for (id, pod) in all.pods { c.pods[id] = .some(pod) }
        for id in inputs.pods.keys where all.pods[id] == nil && id != PolicyInputs.dnsPodID { c.pods[id] = .some(nil) }
        for (id, p) in all.policies { c.policies[id] = .some(p) }
        for id in inputs.policies.keys where all.policies[id] == nil { c.policies[id] = .some(nil) }
        apply(c)
    }

    /// Room for a first load's pods up front (growing these tables pod by pod rehashed them
    /// again and again: a tenth of a 10,000-pod load).
    private mutating func reserve(pods n: Int) {
        inputs.pods.reserveCapacity(n)
        identityOf.reserveCapacity(n)
        desired.addressIdentity.reserveCapacity(n)
        desired.addressNamespace.reserveCapacity(n)
        desired.podsByAddress.reserveCapacity(n)
        for family in TableFamily.allCases {
            for set in [PolicyTables.Names.identity, PolicyTables.Names.namespace] {
                model.tables[family]!.sets[set]!.elements.reserveCapacity(family == .ip ? n : n / 2)
            }
        }
    }

    /// The DNS responder's addresses: a pod (`PolicyInputs.dnsPodID`) that selectors see.
    public mutating func setDNSAddresses(_ addresses: [IPAddress]) {
        for a in desired.dnsAddresses { pendingRemove(a.family, PolicyTables.Names.dnsAddresses, [.address(a)]) }
        desired.dnsAddresses = addresses
        inputs.dnsAddresses = addresses
        for a in addresses { pendingAdd(a.family, PolicyTables.Names.dnsAddresses, [.address(a)]) }
        let pod: PolicyInputs.PodInfo? = addresses.isEmpty ? nil
            : PolicyInputs.PodInfo(id: PolicyInputs.dnsPodID, labels: PolicyInputs.dnsPodLabels, ips: addresses,
                                   ports: PolicyInputs.dnsPodPorts, local: false)
        apply(PolicyChanges(pods: [PolicyInputs.dnsPodID: pod]))
    }

    /// The node's pod subnets (the forward chain drops their addresses no pod holds yet).
    /// Changes two rules per subnet: set once when the node gets its subnets.
    public mutating func setLocalSubnets(_ subnets: [IPPrefix]) {
        let s = subnets.map(\.network)
        guard s != desired.localSubnets else { return }
        desired.localSubnets = s
        for family in TableFamily.allCases {
            model.tables[family]!.chains[PolicyTables.Names.forward] = PolicyTables.forwardChain(family, localSubnets: s)
        }
        pending.forwardChanged = true
    }

    public mutating func apply(_ changes: PolicyChanges) {
        var reevaluate: Set<NamespacedName> = []
        var identitiesChanged: [UInt32] = []
        var namespaceLabelsChanged = false
        /// Namespaces whose labels changed or that appeared (the index files policies again).
        var namespacesToRefile: Set<String> = []
        var touchedLocal: Set<UInt32> = []

        for (name, labels) in changes.namespaces {
            let old = inputs.namespaces[name]
            if let labels {
                var l = labels
                l[PolicyInputs.namespaceNameLabel] = name
                inputs.namespaces[name] = l
                if old != l {
                    namespaceLabelsChanged = true
                    namespacesToRefile.insert(name)
                }
                if desired.namespaceNumbers[name] == nil { desired.namespaceNumbers[name] = namespaceNumbers.number(for: name) }
            } else if old != nil {
                inputs.namespaces[name] = nil
                namespaceLabelsChanged = true
                namespacesToRefile.insert(name)
            }
        }

        // Leave first, join after: an address a removed pod held may already be a new pod's.
        let podChanges = changes.pods.filter { inputs.pods[$0.key] != $0.value }
        for (id, _) in podChanges {
            guard let old = inputs.pods[id], let n = identityOf[id] else { continue }
            let wasLocal = isLocal(old)
            for ip in old.ips { removeAddress(ip, identity: n, local: wasLocal) }
            members[n]?.remove(id)
            if wasLocal {
                touchedLocal.insert(n)
                localMembers[n, default: 0] -= 1
            }
            if members[n]?.isEmpty ?? true || (wasLocal && localMembers[n] == 0) { identitiesChanged.append(n) }
            inputs.pods[id] = nil
            identityOf[id] = nil
        }
        for (id, info) in podChanges {
            guard let info else { continue }
            let ni = Identity(namespace: id.namespace, labels: info.labels, ports: info.ports)
            let n = identityNumbers.number(for: ni)
            let isNew = members[n]?.isEmpty ?? true
            inputs.pods[id] = info
            identityOf[id] = n
            members[n, default: []].insert(id)
            if byNamespace[id.namespace]?.insert(n) == nil {
                byNamespace[id.namespace] = [n]
                if inputs.namespaces[id.namespace] == nil { namespacesToRefile.insert(id.namespace) }
            }
            if isNew { desired.identities[n] = ni }
            let namespaceNumber = desired.namespaceNumbers[id.namespace] ?? namespaceNumbers.number(for: id.namespace)
            desired.namespaceNumbers[id.namespace] = namespaceNumber
            let local = isLocal(info)
            if local {
                localMembers[n, default: 0] += 1
                touchedLocal.insert(n)
            }
            if isNew || (local && localMembers[n] == 1) { identitiesChanged.append(n) }
            for ip in info.ips { addAddress(ip, identity: n, namespace: namespaceNumber, pod: id, local: local) }
        }

        // The index first for the namespaces (the policies filed before this batch), then for
        // the changed policies (filed against the namespaces as they are now).
        for ns in namespacesToRefile { index.refile(namespace: ns, labels: inputs.labels(ofNamespace: ns)) }
        if !changes.policies.isEmpty {
            let known = Set(inputs.namespaces.keys).union(byNamespace.keys)
            for (id, p) in changes.policies {
                if let p { inputs.policies[id] = p } else { inputs.policies[id] = nil }
                // Stored labels hold the name label already: no copy per namespace and policy.
                index.file(id, p, namespaces: known) { inputs.namespaces[$0] ?? [PolicyInputs.namespaceNameLabel: $0] }
                reevaluate.insert(id)
            }
        }
        // Which policies can see the changed identities (as targets or as peers): the
        // candidates the index files under their namespaces, not every policy.
        if namespaceLabelsChanged { reevaluate.formUnion(index.withNamespaceSelectors) }
        if !podChanges.isEmpty { reevaluate.formUnion(index.addressDependent) }
        for n in Set(identitiesChanged) {
            guard let identity = desired.identities[n] else { continue }
            for pid in index.candidates(identity.namespace) where !reevaluate.contains(pid) {
                if let p = inputs.policies[pid], canSee(p, identity) { reevaluate.insert(pid) }
            }
        }
        for id in reevaluate.sorted() {
            let next = inputs.policies[id].map { evaluate($0) } ?? Contribution()
            replace(id, with: next, touched: &touchedLocal)
        }
        flushGroups()
        // Identities that ended: their numbers are free once nothing refers to them.
        for n in Set(identitiesChanged) where members[n]?.isEmpty ?? true {
            members[n] = nil
            localMembers[n] = nil
            guard let identity = desired.identities.removeValue(forKey: n) else { continue }
            byNamespace[identity.namespace]?.remove(n)
            if byNamespace[identity.namespace]?.isEmpty == true { byNamespace[identity.namespace] = nil }
            desired.isolatedBy[n] = nil
            for g in groupsByLocal.removeValue(forKey: n) ?? [] {
                keysByGroup[g] = nil
                emittedKeys[g] = nil
            }
            identityNumbers.release(identity)
        }
        for n in touchedLocal { refreshDNS(localIdentity: n) }
    }

    private func isLocal(_ pod: PolicyInputs.PodInfo) -> Bool {
        pod.local || (everyNodeLocal && pod.id != PolicyInputs.dnsPodID)
    }

    // MARK: selection

    private func namespaces(_ policy: NetworkPolicy, _ peer: NetworkPolicy.Peer) -> [String] {
        guard let sel = peer.namespaceSelector else { return [policy.namespace] }
        // Stored namespace labels hold the name label already (`apply`); a namespace known
        // only from its pods has just that one.
        var out = inputs.namespaces.compactMap { sel.matches($0.value) ? $0.key : nil }
        for ns in byNamespace.keys where inputs.namespaces[ns] == nil && sel.matches(inputs.labels(ofNamespace: ns)) { out.append(ns) }
        return out.sorted()
    }

    /// The policies `canSee` would be asked about for an identity of `namespace` (tests: the
    /// index must never leave out one that can see it).
    func candidatePolicies(_ namespace: String) -> Set<NamespacedName> { index.candidates(namespace) }

    /// Every identity by number (tests).
    var identitiesByNumber: [UInt32: Identity] { desired.identities }

    /// Could the identity be a target or a peer of the policy? (A cheap over-approximation:
    /// re-evaluating a policy that turns out unchanged costs only its own work.)
    func canSee(_ p: NetworkPolicy, _ identity: Identity) -> Bool {
        if identity.namespace == p.namespace && p.podSelector.matches(identity.labels) { return true }
        for rule in p.ingress + p.egress {
            // A rule for every peer, or blocks only: no identity of a peer matters to it.
            for peer in rule.peers where peer.ipBlock == nil {
                let nsOK = peer.namespaceSelector.map { $0.matches(inputs.labels(ofNamespace: identity.namespace)) } ?? (identity.namespace == p.namespace)
                if nsOK && (peer.podSelector ?? .everything).matches(identity.labels) { return true }
            }
        }
        return false
    }

    /// The number of an identity some pod has now (the tiers' peer sets hold these).
    public func identityNumber(of identity: Identity) -> UInt32? { identityNumbers.numbers[identity] }

    /// One policy's allow keys and isolations, from the current identities.
    private func evaluate(_ policy: NetworkPolicy) -> Contribution {
        var c = Contribution()
        let targets = (byNamespace[policy.namespace] ?? []).filter {
            (localMembers[$0] ?? 0) > 0 && policy.podSelector.matches(desired.identities[$0]?.labels ?? [:])
        }.sorted()
        guard !targets.isEmpty else { return c }
        for direction in PolicyDirection.allCases {
            guard direction == .ingress ? policy.isolatesIngress : policy.isolatesEgress else { continue }
            c.isolates[direction] = Set(targets)
            let rules = direction == .ingress ? policy.ingress : policy.egress
            for (index, rule) in rules.enumerated() {
                let ref = RuleRef(policy: policy.id, direction: direction, index: index)
                let hasNamedPort = rule.ports.contains { if case .string? = $0.port { true } else { false } }
                // Resolved port ranges on a destination identity (nil: every port and protocol).
                func ports(on destination: Identity?) -> [PortRange]? {
                    guard !rule.ports.isEmpty else { return nil }
                    var out: [PortRange] = []
                    for p in rule.ports {
                        switch p.port {
                        case nil: out.append(PortRange(p.protocol, 1, 65535))
                        case .int(let n)?:
                            let first = UInt16(clamping: n), last = UInt16(clamping: p.endPort ?? n)
                            if first >= 1, first <= last { out.append(PortRange(p.protocol, first, last)) }
                        case .string(let name)?:
                            let numbers = destination?.resolve(name, p.protocol) ?? []
                            if numbers.isEmpty { c.unresolved[ref, default: []].insert(name) }
                            out += numbers.map { PortRange(p.protocol, $0, $0) }
                        }
                    }
                    return out
                }
                let peers: [NetworkPolicy.Peer] = rule.peers.isEmpty ? [NetworkPolicy.Peer()] : rule.peers
                // Each peer's namespaces and identities once per rule, not once per target.
                let selected: [(namespaces: [String], identities: [UInt32])] = peers.map { peer in
                    guard !rule.peers.isEmpty, peer.ipBlock == nil else { return ([], []) }
                    let podSelector = peer.podSelector ?? .everything
                    let matching = namespaces(policy, peer)
                    guard !podSelector.isEmpty || (direction == .egress && hasNamedPort) else { return (matching, []) }
                    var ids: [UInt32] = []
                    for ns in matching {
                        for n in byNamespace[ns] ?? [] where podSelector.matches(desired.identities[n]?.labels ?? [:]) { ids.append(n) }
                    }
                    return (matching, ids)
                }
                for t in targets {
                    let local = t
                    func add(_ key: AllowKey) { c.allows[key, default: []].insert(ref) }
                    func addAll(_ make: (PortRange?) -> AllowKey, _ ps: [PortRange]?) {
                        if let ps { for r in ps { add(make(r)) } } else { add(make(nil)) }
                    }
                    for (peerIndex, peer) in peers.enumerated() {
                        let everything = rule.peers.isEmpty
                        if everything || peer.ipBlock != nil {
                            let ranges: [AddressRange] = everything
                                ? [AddressRange.everything(.v4), AddressRange.everything(.v6)]
                                : AddressRange.subtracting(peer.ipBlock!.cidr, peer.ipBlock!.except)
                            if direction == .egress && hasNamedPort {
                                // A named port resolves on the destination pod, so only pods can
                                // match: per-identity keys for the pods the block holds.
                                for (peerNumber, ids) in members {
                                    guard let identity = desired.identities[peerNumber] else { continue }
                                    let inside = ids.contains { id in inputs.pods[id]?.ips.contains { ip in ranges.contains { $0.contains(ip) } } ?? false }
                                    guard inside else { continue }
                                    addAll({ .identity(direction, local: local, peer: peerNumber, ports: $0) }, ports(on: identity))
                                }
                                continue
                            }
                            let ps = ports(on: direction == .ingress ? desired.identities[t] : nil)
                            for range in ranges { addAll({ .addresses(direction, local: local, range: range, ports: $0) }, ps) }
                            continue
                        }
                        let podSelector = peer.podSelector ?? .everything
                        let matching = selected[peerIndex].namespaces
                        if podSelector.isEmpty && !(direction == .egress && hasNamedPort) {
                            let ps = ports(on: direction == .ingress ? desired.identities[t] : nil)
                            for ns in matching {
                                guard let nsNumber = desired.namespaceNumbers[ns] else { continue }
                                addAll({ .namespace(direction, local: local, namespace: nsNumber, ports: $0) }, ps)
                            }
                            continue
                        }
                        for peerNumber in selected[peerIndex].identities {
                            addAll({ .identity(direction, local: local, peer: peerNumber, ports: $0) },
                                   ports(on: desired.identities[direction == .ingress ? t : peerNumber]))
                        }
                    }
                }
            }
        }
        return c
    }

    // MARK: aggregate and elements

    private mutating func replace(_ id: NamespacedName, with next: Contribution, touched: inout Set<UInt32>) {
        let old = contributions[id] ?? Contribution()
        for (key, refs) in old.allows where next.allows[key] != refs {
            if desired.disallow(key, refs) {
                let g = key.group
                keysByGroup[g]?.remove(key)
                if keysByGroup[g]?.isEmpty == true { keysByGroup[g] = nil }
                dirtyGroups.insert(g)
                if key.direction == .egress { touched.insert(key.local) }
            }
        }
        for (key, refs) in next.allows where old.allows[key] != refs {
            let isNew = desired.allows[key] == nil
            desired.allow(key, refs)
            if isNew {
                let g = key.group
                keysByGroup[g, default: []].insert(key)
                groupsByLocal[key.local, default: []].insert(g)
                dirtyGroups.insert(g)
                if key.direction == .egress { touched.insert(key.local) }
            }
        }
        for d in PolicyDirection.allCases {
            let was = old.isolates[d] ?? [], now = next.isolates[d] ?? []
            for n in was.subtracting(now) {
                desired.isolatedBy[n]?[d]?.remove(id)
                if desired.isolatedBy[n]?[d]?.isEmpty ?? true {
                    desired.isolatedBy[n]?[d] = nil
                    for a in desired.localAddresses[n] ?? [] { pendingRemove(a.family, PolicyTables.Names.isolated(d), [.address(a)]) }
                    if d == .egress { touched.insert(n) }
                }
            }
            for n in now.subtracting(was) {
                let first = desired.isolatedBy[n]?[d]?.isEmpty ?? true
                desired.isolatedBy[n, default: [:]][d, default: []].insert(id)
                if first {
                    for a in desired.localAddresses[n] ?? [] { pendingAdd(a.family, PolicyTables.Names.isolated(d), [.address(a)]) }
                    if d == .egress { touched.insert(n) }
                }
            }
        }
        for ref in old.unresolved.keys { desired.unresolvedNamedPorts[ref] = nil }
        for (ref, names) in next.unresolved { desired.unresolvedNamedPorts[ref] = names }
        contributions[id] = next.allows.isEmpty && next.isolates.isEmpty && next.unresolved.isEmpty ? nil : next
    }

    private mutating func addAddress(_ ip: IPAddress, identity n: UInt32, namespace ns: UInt32, pod: NamespacedName, local: Bool) {
        desired.addressIdentity[ip] = n
        desired.addressNamespace[ip] = ns
        desired.podsByAddress[ip] = pod
        pendingAdd(ip.family, PolicyTables.Names.identity, [.address(ip)], .data(ElementKey([.slot(n)])))
        pendingAdd(ip.family, PolicyTables.Names.namespace, [.address(ip)], .data(ElementKey([.slot(ns)])))
        guard local else { return }
        desired.localAddresses[n, default: []].insert(ip)
        pendingAdd(ip.family, PolicyTables.Names.localPods, [.address(ip)])
        for g in groupsByLocal[n] ?? [] { emit(g, emittedKeys[g] ?? [], ip, add: true) }
        for d in PolicyDirection.allCases where !(desired.isolatedBy[n]?[d]?.isEmpty ?? true) {
            pendingAdd(ip.family, PolicyTables.Names.isolated(d), [.address(ip)])
        }
    }

    private mutating func removeAddress(_ ip: IPAddress, identity n: UInt32, local: Bool) {
        if desired.addressIdentity[ip] == n {
            desired.addressIdentity[ip] = nil
            if let ns = desired.addressNamespace.removeValue(forKey: ip) {
                pendingRemove(ip.family, PolicyTables.Names.namespace, [.address(ip)], .data(ElementKey([.slot(ns)])))
            }
            desired.podsByAddress[ip] = nil
            pendingRemove(ip.family, PolicyTables.Names.identity, [.address(ip)], .data(ElementKey([.slot(n)])))
        }
        guard local, desired.localAddresses[n]?.remove(ip) != nil else { return }
        if desired.localAddresses[n]?.isEmpty == true { desired.localAddresses[n] = nil }
        pendingRemove(ip.family, PolicyTables.Names.localPods, [.address(ip)])
        for g in groupsByLocal[n] ?? [] { emit(g, emittedKeys[g] ?? [], ip, add: false) }
        for d in PolicyDirection.allCases where !(desired.isolatedBy[n]?[d]?.isEmpty ?? true) {
            pendingRemove(ip.family, PolicyTables.Names.isolated(d), [.address(ip)])
        }
        for key in dnsElements.removeValue(forKey: ip) ?? [] { pendingRemove(ip.family, PolicyTables.Names.dnsAllowed, key.values) }
    }

    /// The eg-dns elements of a local identity's addresses, recomputed.
    private mutating func refreshDNS(localIdentity n: UInt32) {
        for src in desired.localAddresses[n] ?? [] {
            let now = Set(desired.dnsAllowed(from: src).map { ElementKey(PolicyTables.dnsElement($0)) })
            let was = dnsElements[src] ?? []
            for k in was.subtracting(now) { pendingRemove(src.family, PolicyTables.Names.dnsAllowed, k.values) }
            for k in now.subtracting(was) { pendingAdd(src.family, PolicyTables.Names.dnsAllowed, k.values) }
            dnsElements[src] = now.isEmpty ? nil : now
        }
    }

    /// Adds or removes one group's elements for one local address.
    private mutating func emit(_ g: AllowGroup, _ keys: Set<AllowKey>, _ local: IPAddress, add: Bool) {
        for e in PolicyTables.elements(g, keys, local: local) {
            let value = e.end.map { ElementValue.intervalEnd(ElementKey($0)) }
            if add { pendingAdd(local.family, e.set, e.start, value) } else { pendingRemove(local.family, e.set, e.start, value) }
        }
    }

    /// The groups whose keys changed get their elements recomputed, for every local address.
    private mutating func flushGroups() {
        for g in dirtyGroups {
            let now = keysByGroup[g] ?? []
            let was = emittedKeys[g] ?? []
            guard now != was else { continue }
            for a in desired.localAddresses[g.local] ?? [] {
                emit(g, was, a, add: false)
                emit(g, now, a, add: true)
            }
            emittedKeys[g] = now.isEmpty ? nil : now
            if now.isEmpty {
                groupsByLocal[g.local]?.remove(g)
                if groupsByLocal[g.local]?.isEmpty == true { groupsByLocal[g.local] = nil }
            }
        }
        dirtyGroups = []
    }

    private mutating func pendingAdd(_ family: IPFamily, _ set: String, _ key: [NFValue], _ value: ElementValue? = nil) {
        let f = TableFamily(family), k = ElementKey(key)
        // One lookup: the element goes in, and what it replaced (if anything) comes back.
        if let current = model.tables[f]!.sets[set]!.elements.updateValue(value, forKey: k) {
            if current == value { return }
            if recording { pending.remove(f, set, k, current) }
        }
        if recording { pending.add(f, set, k, value) }
    }

    private mutating func pendingRemove(_ family: IPFamily, _ set: String, _ key: [NFValue], _ value: ElementValue? = nil) {
        let f = TableFamily(family), k = ElementKey(key)
        guard let current = model.tables[f]!.sets[set]!.elements[k] else { return }
        model.tables[f]!.sets[set]!.elements[k] = nil
        if recording { pending.remove(f, set, k, current) }
    }

    /// The operations that bring the kernel from the state after the previous call to `model`:
    /// element deletions, then additions (and the forward chain when the subnets changed).
    public mutating func takeOperations() -> [RulesetOperation] {
        defer { pending = ElementDelta() }
        var ops = pending.operations(model)
        if pending.forwardChanged {
            for family in TableFamily.allCases {
                ops.append(.flushChain(family, name: PolicyTables.Names.forward))
                for rule in model.tables[family]!.chains[PolicyTables.Names.forward]!.rules ?? [] {
                    ops.append(.addRule(family, chain: PolicyTables.Names.forward, rule))
                }
            }
        }
        return ops
    }

    /// Forgets the pending operations (after a full sync wrote `model` whole).
    public mutating func discardOperations() { pending = ElementDelta() }
}

/// Element changes collected between two transactions; an addition undone before it was sent
/// cancels out.
struct ElementDelta: Sendable {
    struct SetID: Hashable, Sendable { var family: TableFamily; var set: String }
    var added: [SetID: [ElementKey: ElementValue?]] = [:]
    var removed: [SetID: [ElementKey: ElementValue?]] = [:]
    var forwardChanged = false

    mutating func add(_ f: TableFamily, _ set: String, _ k: ElementKey, _ v: ElementValue?) {
        let id = SetID(family: f, set: set)
        if let was = removed[id]?[k], was == v {
            removed[id]![k] = nil
            return
        }
        added[id, default: [:]][k] = .some(v)
    }

    mutating func remove(_ f: TableFamily, _ set: String, _ k: ElementKey, _ v: ElementValue?) {
        let id = SetID(family: f, set: set)
        if added[id]?[k] != nil {
            added[id]![k] = nil
            return
        }
        removed[id, default: [:]][k] = .some(v)
    }

    func operations(_ model: RulesetModel) -> [RulesetOperation] {
        var ops: [RulesetOperation] = []
        for (id, elements) in removed.sorted(by: { ($0.key.family, $0.key.set) < ($1.key.family, $1.key.set) }) where !elements.isEmpty {
            if model.tables[id.family]?.sets[id.set]?.spec.interval == true {
                var ranges: [ElementKey: ElementKey] = [:]
                for (k, v) in elements { if case .intervalEnd(let end)?? = v { ranges[k] = end } }
                ops.append(.deleteRanges(id.family, set: id.set, ranges))
            } else {
                ops.append(.deleteElements(id.family, set: id.set, Array(elements.keys)))
            }
        }
        for (id, elements) in added.sorted(by: { ($0.key.family, $0.key.set) < ($1.key.family, $1.key.set) }) where !elements.isEmpty {
            ops.append(.addElements(id.family, set: id.set, elements))
        }
        return ops
    }
}

extension NetworkPolicy {
    var usesNamespaceSelectors: Bool {
        (ingress + egress).contains { $0.peers.contains { $0.namespaceSelector != nil } }
    }

    /// Egress rules whose named ports resolve on pods inside address blocks: their keys follow
    /// pod addresses, not only identities.
    var dependsOnPodAddresses: Bool {
        egress.contains { rule in
            rule.ports.contains { if case .string? = $0.port { true } else { false } }
                && (rule.peers.isEmpty || rule.peers.contains { $0.ipBlock != nil })
        }
    }
}
