import ClusterState
import IPAddressing

/// One rule of a ClusterNetworkPolicy: the policy's name, the direction, its index there (the
/// written order is its precedence).
public struct TierRuleID: Hashable, Sendable, Comparable, CustomStringConvertible {
    public var policy: String
    public var direction: PolicyDirection
    public var index: Int

    public init(policy: String, direction: PolicyDirection, index: Int) {
        self.policy = policy
        self.direction = direction
        self.index = index
    }

    public var description: String { "\(policy) \(direction.rawValue)[\(index)]" }
    public static func < (a: Self, b: Self) -> Bool { (a.policy, a.direction, a.index) < (b.policy, b.direction, b.index) }
}

/// A destination named port resolved on an identity (egress: the peer pods').
public struct IdentityPort: Hashable, Sendable {
    public var identity: UInt32
    public var proto: L4Protocol
    public var port: UInt16
}

/// A port resolved on one pod address (ingress: the subject pod's; egress networks: the pods
/// inside the networks).
public struct AddressPort: Hashable, Sendable {
    public var address: IPAddress
    public var proto: L4Protocol
    public var port: UInt16
}

/// A DNS query a local pod sends to the node's responder (port 53), decided by the tiers.
public struct DNSKey: Hashable, Sendable {
    public var source: IPAddress
    public var responder: IPAddress
    public var proto: L4Protocol
}

/// The cluster-wide tiers compiled for this node: for each ClusterNetworkPolicy its local
/// subject addresses, and for each rule the contents of its sets. This is exactly what the
/// tier sets hold (`TierTables`), and verdicts (`decide`) read only this, as the kernel does.
public struct TierDesired: Sendable, Equatable {
    public internal(set) var policies: [String: ClusterNetworkPolicy] = [:]
    /// Names per tier in evaluation order (priority, then name).
    public internal(set) var order: [ClusterNetworkPolicy.Tier: [String]] = [:]
    /// Policy name -> the number in its sets' names (`cnp<N>-...`).
    public internal(set) var numbers: [String: UInt32] = [:]
    /// Local pod addresses each policy applies to.
    public internal(set) var subjects: [String: Set<IPAddress>] = [:]
    /// Identity numbers a rule's `namespaces`/`pods` peers match.
    public internal(set) var peers: [TierRuleID: Set<UInt32>] = [:]
    /// Egress named ports resolved on the matching peer identities.
    public internal(set) var namedPeers: [TierRuleID: Set<IdentityPort>] = [:]
    /// Ingress named ports resolved on the local subject pods.
    public internal(set) var namedLocal: [TierRuleID: Set<AddressPort>] = [:]
    /// Egress named ports resolved on the pods inside a rule's `networks`.
    public internal(set) var networkPods: [TierRuleID: Set<AddressPort>] = [:]
    /// DNS to the node's responder (untracked: no conntrack mark, so precomputed): accepted by
    /// the Admin tier for a source NetworkPolicy isolates, or denied by a tier.
    public internal(set) var dnsAccept: Set<DNSKey> = []
    public internal(set) var dnsDeny: Set<DNSKey> = []

    public init() {}

    static func rules(_ p: ClusterNetworkPolicy, _ d: PolicyDirection) -> [ClusterNetworkPolicy.Rule] {
        d == .ingress ? p.ingress : p.egress
    }

    mutating func setPolicies(_ policies: [String: ClusterNetworkPolicy]) {
        self.policies = policies
        order = [:]
        for tier in ClusterNetworkPolicy.Tier.allCases {
            order[tier] = policies.values.filter { $0.tier == tier }.sorted(by: ClusterNetworkPolicy.precedes).map(\.name)
        }
    }

    mutating func insert<K: Hashable>(_ path: WritableKeyPath<TierDesired, [TierRuleID: Set<K>]>, _ id: TierRuleID, _ k: K) -> Bool {
        self[keyPath: path][id, default: []].insert(k).inserted
    }

    mutating func remove<K: Hashable>(_ path: WritableKeyPath<TierDesired, [TierRuleID: Set<K>]>, _ id: TierRuleID, _ k: K) -> Bool {
        guard self[keyPath: path][id]?.remove(k) != nil else { return false }
        if self[keyPath: path][id]?.isEmpty == true { self[keyPath: path][id] = nil }
        return true
    }
}

// MARK: rule shapes

extension ClusterNetworkPolicy.Rule {
    /// An unsupported peer in a Deny or Pass rule: the API says fail closed, so the rule
    /// matches every packet of its direction (an Accept rule with one matches nothing more).
    var matchesEverything: Bool {
        action != .accept && peers.contains { if case .unsupported = $0 { true } else { false } }
    }

    var hasSelectorPeers: Bool {
        peers.contains { switch $0 { case .namespaces, .pods: true; default: false } }
    }

    var networks: [IPPrefix] {
        peers.flatMap { peer -> [IPPrefix] in
            if case .networks(let n) = peer { return n }
            return []
        }
    }

    var namedPorts: [String] { protocols.compactMap { if case .namedPort(let n) = $0 { n } else { nil } } }

    /// The numbered `protocols` entries as port ranges (a protocol alone: 1-65535).
    var portRanges: [PortRange] {
        protocols.compactMap { p -> PortRange? in
            guard case .port(let proto, let match) = p else { return nil }
            switch match {
            case nil: return PortRange(proto, 1, 65535)
            case .number(let n)?:
                guard (1...65535).contains(n) else { return nil }
                return PortRange(proto, UInt16(n), UInt16(n))
            case .range(let r)?:
                let first = max(1, r.lowerBound), last = min(65535, r.upperBound)
                return first <= last ? PortRange(proto, UInt16(first), UInt16(last)) : nil
            }
        }
    }

    /// The rule's networks of one family as merged, disjoint ranges.
    func networkRanges(_ family: IPFamily) -> [AddressRange] {
        PolicyTables.mergedAddresses(networks.filter { $0.family == family }.map { AddressRange($0.network.address, $0.lastAddress) })
    }

    /// Does a `namespaces`/`pods` peer match the identity (pods of that namespace and labels)?
    func peerMatches(_ identity: Identity, namespaceLabels: [String: String]) -> Bool {
        peers.contains { peer in
            switch peer {
            case .namespaces(let ns): ns.matches(namespaceLabels)
            case .pods(let p): p.namespaceSelector.matches(namespaceLabels) && p.podSelector.matches(identity.labels)
            case .networks, .unsupported: false
            }
        }
    }

    /// The named ports resolved on an identity (every protocol its container port has).
    func resolvedNamedPorts(on identity: Identity) -> [(L4Protocol, UInt16)] {
        var out: [(L4Protocol, UInt16)] = []
        for name in namedPorts {
            for proto in L4Protocol.allCases { out += identity.resolve(name, proto).map { (proto, $0) } }
        }
        return out
    }

    /// How `policy check` names the rule: its name, else its place.
    func label(_ direction: PolicyDirection, _ index: Int) -> String {
        name.map { "\"\($0)\"" } ?? "\(direction.rawValue)[\(index)]"
    }
}

extension ClusterNetworkPolicy {
    /// Does the policy apply to pods of this identity? (Host-network pods are never pods here.)
    func subjectMatches(_ identity: Identity, namespaceLabels: [String: String]) -> Bool {
        switch subject {
        case .namespaces(let ns): ns.matches(namespaceLabels)
        case .pods(let p): p.namespaceSelector.matches(namespaceLabels) && p.podSelector.matches(identity.labels)
        }
    }
}
