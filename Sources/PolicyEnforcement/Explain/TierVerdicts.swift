import ClusterState
import IPAddressing

/// What decided one direction of a connection, through the tiers: a ClusterNetworkPolicy rule
/// of the Admin tier, NetworkPolicy (the pod is isolated), a Baseline rule, or nothing (allowed).
public struct TierDecision: Sendable, Hashable, CustomStringConvertible {
    public enum Stage: String, Sendable, Hashable, Codable {
        case admin = "Admin"
        case networkPolicy = "NetworkPolicy"
        case baseline = "Baseline"
        case none = "default"
    }

    public var stage: Stage
    public var allowed: Bool
    /// The ClusterNetworkPolicy and its rule that decided (Admin or Baseline; a Baseline Pass
    /// is named too, though it leaves the default to allow).
    public var policy: String?
    public var rule: String?
    public var action: ClusterNetworkPolicy.Action?
    /// Admin Pass rules that sent the connection on ("policy rule").
    public var passedBy: String?

    public var description: String {
        var s: String
        switch stage {
        case .admin, .baseline:
            s = "\(allowed ? "allowed" : "denied") by ClusterNetworkPolicy \(policy ?? "?") (\(stage.rawValue)) rule \(rule ?? "?") (\(action?.rawValue ?? "?"))"
        case .networkPolicy: s = "\(allowed ? "allowed" : "denied") by NetworkPolicy"
        case .none: s = "allowed (no policy decides)"
        }
        if let passedBy { s += ", after Admin Pass \(passedBy)" }
        return s
    }
}

/// The verdict for a new connection through the tiers and NetworkPolicy, per direction as the
/// forward chain judges it (egress first).
public struct TieredVerdict: Sendable, Hashable, CustomStringConvertible {
    public var allowed: Bool
    public var deniedBy: PolicyDirection?
    /// The directions judged on this node (the local ends'), and what decided each.
    public var decisions: [PolicyDirection: TierDecision]
    /// NetworkPolicy's view (its isolating policies and allowing rules), for the explanation.
    public var networkPolicy: PolicyVerdict

    public var description: String {
        let parts = [PolicyDirection.egress, .ingress].compactMap { d in decisions[d].map { "\(d.rawValue): \($0)" } }
        if decisions.values.allSatisfy({ $0.stage == .networkPolicy || $0.stage == .none }) { return networkPolicy.description }
        return (allowed ? "allowed (" : "denied (") + parts.joined(separator: "; ") + ")"
    }
}

extension TierDesired {
    /// Does one CNP rule match a packet of `direction` between the local subject address and
    /// the peer? Reads the sets as the kernel does (`TierTables.rules`).
    func matches(_ id: TierRuleID, _ rule: ClusterNetworkPolicy.Rule, local: IPAddress, peer: IPAddress,
                 peerIdentity: UInt32?, proto: L4Protocol, port: UInt16) -> Bool {
        if rule.matchesEverything { return true }
        let byPeers = peerIdentity.map { peers[id]?.contains($0) ?? false } ?? false
        let byNetworks = id.direction == .egress && rule.networkRanges(peer.family).contains { $0.contains(peer) }
        if rule.protocols.isEmpty { return (rule.hasSelectorPeers && byPeers) || byNetworks }
        if rule.portRanges.contains(where: { $0.contains(proto, port) }) && ((rule.hasSelectorPeers && byPeers) || byNetworks) { return true }
        guard !rule.namedPorts.isEmpty else { return false }
        if id.direction == .ingress {
            return byPeers && namedLocal[id]?.contains(AddressPort(address: local, proto: proto, port: port)) == true
        }
        if let n = peerIdentity, namedPeers[id]?.contains(IdentityPort(identity: n, proto: proto, port: port)) == true { return true }
        return networkPods[id]?.contains(AddressPort(address: peer, proto: proto, port: port)) == true
    }

    /// The first matching rule of a tier's policies that apply to `local`.
    func firstMatch(_ tier: ClusterNetworkPolicy.Tier, _ d: PolicyDirection, local: IPAddress, peer: IPAddress,
                    peerIdentity: UInt32?, proto: L4Protocol, port: UInt16) -> (ClusterNetworkPolicy, Int, ClusterNetworkPolicy.Rule)? {
        for name in order[tier] ?? [] where subjects[name]?.contains(local) == true {
            guard let p = policies[name] else { continue }
            for (i, rule) in Self.rules(p, d).enumerated()
            where matches(TierRuleID(policy: name, direction: d, index: i), rule, local: local, peer: peer,
                          peerIdentity: peerIdentity, proto: proto, port: port) {
                return (p, i, rule)
            }
        }
        return nil
    }

    /// One direction's decision for the local pod at `local` talking to `peer`: Admin tier,
    /// then NetworkPolicy when the pod is isolated, then Baseline tier, then allowed.
    public func decide(_ d: PolicyDirection, local: IPAddress, peer: IPAddress, proto: L4Protocol, port: UInt16,
                       np: PolicyDesired) -> TierDecision {
        let peerIdentity = np.addressIdentity[peer]
        var passed: String?
        if let (p, i, rule) = firstMatch(.admin, d, local: local, peer: peer, peerIdentity: peerIdentity, proto: proto, port: port) {
            let label = rule.label(d, i)
            switch rule.action {
            case .accept, .deny:
                return TierDecision(stage: .admin, allowed: rule.action == .accept, policy: p.name, rule: label, action: rule.action)
            case .pass: passed = "\(p.name) \(label)"
            }
        }
        if np.isIsolated(local, d), let identity = np.addressIdentity[local] {
            let allowed = !np.allowingRules(d, local: identity, peer: peer, proto: proto, port: port).isEmpty
            return TierDecision(stage: .networkPolicy, allowed: allowed, passedBy: passed)
        }
        if let (p, i, rule) = firstMatch(.baseline, d, local: local, peer: peer, peerIdentity: peerIdentity, proto: proto, port: port) {
            return TierDecision(stage: .baseline, allowed: rule.action != .deny, policy: p.name, rule: rule.label(d, i),
                                action: rule.action, passedBy: passed)
        }
        return TierDecision(stage: .none, allowed: true, passedBy: passed)
    }

    /// The verdict for a new connection from `source` to `destination` (post-DNAT) as this
    /// node's tables give it: each local end's direction through the tiers.
    public func verdict(from source: IPAddress, to destination: IPAddress, proto: L4Protocol, port: UInt16,
                        np: PolicyDesired) -> TieredVerdict {
        var v = TieredVerdict(allowed: true, deniedBy: nil, decisions: [:],
                              networkPolicy: np.verdict(from: source, to: destination, proto: proto, port: port))
        for d in [PolicyDirection.egress, .ingress] {
            let (local, peer) = d == .egress ? (source, destination) : (destination, source)
            guard np.isLocal(local) else { continue }
            let decision = decide(d, local: local, peer: peer, proto: proto, port: port, np: np)
            v.decisions[d] = decision
            if !decision.allowed, v.allowed {
                v.allowed = false
                v.deniedBy = d
            }
        }
        return v
    }

    /// The DNS elements of one local source: for each responder address of its family and
    /// UDP/TCP 53, the tiers' decision where it differs from NetworkPolicy's own `dns` path
    /// (an Admin Accept for an isolated pod; a denial by a tier).
    func dnsKeys(from source: IPAddress, np: PolicyDesired) -> (accept: [DNSKey], deny: [DNSKey]) {
        guard np.isLocal(source), !policies.isEmpty else { return ([], []) }
        var accept: [DNSKey] = [], deny: [DNSKey] = []
        for responder in np.dnsAddresses where responder.family == source.family {
            for proto in [L4Protocol.udp, .tcp] {
                let key = DNSKey(source: source, responder: responder, proto: proto)
                let d = decide(.egress, local: source, peer: responder, proto: proto, port: 53, np: np)
                if !d.allowed, d.stage != .networkPolicy { deny.append(key) }
                if d.allowed, d.stage == .admin, np.isIsolated(source, .egress) { accept.append(key) }
            }
        }
        return (accept, deny)
    }
}

extension PolicyDesired {
    /// Is `address` a local pod's (the forward chain's `@local-pods`)?
    public func isLocal(_ address: IPAddress) -> Bool {
        guard let n = addressIdentity[address] else { return false }
        return localAddresses[n]?.contains(address) == true
    }
}
