import ClusterState
import Testing
@testable import ServiceProxy

/// kube-proxy's Service semantics, one behaviour per test.
@Suite struct SemanticsTests {
    @Test func noEndpointsAreRejectedNotDropped() async {
        let svc = service("empty", type: .nodePort, ports: [ServicePort(name: "http", port: 80, nodePort: 30080)], externalIPs: ["203.0.113.1"])
        let d = await desired([svc], [])
        #expect(serviceLines(d.model, "empty").isEmpty)  // no chains at all
        let text = lines(d.model)
        #expect(text.contains("add element ip nodenet no-endpoint-services { 10.96.0.10 . tcp . 80 : goto reject-chain, 203.0.113.1 . tcp . 80 : goto reject-chain }"))
        #expect(text.contains("add element ip nodenet no-endpoint-nodeports { tcp . 30080 : goto reject-chain }"))
    }

    @Test func terminatingEndpointsAreAFallbackOnly() async {
        let eps = [EP(ip: "10.244.1.1", ready: false, serving: true, terminating: true),
                   EP(ip: "10.244.1.2", ready: false, serving: false, terminating: true)]
        var d = await desired([service("t")], [slice("t", eps)])
        var text = serviceLines(d.model, "ns1/t/")
        #expect(text.contains { $0.contains("numgen random mod 1 vmap { 0 : goto endpoint-ns1/t/tcp/http__10.244.1.1/8080 }") })
        #expect(!text.contains { $0.contains("10.244.1.2") })
        // A ready endpoint appears: the terminating one is no longer used.
        d = await desired([service("t")], [slice("t", eps + [EP(ip: "10.244.1.3", node: "node2")])])
        text = serviceLines(d.model, "ns1/t/")
        #expect(text.contains { $0.contains("numgen random mod 1 vmap { 0 : goto endpoint-ns1/t/tcp/http__10.244.1.3/8080 }") })
        #expect(!text.contains { $0.contains("10.244.1.1") })
    }

    @Test func notReadyEndpointsAreNotUsed() async {
        let d = await desired([service("nr")], [slice("nr", [EP(ip: "10.244.1.1", ready: false)])])
        #expect(lines(d.model).contains("add element ip nodenet no-endpoint-services { 10.96.0.10 . tcp . 80 : goto reject-chain }"))
    }

    @Test func internalTrafficPolicyLocal() async {
        let eps = [EP(ip: "10.244.1.1"), EP(ip: "10.244.2.1", node: "node2")]
        var d = await desired([service("itp", itp: .local)], [slice("itp", eps)])
        var text = serviceLines(d.model, "ns1/itp/")
        #expect(text.contains("add element ip nodenet service-ips { 10.96.0.10 . tcp . 80 : goto local-ns1/itp/tcp/http }"))
        #expect(text.contains("add rule ip nodenet local-ns1/itp/tcp/http numgen random mod 1 vmap { 0 : goto endpoint-ns1/itp/tcp/http__10.244.1.1/8080 }"))
        #expect(!text.contains { $0.contains("10.244.2.1") })
        // No local endpoint: internal traffic is dropped (not rejected), as kube-proxy does.
        d = await desired([service("itp", itp: .local)], [slice("itp", [EP(ip: "10.244.2.1", node: "node2")])])
        text = lines(d.model)
        #expect(text.contains("add element ip nodenet no-endpoint-services { 10.96.0.10 . tcp . 80 : drop }"))
        #expect(serviceLines(d.model, "chain ip nodenet").allSatisfy { !$0.contains("ns1/itp/") })
    }

    @Test func externalTrafficPolicyLocalShortCircuitsPods() async {
        let svc = service("etp", type: .nodePort, ports: [ServicePort(name: "http", port: 80, targetPort: .int(8080), nodePort: 30080)],
                          etp: .local, externalIPs: ["203.0.113.5"])
        let eps = [EP(ip: "10.244.1.1"), EP(ip: "10.244.2.1", node: "node2")]
        let d = await desired([svc], [slice("etp", eps)])
        let text = serviceLines(d.model, "ns1/etp/")
        let ext = "external-ns1/etp/tcp/http"
        for line in [
            "add rule ip nodenet \(ext) ip saddr 10.244.0.0/16 goto service-ns1/etp/tcp/http comment \"short-circuit pod traffic\"",
            "add rule ip nodenet \(ext) fib saddr type local jump mark-for-masquerade comment \"masquerade local traffic\"",
            "add rule ip nodenet \(ext) fib saddr type local goto service-ns1/etp/tcp/http comment \"short-circuit local traffic\"",
            "add rule ip nodenet \(ext) goto local-ns1/etp/tcp/http",
            "add element ip nodenet service-nodeports { tcp . 30080 : goto \(ext) }",
            // ClusterIP traffic still uses every endpoint (iTP=Cluster).
            "add rule ip nodenet service-ns1/etp/tcp/http numgen random mod 2 vmap { 0 : goto endpoint-ns1/etp/tcp/http__10.244.1.1/8080, 1 : goto endpoint-ns1/etp/tcp/http__10.244.2.1/8080 }",
            "add rule ip nodenet local-ns1/etp/tcp/http numgen random mod 1 vmap { 0 : goto endpoint-ns1/etp/tcp/http__10.244.1.1/8080 }",
        ] {
            #expect(text.contains(line), "\(line)")
        }
        // eTP=Local never masquerades external clients unconditionally (source IP preserved).
        #expect(!text.contains("add rule ip nodenet \(ext) jump mark-for-masquerade"))
    }

    @Test func externalTrafficPolicyLocalWithoutLocalEndpointsDropsExternal() async {
        let svc = service("etp", type: .nodePort, ports: [ServicePort(name: "http", port: 80, targetPort: .int(8080), nodePort: 30080)], etp: .local)
        let d = await desired([svc], [slice("etp", [EP(ip: "10.244.2.1", node: "node2")])])
        let text = lines(d.model)
        #expect(text.contains("add element ip nodenet no-endpoint-nodeports { tcp . 30080 : drop }"))
        #expect(text.contains("add element ip nodenet service-ips { 10.96.0.10 . tcp . 80 : goto service-ns1/etp/tcp/http }"))
    }

    @Test func externalTrafficPolicyIsIgnoredForClusterIPServices() async {
        let svc = service("cip", etp: .local, externalIPs: ["203.0.113.8"])
        let d = await desired([svc], [slice("cip", [EP(ip: "10.244.2.1", node: "node2")])])
        let text = serviceLines(d.model, "ns1/cip/")
        #expect(text.contains("add rule ip nodenet external-ns1/cip/tcp/http goto service-ns1/cip/tcp/http"))
        #expect(!text.contains { $0.contains("local-ns1/cip") })
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
        #expect(lines(d.model).contains("add element ip nodenet no-endpoint-services { 10.96.0.10 . tcp . 80 : goto reject-chain }"))
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
        #expect(serviceLines(d.model, "ns1/good/").contains("add rule ip nodenet service-ns1/good/tcp/http numgen random mod 1 vmap { 0 : goto endpoint-ns1/good/tcp/http__10.244.1.2/8080 }"))
        #expect(!lines(d.model).contains { $0.contains("1234") })
    }

    @Test func conflictingExternalIPKeepsTheFirstService() async {
        let a = service("a", ips: ["10.96.0.1"], externalIPs: ["203.0.113.7"])
        let b = service("b", ips: ["10.96.0.2"], externalIPs: ["203.0.113.7"])
        let d = await desired([a, b], [slice("a", [EP(ip: "10.244.1.1")]), slice("b", [EP(ip: "10.244.1.2")])])
        #expect(lines(d.model).contains { $0.contains("203.0.113.7 . tcp . 80 : goto external-ns1/a/tcp/http") })
        #expect(d.skipped.map(\.description) == ["Service ns1/b: 203.0.113.7 . tcp . 80 in service-ips is already used by another service"])
    }

    @Test func sctpAndSamePortDifferentProtocols() async {
        let svc = service("multi", ports: [ServicePort(name: "tcp", port: 53, targetPort: .int(53)),
                                           ServicePort(name: "udp", protocol: .udp, port: 53, targetPort: .int(53)),
                                           ServicePort(name: "sctp", protocol: .sctp, port: 9999, targetPort: .int(9999))])
        let d = await desired([svc], [slice("multi", ports: [EndpointPort(name: "tcp", port: 53), EndpointPort(name: "udp", protocol: .udp, port: 53),
                                                             EndpointPort(name: "sctp", protocol: .sctp, port: 9999)], [EP(ip: "10.244.1.1")])])
        let text = lines(d.model)
        #expect(text.contains("add element ip nodenet service-ips { 10.96.0.10 . tcp . 53 : goto service-ns1/multi/tcp/tcp, 10.96.0.10 . udp . 53 : goto service-ns1/multi/udp/udp, 10.96.0.10 . sctp . 9999 : goto service-ns1/multi/sctp/sctp }"))
        #expect(text.contains("add rule ip nodenet endpoint-ns1/multi/sctp/sctp__10.244.1.1/9999 meta l4proto sctp dnat to 10.244.1.1:9999"))
    }
}

extension RulesetModel {
    func with(contributions: [NamespacedName: [TableFamily: Contribution]]) -> RulesetModel {
        var m = self
        m.contributions = contributions
        return m
    }
}
