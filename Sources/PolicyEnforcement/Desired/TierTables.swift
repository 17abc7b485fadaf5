import ClusterState
import IPAddressing
import Netlink
import ServiceProxy

/// Packets one ClusterNetworkPolicy Deny rule denied (on this node, both families).
public struct TierDeniedPackets: Sendable, Hashable {
    public var policy: String
    /// The rule's name, else `ingress[i]` / `egress[i]`.
    public var rule: String
    public var packets: UInt64
}

/// The cluster-wide tiers in the policy tables. Packet walk of a new connection (IPv4; IPv6
/// alike), egress for local sources, ingress for local destinations:
/// ```
/// forward:   ip saddr @local-pods jump eg-tiers ; ip daddr @local-pods jump in-tiers
/// eg-tiers:  ct mark set 0 ; ct mark set ip daddr map @identity       # the peer's identity
///            <Admin tier: one rule per (CNP rule, peer kind), in precedence order>
///                Accept: return (allowed; ingress is still checked)   Deny: counter goto tier-deny
///                Pass: goto eg-np
///            goto eg-np
/// eg-np:     ip saddr @eg-isolated goto egress    # NetworkPolicy decides; baseline never seen
///            <Baseline tier>  Accept: return   Deny: counter goto tier-deny   Pass: return
/// in-tiers, in-np: the same with the destination local and the source's identity
/// tier-deny: meta l4proto tcp reject with tcp reset ; reject with icmp admin-prohibited
/// input:     ... . th dport @dns-tier-deny goto tier-deny ; ... @dns-tier-accept accept ; (NP's dns)
/// ```
/// A CNP rule's matches are named sets whose elements follow pods: `cnpN-subject` (local
/// subject addresses), `cnpN-eI-peers` (peer identity numbers, read from the parked ct mark),
/// `cnpN-eI-nets` (subject . network range), `cnpN-eI-ports` (protocol . port range),
/// `cnpN-eI-named` (identity or local address . protocol . port), `cnpN-eI-netnamed` (pod
/// address . protocol . port). A pod start or label change is elements; a CNP add, edit or
/// delete rewrites these five small chains and its own sets.
public enum TierTables {
    public enum Names {
        public static let deny = "tier-deny"
        public static let dnsAccept = "dns-tier-accept"
        public static let dnsDeny = "dns-tier-deny"
        public static func tiers(_ d: PolicyDirection) -> String { d == .ingress ? "in-tiers" : "eg-tiers" }
        public static func np(_ d: PolicyDirection) -> String { d == .ingress ? "in-np" : "eg-np" }
        public static func subject(_ n: UInt32) -> String { "cnp\(n)-subject" }
        public static func rule(_ n: UInt32, _ d: PolicyDirection, _ i: Int, _ kind: String) -> String {
            "cnp\(n)-\(d == .ingress ? "i" : "e")\(i)-\(kind)"
        }
        static let chains = [tiers(.egress), tiers(.ingress), np(.egress), np(.ingress), deny]
    }

    static func local(_ d: PolicyDirection) -> NFField { d == .ingress ? .daddr : .saddr }
    static func peer(_ d: PolicyDirection) -> NFField { d == .ingress ? .saddr : .daddr }

    /// Adds the tier chains (no CNP rules) and the DNS sets to a policy table's skeleton.
    static func addSkeleton(_ t: inout TableModel) {
        let addr = NFDataType.address(t.family)
        for name in [Names.dnsAccept, Names.dnsDeny] {
            t.sets[name] = NFSet(SetSpec(name, key: [addr, addr, .inetProto, .inetService]))
        }
        for c in chains(TierDesired(), t.family) { t.chains[c.name] = c }
        // DNS queries are untracked (no mark to park an identity in): their tier verdicts are
        // precomputed per (pod, responder, protocol), before NetworkPolicy's own dns chain.
        let key: [NFField] = [.saddr, .daddr, .l4proto, .dport]
        t.chains[PolicyTables.Names.input]!.rules!.insert(contentsOf: [
            NFRule([.lookup(key, set: Names.dnsDeny), .counter, .verdict(.goto(Names.deny))], comment: "dns denied by a tier"),
            NFRule([.lookup(key, set: Names.dnsAccept), .verdict(.accept)], comment: "dns accepted by the admin tier"),
        ], at: 0)
    }

    /// The five tier chains for the policies in `desired`.
    static func chains(_ desired: TierDesired, _ family: TableFamily) -> [NFChain] {
        var out: [NFChain] = []
        for d in PolicyDirection.allCases {
            var tiers: [NFRule] = [NFRule([.ctMarkSet(.zero)]),
                                   NFRule([.ctMarkSet(.mapped(peer(d), map: PolicyTables.Names.identity))])]
            var np: [NFRule] = [NFRule([.lookup([local(d)], set: PolicyTables.Names.isolated(d)),
                                        .verdict(.goto(PolicyTables.Names.chain(d)))])]
            for tier in ClusterNetworkPolicy.Tier.allCases {
                for name in desired.order[tier] ?? [] {
                    guard let p = desired.policies[name], let n = desired.numbers[name] else { continue }
                    for (i, rule) in TierDesired.rules(p, d).enumerated() {
                        let r = rules(p, n, d, i, rule)
                        if tier == .admin { tiers += r } else { np += r }
                    }
                }
            }
            tiers.append(NFRule([.verdict(.goto(Names.np(d)))]))
            out.append(NFChain(Names.tiers(d), rules: tiers))
            out.append(NFChain(Names.np(d), rules: np))
        }
        out.append(NFChain(Names.deny, rules: [
            NFRule([.match(.l4proto, .proto(.tcp)), .reject(.tcpReset)]),
            NFRule([.reject(.adminProhibited)]),
        ]))
        return out
    }

    /// The nft rules of one CNP rule: one per kind of peer match, all with its verdict.
    static func rules(_ p: ClusterNetworkPolicy, _ n: UInt32, _ d: PolicyDirection, _ i: Int,
                      _ rule: ClusterNetworkPolicy.Rule) -> [NFRule] {
        let verdict: [NFExpression] = switch (rule.action, p.tier) {
        case (.deny, _): [.counter, .verdict(.goto(Names.deny))]
        case (.accept, _), (.pass, .baseline): [.verdict(.return)]
        case (.pass, .admin): [.verdict(.goto(Names.np(d)))]
        }
        let comment = Self.comment(p, d, i, rule)
        let subject = NFExpression.lookup([local(d)], set: Names.subject(n))
        if rule.matchesEverything { return [NFRule([subject] + verdict, comment: comment)] }
        let ports: [NFExpression]? = rule.protocols.isEmpty ? [] : rule.portRanges.isEmpty ? nil
            : [.lookup([.l4proto, .dport], set: Names.rule(n, d, i, "ports"))]
        let named = !rule.namedPorts.isEmpty
        var out: [[NFExpression]] = []
        if rule.hasSelectorPeers {
            let peers = NFExpression.lookup([.ctMark], set: Names.rule(n, d, i, "peers"))
            if let ports { out.append([subject, peers] + ports) }
            if named {
                out.append(d == .egress
                    ? [subject, .lookup([.ctMark, .l4proto, .dport], set: Names.rule(n, d, i, "named"))]
                    : [.lookup([.daddr, .l4proto, .dport], set: Names.rule(n, d, i, "named")), peers])
            }
        }
        if d == .egress, !rule.networks.isEmpty {
            if let ports { out.append([.lookup([.saddr, .daddr], set: Names.rule(n, d, i, "nets"))] + ports) }
            if named { out.append([subject, .lookup([.daddr, .l4proto, .dport], set: Names.rule(n, d, i, "netnamed"))]) }
        }
        return out.map { NFRule($0 + verdict, comment: comment) }
    }

    /// The comment of a CNP rule's nft rules (what `nft list` shows, and how `deniedPackets`
    /// finds them again).
    static func comment(_ p: ClusterNetworkPolicy, _ d: PolicyDirection, _ i: Int, _ rule: ClusterNetworkPolicy.Rule) -> String {
        String("cnp \(p.name) \(rule.label(d, i)) \(rule.action.rawValue)".prefix(200))
    }

    /// Packets each ClusterNetworkPolicy Deny rule denied, from the kernel's counters of the tier
    /// chains (`counter` precedes every Deny verdict): the rules of both families' tables as a
    /// rule dump returns them (`NetlinkSession.nftablesRules`), matched by their comment (the
    /// kernel keeps 127 bytes of it). For a metric `{policy, rule}`; a rule whose comment is no
    /// current Deny rule's is left out.
    public static func deniedPackets(_ records: [NFTablesRuleRecord], _ desired: TierDesired) -> [TierDeniedPackets] {
        var byComment: [[UInt8]: TierRuleID] = [:]
        for (name, p) in desired.policies {
            for d in PolicyDirection.allCases {
                for (i, rule) in TierDesired.rules(p, d).enumerated() where rule.action == .deny {
                    byComment[Array(comment(p, d, i, rule).utf8.prefix(127))] = TierRuleID(policy: name, direction: d, index: i)
                }
            }
        }
        var sums: [TierRuleID: UInt64] = [:]
        for r in records where Names.chains.contains(r.chain) {
            guard let packets = r.counterPackets, let text = r.userDataValue(type: 0),
                  let id = byComment[Array(text.prefix { $0 != 0 })] else { continue }
            sums[id, default: 0] += packets
        }
        return sums.sorted { $0.key < $1.key }.map { id, packets in
            let rule = TierDesired.rules(desired.policies[id.policy]!, id.direction)[id.index]
            return TierDeniedPackets(policy: id.policy, rule: rule.name ?? "\(id.direction.rawValue)[\(id.index)]", packets: packets)
        }
    }

    /// The sets of one policy (empty but for the static port ranges).
    static func sets(_ p: ClusterNetworkPolicy, _ n: UInt32, _ family: TableFamily) -> [NFSet] {
        let addr = NFDataType.address(family)
        var out = [NFSet(SetSpec(Names.subject(n), key: [addr]))]
        for d in PolicyDirection.allCases {
            for (i, rule) in TierDesired.rules(p, d).enumerated() where !rule.matchesEverything {
                func set(_ kind: String, _ key: [NFDataType], interval: Bool = false) -> NFSet {
                    NFSet(SetSpec(Names.rule(n, d, i, kind), key: key, interval: interval))
                }
                let ranges = rule.portRanges
                if !ranges.isEmpty {
                    var s = set("ports", [.inetProto, .inetService], interval: true)
                    for proto in L4Protocol.allCases {
                        for r in PolicyTables.mergedPorts(ranges.filter { $0.proto == proto }) {
                            s.elements[ElementKey([.proto(proto), .port(r.first)])] = .some(.intervalEnd(ElementKey([.proto(proto), .port(r.last)])))
                        }
                    }
                    out.append(s)
                }
                let named = !rule.namedPorts.isEmpty
                if rule.hasSelectorPeers {
                    out.append(set("peers", [.mark]))
                    if named { out.append(set("named", [d == .egress ? .mark : addr, .inetProto, .inetService])) }
                }
                if d == .egress, !rule.networks.isEmpty {
                    out.append(set("nets", [addr, addr], interval: true))
                    if named { out.append(set("netnamed", [addr, .inetProto, .inetService])) }
                }
            }
        }
        return out
    }

    // MARK: elements (one function per kind of fact, shared by the engine and `part`)

    typealias Element = (set: String, key: ElementKey, value: ElementValue?)

    /// A local address is a subject of policy number `n`: its subject element and its
    /// `subject . network` ranges.
    static func subjectElements(_ p: ClusterNetworkPolicy, _ n: UInt32, _ a: IPAddress) -> [Element] {
        var out: [Element] = [(Names.subject(n), ElementKey([.address(a)]), nil)]
        for (i, rule) in p.egress.enumerated() where !rule.matchesEverything && !rule.networks.isEmpty {
            for r in rule.networkRanges(a.family) {
                out.append((Names.rule(n, .egress, i, "nets"), ElementKey([.address(a), .address(r.first)]),
                            .intervalEnd(ElementKey([.address(a), .address(r.last)]))))
            }
        }
        return out
    }

    static func peerElement(_ n: UInt32, _ id: TierRuleID, _ identity: UInt32) -> Element {
        (Names.rule(n, id.direction, id.index, "peers"), ElementKey([.slot(identity)]), nil)
    }

    static func namedPeerElement(_ n: UInt32, _ id: TierRuleID, _ k: IdentityPort) -> Element {
        (Names.rule(n, id.direction, id.index, "named"), ElementKey([.slot(k.identity), .proto(k.proto), .port(k.port)]), nil)
    }

    static func addressPortElement(_ n: UInt32, _ id: TierRuleID, _ kind: String, _ k: AddressPort) -> Element {
        (Names.rule(n, id.direction, id.index, kind), ElementKey([.address(k.address), .proto(k.proto), .port(k.port)]), nil)
    }

    static func dnsElement(_ set: String, _ k: DNSKey) -> Element {
        (set, ElementKey([.address(k.source), .address(k.responder), .proto(k.proto), .port(53)]), nil)
    }

    /// Every tier chain and set of one family, with the elements `desired` holds: what the
    /// engine's incremental model must equal.
    static func part(_ desired: TierDesired, _ family: TableFamily) -> TableModel {
        var t = TableModel(family: family)
        for c in chains(desired, family) { t.chains[c.name] = c }
        let addr = NFDataType.address(family)
        for name in [Names.dnsAccept, Names.dnsDeny] { t.sets[name] = NFSet(SetSpec(name, key: [addr, addr, .inetProto, .inetService])) }
        for (name, p) in desired.policies {
            guard let n = desired.numbers[name] else { continue }
            for s in sets(p, n, family) { t.sets[s.name] = s }
        }
        let fam = family.ipFamily
        func put(_ e: Element) { t.sets[e.set]!.elements[e.key] = .some(e.value) }
        for (name, addrs) in desired.subjects {
            guard let p = desired.policies[name], let n = desired.numbers[name] else { continue }
            for a in addrs where a.family == fam { subjectElements(p, n, a).forEach(put) }
        }
        for (id, ids) in desired.peers { if let n = desired.numbers[id.policy] { for i in ids { put(peerElement(n, id, i)) } } }
        for (id, ks) in desired.namedPeers { if let n = desired.numbers[id.policy] { for k in ks { put(namedPeerElement(n, id, k)) } } }
        for (id, ks) in desired.namedLocal {
            if let n = desired.numbers[id.policy] { for k in ks where k.address.family == fam { put(addressPortElement(n, id, "named", k)) } }
        }
        for (id, ks) in desired.networkPods {
            if let n = desired.numbers[id.policy] { for k in ks where k.address.family == fam { put(addressPortElement(n, id, "netnamed", k)) } }
        }
        for k in desired.dnsAccept where k.source.family == fam { put(dnsElement(Names.dnsAccept, k)) }
        for k in desired.dnsDeny where k.source.family == fam { put(dnsElement(Names.dnsDeny, k)) }
        return t
    }

    /// The tier part laid over the policy tables (its chains and sets replace the skeleton's).
    static func merge(_ part: [TableFamily: TableModel], into model: inout RulesetModel) {
        for (family, p) in part {
            for (name, c) in p.chains { model.tables[family]?.chains[name] = c }
            for (name, s) in p.sets { model.tables[family]?.sets[name] = s }
        }
    }

    /// The whole tables for NetworkPolicy's and the tiers' desired state.
    public static func model(_ np: PolicyDesired, _ tiers: TierDesired) -> RulesetModel {
        var m = PolicyTables.model(np)
        merge(Dictionary(uniqueKeysWithValues: TableFamily.allCases.map { ($0, part(tiers, $0)) }), into: &m)
        return m
    }
}
