import ClusterState
import IPAddressing

/// Everything one service adds to one family's table: its chains, its affinity sets and its
/// elements in the shared maps. Built from the service and its slices alone, so a change to
/// one service rebuilds only this.
struct ServiceFragment: Hashable, Sendable {
    var chains: [NFChain] = []
    var sets: [NFSet] = []
    /// Shared set or map name -> elements.
    var elements: [String: [ElementKey: Verdict?]] = [:]
    /// UDP ports, keyed "family/protocol/port name", for stale conntrack cleanup.
    var udp: [String: UDPServicePort] = [:]

    mutating func add(_ set: String, _ key: [NFValue], _ verdict: Verdict?) {
        elements[set, default: [:]][ElementKey(key)] = .some(verdict)
    }
}

/// Chain and set names for one service port, readable in `nft list` output.
/// nft names allow letters, digits and `/ - _ .`, so IPv6 colons become dashes (the canonical
/// text of an IPv6 address has no dashes, so the mapping stays one to one).
struct PortNames {
    let base: String

    init(_ service: Service, _ port: ServicePort) {
        let portName = port.name.isEmpty ? "p\(port.port)" : port.name
        base = "\(service.namespace)/\(service.name)/\(port.protocol.nftName)/\(portName)"
    }

    var cluster: String { "service-" + base }
    var local: String { "local-" + base }
    var external: String { "external-" + base }
    var firewall: String { "firewall-" + base }
    func endpoint(_ e: ServiceEndpoint) -> String { "endpoint-" + base + "__" + Self.text(e) }
    func affinity(_ e: ServiceEndpoint) -> String { "affinity-" + base + "__" + Self.text(e) }

    static func text(_ e: ServiceEndpoint) -> String {
        String(e.address.description.map { $0 == ":" ? "-" : $0 }) + "/\(e.port)"
    }
}

/// Whether the proxy programs a service at all (kube-proxy's rules).
func isProxied(_ service: Service) -> Bool {
    if service.type == .externalName || service.isHeadless || service.clusterIPs.isEmpty { return false }
    if service.metadata.label(Service.serviceProxyNameLabel) != nil { return false }
    if service.metadata.label("service.kubernetes.io/headless") != nil { return false }
    return true
}

/// Builds one service's fragment for one family; `problems` collects what was skipped and why.
func buildFragment(_ service: Service, slices: [EndpointSlice], family: TableFamily, config: ProxyConfiguration,
                   problems: inout [String]) -> ServiceFragment {
    var f = ServiceFragment()
    guard isProxied(service), let clusterIP = service.clusterIPs.first(where: { $0.family == family.ipFamily }) else { return f }
    let podNets = config.clusterCIDRs(family)
    let externalAddresses = (service.externalIPs + (service.type == .loadBalancer ? service.loadBalancerIngress : []))
        .filter { $0.family == family.ipFamily }
    let hasNodePorts = service.type == .nodePort || service.type == .loadBalancer
    f.add(SharedName.clusterIPs, [.address(clusterIP)], nil)

    for port in service.ports {
        let names = PortNames(service, port)
        let proto = NFValue.proto(port.protocol), dport = NFValue.port(port.port)
        var nodePort = hasNodePorts ? port.nodePort : nil
        if let np = nodePort, !config.nodePortRange.contains(np) {
            problems.append("port \(port.port): nodePort \(np) is outside \(config.nodePortRange.lowerBound)-\(config.nodePortRange.upperBound)")
            nodePort = nil
        }
        let hasExternal = !externalAddresses.isEmpty || nodePort != nil
        let all = endpoints(for: port, family: family, slices: slices, nodeName: config.nodeName, problems: &problems)
        let selection = EndpointSelection(all)
        let internalEPs = service.internalTrafficPolicy == .local ? selection.local : selection.cluster
        // As kube-proxy: eTP applies to NodePort and LoadBalancer services only (a ClusterIP
        // service's externalIPs always use every endpoint).
        let externalLocal = service.externalTrafficPolicy == .local && hasNodePorts
        let externalEPs = externalLocal ? selection.local : selection.cluster
        if port.protocol == .udp {
            f.udp["\(family.rawValue)/\(names.base)"] = UDPServicePort(
                destinations: [clusterIP] + externalAddresses, port: port.port, nodePort: nodePort,
                endpoints: Set((selection.cluster + selection.local).map(\.address)))
        }

        // No usable endpoint anywhere: refuse (ICMP/TCP RST) rather than let connections time out.
        if selection.cluster.isEmpty {
            let reject = Verdict.goto(SharedName.rejectChain)
            f.add(SharedName.noEndpointServices, [.address(clusterIP), proto, dport], reject)
            for a in externalAddresses { f.add(SharedName.noEndpointServices, [.address(a), proto, dport], reject) }
            if let np = nodePort { f.add(SharedName.noEndpointNodePorts, [proto, .port(np)], reject) }
            continue
        }

        let affinity = service.sessionAffinityTimeout
        var usedEndpoints = Set<ServiceEndpoint>()
        func loadBalance(_ eps: [ServiceEndpoint]) -> [NFRule] {
            usedEndpoints.formUnion(eps)
            var rules: [NFRule] = []
            if affinity != nil {
                for e in eps { rules.append(NFRule([.lookup([.saddr], set: names.affinity(e)), .verdict(.goto(names.endpoint(e)))])) }
            }
            rules.append(NFRule([.numgenVmap(eps.map { .goto(names.endpoint($0)) })]))
            return rules
        }

        // The cluster chain serves internal traffic (iTP=Cluster), external traffic (eTP=Cluster)
        // and pod or host traffic to external addresses under eTP=Local (the short-circuit).
        let needsClusterChain = service.internalTrafficPolicy == .cluster || (hasExternal && !externalEPs.isEmpty)
        if needsClusterChain {
            var rules: [NFRule] = []
            for net in podNets {
                // Off-cluster sources reaching a ClusterIP are masqueraded so replies come back here.
                rules.append(NFRule([.match(.daddr, .address(clusterIP)), .match(.l4proto, proto), .match(.dport, dport),
                                     .match(.saddr, .prefix(net), negated: true), .verdict(.jump(SharedName.markForMasquerade))]))
            }
            f.chains.append(NFChain(names.cluster, rules: rules + loadBalance(selection.cluster)))
        }
        let needsLocalChain = !selection.local.isEmpty && (service.internalTrafficPolicy == .local || (hasExternal && externalLocal))
        if needsLocalChain { f.chains.append(NFChain(names.local, rules: loadBalance(selection.local))) }

        // Internal traffic: ClusterIP.
        if internalEPs.isEmpty {
            f.add(SharedName.noEndpointServices, [.address(clusterIP), proto, dport], .drop)
        } else {
            f.add(SharedName.serviceIPs, [.address(clusterIP), proto, dport],
                  .goto(service.internalTrafficPolicy == .local ? names.local : names.cluster))
        }

        // External traffic: externalIPs, LoadBalancer ingress, NodePort.
        if hasExternal {
            if externalEPs.isEmpty {
                for a in externalAddresses { f.add(SharedName.noEndpointServices, [.address(a), proto, dport], .drop) }
                if let np = nodePort { f.add(SharedName.noEndpointNodePorts, [proto, .port(np)], .drop) }
            } else {
                var rules: [NFRule] = []
                if externalLocal {
                    for net in podNets {
                        rules.append(NFRule([.match(.saddr, .prefix(net)), .verdict(.goto(names.cluster))], comment: "short-circuit pod traffic"))
                    }
                    rules.append(NFRule([.fibTypeLocal(.saddr), .verdict(.jump(SharedName.markForMasquerade))], comment: "masquerade local traffic"))
                    rules.append(NFRule([.fibTypeLocal(.saddr), .verdict(.goto(names.cluster))], comment: "short-circuit local traffic"))
                    rules.append(NFRule([.verdict(.goto(names.local))]))
                } else {
                    rules.append(NFRule([.verdict(.jump(SharedName.markForMasquerade))]))
                    rules.append(NFRule([.verdict(.goto(names.cluster))]))
                }
                f.chains.append(NFChain(names.external, rules: rules))
                for a in externalAddresses { f.add(SharedName.serviceIPs, [.address(a), proto, dport], .goto(names.external)) }
                if let np = nodePort { f.add(SharedName.serviceNodePorts, [proto, .port(np)], .goto(names.external)) }
            }
        }

        // loadBalancerSourceRanges: other sources are dropped before DNAT (NodePorts are exempt).
        let ingress = service.type == .loadBalancer ? service.loadBalancerIngress.filter { $0.family == family.ipFamily } : []
        let ranges = service.loadBalancerSourceRanges.filter { $0.family == family.ipFamily }
        if !ingress.isEmpty, !ranges.isEmpty {
            var allowed = ranges.map(NFValue.prefix)
            // Traffic from the node itself to its LB IP keeps working when the node is allowed.
            if config.nodeAddresses(family).contains(where: { a in ranges.contains { $0.contains(a) } }) {
                allowed += ingress.map(NFValue.address)
            }
            f.chains.append(NFChain(names.firewall, rules: [NFRule([.matchAny(.saddr, withoutCovered(allowed), negated: true), .verdict(.drop)])]))
            for a in ingress { f.add(SharedName.firewallIPs, [.address(a), proto, dport], .goto(names.firewall)) }
        }

        for e in usedEndpoints.sorted() {
            var rules = [NFRule([.match(.saddr, .address(e.address)), .verdict(.jump(SharedName.markForMasquerade))], comment: "hairpin")]
            if let timeout = affinity {
                let set = names.affinity(e)
                f.sets.append(NFSet(SetSpec(set, key: [.address(family)], timeout: timeout)))
                rules.append(NFRule([.updateSet(set, .saddr)]))
            }
            rules.append(NFRule([.match(.l4proto, proto), .dnat(e.address, e.port)]))
            f.chains.append(NFChain(names.endpoint(e), rules: rules))
        }
    }
    return f
}

/// Drops duplicates and values inside another prefix of the list: nft refuses overlapping
/// intervals in one anonymous set.
func withoutCovered(_ values: [NFValue]) -> [NFValue] {
    let unique = Array(Set(values)).sorted()
    return unique.filter { v in
        !unique.contains { other in
            guard case .prefix(let p) = other, other != v else { return false }
            switch v {
            case .address(let a): return p.contains(a)
            case .prefix(let q): return p.contains(q) && (p.length < q.length)
            default: return false
            }
        }
    }
}
