// Masquerade for pod traffic leaving the cluster, in nodenet's own nftables tables:
//     table ip nodenet { chain pod-egress { type nat hook postrouting priority srcnat; policy accept;
//         ip saddr 10.244.0.0/16 ip daddr != 10.244.0.0/16 masquerade comment "nodenet pod-egress 10.244.0.0/16" } }
// Pod-to-pod traffic (also across nodes) keeps its source. Idempotent: the chain is listed
// first and only missing rules are added (and rules of ours nobody wants removed), in one
// transaction; the table's other chains are never touched.
import IPAddressing
import Netlink

public enum Masquerade {
    public static let table = NodenetTables.name
    public static let chain = NodenetTables.podEgress.name
    static let commentPrefix = "nodenet pod-egress "

    /// The rule for one source cluster CIDR: from it, to none of the family's cluster CIDRs.
    public static func rule(source: IPPrefix, clusterCIDRs: [IPPrefix]) -> (comment: String, expressions: [NFTablesExpression]) {
        var e = NFTablesExpression.match(source, source: true)
        for c in clusterCIDRs where c.family == source.family {
            e += NFTablesExpression.match(c, source: false, negated: true)
        }
        e.append(.masquerade)
        return (commentPrefix + source.description, e)
    }

    static let owned = NodenetTables.podEgress.owned

    /// The requests that bring one family's chain to the wanted rules, given what it holds.
    /// Empty when nothing needs to change.
    public static func plan(family: IPFamily, clusterCIDRs: [IPPrefix], existing: [NFTablesRule]) -> [NetlinkRequest] {
        owned.plan(family: family, wanted: wanted(family: family, clusterCIDRs: clusterCIDRs), existing: existing)
    }

    static func wanted(family: IPFamily, clusterCIDRs: [IPPrefix]) -> [(comment: String, expressions: [NFTablesExpression])] {
        let cidrs = clusterCIDRs.filter { $0.family == family }
        return cidrs.map { rule(source: $0.network, clusterCIDRs: cidrs) }
    }

    /// Makes sure table, chain and rules exist; returns how many rules it added or removed.
    @discardableResult
    public static func ensure(session: NetlinkSession, clusterCIDRs: [IPPrefix]) throws(NetlinkError) -> Int {
        var changed = 0
        for family in IPFamily.allCases where clusterCIDRs.contains(where: { $0.family == family }) {
            changed += try owned.ensure(session: session, family: family, wanted: wanted(family: family, clusterCIDRs: clusterCIDRs))
        }
        return changed
    }
}
