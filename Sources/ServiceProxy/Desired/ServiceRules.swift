import ClusterState
import IPAddressing

/// Everything one service adds to one family's table: elements of the shared sets and maps,
/// nothing else (no chain, rule or verdict). Built from the service and its slices alone, so a
/// change to one service rebuilds only this.
struct ServiceFragment: Hashable, Sendable {
    /// Shared set or map name -> elements.
    var elements: [String: [ElementKey: ElementValue?]] = [:]
    /// `hairpin` pairs: shared between services that have the same endpoint (counted).
    var hairpin: Set<ElementKey> = []
    /// Endpoint counts and affinity timeouts this service uses (their sets and rules must exist).
    var clusterCounts: Set<Int> = []
    var localCounts: Set<Int> = []
    var timeouts: Set<Int> = []
    /// ClientIP affinity: tuple -> the endpoints (`address . port`) it may still be sent to.
    var affinity: [ElementKey: Set<ElementKey>] = [:]
    /// UDP ports, keyed "family/protocol/port name", for stale conntrack cleanup.
    var udp: [String: UDPServicePort] = [:]

    mutating func add(_ set: String, _ key: [NFValue], _ value: ElementValue? = nil) {
        elements[set, default: [:]][ElementKey(key)] = .some(value)
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
///
/// Per service port, with T a tuple `address . protocol . port` (the ClusterIP, each external
/// and LB IP with the port, each node address with the node port):
/// - endpoints: `backends { T . i : endpoint_i }` for i in 0..<N and T in `nN`; eTP Local external
///   tuples also `backends-local` / `lnN` with the node-local endpoints, and T in `ext-local`;
/// - external tuples with endpoints in `ext` (those not in `ext-local` are masqueraded);
/// - masquerade: ClusterIP tuples (iTP Cluster) in `cluster-masq` (off-cluster sources only);
///   a pod reaching itself: `hairpin { ep . ep }`;
/// - no endpoint: T in `no-ep-reject`; none allowed by a Local policy: T in `no-ep-drop`;
/// - loadBalancerSourceRanges: LB tuples in `fw-tuples`, `fw-allow { lb . port . range }`;
/// - ClientIP affinity: T in `aff-<timeout>s` (the packet path records `@affinity` itself).
func buildFragment(_ service: Service, slices: [EndpointSlice], family: TableFamily, config: ProxyConfiguration,
                   problems: inout [String]) -> ServiceFragment {
    typealias N = SharedName
    var f = ServiceFragment()
    guard isProxied(service), let clusterIP = service.clusterIPs.first(where: { $0.family == family.ipFamily }) else { return f }
    let externalAddresses = (service.externalIPs + (service.type == .loadBalancer ? service.loadBalancerIngress : []))
        .filter { $0.family == family.ipFamily }
    let hasNodePorts = service.type == .nodePort || service.type == .loadBalancer
    let nodeAddresses = config.nodeAddresses(family)
    f.add(N.clusterIPs, [.address(clusterIP)])

    for port in service.ports {
        let proto = NFValue.proto(port.protocol), dport = NFValue.port(port.port)
        var nodePort = hasNodePorts ? port.nodePort : nil
        if let np = nodePort, !config.nodePortRange.contains(np) {
            problems.append("port \(port.port): nodePort \(np) is outside \(config.nodePortRange.lowerBound)-\(config.nodePortRange.upperBound)")
            nodePort = nil
        }
        let clusterTuple: [NFValue] = [.address(clusterIP), proto, dport]
        var externalTuples = externalAddresses.map { [NFValue.address($0), proto, dport] }
        if let np = nodePort { externalTuples += nodeAddresses.map { [NFValue.address($0), proto, .port(np)] } }
        let hasExternal = !externalAddresses.isEmpty || nodePort != nil

        let all = endpoints(for: port, family: family, slices: slices, nodeName: config.nodeName, problems: &problems)
        // Topology-aware routing (trafficDistribution, hints.forZones) narrows cluster traffic
        // to this node's zone when every endpoint is hinted, else all endpoints.
        let selection = EndpointSelection(all, zone: config.nodeZone, topologyAware: service.wantsTopologyAwareRouting)
        let internalEPs = service.internalTrafficPolicy == .local ? selection.local : selection.cluster
        // As kube-proxy: eTP applies to NodePort and LoadBalancer services only (a ClusterIP
        // service's externalIPs always use every endpoint).
        let externalLocal = service.externalTrafficPolicy == .local && hasNodePorts
        let externalEPs = externalLocal ? selection.local : selection.cluster
        if port.protocol == .udp {
            f.udp["\(family.rawValue)/\(service.namespace)/\(service.name)/\(port.protocol.nftName)/\(port.name)"] = UDPServicePort(
                destinations: [clusterIP] + externalAddresses, port: port.port, nodePort: nodePort,
                endpoints: Set((selection.cluster + selection.local).map(\.address)))
        }

        // No usable endpoint anywhere: refuse (ICMP/TCP RST) rather than let connections time out.
        if selection.cluster.isEmpty {
            for t in [clusterTuple] + externalTuples { f.add(N.noEndpointReject, t) }
            continue
        }

        let affinity = service.sessionAffinityTimeout
        func balance(_ tuple: [NFValue], over eps: [ServiceEndpoint], local: Bool) {
            let map = local ? N.backendsLocal : N.backends
            for (slot, e) in eps.enumerated() {
                f.add(map, tuple + [.slot(UInt32(slot))], .data(ElementKey([.address(e.address), .port(e.port)])))
                f.hairpin.insert(ElementKey([.address(e.address), .address(e.address)]))
            }
            f.add(N.count(eps.count, local: local), tuple)
            if local { f.localCounts.insert(eps.count) } else { f.clusterCounts.insert(eps.count) }
            if let timeout = affinity {
                f.add(N.affinityTimeout(timeout), tuple)
                f.timeouts.insert(timeout)
                f.affinity[ElementKey(tuple), default: []].formUnion(eps.map { ElementKey([.address($0.address), .port($0.port)]) })
            }
        }

        // Internal traffic: ClusterIP. No endpoint allowed by iTP Local: dropped (not refused).
        if internalEPs.isEmpty {
            f.add(N.noEndpointDrop, clusterTuple)
        } else {
            balance(clusterTuple, over: internalEPs, local: false)
            if service.internalTrafficPolicy == .cluster { f.add(N.clusterMasquerade, clusterTuple) }
        }

        // External traffic: externalIPs, LoadBalancer ingress, NodePorts on the node's addresses.
        if hasExternal {
            for t in externalTuples {
                if externalEPs.isEmpty {
                    f.add(N.noEndpointDrop, t)
                } else if externalLocal {
                    // Outside clients: local endpoints, source kept. Pods and the node itself
                    // short-circuit to every endpoint (`backends`), as kube-proxy does.
                    f.add(N.external, t)
                    f.add(N.externalLocal, t)
                    balance(t, over: selection.local, local: true)
                    balance(t, over: selection.cluster, local: false)
                } else {
                    f.add(N.external, t)
                    balance(t, over: selection.cluster, local: false)
                }
            }
        }

        // loadBalancerSourceRanges: other sources are dropped before DNAT (NodePorts are exempt).
        let ingress = service.type == .loadBalancer ? service.loadBalancerIngress.filter { $0.family == family.ipFamily } : []
        let ranges = service.loadBalancerSourceRanges.filter { $0.family == family.ipFamily }
        if !ingress.isEmpty, !ranges.isEmpty {
            var allowed = ranges
            // Traffic from the node itself to its LB IP keeps working when the node is allowed.
            if nodeAddresses.contains(where: { a in ranges.contains { $0.contains(a) } }) {
                allowed += ingress.map { IPPrefix(address: $0, length: $0.isV4 ? 32 : 128) }
            }
            for a in ingress {
                f.add(N.firewallTuples, [.address(a), proto, dport])
                for range in withoutCovered(allowed.map(NFValue.prefix)) {
                    guard case .prefix(let p) = range else { continue }
                    f.add(N.firewallAllow, [.address(a), dport, .address(p.network.address)],
                          .intervalEnd(ElementKey([.address(a), dport, .address(p.lastAddress)])))
                }
            }
        }
    }
    return f
}

/// Drops duplicates and values inside another prefix of the list: nft refuses overlapping
/// intervals in one set.
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
