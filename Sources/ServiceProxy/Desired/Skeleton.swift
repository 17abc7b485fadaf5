// The fixed part of each family's table: base chains, dispatch chains and the shared maps.
// Shaped like kube-proxy's nftables mode (see the README for the packet walk).

/// Names of the shared chains and maps.
public enum SharedName {
    public static let serviceIPs = "service-ips"
    public static let serviceNodePorts = "service-nodeports"
    public static let noEndpointServices = "no-endpoint-services"
    public static let noEndpointNodePorts = "no-endpoint-nodeports"
    public static let firewallIPs = "firewall-ips"
    public static let clusterIPs = "cluster-ips"
    public static let nodePortIPs = "nodeport-ips"

    public static let services = "services"
    public static let serviceEndpointsCheck = "service-endpoints-check"
    public static let nodePortEndpointsCheck = "nodeport-endpoints-check"
    public static let firewallCheck = "firewall-check"
    public static let clusterIPsCheck = "cluster-ips-check"
    public static let markForMasquerade = "mark-for-masquerade"
    public static let masquerading = "masquerading"
    public static let rejectChain = "reject-chain"
}

enum Priority {
    static let dstnat = -100
    static let srcnat = 100
}

func skeleton(_ family: TableFamily, _ config: ProxyConfiguration) -> TableModel {
    typealias N = SharedName
    var t = TableModel(family: family)
    let addr = NFDataType.address(family)
    for spec in [
        SetSpec(N.serviceIPs, key: [addr, .inetProto, .inetService], verdictMap: true),
        SetSpec(N.serviceNodePorts, key: [.inetProto, .inetService], verdictMap: true),
        SetSpec(N.noEndpointServices, key: [addr, .inetProto, .inetService], verdictMap: true),
        SetSpec(N.noEndpointNodePorts, key: [.inetProto, .inetService], verdictMap: true),
        SetSpec(N.firewallIPs, key: [addr, .inetProto, .inetService], verdictMap: true),
        SetSpec(N.clusterIPs, key: [addr]),
    ] {
        t.sets[spec.name] = NFSet(spec)
    }
    let nodeIPs = config.nodeAddresses(family)
    if !nodeIPs.isEmpty {
        t.sets[N.nodePortIPs] = NFSet(SetSpec(N.nodePortIPs, key: [addr]),
                                      elements: Dictionary(uniqueKeysWithValues: nodeIPs.map { (ElementKey([.address($0)]), nil) }))
    }

    func chain(_ name: String, _ base: BaseChainSpec? = nil, _ rules: [NFRule]) {
        t.chains[name] = NFChain(name, base: base, rules: rules)
    }
    let tuple: [NFField] = [.daddr, .l4proto, .dport]
    let portTuple: [NFField] = [.l4proto, .dport]
    let newOnly = NFExpression.ctStateNew
    // Reject is refused in prerouting on old kernels: endpoint checks hang off input, forward, output.
    chain("filter-prerouting", BaseChainSpec(.filter, .prerouting, priority: Priority.dstnat - 10),
          [NFRule([newOnly, .verdict(.jump(N.firewallCheck))])])
    chain("filter-input", BaseChainSpec(.filter, .input, priority: Priority.dstnat - 10),
          [NFRule([newOnly, .verdict(.jump(N.nodePortEndpointsCheck))]), NFRule([newOnly, .verdict(.jump(N.serviceEndpointsCheck))])])
    chain("filter-forward", BaseChainSpec(.filter, .forward, priority: Priority.dstnat - 10),
          [NFRule([newOnly, .verdict(.jump(N.serviceEndpointsCheck))]), NFRule([newOnly, .verdict(.jump(N.clusterIPsCheck))])])
    chain("filter-output", BaseChainSpec(.filter, .output, priority: Priority.dstnat - 10),
          [NFRule([newOnly, .verdict(.jump(N.serviceEndpointsCheck))]), NFRule([newOnly, .verdict(.jump(N.firewallCheck))])])
    // After output DNAT: a ClusterIP still here had no matching port (or no service).
    chain("filter-output-post-dnat", BaseChainSpec(.filter, .output, priority: Priority.dstnat + 10),
          [NFRule([newOnly, .verdict(.jump(N.clusterIPsCheck))])])
    chain("nat-prerouting", BaseChainSpec(.nat, .prerouting, priority: Priority.dstnat), [NFRule([.verdict(.jump(N.services))])])
    chain("nat-output", BaseChainSpec(.nat, .output, priority: Priority.dstnat), [NFRule([.verdict(.jump(N.services))])])
    chain("nat-postrouting", BaseChainSpec(.nat, .postrouting, priority: Priority.srcnat), [NFRule([.verdict(.jump(N.masquerading))])])

    let nodePortMatch: [NFExpression] = nodeIPs.isEmpty
        ? [.fibTypeLocal(.daddr), .match(.daddr, .prefix(family.loopback), negated: true)]
        : [.lookup([.daddr], set: N.nodePortIPs)]
    chain(N.services, nil, [
        NFRule([.vmap(tuple, map: N.serviceIPs)]),
        NFRule(nodePortMatch + [.vmap(portTuple, map: N.serviceNodePorts)]),
    ])
    chain(N.serviceEndpointsCheck, nil, [NFRule([.vmap(tuple, map: N.noEndpointServices)])])
    chain(N.nodePortEndpointsCheck, nil, [NFRule(nodePortMatch + [.vmap(portTuple, map: N.noEndpointNodePorts)])])
    chain(N.firewallCheck, nil, [NFRule([.vmap(tuple, map: N.firewallIPs)])])
    var clusterCheck = [NFRule([.lookup([.daddr], set: N.clusterIPs), .reject(.portUnreachable)], comment: "no such port on this ClusterIP")]
    let serviceNets = config.serviceCIDRs(family)
    if !serviceNets.isEmpty {
        // An address of the node's own in the service range is not a ClusterIP: the cluster DNS
        // listens on one (10.96.0.10 by default, on its own device), and the node must reach it.
        clusterCheck.append(NFRule([.fibTypeLocal(.daddr), .verdict(.return)], comment: "node-local address in the service range"))
        clusterCheck.append(NFRule([.matchAny(.daddr, serviceNets.map(NFValue.prefix)), .verdict(.drop)], comment: "unallocated ClusterIP"))
    }
    chain(N.clusterIPsCheck, nil, clusterCheck)
    let mark = config.masqueradeMark
    chain(N.markForMasquerade, nil, [NFRule([.markSetOr(mark)])])
    chain(N.masquerading, nil, [
        NFRule([.markClear(mark), .verdict(.return)]),
        NFRule([.markSetXor(mark)]),
        NFRule([.masquerade]),
    ])
    // reject cannot be a map verdict: the no-endpoint maps goto this chain.
    chain(N.rejectChain, nil, [
        NFRule([.match(.l4proto, .proto(.tcp)), .reject(.tcpReset)]),
        NFRule([.reject(.portUnreachable)]),
    ])
    return t
}
