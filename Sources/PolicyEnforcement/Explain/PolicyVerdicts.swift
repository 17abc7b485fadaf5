import ClusterState
import IPAddressing

/// Verdicts computed from the desired state exactly as the kernel computes them from the
/// tables: isolation sets, then the allow keys of the local identity. `nodenet policy check`,
/// the DNS path's precomputed elements and the tests' oracle all use this.
public struct PolicyVerdict: Sendable, Hashable, CustomStringConvertible {
    public var allowed: Bool
    /// The direction that decided a denial (egress first, as the forward chain checks it).
    public var deniedBy: PolicyDirection?
    /// The rules that allowed each direction that was judged.
    public var allowingRules: [PolicyDirection: [RuleRef]]
    /// The policies that isolate the source (egress) and the destination (ingress).
    public var isolatingPolicies: [PolicyDirection: [NamespacedName]]

    public var description: String {
        if allowed {
            let parts = PolicyDirection.allCases.compactMap { d -> String? in
                guard let rules = allowingRules[d] else { return "\(d.rawValue): not isolated" }
                return "\(d.rawValue): allowed by \(rules.map(\.description).joined(separator: ", "))"
            }
            return "allowed (" + parts.joined(separator: "; ") + ")"
        }
        let d = deniedBy!
        let by = (isolatingPolicies[d] ?? []).map(\.description).joined(separator: ", ")
        return "denied: \(d.rawValue) isolated by \(by) and no rule allows it"
    }
}

extension PolicyDesired {
    /// The rules of `direction` allowing the local identity `local` to talk to the peer at
    /// `address` (its identity and namespace looked up as the kernel does).
    public func allowingRules(_ direction: PolicyDirection, local: UInt32, peer address: IPAddress,
                              proto: L4Protocol, port: UInt16) -> [RuleRef] {
        let peerIdentity = addressIdentity[address], peerNamespace = addressNamespace[address]
        var out: Set<RuleRef> = []
        for (key, refs) in allows where key.direction == direction && key.local == local {
            if key.allows(peerIdentity: peerIdentity, peerNamespace: peerNamespace, address: address, proto: proto, port: port) {
                out.formUnion(refs)
            }
        }
        return out.sorted()
    }

    /// The verdict for a new connection from `source` to `destination` (post-DNAT: a pod's
    /// address, not a Service's) on `proto`/`port`, as this node's tables give it.
    public func verdict(from source: IPAddress, to destination: IPAddress, proto: L4Protocol, port: UInt16) -> PolicyVerdict {
        var v = PolicyVerdict(allowed: true, deniedBy: nil, allowingRules: [:], isolatingPolicies: [:])
        for d in [PolicyDirection.egress, .ingress] {
            let (local, peer) = d == .egress ? (source, destination) : (destination, source)
            guard isIsolated(local, d), let identity = addressIdentity[local] else { continue }
            v.isolatingPolicies[d] = (isolatedBy[identity]?[d] ?? []).sorted()
            let rules = allowingRules(d, local: identity, peer: peer, proto: proto, port: port)
            v.allowingRules[d] = rules
            if rules.isEmpty, v.allowed {
                v.allowed = false
                v.deniedBy = d
            }
        }
        return v
    }

    /// (responder address, port) for every DNS query the policies allow from the local pod at
    /// `source` when it is isolated for egress: its `eg-dns` elements.
    func dnsAllowed(from source: IPAddress) -> [(IPAddress, IPAddress, PortRange)] {
        guard isIsolated(source, .egress), let identity = addressIdentity[source] else { return [] }
        var out: [(IPAddress, IPAddress, PortRange)] = []
        for dns in dnsAddresses where dns.family == source.family {
            for proto in [L4Protocol.udp, .tcp] where !allowingRules(.egress, local: identity, peer: dns, proto: proto, port: 53).isEmpty {
                out.append((source, dns, PortRange(proto, 53, 53)))
            }
        }
        return out
    }

    /// Every `eg-dns` element (tests).
    func dnsAllowed() -> [(IPAddress, IPAddress, PortRange)] {
        localAddresses.values.flatMap { $0 }.flatMap { dnsAllowed(from: $0) }
    }
}
