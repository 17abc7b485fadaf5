import ClusterState
import IPAddressing
import Netlink
import ServiceProxy

/// The policy tables (`ip nodenet-policy`, `ip6 nodenet-policy`): fixed chains and rules, and
/// every pod, namespace and policy as elements of the sets below. Packet walk (IPv4; IPv6 alike):
/// ```
/// forward (filter, forward hook, priority 0; bridged pod-to-pod traffic too, br_netfilter)
///     ct state established,related accept
///     ip saddr @local-pods jump eg-tiers     # a local pod sends: Admin tier, then
///     ip daddr @local-pods jump in-tiers     #   eg-np: ip saddr @eg-isolated goto egress,
///                                            #   then Baseline tier (TierTables)
/// input (filter, input hook, priority 0)
///     ip saddr @eg-isolated ip daddr @dns-addresses jump dns   # DNS to the node's responder
/// egress
///     ct mark set ip daddr map @identity ip saddr . ct mark @eg-identity return
///     ct mark set ip daddr map @identity ip saddr . ct mark . meta l4proto . th dport @eg-identity-ports return
///     ct mark set ip daddr map @namespace ip saddr . ct mark @eg-namespace return
///     ct mark set ip daddr map @namespace ip saddr . ct mark . meta l4proto . th dport @eg-namespace-ports return
///     ip saddr . ip daddr @eg-addresses return
///     ip saddr . ip daddr . meta l4proto . th dport @eg-addresses-ports return
///     meta l4proto tcp reject with tcp reset ; reject with icmp admin-prohibited
/// ingress: the same with the destination first and the source's identity, `accept` for `return`
/// dns:   ip saddr . ip daddr . meta l4proto . th dport @eg-dns accept ; reject
/// ```
/// The peer's identity (or namespace) number is parked in the connection's mark by a map lookup
/// and read back by the set lookup of the same rule: a lookup that misses (an address that is no
/// pod) ends the rule, so off-cluster peers only match the address sets. (One lookup with both
/// the map and the set in a concatenation works in the kernel, but nft cannot list such a rule:
/// its delinearizer asserts.) Only new connections get here, so the mark is written once per
/// connection; nothing else in nodenet uses ct mark. DNS queries are untracked (notrack), so
/// the DNS path cannot use ct mark: its allowed (pod, responder address, port) are computed
/// and stored whole in `eg-dns`.
public enum PolicyTables {
    public static let tableName = NodenetTables.policyTableName

    public enum Names {
        public static let forward = "forward"
        public static let input = "input"
        public static let identity = "identity"
        public static let namespace = "namespace"
        public static let dnsAddresses = "dns-addresses"
        public static let dns = "dns"
        public static let localPods = "local-pods"
        public static let dnsAllowed = "eg-dns"
        public static func isolated(_ d: PolicyDirection) -> String { d == .ingress ? "in-isolated" : "eg-isolated" }
        public static func chain(_ d: PolicyDirection) -> String { d == .ingress ? "ingress" : "egress" }
        /// Allow set of a direction for a kind of peer (identity, namespace, addresses), with
        /// or without ports.
        public static func allow(_ d: PolicyDirection, _ kind: String, ports: Bool) -> String {
            (d == .ingress ? "in-" : "eg-") + kind + (ports ? "-ports" : "")
        }
        /// Identity and namespace peers: every port of a protocol, and true port ranges.
        public static func allow(_ d: PolicyDirection, _ kind: String, suffix: String) -> String {
            (d == .ingress ? "in-" : "eg-") + kind + "-" + suffix
        }
    }

    /// The empty tables: chains, rules and sets, no elements.
    public static func skeleton(_ family: TableFamily) -> TableModel {
        var t = TableModel(family: family)
        let addr = NFDataType.address(family)
        func set(_ name: String, _ key: [NFDataType], data: [NFDataType]? = nil, interval: Bool = false) {
            t.sets[name] = NFSet(SetSpec(name, key: key, data: data, interval: interval))
        }
        set(Names.identity, [addr], data: [.mark])
        set(Names.namespace, [addr], data: [.mark])
        set(Names.dnsAddresses, [addr])
        set(Names.dnsAllowed, [addr, addr, .inetProto, .inetService])
        set(Names.localPods, [addr])
        for d in PolicyDirection.allCases {
            set(Names.isolated(d), [addr])
            // Exact keys in hash sets, ranges alone in interval sets: removing an element from a
            // concatenated-range (pipapo) set costs the kernel time in proportion to the whole set
            // (measured: 85% of the agent's CPU in nft_pipapo_remove with 5,000 elements), so
            // only true port ranges (endPort) go there.
            for kind in ["identity", "namespace"] {
                set(Names.allow(d, kind, ports: false), [addr, .mark])
                set(Names.allow(d, kind, suffix: "proto"), [addr, .mark, .inetProto])
                set(Names.allow(d, kind, ports: true), [addr, .mark, .inetProto, .inetService])
                set(Names.allow(d, kind, suffix: "ranges"), [addr, .mark, .inetProto, .inetService], interval: true)
            }
            set(Names.allow(d, "addresses", ports: false), [addr, addr], interval: true)
            set(Names.allow(d, "addresses", ports: true), [addr, addr, .inetProto, .inetService], interval: true)
        }

        t.chains[Names.forward] = forwardChain(family, localSubnets: [])
        t.chains[Names.input] = NFChain(Names.input, base: BaseChainSpec(.filter, .input, priority: 0), rules: [
            NFRule([.lookup([.saddr], set: Names.isolated(.egress)), .lookup([.daddr], set: Names.dnsAddresses),
                    .verdict(.jump(Names.dns))]),
        ])
        t.chains[Names.dns] = NFChain(Names.dns, rules: [
            NFRule([.lookup([.saddr, .daddr, .l4proto, .dport], set: Names.dnsAllowed), .verdict(.accept)]),
            NFRule([.counter, .match(.l4proto, .proto(.tcp)), .reject(.tcpReset)], comment: "dns denied"),
            NFRule([.counter, .reject(.adminProhibited)], comment: "dns denied"),
        ])
        for d in PolicyDirection.allCases {
            // The local pod's address first: the destination for ingress, the source for egress.
            let (localField, peerField): (NFField, NFField) = d == .ingress ? (.daddr, .saddr) : (.saddr, .daddr)
            let pass: Verdict = d == .ingress ? .accept : .return
            var rules: [NFRule] = []
            for kind in ["identity", "namespace"] {
                // The peer's number into the connection's mark (zero first: a lookup that misses
                // leaves the mark alone, and zero is no number), then the sets that read it.
                rules.append(NFRule([.ctMarkSet(.zero)]))
                rules.append(NFRule([.ctMarkSet(.mapped(peerField, map: kind == "identity" ? Names.identity : Names.namespace))]))
                rules.append(NFRule([.lookup([localField, .ctMark], set: Names.allow(d, kind, ports: false)), .verdict(pass)]))
                rules.append(NFRule([.lookup([localField, .ctMark, .l4proto], set: Names.allow(d, kind, suffix: "proto")), .verdict(pass)]))
                rules.append(NFRule([.lookup([localField, .ctMark, .l4proto, .dport], set: Names.allow(d, kind, ports: true)), .verdict(pass)]))
                rules.append(NFRule([.lookup([localField, .ctMark, .l4proto, .dport], set: Names.allow(d, kind, suffix: "ranges")), .verdict(pass)]))
            }
            rules.append(NFRule([.lookup([localField, peerField], set: Names.allow(d, "addresses", ports: false)), .verdict(pass)]))
            rules.append(NFRule([.lookup([localField, peerField, .l4proto, .dport], set: Names.allow(d, "addresses", ports: true)), .verdict(pass)]))
            rules.append(NFRule([.counter, .match(.l4proto, .proto(.tcp)), .reject(.tcpReset)], comment: "\(d.rawValue) denied"))
            rules.append(NFRule([.counter, .reject(.adminProhibited)], comment: "\(d.rawValue) denied"))
            t.chains[Names.chain(d)] = NFChain(Names.chain(d), rules: rules)
        }
        TierTables.addSkeleton(&t)
        return t
    }

    /// The forward chain: replies first, pods being created dropped, then the isolated pods'
    /// checks.
    static func forwardChain(_ family: TableFamily, localSubnets: [IPPrefix]) -> NFChain {
        var rules: [NFRule] = [NFRule([.ctStateEstablishedRelated, .verdict(.accept)])]
        if family == .ip6 {
            // Neighbour discovery between pods on the bridge passes the forward hook too
            // (br_netfilter): never filter it.
            rules += (133...136).map { NFRule([.icmpv6Type(UInt8($0)), .verdict(.accept)]) }
        }
        // A pod being created (an address of the node's pod subnets the tables do not know yet)
        // neither sends nor receives until its ADD has programmed it: fail closed.
        for prefix in localSubnets where TableFamily(prefix.family) == family {
            for field in [NFField.saddr, .daddr] {
                rules.append(NFRule([.match(field, .prefix(prefix.network)), .lookup([field], set: Names.localPods, negated: true), .counter,
                                     .verdict(.drop)], comment: "pod not programmed yet"))
            }
        }
        // Every local pod's new connections pass the tiers (`TierTables`), which end in the
        // NetworkPolicy checks (`eg-np`: `ip saddr @eg-isolated goto egress`). Egress returns
        // when allowed, so a same-node destination's ingress is still checked.
        rules.append(NFRule([.lookup([.saddr], set: Names.localPods), .verdict(.jump(TierTables.Names.tiers(.egress)))]))
        rules.append(NFRule([.lookup([.daddr], set: Names.localPods), .verdict(.jump(TierTables.Names.tiers(.ingress)))]))
        return NFChain(Names.forward, base: BaseChainSpec(.filter, .forward, priority: 0), rules: rules)
    }

    /// The tables with the desired elements.
    public static func model(_ desired: PolicyDesired) -> RulesetModel {
        var model = RulesetModel()
        for family in TableFamily.allCases {
            var t = skeleton(family)
            t.chains[Names.forward] = forwardChain(family, localSubnets: desired.localSubnets)
            let ipFamily = family.ipFamily
            func put(_ set: String, _ key: [NFValue], _ value: ElementValue? = nil) {
                t.sets[set]!.elements[ElementKey(key)] = .some(value)
            }
            for (ip, n) in desired.addressIdentity where ip.family == ipFamily { put(Names.identity, [.address(ip)], .data(ElementKey([.slot(n)]))) }
            for (ip, n) in desired.addressNamespace where ip.family == ipFamily { put(Names.namespace, [.address(ip)], .data(ElementKey([.slot(n)]))) }
            for ip in desired.dnsAddresses where ip.family == ipFamily { put(Names.dnsAddresses, [.address(ip)]) }
            for d in PolicyDirection.allCases { for ip in desired.isolated(d) where ip.family == ipFamily { put(Names.isolated(d), [.address(ip)]) } }
            for ips in desired.localAddresses.values { for ip in ips where ip.family == ipFamily { put(Names.localPods, [.address(ip)]) } }
            var groups: [AllowGroup: [AllowKey]] = [:]
            for key in desired.allows.keys { groups[key.group, default: []].append(key) }
            for (g, keys) in groups {
                for local in desired.localAddresses[g.local] ?? [] where local.family == ipFamily {
                    for e in elements(g, keys, local: local) { put(e.set, e.start, e.end.map { .intervalEnd(ElementKey($0)) }) }
                }
            }
            for ips in desired.localAddresses.values {
                for src in ips where src.family == ipFamily {
                    for e in desired.dnsAllowed(from: src) { put(Names.dnsAllowed, dnsElement(e)) }
                }
            }
            model.tables[family] = t
        }
        return model
    }

    /// The `eg-dns` key of one allowed (source, responder, port).
    static func dnsElement(_ e: (IPAddress, IPAddress, PortRange)) -> [NFValue] {
        [.address(e.0), .address(e.1), .proto(e.2.proto), .port(e.2.first)]
    }

}
