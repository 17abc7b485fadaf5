import ClusterState
import IPAddressing

/// One statement or match of a rule, typed. A rule is a list of these evaluated in order,
/// as in nftables; each case maps to a short, fixed sequence of kernel expressions, which is
/// what the netlink encoder emits (registers: NFT_REG32_00 onward; concatenations take
/// consecutive 4-byte-aligned registers):
/// - match: payload (network header: saddr 12/4, daddr 16/4; IPv6 8/16, 24/16) or meta l4proto
///   or payload transport header 2/2 for dport; a prefix adds bitwise(mask); then cmp eq/neq.
/// - matchAny: an anonymous constant interval set + lookup (NFT_LOOKUP_F_INV when negated).
/// - lookup / vmap: loads into consecutive registers, lookup of the named set (vmap: dreg
///   NFT_REG_VERDICT on a map with NFT_DATA_VERDICT data).
/// - numgenVmap: numgen random mod N, lookup in an anonymous constant verdict map 0..N-1.
/// - fibTypeLocal: fib (NFTA_FIB_F_SADDR or DADDR, result ADDRTYPE), cmp eq RTN_LOCAL.
/// - ctStateNew: ct state, bitwise & NF_CT_STATE_BIT(NEW), cmp neq 0.
/// - markClear: meta mark, bitwise & M, cmp eq 0. markSetOr/Xor: meta mark, bitwise
///   (mask ~M xor M / mask ~0 xor M), meta set mark.
/// - updateSet: payload saddr, dynset op UPDATE (the set's own timeout).
/// - dnat: immediate address and port into two registers, nat DNAT with proto min.
/// - masquerade: masq with NF_NAT_RANGE_PROTO_RANDOM_FULLY.
/// - reject: NFT_REJECT_TCP_RST, or NFT_REJECT_ICMP_UNREACH with port-unreachable
///   (ICMP code 3; ICMPv6 code 4).
/// - verdict: immediate into NFT_REG_VERDICT.
public enum NFExpression: Hashable, Sendable {
    /// `ip daddr 10.96.0.1`, `ip saddr != 10.244.0.0/16`, `meta l4proto tcp`, `th dport 80`.
    case match(NFField, NFValue, negated: Bool = false)
    /// `ip saddr != { 1.2.3.0/24, 5.6.7.8 }`: an anonymous interval set.
    case matchAny(NFField, [NFValue], negated: Bool = false)
    /// `ip daddr . meta l4proto . th dport @n2`: membership in a named set (`!=`: not in it).
    case lookup([NFField], set: String, negated: Bool = false)
    /// `ip daddr . meta l4proto . th dport vmap @service-ips`: verdict from a named map.
    case vmap([NFField], map: String)
    /// `numgen random mod N vmap { 0 : goto a, 1 : goto b }`: equal-weight random choice.
    case numgenVmap([Verdict])
    /// `fib saddr type local` / `fib daddr type local` (field must be saddr or daddr).
    case fibTypeLocal(NFField)
    /// `ct state new`.
    case ctStateNew
    /// `ct state established,related`: a reply or a connection already let through.
    case ctStateEstablishedRelated
    /// `ct mark set <field>` (a mapped field: no match, and no change, when the map has no key).
    case ctMarkSet(NFField)
    /// `icmpv6 type N` (implies `meta l4proto ipv6-icmp`): neighbour discovery in the policy
    /// tables, which must never be filtered.
    case icmpv6Type(UInt8)
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
    /// `dnat ip to <key> map @m`: DNAT to the address and port the data map holds for the key
    /// (no match when the key is absent, and the rule goes on to the next).
    case dnatMap([NFField], map: String)
    /// `ct status dnat`.
    case ctStatusDNAT
    /// `tcp dport != 0`: the transport protocol is `proto` (nft needs this as the dependency of
    /// `ct original proto-dst`, and it keeps the rule re-parsable by nft).
    case protocolPort(L4Protocol)
    /// `update @map { <key> timeout Ts : ip daddr . tcp dport }`: record (or refresh) where this
    /// connection was sent; the data is the packet's destination after DNAT.
    case recordDestination(map: String, key: [NFField], timeout: Int, proto: L4Protocol)
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
        case .lookup(let fs, let s, _): [s] + fs.flatMap(\.mapReferences)
        case .vmap(let fs, let s), .dnatMap(let fs, let s): [s] + fs.flatMap(\.mapReferences)
        case .updateSet(let s, _), .recordDestination(let s, _, _, _): [s]
        case .match(let f, _, _), .matchAny(let f, _, _), .ctMarkSet(let f): f.mapReferences
        default: []
        }
    }
}

extension NFField {
    /// Maps a `mapped` field reads (nested ones too).
    var mapReferences: [String] {
        if case .mapped(let inner, let map) = self { return [map] + inner.mapReferences }
        return []
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
