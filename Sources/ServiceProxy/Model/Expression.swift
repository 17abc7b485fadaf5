import IPAddressing

/// One statement or match of a rule, typed. A rule is a list of these evaluated in order,
/// as in nftables; each case maps to a short, fixed sequence of kernel expressions
/// (payload/meta load, cmp, lookup, numgen, nat, ...), which is what the netlink encoder emits.
public enum NFExpression: Hashable, Sendable {
    /// `ip daddr 10.96.0.1`, `ip saddr != 10.244.0.0/16`, `meta l4proto tcp`, `th dport 80`.
    case match(NFField, NFValue, negated: Bool = false)
    /// `ip saddr != { 1.2.3.0/24, 5.6.7.8 }`: an anonymous interval set.
    case matchAny(NFField, [NFValue], negated: Bool = false)
    /// `ip saddr @affinity-...`: membership in a named set.
    case lookup([NFField], set: String)
    /// `ip daddr . meta l4proto . th dport vmap @service-ips`: verdict from a named map.
    case vmap([NFField], map: String)
    /// `numgen random mod N vmap { 0 : goto a, 1 : goto b }`: equal-weight random choice.
    case numgenVmap([Verdict])
    /// `fib saddr type local` / `fib daddr type local` (field must be saddr or daddr).
    case fibTypeLocal(NFField)
    /// `ct state new`.
    case ctStateNew
    /// `meta mark & M == 0`.
    case markClear(UInt32)
    /// `meta mark set meta mark or M`.
    case markSetOr(UInt32)
    /// `meta mark set meta mark xor M`.
    case markSetXor(UInt32)
    case counter
    /// `update @set { ip saddr }`: refresh a dynamic set element (ClientIP affinity).
    case updateSet(String, NFField)
    /// `dnat to ADDR:PORT` (preceded by a `meta l4proto` match so the port is meaningful).
    case dnat(IPAddress, UInt16)
    /// `masquerade fully-random`.
    case masquerade
    case reject(RejectKind)
    case verdict(Verdict)

    /// Chains this expression refers to.
    var chainReferences: [String] {
        switch self {
        case .verdict(let v): v.chain.map { [$0] } ?? []
        case .numgenVmap(let vs): vs.compactMap(\.chain)
        default: []
        }
    }

    /// Named sets this expression refers to.
    var setReferences: [String] {
        switch self {
        case .lookup(_, let s), .vmap(_, let s), .updateSet(let s, _): [s]
        default: []
        }
    }
}

public struct NFRule: Hashable, Sendable {
    public var expressions: [NFExpression]
    public var comment: String?

    public init(_ expressions: [NFExpression], comment: String? = nil) {
        self.expressions = expressions
        self.comment = comment
    }
}
