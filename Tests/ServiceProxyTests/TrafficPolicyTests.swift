import ClusterState
import Testing
@testable import ServiceProxy

/// Real traffic: traffic policies and the terminating-endpoint fallback. The node is `node1`;
/// an endpoint whose `nodeName` says another node is remote for the rules, whatever its address.
extension TrafficTests {
    /// In each family (issue 22): the same dual-stack topology, a service of that family.
    @Test(arguments: BackendKind.allCases, TrafficFamily.allCases)
    func internalTrafficPolicyLocal(_ kind: BackendKind, _ family: TrafficFamily) async throws {
        let t = try Topology(kind)
        defer { t.delete() }
        let store = ClusterStore()
        let vip = family.target(family.clusterIP(10), 80)
        func endpoints(_ eps: [EP]) -> StoreChange { .upsert(.endpointSlice(family.slice("web", eps))) }
        await store.apply([.upsert(.service(service("web", ips: [family.clusterIP(10)], itp: .local))),
                           endpoints([EP(ip: family.pod(1)), EP(ip: family.pod(2), node: "node2")])])
        let (actor, task) = try await t.startProxy(store)
        defer { task.cancel() }

        // Only the local endpoint, however often: the remote one is never reached; from a pod
        // and from the node itself (a hostNetwork client).
        try t.expectOnly("pod1", from: t.client, vip, count: 20)
        try t.expectOnly("pod1", from: t.node, vip, count: 8)

        // No local endpoint (the remote one still ready): dropped, not rejected.
        try await applySynced([endpoints([EP(ip: family.pod(1), node: "node3"), EP(ip: family.pod(2), node: "node2")])], to: store, actor)
        try t.expectDropped(from: t.client, vip)
    }

    @Test(arguments: BackendKind.allCases, TrafficFamily.allCases)
    func externalTrafficPolicyLocal(_ kind: BackendKind, _ family: TrafficFamily) async throws {
        let t = try Topology(kind)
        defer { t.delete() }
        // Servers that answer with the source address they see.
        for (ns, name) in [(t.pod1, "pod1"), (t.pod2, "pod2")] { try t.serveTCP(ns, port: 8082, reply: "\(name) $SOCAT_PEERADDR") }
        let store = ClusterStore()
        func nodePortService(_ name: String, ip: String, nodePort: UInt16, etp: TrafficPolicy) -> StoreChange {
            .upsert(.service(service(name, type: .nodePort, ips: [ip], ports: [ServicePort(name: "http", port: 80, targetPort: .int(8082),
                                                                                            nodePort: nodePort)], etp: etp)))
        }
        func endpoints(_ name: String, _ eps: [EP]) -> StoreChange {
            .upsert(.endpointSlice(slice(name, family: family.sliceFamily, ports: [EndpointPort(name: "http", port: 8082)], eps)))
        }
        let both = [EP(ip: family.pod(1)), EP(ip: family.pod(2), node: "node2")]
        await store.apply([nodePortService("local", ip: family.clusterIP(10), nodePort: 30080, etp: .local), endpoints("local", both),
                           nodePortService("cluster", ip: family.clusterIP(11), nodePort: 30081, etp: .cluster), endpoints("cluster", both)])
        let (actor, task) = try await t.startProxy(store)
        defer { task.cancel() }
        let local = family.target(family.nodeIP, 30080)

        // From outside: only the local endpoint, and it sees the client's own address.
        try t.expectOnly("pod1 \(family.peer(family.fabricIP))", from: t.fabric, local, count: 12)
        // The same with eTP=Cluster is masqueraded (which is what makes the check above mean something).
        let masqueraded = try t.connect(from: t.fabric, family.target(family.nodeIP, 30081))
        #expect(masqueraded.ok && !masqueraded.text.contains(family.peer(family.fabricIP)), "\(masqueraded.text)")

        // A pod reaching the same NodePort short-circuits to every endpoint, unmasqueraded.
        let client = family.peer(family.pod(3))
        let fromPod = try t.distinct(from: t.client, local, expected: ["pod1 \(client)", "pod2 \(client)"])
        #expect(fromPod == ["pod1 \(client)", "pod2 \(client)"])

        // The node itself reaching its NodePort: every endpoint, masqueraded.
        let viaNode: Set = ["pod1 \(family.peer(family.gateway(1)))", "pod2 \(family.peer(family.gateway(2)))"]
        let fromNode = try t.distinct(from: t.node, local, expected: viaNode)
        #expect(fromNode == viaNode)

        // No local endpoint left: external traffic is dropped, not rejected.
        try await applySynced([endpoints("local", [EP(ip: family.pod(1), node: "node3"), EP(ip: family.pod(2), node: "node2")])],
                              to: store, actor)
        try t.expectDropped(from: t.fabric, local)
    }

    @Test(arguments: BackendKind.allCases, TrafficFamily.allCases)
    func terminatingEndpointsServeOnlyWhenNoneIsReady(_ kind: BackendKind, _ family: TrafficFamily) async throws {
        let t = try Topology(kind)
        defer { t.delete() }
        let store = ClusterStore()
        let vip = family.target(family.clusterIP(10), 80)
        func endpoints(_ eps: [EP]) -> StoreChange { .upsert(.endpointSlice(family.slice("web", eps))) }
        let draining = EP(ip: family.pod(1), ready: false, serving: true, terminating: true)
        await store.apply([.upsert(.service(service("web", ips: [family.clusterIP(10)]))), endpoints([draining, EP(ip: family.pod(2), ready: false)])])
        let (actor, task) = try await t.startProxy(store)
        defer { task.cancel() }

        // Nothing ready: the serving terminating endpoint takes the traffic, the unready one none.
        try t.expectOnly("pod1", from: t.client, vip, count: 16)

        // A ready endpoint appears: only it is used from now on.
        try await applySynced([endpoints([draining, EP(ip: family.pod(2))])], to: store, actor)
        try t.expectOnly("pod2", from: t.client, vip, count: 16)

        // Terminating and no longer serving, nothing else: no endpoint, refused.
        try await applySynced([endpoints([EP(ip: family.pod(1), ready: false, serving: false, terminating: true)])], to: store, actor)
        try t.expectRefused(from: t.client, vip)
    }
}

extension TrafficTests {
    /// e2e "connect to a service via ExternalIP when the external IP is not assigned to a node",
    /// and loadBalancerSourceRanges on a LoadBalancer IP, from the fabric host (which routes
    /// those addresses to the node).
    @Test(arguments: BackendKind.allCases) func externalIPAndLoadBalancerSourceRanges(_ kind: BackendKind) async throws {
        let t = try Topology(kind)
        defer { t.delete() }
        for address in ["203.0.113.9", "198.51.100.7"] {
            try t.fabric.check(["ip", "route", "add", address, "via", "192.168.1.11"])
        }
        let store = ClusterStore()
        let http = ServicePort(name: "http", port: 80, targetPort: .int(8080), nodePort: 30080)
        func lb(_ ranges: [String]) -> StoreChange {
            .upsert(.service(service("lb", type: .loadBalancer, ips: ["10.96.0.11"], ports: [http], ingress: ["198.51.100.7"], sourceRanges: ranges)))
        }
        let eps = [EP(ip: "10.244.1.5"), EP(ip: "10.244.2.5")]
        await store.apply([.upsert(.service(service("ext", externalIPs: ["203.0.113.9"]))), .upsert(.endpointSlice(slice("ext", eps))),
                           lb(["192.0.2.0/24"]), .upsert(.endpointSlice(slice("lb", eps)))])
        let (actor, task) = try await t.startProxy(store)
        defer { task.cancel() }
        let both: Set = ["pod1", "pod2"]

        #expect(try t.distinct(from: t.fabric, "203.0.113.9:80", expected: both) == both)
        // The fabric host is outside the source ranges: dropped before DNAT. Its NodePort is
        // exempt (as kube-proxy).
        try t.expectDropped(from: t.fabric, "198.51.100.7:80")
        #expect(try t.distinct(from: t.fabric, "192.168.1.11:30080", expected: both) == both)
        // Its network allowed: served.
        try await applySynced([lb(["192.0.2.0/24", "192.168.1.0/24"])], to: store, actor)
        #expect(try t.distinct(from: t.fabric, "198.51.100.7:80", expected: both) == both)
    }
}
