import ClusterState

// The fixed part of each family's table: base chains, the dispatch chains and the named sets
// and maps. Every Service and EndpointSlice lives in elements of these sets and maps only (see
// the README's "Ruleset shape" and ../shared/reference/service-scale.md for the kernel facts):
// adding a rule or a jump/goto verdict-map element makes the kernel re-validate the whole
// table at commit, adding or deleting a set or data-map element does not.

/// Names of the shared chains, sets and maps.
public enum SharedName {
    /// `tuple . slot -> endpoint address . port`: the endpoints a tuple (ClusterIP, external
    /// IP, LB IP or node IP, with protocol and port) load-balances over, slots 0..N-1.
    public static let backends = "backends"
    /// The same for node-local endpoints (externalTrafficPolicy Local from outside).
    public static let backendsLocal = "backends-local"
    /// ClusterIP tuples masqueraded when the source is not a pod (iTP Cluster).
    public static let clusterMasquerade = "cluster-masq"
    /// Every external tuple (external IPs, LB IPs, NodePorts) with endpoints: one lookup sends
    /// them to the `external` chain, so a ClusterIP connection passes a single lookup before the
    /// load-balancing chain. Those not in `ext-local` (eTP Cluster) are masqueraded there.
    public static let external = "ext"
    /// External tuples with eTP Local: local endpoints for outside clients.
    public static let externalLocal = "ext-local"
    /// Tuples without a usable endpoint: refused (TCP RST, ICMP port unreachable).
    public static let noEndpointReject = "no-ep-reject"
    /// Tuples whose policy (Local) leaves no endpoint on this node: dropped, as kube-proxy does.
    public static let noEndpointDrop = "no-ep-drop"
    /// LB tuples with loadBalancerSourceRanges, and the allowed `lb ip . port . source range`.
    public static let firewallTuples = "fw-tuples"
    public static let firewallAllow = "fw-allow"
    /// `endpoint . endpoint`: a pod reaching itself through a service is masqueraded.
    public static let hairpin = "hairpin"
    public static let clusterIPs = "cluster-ips"
    /// `client . tuple -> endpoint`, written from the packet path (ClientIP affinity).
    public static let affinity = "affinity"

    /// Tuples with `count` endpoints in `backends` (`n3`) or `backends-local` (`ln3`).
    public static func count(_ count: Int, local: Bool) -> String { (local ? "ln" : "n") + String(count) }
    /// Tuples with ClientIP affinity of `seconds`.
    public static func affinityTimeout(_ seconds: Int) -> String { "aff-\(seconds)s" }

    public static let services = "services"
    public static let clusterLB = "cluster-lb"
    public static let externalChain = "external"
    public static let externalLocalChain = "external-local"
    public static let forwardChecks = "forward-checks"
    public static let serviceEndpointsCheck = "service-endpoints-check"
    public static let rejectChain = "reject-chain"
    public static let clusterIPsCheck = "cluster-ips-check"
    public static let masquerading = "masquerading"
    public static let natPostrouting = "nat-postrouting"
    public static let natInput = "nat-input"
    public static let filterOutput = "filter-output"

    /// The chains whose rules depend on which endpoint counts and affinity timeouts are in use.
    static let countedChains = [clusterLB, externalLocalChain, natPostrouting, natInput]
}

enum Priority {
    static let dstnat = -100
    static let srcnat = 100
}

/// Endpoint counts whose sets and rules always exist: a service moving between these changes
/// elements only. Larger counts (and other affinity timeouts) add one set and one rule when
/// first used, which costs a validation of this small table (about 0.05 ms), never the cluster.
public enum CountRules {
    public static let cluster = 16
    public static let local = 4
    /// kube-proxy's default sessionAffinityConfig.clientIP.timeoutSeconds.
    public static let defaultAffinityTimeout = 10800
}

/// The element shapes every family uses.
struct TupleTypes {
    let family: TableFamily
    var address: NFDataType { .address(family) }
    var tuple: [NFDataType] { [address, .inetProto, .inetService] }
    var endpoint: [NFDataType] { [address, .inetService] }
    var tupleFields: [NFField] { [.daddr, .l4proto, .dport] }

    /// The typeof nft needs to print and parse `... . numgen random mod N map @backends`
    /// (a plain `type` with `integer` is refused in a concatenation by nft 1.0.6). The data is
    /// `th dport` (not `tcp dport`: nft would then add a `meta l4proto tcp` dependency to every
    /// rule using the map and UDP would never match).
    var backendsTypeof: String {
        let a = family.rawValue
        return "\(a) daddr . meta l4proto . th dport . numgen random mod 2 : \(a) daddr . th dport"
    }

    func backendsSpec(_ name: String) -> SetSpec {
        SetSpec(name, key: tuple + [.integer], data: endpoint, typeof: backendsTypeof)
    }
}

func skeleton(_ family: TableFamily, _ config: ProxyConfiguration) -> TableModel {
    typealias N = SharedName
    var t = TableModel(family: family)
    let types = TupleTypes(family: family)
    let addr = types.address
    for spec in [
        types.backendsSpec(N.backends),
        types.backendsSpec(N.backendsLocal),
        SetSpec(N.clusterMasquerade, key: types.tuple),
        SetSpec(N.external, key: types.tuple),
        SetSpec(N.externalLocal, key: types.tuple),
        SetSpec(N.noEndpointReject, key: types.tuple),
        SetSpec(N.noEndpointDrop, key: types.tuple),
        SetSpec(N.firewallTuples, key: types.tuple),
        SetSpec(N.firewallAllow, key: [addr, .inetService, addr], interval: true),
        SetSpec(N.hairpin, key: [addr, addr]),
        SetSpec(N.clusterIPs, key: [addr]),
        SetSpec(N.affinity, key: [addr] + types.tuple, data: types.endpoint, timeout: CountRules.defaultAffinityTimeout),
    ] {
        t.sets[spec.name] = NFSet(spec)
    }
    for n in 1...CountRules.cluster { t.sets[N.count(n, local: false)] = NFSet(SetSpec(N.count(n, local: false), key: types.tuple)) }
    for n in 1...CountRules.local { t.sets[N.count(n, local: true)] = NFSet(SetSpec(N.count(n, local: true), key: types.tuple)) }

    func chain(_ name: String, _ base: BaseChainSpec? = nil, _ rules: [NFRule]) {
        t.chains[name] = NFChain(name, base: base, rules: rules)
    }
    let tuple = types.tupleFields
    let newOnly = NFExpression.ctStateNew
    let mark = config.masqueradeMark
    // Reject is refused in prerouting on old kernels: endpoint checks hang off input, forward, output.
    // Every packet of every flow passes these base chains: one `ct state new` compare each, the
    // rest only for new connections. (loadBalancerSourceRanges are checked in the `external`
    // chain, on the nat hooks that only a connection's first packet reaches, rather than in a
    // filter prerouting chain that every packet would pass.)
    chain("filter-input", BaseChainSpec(.filter, .input, priority: Priority.dstnat - 10),
          [NFRule([newOnly, .verdict(.jump(N.serviceEndpointsCheck))])])
    chain("filter-forward", BaseChainSpec(.filter, .forward, priority: Priority.dstnat - 10),
          [NFRule([newOnly, .verdict(.jump(N.forwardChecks))])])
    chain(N.forwardChecks, nil, [NFRule([.verdict(.jump(N.serviceEndpointsCheck))]), NFRule([.verdict(.goto(N.clusterIPsCheck))])])
    chain(N.filterOutput, BaseChainSpec(.filter, .output, priority: Priority.dstnat - 10),
          [NFRule([newOnly, .verdict(.jump(N.serviceEndpointsCheck))])])
    // After output DNAT: a ClusterIP still here had no matching port (or no service).
    chain("filter-output-post-dnat", BaseChainSpec(.filter, .output, priority: Priority.dstnat + 10),
          [NFRule([newOnly, .verdict(.jump(N.clusterIPsCheck))])])
    chain("nat-prerouting", BaseChainSpec(.nat, .prerouting, priority: Priority.dstnat), [NFRule([.verdict(.jump(N.services))])])
    chain("nat-output", BaseChainSpec(.nat, .output, priority: Priority.dstnat), [NFRule([.verdict(.jump(N.services))])])
    chain(N.natPostrouting, BaseChainSpec(.nat, .postrouting, priority: Priority.srcnat), [])
    // Connections DNATed to an endpoint on this node's own addresses (hostNetwork) leave
    // through input, not postrouting: their affinity is recorded there.
    chain(N.natInput, BaseChainSpec(.nat, .input, priority: Priority.srcnat), [])

    var services: [NFRule] = []
    // Off-cluster sources reaching a ClusterIP are masqueraded so replies come back here. The
    // source compare comes first: pods (most new connections) then skip the set lookup. One
    // rule for all the family's cluster CIDRs (a source outside every one of them).
    let podNets = config.clusterCIDRs(family)
    if podNets.count == 1 {
        services.append(NFRule([.match(.saddr, .prefix(podNets[0]), negated: true), .lookup(tuple, set: N.clusterMasquerade), .markSetOr(mark)]))
    } else if podNets.count > 1 {
        services.append(NFRule([.matchAny(.saddr, podNets.map(NFValue.prefix), negated: true), .lookup(tuple, set: N.clusterMasquerade),
                                .markSetOr(mark)]))
    }
    // One lookup for every external tuple; ClusterIP connections (most of them) pass only this.
    services.append(NFRule([.lookup(tuple, set: N.external), .verdict(.goto(N.externalChain))]))
    services.append(NFRule([.verdict(.goto(N.clusterLB))]))
    chain(N.services, nil, services)
    // External tuples: loadBalancerSourceRanges drop other sources before DNAT (from outside and
    // from the node: nat-output also reaches here; NodePorts have no fw-tuples), then eTP Local
    // to its own chain, and eTP Cluster masqueraded. A LB tuple with source ranges but no
    // endpoint is not in `ext`: it is dropped or refused by the filter chains whatever its source.
    chain(N.externalChain, nil, [
        NFRule([.lookup(tuple, set: N.firewallTuples), .lookup([.daddr, .dport, .saddr], set: N.firewallAllow, negated: true), .verdict(.drop)],
               comment: "loadBalancerSourceRanges"),
        NFRule([.lookup(tuple, set: N.externalLocal), .verdict(.goto(N.externalLocalChain))]),
        NFRule([.markSetOr(mark), .verdict(.goto(N.clusterLB))]),
    ])
    t.chains[N.clusterLB] = NFChain(N.clusterLB, rules: [])
    t.chains[N.externalLocalChain] = NFChain(N.externalLocalChain, rules: [])

    // One lookup per new connection: the reject verdicts (TCP RST, ICMP) sit in their own chain.
    // A connection this node DNATed already reached an endpoint (forward and input run after
    // prerouting's DNAT): its destination is an endpoint, never a service tuple, so the two
    // lookups are skipped for every load-balanced connection (output runs before DNAT: local
    // clients still get the lookups).
    chain(N.serviceEndpointsCheck, nil, [
        NFRule([.ctStatusDNAT, .verdict(.return)], comment: "already sent to an endpoint"),
        NFRule([.lookup(tuple, set: N.noEndpointReject), .verdict(.goto(N.rejectChain))]),
        NFRule([.lookup(tuple, set: N.noEndpointDrop), .verdict(.drop)]),
    ])
    chain(N.rejectChain, nil, [
        NFRule([.match(.l4proto, .proto(.tcp)), .reject(.tcpReset)]),
        NFRule([.reject(.portUnreachable)]),
    ])
    let serviceNets = config.serviceCIDRs(family)
    // Most packets here are not for the service range (forwarded traffic after DNAT): one
    // compare sends them back before the set lookup and the route lookup below.
    var clusterCheck: [NFRule] = serviceNets.isEmpty ? []
        : [NFRule([.matchAny(.daddr, serviceNets.map(NFValue.prefix), negated: true), .verdict(.return)])]
    clusterCheck.append(NFRule([.lookup([.daddr], set: N.clusterIPs), .reject(.portUnreachable)], comment: "no such port on this ClusterIP"))
    if !serviceNets.isEmpty {
        // An address of the node's own in the service range is not a ClusterIP: the cluster DNS
        // listens on one (10.96.0.10 by default, on its own device), and the node must reach it.
        clusterCheck.append(NFRule([.fibTypeLocal(.daddr), .verdict(.return)], comment: "node-local address in the service range"))
        clusterCheck.append(NFRule([.matchAny(.daddr, serviceNets.map(NFValue.prefix)), .verdict(.drop)], comment: "unallocated ClusterIP"))
    }
    chain(N.clusterIPsCheck, nil, clusterCheck)
    chain(N.masquerading, nil, [
        NFRule([.markClear(mark), .verdict(.return)]),
        NFRule([.markSetXor(mark)]),
        NFRule([.masquerade]),
    ])
    setCountedChains(&t, config, clusterCounts: [], localCounts: [], timeouts: [])
    return t
}

/// (Re)writes the chains that carry one rule per endpoint count and per affinity timeout in
/// use, and declares those sets; the fixed counts and the default timeout always exist.
func setCountedChains(_ t: inout TableModel, _ config: ProxyConfiguration, clusterCounts: Set<Int>, localCounts: Set<Int>,
                      timeouts: Set<Int>) {
    typealias N = SharedName
    let family = t.family
    let types = TupleTypes(family: family)
    let tuple = types.tupleFields
    let mark = config.masqueradeMark
    let cluster = Set(1...CountRules.cluster).union(clusterCounts).sorted()
    let local = Set(1...CountRules.local).union(localCounts).sorted()
    // The default timeout's rules always exist in the IPv4 table. Not in IPv6: nft 1.0.6 cannot
    // load an IPv6 `update @affinity { 40-byte key : 20-byte data }` (it runs out of its 16-byte
    // registers; the kernel takes it, packed in 4-byte registers), so a table without IPv6
    // affinity services stays loadable by `nft -f` of its own listing.
    let allTimeouts = (family == .ip ? Set([CountRules.defaultAffinityTimeout]) : []).union(timeouts).sorted()
    // Sets of counts and timeouts no longer used go (their rules are rewritten below).
    for name in t.sets.keys where isCountedSet(name) {
        let keep = cluster.map { N.count($0, local: false) } + local.map { N.count($0, local: true) } + allTimeouts.map(N.affinityTimeout)
        if !keep.contains(name) { t.sets[name] = nil }
    }
    for n in cluster where t.sets[N.count(n, local: false)] == nil {
        t.sets[N.count(n, local: false)] = NFSet(SetSpec(N.count(n, local: false), key: types.tuple))
    }
    for n in local where t.sets[N.count(n, local: true)] == nil {
        t.sets[N.count(n, local: true)] = NFSet(SetSpec(N.count(n, local: true), key: types.tuple))
    }
    for s in allTimeouts where t.sets[N.affinityTimeout(s)] == nil {
        t.sets[N.affinityTimeout(s)] = NFSet(SetSpec(N.affinityTimeout(s), key: types.tuple))
    }

    // A learned ClientIP choice first (its timeout was checked by the kernel), then the random
    // choice among N endpoints: `numgen random mod N` is the last field of the map key.
    let affinityHit = NFRule([.dnatMap([.saddr] + tuple, map: N.affinity)])
    var lb = [affinityHit]
    for n in cluster {
        lb.append(NFRule([.lookup(tuple, set: N.count(n, local: false)), .dnatMap(tuple + [.numgen(UInt32(n))], map: N.backends)]))
    }
    t.chains[N.clusterLB]?.rules = lb

    var ext: [NFRule] = []
    for net in config.clusterCIDRs(family) {
        ext.append(NFRule([.match(.saddr, .prefix(net)), .verdict(.goto(N.clusterLB))], comment: "short-circuit pod traffic"))
    }
    ext.append(NFRule([.fibTypeLocal(.saddr), .markSetOr(mark), .verdict(.goto(N.clusterLB))], comment: "short-circuit local traffic"))
    ext.append(affinityHit)
    for n in local {
        ext.append(NFRule([.lookup(tuple, set: N.count(n, local: true)), .dnatMap(tuple + [.numgen(UInt32(n))], map: N.backendsLocal)]))
    }
    t.chains[N.externalLocalChain]?.rules = ext

    // Record where a ClientIP-affinity connection went, keyed by what the client asked for.
    var record: [NFRule] = []
    for s in allTimeouts {
        for proto in L4Protocol.allCases {
            record.append(NFRule([.ctStatusDNAT, .protocolPort(proto),
                                  .lookup([.ctOriginalDaddr, .l4proto, .ctOriginalDport], set: N.affinityTimeout(s)),
                                  .recordDestination(map: N.affinity, key: [.saddr, .ctOriginalDaddr, .l4proto, .ctOriginalDport],
                                                     timeout: s, proto: proto)]))
        }
    }
    t.chains[N.natInput]?.rules = record
    t.chains[N.natPostrouting]?.rules = record + [
        NFRule([.ctStatusDNAT, .lookup([.saddr, .daddr], set: N.hairpin), .masquerade], comment: "hairpin"),
        NFRule([.verdict(.jump(N.masquerading))]),
    ]
}

func isCountedSet(_ name: String) -> Bool {
    if name.hasPrefix("aff-") { return true }
    let digits = name.drop { $0 == "n" || $0 == "l" }
    return (name.hasPrefix("n") || name.hasPrefix("ln")) && !digits.isEmpty && digits.allSatisfy(\.isNumber)
}
