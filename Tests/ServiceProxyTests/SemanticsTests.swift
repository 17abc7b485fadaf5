import ClusterState
import Testing
@testable import ServiceProxy

/// kube-proxy's Service semantics, one behaviour per test.
@Suite struct SemanticsTests {
    @Test func noEndpointsAreRejectedNotDropped() async {
        let svc = service("empty", type: .nodePort, ports: [ServicePort(name: "http", port: 80, nodePort: 30080)], externalIPs: ["203.0.113.1"])
        let d = await desired([svc], [])
        #expect(elements(d.model, SharedName.noEndpointReject) == ["10.96.0.10 . tcp . 80", "192.168.1.11 . tcp . 30080", "203.0.113.1 . tcp . 80"])
        #expect(elements(d.model, SharedName.backends).isEmpty)
    }

    @Test func terminatingEndpointsAreAFallbackOnly() async {
        let eps = [EP(ip: "10.244.1.1", ready: false, serving: true, terminating: true),
                   EP(ip: "10.244.1.2", ready: false, serving: false, terminating: true)]
        var d = await desired([service("t")], [slice("t", eps)])
        #expect(elements(d.model, SharedName.backends) == ["10.96.0.10 . tcp . 80 . 0 : 10.244.1.1 . 8080"])
        // A ready endpoint appears: the terminating one is no longer used.
        d = await desired([service("t")], [slice("t", eps + [EP(ip: "10.244.1.3", node: "node2")])])
        #expect(elements(d.model, SharedName.backends) == ["10.96.0.10 . tcp . 80 . 0 : 10.244.1.3 . 8080"])
    }

    @Test func notReadyEndpointsAreNotUsed() async {
        let d = await desired([service("nr")], [slice("nr", [EP(ip: "10.244.1.1", ready: false)])])
        #expect(elements(d.model, SharedName.noEndpointReject) == ["10.96.0.10 . tcp . 80"])
    }

    @Test func internalTrafficPolicyLocal() async {
        let eps = [EP(ip: "10.244.1.1"), EP(ip: "10.244.2.1", node: "node2")]
        var d = await desired([service("itp", itp: .local)], [slice("itp", eps)])
        #expect(elements(d.model, SharedName.backends) == ["10.96.0.10 . tcp . 80 . 0 : 10.244.1.1 . 8080"])
        #expect(elements(d.model, "n1") == ["10.96.0.10 . tcp . 80"])
        // Only local endpoints, and no masquerade of off-cluster sources (kube-proxy's local chain).
        #expect(elements(d.model, SharedName.clusterMasquerade).isEmpty)
        // No local endpoint: internal traffic is dropped (not rejected), as kube-proxy does.
        d = await desired([service("itp", itp: .local)], [slice("itp", [EP(ip: "10.244.2.1", node: "node2")])])
        #expect(elements(d.model, SharedName.noEndpointDrop) == ["10.96.0.10 . tcp . 80"])
        #expect(elements(d.model, SharedName.backends).isEmpty)
    }

    @Test func externalTrafficPolicyLocalShortCircuitsPods() async {
        let svc = service("etp", type: .nodePort, ports: [ServicePort(name: "http", port: 80, targetPort: .int(8080), nodePort: 30080)],
                          etp: .local, externalIPs: ["203.0.113.5"])
        let eps = [EP(ip: "10.244.1.1"), EP(ip: "10.244.2.1", node: "node2")]
        let d = await desired([svc], [slice("etp", eps)])
        // Outside clients: the local endpoint; pods and the node (short-circuit in the fixed
        // chain): every endpoint; ClusterIP traffic: every endpoint (iTP Cluster).
        #expect(elements(d.model, SharedName.externalLocal) == ["192.168.1.11 . tcp . 30080", "203.0.113.5 . tcp . 80"])
        #expect(elements(d.model, SharedName.backendsLocal) == [
            "192.168.1.11 . tcp . 30080 . 0 : 10.244.1.1 . 8080", "203.0.113.5 . tcp . 80 . 0 : 10.244.1.1 . 8080",
        ])
        #expect(elements(d.model, "ln1") == ["192.168.1.11 . tcp . 30080", "203.0.113.5 . tcp . 80"])
        #expect(elements(d.model, "n2") == ["10.96.0.10 . tcp . 80", "192.168.1.11 . tcp . 30080", "203.0.113.5 . tcp . 80"])
        // eTP=Local never masquerades external clients unconditionally (source IP preserved):
        // the `external` chain masquerades only tuples of `ext` that are not in `ext-local`.
        #expect(elements(d.model, SharedName.external) == elements(d.model, SharedName.externalLocal))
    }

    @Test func externalTrafficPolicyLocalWithoutLocalEndpointsDropsExternal() async {
        let svc = service("etp", type: .nodePort, ports: [ServicePort(name: "http", port: 80, targetPort: .int(8080), nodePort: 30080)], etp: .local)
        let d = await desired([svc], [slice("etp", [EP(ip: "10.244.2.1", node: "node2")])])
        #expect(elements(d.model, SharedName.noEndpointDrop) == ["192.168.1.11 . tcp . 30080"])
        #expect(elements(d.model, SharedName.backends) == ["10.96.0.10 . tcp . 80 . 0 : 10.244.2.1 . 8080"])
    }

    @Test func externalTrafficPolicyIsIgnoredForClusterIPServices() async {
        let svc = service("cip", etp: .local, externalIPs: ["203.0.113.8"])
        let d = await desired([svc], [slice("cip", [EP(ip: "10.244.2.1", node: "node2")])])
        #expect(elements(d.model, SharedName.external) == ["203.0.113.8 . tcp . 80"])
        #expect(elements(d.model, SharedName.externalLocal).isEmpty)
    }

    @Test func ignoredServices() async {
        let svcs = [
            service("proxied-elsewhere", labels: [Service.serviceProxyNameLabel: "other"]),
            service("headless-label", labels: ["service.kubernetes.io/headless": ""]),
            service("headless", ips: []),
            Service(metadata: ObjectMeta(name: "ext", namespace: "ns1"), type: .externalName, externalName: "example.test"),
        ]
        let d = await desired(svcs, svcs.map { slice($0.name, [EP(ip: "10.244.1.1")]) })
        #expect(d.model == DesiredState(configuration: testConfig).model.with(contributions: [:]))
        #expect(d.skipped.isEmpty)
    }

    @Test func selectorlessWithoutSlicesIsRejected() async {
        var svc = service("manual")
        svc.selector = nil
        let d = await desired([svc], [])
        #expect(elements(d.model, SharedName.noEndpointReject) == ["10.96.0.10 . tcp . 80"])
    }

    @Test func invalidObjectsAreSkippedWithAReasonAndTheRestProgrammed() async {
        let bad = service("badnp", type: .nodePort, ips: ["10.96.0.99"], ports: [ServicePort(name: "http", port: 80, nodePort: 1234)])
        let d = await desired([service("good"), bad], [
            slice("good", ports: [EndpointPort(name: "http", port: nil)], [EP(ip: "10.244.1.1")]),
            slice("good", name: "good-extra", [EP(ip: "10.244.1.2")]),
            slice("ghost", [EP(ip: "10.244.1.3")]),
        ])
        #expect(d.skipped.map(\.description) == [
            "EndpointSlice ns1/ghost-ipv4: service ns1/ghost does not exist",
            "Service ns1/badnp: port 80: nodePort 1234 is outside 30000-32767",
            "Service ns1/good: EndpointSlice ns1/good-ipv4: port \"http\" (TCP) has no number",
        ])
        // The resolvable slice is still used.
        #expect(elements(d.model, SharedName.backends).contains("10.96.0.10 . tcp . 80 . 0 : 10.244.1.2 . 8080"))
        #expect(!lines(d.model).contains { $0.contains("1234") })
    }

    @Test func conflictingExternalIPKeepsTheFirstService() async {
        let a = service("a", ips: ["10.96.0.1"], externalIPs: ["203.0.113.7"])
        let b = service("b", ips: ["10.96.0.2"], externalIPs: ["203.0.113.7"])
        let d = await desired([a, b], [slice("a", [EP(ip: "10.244.1.1")]), slice("b", [EP(ip: "10.244.1.2")])])
        #expect(elements(d.model, SharedName.backends).contains("203.0.113.7 . tcp . 80 . 0 : 10.244.1.1 . 8080"))
        #expect(d.skipped.map(\.description) == [
            "Service ns1/b: 203.0.113.7 . tcp . 80 . 0 in backends is already used by another service",
            "Service ns1/b: 203.0.113.7 . tcp . 80 in ext is already used by another service",
            "Service ns1/b: 203.0.113.7 . tcp . 80 in n1 is already used by another service",
        ])
    }

    @Test func sctpAndSamePortDifferentProtocols() async {
        let svc = service("multi", ports: [ServicePort(name: "tcp", port: 53, targetPort: .int(53)),
                                           ServicePort(name: "udp", protocol: .udp, port: 53, targetPort: .int(53)),
                                           ServicePort(name: "sctp", protocol: .sctp, port: 9999, targetPort: .int(9999))])
        let d = await desired([svc], [slice("multi", ports: [EndpointPort(name: "tcp", port: 53), EndpointPort(name: "udp", protocol: .udp, port: 53),
                                                             EndpointPort(name: "sctp", protocol: .sctp, port: 9999)], [EP(ip: "10.244.1.1")])])
        #expect(elements(d.model, SharedName.backends) == [
            "10.96.0.10 . sctp . 9999 . 0 : 10.244.1.1 . 9999",
            "10.96.0.10 . tcp . 53 . 0 : 10.244.1.1 . 53",
            "10.96.0.10 . udp . 53 . 0 : 10.244.1.1 . 53",
        ])
    }
}

extension RulesetModel {
    func with(contributions: [NamespacedName: [TableFamily: Contribution]]) -> RulesetModel {
        var m = self
        m.contributions = contributions
        return m
    }
}
