import ClusterState
import IPAddressing

// The vocabulary of nodenet's nftables model: values, fields, verdicts. Kept free of any
// text or netlink encoding so the nft renderer and the netlink encoder read the same model.

/// The table families nodenet programs: one `nodenet` table per IP family.
public enum TableFamily: String, Hashable, Sendable, CaseIterable, Comparable {
    case ip
    case ip6

    public init(_ family: IPFamily) { self = family == .v4 ? .ip : .ip6 }

    public var ipFamily: IPFamily { self == .ip ? .v4 : .v6 }

    /// The loopback network NodePorts never answer on (kube-proxy does not set route_localnet).
    public var loopback: IPPrefix { self == .ip ? IPPrefix("127.0.0.0/8")! : IPPrefix("::1/128")! }

    public static func < (a: Self, b: Self) -> Bool { a.rawValue < b.rawValue }
}

/// A constant on the right-hand side of a match, or one component of a set element key.
public enum NFValue: Hashable, Sendable, Comparable, CustomStringConvertible {
    case address(IPAddress)
    case prefix(IPPrefix)
    case proto(L4Protocol)
    case port(UInt16)
    /// An endpoint slot (`numgen random mod N` yields 0..N-1, a host-order integer).
    case slot(UInt32)

    public var description: String {
        switch self {
        case .address(let a): a.description
        case .prefix(let p): p.description
        case .proto(let p): p.nftName
        case .port(let p): String(p)
        case .slot(let n): String(n)
        }
    }

    private var rank: Int {
        switch self { case .address: 0; case .prefix: 1; case .proto: 2; case .port: 3; case .slot: 4 }
    }

    public static func < (a: Self, b: Self) -> Bool {
        switch (a, b) {
        case (.address(let x), .address(let y)): x < y
        case (.prefix(let x), .prefix(let y)): (x.address, x.length) < (y.address, y.length)
        case (.proto(let x), .proto(let y)): x.number < y.number
        case (.port(let x), .port(let y)): x < y
        case (.slot(let x), .slot(let y)): x < y
        default: a.rank < b.rank
        }
    }
}

extension L4Protocol {
    /// nftables' spelling (`inet_proto` symbols).
    public var nftName: String {
        switch self { case .tcp: "tcp"; case .udp: "udp"; case .sctp: "sctp" }
    }
}

/// Data types of set keys (concatenated) and map values.
public enum NFDataType: String, Hashable, Sendable {
    case ipv4Addr = "ipv4_addr"
    case ipv6Addr = "ipv6_addr"
    case inetProto = "inet_proto"
    case inetService = "inet_service"
    /// A 4-byte host-order integer (the endpoint slot of `numgen random mod N`).
    case integer
    /// nft's `mark` type: a 4-byte host-order integer that nft accepts in a concatenation (the
    /// policy tables' identity numbers, which a map lookup writes into a register).
    case mark
    case verdict

    public static func address(_ family: TableFamily) -> Self { family == .ip ? .ipv4Addr : .ipv6Addr }
}

/// Packet fields the rules read. The IP header fields are rendered per table family.
public enum NFField: Hashable, Sendable {
    case saddr
    case daddr
    /// `meta l4proto`: the transport protocol after IPv6 extension headers.
    case l4proto
    /// `th dport`: the destination port of TCP, UDP and SCTP alike (same header offset).
    case dport
    case mark
    /// `ct original ip daddr`: the address the client used (a ClusterIP, after DNAT).
    case ctOriginalDaddr
    /// `ct original proto-dst`: the port the client used.
    case ctOriginalDport
    /// `numgen random mod N`: a random slot 0..N-1, as the last field of a map key.
    case numgen(UInt32)
    /// `ip saddr map @m`: the 4-byte data the map holds for the field's value (the policy
    /// tables' identity of an address). No match when the map has no such key: the rule ends
    /// there, as any failed lookup.
    indirect case mapped(NFField, map: String)
    /// `ct mark`: the connection's mark (the policy tables park a peer's identity there
    /// between a map lookup and the set lookup that reads it).
    case ctMark
}

public enum Verdict: Hashable, Sendable, CustomStringConvertible {
    case accept
    case drop
    case `return`
    case jump(String)
    case goto(String)

    public var description: String {
        switch self {
        case .accept: "accept"
        case .drop: "drop"
        case .return: "return"
        case .jump(let c): "jump \(c)"
        case .goto(let c): "goto \(c)"
        }
    }

    /// The chain this verdict refers to (the kernel counts these references).
    public var chain: String? {
        switch self {
        case .jump(let c), .goto(let c): c
        default: nil
        }
    }
}

public enum RejectKind: Hashable, Sendable {
    /// TCP RST: the client sees "connection refused" at once.
    case tcpReset
    /// ICMP(v6) port unreachable: refused for UDP and SCTP.
    case portUnreachable
    /// ICMP(v6) administratively prohibited: refused by a filter (network policy).
    case adminProhibited
}
