import IPAddressing
import Netlink

/// The node-local DNS addresses are exempt from connection tracking, as NodeLocal DNSCache
/// does: no conntrack entry means no insertion race on parallel UDP queries (the cause of the
/// 5-second lookups) and no table pressure from DNS. Two raw-priority chains of their own in
/// nodenet's tables, declared in `NodenetTables`; the service proxy leaves them alone.
enum DNSNotrack {
    static let table = NodenetTables.name
    static let chains: [(declaration: NodenetTables.Chain, destination: Bool)] = [
        (NodenetTables.dnsNotrack, true),      // queries arriving for the DNS addresses
        (NodenetTables.dnsNotrackOut, false),  // answers leaving from them
    ]

    static func rules(addresses: [IPAddress], port: UInt16, family: IPFamily, destination: Bool) -> [(comment: String, expressions: [NFTablesExpression])] {
        var out: [(String, [NFTablesExpression])] = []
        for a in addresses where a.family == family {
            let host = IPPrefix(address: a, length: a.family.bitWidth)
            for (name, proto) in [("udp", UInt8(17)), ("tcp", UInt8(6))] {
                let e = NFTablesExpression.match(host, source: !destination)
                    + NFTablesExpression.transportPort(proto, port: port, destination: destination) + [.notrack]
                out.append(("nodenet dns-notrack \(a) \(name)", e))
            }
        }
        return out
    }

    /// Brings both chains to exactly the wanted rules; returns how many rules changed.
    @discardableResult
    static func ensure(session: NetlinkSession, addresses: [IPAddress], port: UInt16) throws(NetlinkError) -> Int {
        var changed = 0
        for family in IPFamily.allCases where addresses.contains(where: { $0.family == family }) {
            for chain in chains {
                changed += try chain.declaration.owned
                    .ensure(session: session, family: family,
                            wanted: rules(addresses: addresses, port: port, family: family, destination: chain.destination))
            }
        }
        return changed
    }
}
