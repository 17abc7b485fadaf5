// Masquerade for pod traffic leaving the cluster, in nodenet's own nftables tables:
//     table ip nodenet { chain pod-egress { type nat hook postrouting priority srcnat; policy accept;
//         ip saddr 10.244.0.0/16 ip daddr != 10.244.0.0/16 masquerade comment "nodenet pod-egress 10.244.0.0/16" } }
// Pod-to-pod traffic (also across nodes) keeps its source. Idempotent: the chain is listed
// first and only missing rules are added (and rules of ours nobody wants removed), in one
// transaction; the table's other chains are never touched.
//
// The rules are a kernel object set of their own, not part of the routes pass: the agent runs
// `reconcile` in the one reconciler shape (KernelReconcileLoop: periodic full pass, backoff
// while a chain fails, one status per rule, errors logged once), with a status row of its own.
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

    /// How status names the rule for one source cluster CIDR ("ip nodenet pod-egress 10.244.0.0/16").
    public static func objectName(_ source: IPPrefix) -> String {
        "\(source.family == .v4 ? "ip" : "ip6") \(table) \(chain) \(source.network)"
    }

    /// One pass: each family's chain brought to the wanted rules (a family that fails does not
    /// keep the other from being repaired). One status per rule (kind "rule"), in error with
    /// its chain's error, and how many rules were added or removed: after the first pass,
    /// rules someone changed behind nodenet's back. Blocking (netlink): call it off the
    /// cooperative pool. `session` nil: no netfilter netlink here, every rule in error.
    public static func reconcile(session: NetlinkSession?, clusterCIDRs: [IPPrefix]) -> (objects: [KernelObjectStatus], changed: Int) {
        var objects: [KernelObjectStatus] = []
        var changed = 0
        for family in IPFamily.allCases {
            let cidrs = clusterCIDRs.filter { $0.family == family }
            guard !cidrs.isEmpty else { continue }
            var error: String?
            if let session {
                do {
                    changed += try owned.ensure(session: session, family: family, wanted: wanted(family: family, clusterCIDRs: cidrs))
                } catch let e {
                    error = "\(e)"
                }
            } else {
                error = "no nftables netlink session"
            }
            objects += cidrs.map { KernelObjectStatus(kind: "rule", name: objectName($0), error: error) }
        }
        return (objects, changed)
    }
}
