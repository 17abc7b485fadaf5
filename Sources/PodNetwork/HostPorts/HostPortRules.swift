// Host ports (the CNI `portMappings` capability) as nftables rules in nodenet's own tables:
//     table ip nodenet {
//       chain hostports-hairpin { type nat hook prerouting priority dstnat - 2; policy accept;
//         fib daddr type local meta l4proto tcp th dport 8080 ip saddr 10.244.1.0/24 meta mark set mark | 0x4000
//           comment "c1/eth0 tcp *:8080>10.244.1.5:80 from 10.244.1.0/24" }
//       chain hostports { type nat hook prerouting priority dstnat - 1; policy accept;
//         fib daddr type local meta l4proto tcp th dport 8080 dnat to 10.244.1.5:80 comment "c1/eth0 tcp *:8080>10.244.1.5:80" }
//       chain hostports-output { type nat hook output priority dstnat - 1; policy accept;
//         fib daddr type local ip daddr != 127.0.0.0/8 meta l4proto tcp th dport 8080 dnat to 10.244.1.5:80 comment "…" } }
// Before the service proxy's dispatch (dstnat): the first nat chain that translates a
// connection ends the nat hook for it, so a host port wins over a NodePort on the same port.
// The hairpin mark is the proxy's masquerade mark; it sits in a chain of its own, at a lower
// priority, so that its rules never depend on their position relative to the DNAT rules (an
// owned chain appends what is missing, it does not reorder).
import ClusterState
import IPAddressing
import Netlink

public enum HostPortRules {
    public static let table = NodenetTables.name
    /// The mark the service proxy's nat-postrouting masquerades (`NodenetTables`).
    public static let masqueradeMark: UInt32 = NodenetTables.masqueradeMark

    public enum Role: Sendable, CaseIterable {
        /// Marks for masquerade what a pod of this node sends to a host port.
        case hairpin
        /// DNAT of traffic arriving at the node.
        case dnat
        /// DNAT of connections the node itself opens to its own addresses.
        case output

        /// The chain's declaration in `NodenetTables` (name, hook, owner).
        public var declaration: NodenetTables.Chain {
            switch self {
            case .hairpin: NodenetTables.hostPortsHairpin
            case .dnat: NodenetTables.hostPorts
            case .output: NodenetTables.hostPortsOutput
            }
        }

        public var chain: String { declaration.name }
        public var hook: NFTablesHook { declaration.hook }
        public var owned: NFTablesOwnedChain { declaration.owned }
    }

    /// The chains this module owns in nodenet's tables (for the proxy's `foreignObjects`).
    public static var chainNames: [String] { Role.allCases.map(\.chain) }

    public typealias Rule = (comment: String, expressions: [NFTablesExpression])

    /// One forwarded port of one attachment in one family.
    struct Target {
        var attachment: String
        var mapping: PodAttachment.PortMapping
        var podIP: IPAddress

        var comment: String {
            let host = mapping.hostIP.map { Self.endpoint($0, mapping.hostPort) } ?? "*:\(mapping.hostPort)"
            return "\(attachment) \(mapping.protocol.rawValue.lowercased()) \(host)>\(Self.endpoint(podIP, mapping.containerPort))"
        }

        static func endpoint(_ a: IPAddress, _ port: UInt16) -> String { a.family == .v4 ? "\(a):\(port)" : "[\(a)]:\(port)" }
    }

    /// Every (attachment, mapping, pod address) of `family`, in a stable order. A mapping
    /// without hostIP applies to each family the pod has an address in; one with a hostIP only
    /// to that address's family.
    static func targets(_ bindings: [HostPortBinding], family: IPFamily) -> [Target] {
        bindings.sorted { $0.key < $1.key }.flatMap { b -> [Target] in
            guard let podIP = b.ips.first(where: { $0.family == family })?.address else { return [] }
            return b.mappings.filter { ($0.hostIP?.family ?? family) == family }
                .map { Target(attachment: b.key, mapping: $0, podIP: podIP) }
        }
    }

    /// The wanted rules of one chain in one family.
    public static func rules(_ role: Role, family: IPFamily, bindings: [HostPortBinding], podCIDRs: [IPPrefix]) -> [Rule] {
        let subnets = podCIDRs.filter { $0.family == family }.map(\.network)
        return targets(bindings, family: family).flatMap { t -> [Rule] in
            let match = destination(t.mapping.hostIP, family: family, local: role == .output)
                + NFTablesExpression.transportPort(t.mapping.protocol.number, port: t.mapping.hostPort, destination: true)
            switch role {
            case .hairpin:
                return subnets.map { s in
                    ("\(t.comment) from \(s)", match + NFTablesExpression.match(s, source: true) + markForMasquerade)
                }
            case .dnat, .output:
                return [(t.comment, match + dnat(t.podIP, port: t.mapping.containerPort))]
            }
        }
    }

    /// hostIP, else any local address (`fib daddr type local`); from the node itself not the
    /// loopback addresses (DNAT of a loopback source to a pod would need route_localnet and
    /// SNAT, as portmap's `snat` option does; not supported).
    static func destination(_ hostIP: IPAddress?, family: IPFamily, local: Bool) -> [NFTablesExpression] {
        if let hostIP { return NFTablesExpression.match(IPPrefix(address: hostIP, length: family.bitWidth), source: false) }
        let r1 = NFTablesExpression.register1
        var e: [NFTablesExpression] = [.fibAddressType(source: false, dreg: r1), .cmp(sreg: r1, equal: true, data: host32(2 /* RTN_LOCAL */))]
        if local { e += NFTablesExpression.match(loopback(family), source: false, negated: true) }
        return e
    }

    static func loopback(_ family: IPFamily) -> IPPrefix {
        family == .v4 ? IPPrefix("127.0.0.0/8")! : IPPrefix("::1/128")!
    }

    /// `meta mark set mark | 0x4000`.
    static var markForMasquerade: [NFTablesExpression] {
        let r1 = NFTablesExpression.register1
        return [.meta(.mark, dreg: r1), .bitwise(sreg: r1, dreg: r1, mask: host32(~masqueradeMark), xor: host32(masqueradeMark)),
                .metaSet(.mark, sreg: r1)]
    }

    /// `dnat to ADDRESS:PORT` (address in register 1, port in register 2, as nft encodes it).
    static func dnat(_ address: IPAddress, port: UInt16) -> [NFTablesExpression] {
        let r1 = NFTablesExpression.register1
        return [.immediate(dreg: r1, data: address.bytes), .immediate(dreg: r1 + 1, data: [UInt8(port >> 8), UInt8(port & 0xff)]),
                .nat(destination: true, family: address.family, addressRegister: r1, portRegister: r1 + 1)]
    }

    /// A u32 in host byte order, as the kernel compares meta and fib results.
    static func host32(_ v: UInt32) -> [UInt8] { withUnsafeBytes(of: v) { Array($0) } }
}
