import ClusterState
import IPAddressing
import ServiceProxy

/// The cluster-wide tiers (ClusterNetworkPolicy), kept up to date beside `PolicyEngine`, whose
/// identities, local addresses and isolation it reads. A pod or namespace change is element
/// operations on the tier sets, bounded by what it touches times the (few) tier policies: the
/// changed pods' addresses, the identities they leave or join, the local pods' DNS verdicts. A
/// tier policy change recompiles the tier part whole and diffs it (rewriting the five tier
/// chains and the policy's own sets): these are few admin objects.
public struct TierEngine: Sendable {
    public private(set) var desired = TierDesired()
    /// The tier chains and sets per family, laid over the policy tables.
    public private(set) var part: [TableFamily: TableModel] = [:]

    private var numbers = NumberAllocator<String>()
    /// The identity each number's peer elements were computed for (and back).
    private var known: [UInt32: Identity] = [:]
    private var knownNumber: [Identity: UInt32] = [:]
    private var peerRules: [UInt32: Set<TierRuleID>] = [:]
    private var namedOf: [UInt32: [TierRuleID: Set<IdentityPort>]] = [:]
    /// Per address: the policies it is a subject of, its ingress named ports, its network pods.
    private var subjectOf: [IPAddress: Set<String>] = [:]
    private var namedLocalOf: [IPAddress: [TierRuleID: Set<AddressPort>]] = [:]
    private var networkPodsOf: [IPAddress: [TierRuleID: Set<AddressPort>]] = [:]
    private var pending = ElementDelta()
    /// Whole-part diffs (a tier policy changed), after the element operations before them.
    private var structural: [RulesetOperation] = []
    private var recording = true

    public init() {
        resetPart()
    }

    private mutating func resetPart() {
        for f in TableFamily.allCases { part[f] = TierTables.part(desired, f) }
    }

    private var partModel: RulesetModel {
        var m = RulesetModel()
        m.tables = part
        return m
    }

    // MARK: changes

    /// Everything again (a full load, the DNS addresses, a tier policy change): the part is
    /// recompiled from the engine's current state and, when recording, diffed.
    mutating func rebuild(_ policies: [String: ClusterNetworkPolicy], np: PolicyEngine, recordOperations: Bool = true) {
        var fresh = TierEngine()
        fresh.recording = false
        fresh.numbers = numbers
        for name in desired.policies.keys where policies[name] == nil { fresh.numbers.release(name) }
        // Numbers in name order: a restart with the same policies names the same sets.
        for name in policies.keys.sorted() { fresh.desired.numbers[name] = fresh.numbers.number(for: name) }
        fresh.desired.setPolicies(policies)
        fresh.resetPart()
        fresh.populate(np)
        if recordOperations && recording {
            structural += pending.operations(partModel)
            structural += RulesetDiff.operations(from: partModel, to: fresh.partModel)
        }
        pending = ElementDelta()
        fresh.structural = structural
        fresh.recording = recording
        self = fresh
    }

    private mutating func populate(_ np: PolicyEngine) {
        guard !desired.policies.isEmpty else { return }
        for (n, identity) in np.desired.identities { refreshIdentity(n, identity, np) }
        for a in np.desired.addressIdentity.keys { refreshAddress(a, np) }
        refreshDNS(np)
    }

    /// After `np` applied `changes`: `oldPods` are the changed pods as they were before.
    mutating func apply(_ changes: PolicyChanges, oldPods: [NamespacedName: PolicyInputs.PodInfo?], np: PolicyEngine) {
        if !changes.clusterPolicies.isEmpty {
            var policies = desired.policies
            for (name, p) in changes.clusterPolicies { policies[name] = p }
            rebuild(policies, np: np)
            return
        }
        guard !desired.policies.isEmpty else { return }
        var identities: Set<Identity> = []
        var addresses: Set<IPAddress> = []
        for (id, old) in oldPods {
            for pod in [old, np.inputs.pods[id]] {
                guard let pod else { continue }
                identities.insert(Identity(namespace: id.namespace, labels: pod.labels, ports: pod.ports))
                addresses.formUnion(pod.ips)
            }
        }
        // Selectors read namespace labels: every identity of a changed namespace, and its
        // local addresses (subjects).
        if !changes.namespaces.isEmpty {
            for (n, identity) in np.desired.identities where changes.namespaces[identity.namespace] != nil {
                identities.insert(identity)
                addresses.formUnion(np.desired.localAddresses[n] ?? [])
            }
            for identity in knownNumber.keys where changes.namespaces[identity.namespace] != nil { identities.insert(identity) }
        }
        for identity in identities {
            let now = np.identityNumber(of: identity)
            if let was = knownNumber[identity], was != now { dropIdentity(was) }
            if let now { refreshIdentity(now, identity, np) }
        }
        for a in addresses { refreshAddress(a, np) }
        refreshDNS(np)
    }

    // MARK: identities (peer sets)

    private mutating func dropIdentity(_ n: UInt32) {
        if let identity = known.removeValue(forKey: n), knownNumber[identity] == n { knownNumber[identity] = nil }
        for id in peerRules.removeValue(forKey: n) ?? [] where desired.remove(\.peers, id, n) {
            put(both: TierTables.peerElement(desired.numbers[id.policy]!, id, n), add: false)
        }
        for (id, keys) in namedOf.removeValue(forKey: n) ?? [:] {
            for k in keys where desired.remove(\.namedPeers, id, k) {
                put(both: TierTables.namedPeerElement(desired.numbers[id.policy]!, id, k), add: false)
            }
        }
    }

    private mutating func refreshIdentity(_ n: UInt32, _ identity: Identity, _ np: PolicyEngine) {
        dropIdentity(n)
        if let other = known[n], other != identity, knownNumber[other] == n { knownNumber[other] = nil }
        known[n] = identity
        knownNumber[identity] = n
        let labels = np.inputs.labels(ofNamespace: identity.namespace)
        for (name, p) in desired.policies {
            let number = desired.numbers[name]!
            for d in PolicyDirection.allCases {
                for (i, rule) in TierDesired.rules(p, d).enumerated()
                where rule.hasSelectorPeers && !rule.matchesEverything && rule.peerMatches(identity, namespaceLabels: labels) {
                    let id = TierRuleID(policy: name, direction: d, index: i)
                    peerRules[n, default: []].insert(id)
                    if desired.insert(\.peers, id, n) { put(both: TierTables.peerElement(number, id, n), add: true) }
                    guard d == .egress else { continue }
                    for (proto, port) in rule.resolvedNamedPorts(on: identity) {
                        let k = IdentityPort(identity: n, proto: proto, port: port)
                        namedOf[n, default: [:]][id, default: []].insert(k)
                        if desired.insert(\.namedPeers, id, k) { put(both: TierTables.namedPeerElement(number, id, k), add: true) }
                    }
                }
            }
        }
    }

    // MARK: addresses (subjects, ingress named ports, pods inside networks)

    private mutating func dropAddress(_ a: IPAddress) {
        for name in subjectOf.removeValue(forKey: a) ?? [] {
            guard let p = desired.policies[name], let n = desired.numbers[name] else { continue }
            desired.subjects[name]?.remove(a)
            if desired.subjects[name]?.isEmpty == true { desired.subjects[name] = nil }
            for e in TierTables.subjectElements(p, n, a) { put(a.family, e, add: false) }
        }
        for (id, keys) in namedLocalOf.removeValue(forKey: a) ?? [:] {
            for k in keys where desired.remove(\.namedLocal, id, k) {
                put(a.family, TierTables.addressPortElement(desired.numbers[id.policy]!, id, "named", k), add: false)
            }
        }
        for (id, keys) in networkPodsOf.removeValue(forKey: a) ?? [:] {
            for k in keys where desired.remove(\.networkPods, id, k) {
                put(a.family, TierTables.addressPortElement(desired.numbers[id.policy]!, id, "netnamed", k), add: false)
            }
        }
    }

    private mutating func refreshAddress(_ a: IPAddress, _ np: PolicyEngine) {
        dropAddress(a)
        guard let n = np.desired.addressIdentity[a], let identity = np.desired.identities[n] else { return }
        let local = np.desired.localAddresses[n]?.contains(a) == true
        let labels = np.inputs.labels(ofNamespace: identity.namespace)
        for (name, p) in desired.policies {
            let number = desired.numbers[name]!
            if local, p.subjectMatches(identity, namespaceLabels: labels) {
                subjectOf[a, default: []].insert(name)
                desired.subjects[name, default: []].insert(a)
                for e in TierTables.subjectElements(p, number, a) { put(a.family, e, add: true) }
                for (i, rule) in p.ingress.enumerated() where rule.hasSelectorPeers && !rule.matchesEverything {
                    let id = TierRuleID(policy: name, direction: .ingress, index: i)
                    for (proto, port) in rule.resolvedNamedPorts(on: identity) {
                        let k = AddressPort(address: a, proto: proto, port: port)
                        namedLocalOf[a, default: [:]][id, default: []].insert(k)
                        if desired.insert(\.namedLocal, id, k) { put(a.family, TierTables.addressPortElement(number, id, "named", k), add: true) }
                    }
                }
            }
            for (i, rule) in p.egress.enumerated()
            where !rule.matchesEverything && !rule.namedPorts.isEmpty && rule.networkRanges(a.family).contains(where: { $0.contains(a) }) {
                let id = TierRuleID(policy: name, direction: .egress, index: i)
                for (proto, port) in rule.resolvedNamedPorts(on: identity) {
                    let k = AddressPort(address: a, proto: proto, port: port)
                    networkPodsOf[a, default: [:]][id, default: []].insert(k)
                    if desired.insert(\.networkPods, id, k) { put(a.family, TierTables.addressPortElement(number, id, "netnamed", k), add: true) }
                }
            }
        }
    }

    // MARK: DNS

    /// The local pods' DNS verdicts where the tiers decide them. Every local pod (NetworkPolicy
    /// changes move pods between the tiers and NetworkPolicy's own dns path): O(local pods).
    private mutating func refreshDNS(_ np: PolicyEngine) {
        guard !desired.policies.isEmpty || !desired.dnsAccept.isEmpty || !desired.dnsDeny.isEmpty else { return }
        var accept: Set<DNSKey> = [], deny: Set<DNSKey> = []
        for addrs in np.desired.localAddresses.values {
            for a in addrs {
                let k = desired.dnsKeys(from: a, np: np.desired)
                accept.formUnion(k.accept)
                deny.formUnion(k.deny)
            }
        }
        for (set, now, path) in [(TierTables.Names.dnsAccept, accept, \TierDesired.dnsAccept), (TierTables.Names.dnsDeny, deny, \TierDesired.dnsDeny)] {
            let was = desired[keyPath: path]
            for k in was.subtracting(now) { put(k.source.family, TierTables.dnsElement(set, k), add: false) }
            for k in now.subtracting(was) { put(k.source.family, TierTables.dnsElement(set, k), add: true) }
            desired[keyPath: path] = now
        }
    }

    // MARK: elements

    private mutating func put(both e: TierTables.Element, add: Bool) {
        for f in TableFamily.allCases { put(f, e, add: add) }
    }

    private mutating func put(_ family: IPFamily, _ e: TierTables.Element, add: Bool) {
        put(TableFamily(family), e, add: add)
    }

    private mutating func put(_ f: TableFamily, _ e: TierTables.Element, add: Bool) {
        let current = part[f]!.sets[e.set]!.elements[e.key]
        if add {
            if current == .some(e.value) { return }
            if let current, recording { pending.remove(f, e.set, e.key, current) }
            part[f]!.sets[e.set]!.elements[e.key] = .some(e.value)
            if recording { pending.add(f, e.set, e.key, e.value) }
        } else {
            guard let current else { return }
            part[f]!.sets[e.set]!.elements[e.key] = nil
            if recording { pending.remove(f, e.set, e.key, current) }
        }
    }

    /// The operations since the last call: element changes, then whole-part diffs.
    mutating func takeOperations() -> [RulesetOperation] {
        defer {
            pending = ElementDelta()
            structural = []
        }
        return structural + pending.operations(partModel)
    }

    mutating func discardOperations() {
        pending = ElementDelta()
        structural = []
    }
}
