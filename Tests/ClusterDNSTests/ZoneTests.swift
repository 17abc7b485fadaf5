import ClusterState
import IPAddressing
import Testing
@testable import ClusterDNS

/// The CoreDNS conformance checklist (reference §3), numbered as there.
@Suite struct ZoneTests {
    @Test func clusterIPServices() async throws {
        let z = await Fixture.zone()
        #expect(z.ask("svc1.testns.svc.cluster.local", .a)?.answerText == ["A 10.0.0.1"])                  // 1
        #expect(z.ask("svc1.testns.svc.cluster.local", .a)?.answers.first?.ttl == 5)
        #expect(z.ask("svcempty.testns.svc.cluster.local", .a)?.answerText == ["A 10.0.0.1"])              // 2
        #expect(z.ask("svc1.testns.svc.cluster.local", .aaaa)?.isNoData == true)                           // 3
        #expect(z.ask("svc0.testns.svc.cluster.local", .a)?.isNXDomain == true)                            // 4
        #expect(z.ask("svc0.testns.svc.cluster.local", .aaaa)?.isNXDomain == true)
        #expect(z.ask("svc0.svc-nons.svc.cluster.local", .a)?.isNXDomain == true)                          // 5
        #expect(z.ask("svc1.testns.svc.cluster.local", .txt)?.isNoData == true)                            // 7
        #expect(z.ask("svc0.svc-nons.svc.cluster.local", .txt)?.isNXDomain == true)
        #expect(z.ask("svc6.testns.svc.cluster.local", .aaaa)?.answerText == ["AAAA 1234:abcd::1"])        // 8
        #expect(z.ask("svc-dual-stack.testns.svc.cluster.local", .a)?.answerText == ["A 10.0.0.3"])        // 12
        #expect(z.ask("svc-dual-stack.testns.svc.cluster.local", .aaaa)?.answerText == ["AAAA 10::3"])
        #expect(z.ask("svc1.testns.svc.cluster.local", .soa)?.isNoData == true)                            // 28
    }

    @Test func versionRecord() async {
        let z = await Fixture.zone()
        let r = z.ask("dns-version.cluster.local", .txt)                                                   // 6
        #expect(r?.answerText == ["TXT 1.1.0"])
        #expect(r?.answers.first?.ttl == 28800)
        #expect(z.ask("dns-version.cluster.local", .a)?.isNoData == true)
    }

    @Test func srvRecords() async {
        let z = await Fixture.zone()
        let srv = z.ask("_http._tcp.svc1.testns.svc.cluster.local", .srv)                                   // 9
        #expect(srv?.answerText == ["SRV 0 100 80 svc1.testns.svc.cluster.local."])
        #expect(srv?.additionalText == ["A 10.0.0.1"])
        #expect(srv?.additional.first?.name.description == "svc1.testns.svc.cluster.local.")
        #expect(z.ask("svc1.testns.svc.cluster.local", .srv)?.answerText == srv?.answerText)                // 10
        let six = z.ask("_http._tcp.svc6.testns.svc.cluster.local", .srv)                                   // 11
        #expect(six?.answerText == ["SRV 0 100 80 svc6.testns.svc.cluster.local."])
        #expect(six?.additionalText == ["AAAA 1234:abcd::1"])
        let dual = z.ask("svc-dual-stack.testns.svc.cluster.local", .srv)                                   // 12
        #expect(dual?.answerText == ["SRV 0 50 80 svc-dual-stack.testns.svc.cluster.local."])
        #expect(dual?.additionalText == ["A 10.0.0.3", "AAAA 10::3"])
        #expect(z.ask("_https._tcp.svc1.testns.svc.cluster.local", .srv)?.isNXDomain == true)
        #expect(z.ask("_http._udp.svc1.testns.svc.cluster.local", .srv)?.isNXDomain == true)
        #expect(z.ask("_http._tcp.svc1.testns.svc.cluster.local", .a)?.isNoData == true)
    }

    /// Kubernetes allows 63-character port names; "_" + such a name is no DNS label, so that
    /// port has no SRV record (rather than a record whose name is not valid wire).
    @Test func portNameTooLongForAnSRVLabel() async {
        let long = "service-port-" + String(repeating: "tcp-80-", count: 7) + "x"
        #expect(long.utf8.count == 63)
        let store = await Fixture.store()
        await store.apply([.upsert(.service(Fixture.service("long-ports", ips: ["10.0.0.7"],
                                                            ports: Fixture.http + [ServicePort(name: long, protocol: .tcp, port: 8080)])))])
        let z = ClusterZone(configuration: DNSConfiguration())
        z.rebuild(from: await store.snapshot())
        #expect(z.ask("long-ports.testns.svc.cluster.local", .srv)?.answerText == ["SRV 0 100 80 long-ports.testns.svc.cluster.local."])
        #expect(z.ask("_http._tcp.long-ports.testns.svc.cluster.local", .srv)?.answers.count == 1)
    }

    @Test func headless() async {
        let z = await Fixture.zone()
        #expect(z.ask("hdls1.testns.svc.cluster.local", .a)?.answerText == ["A 172.0.0.2", "A 172.0.0.3", "A 172.0.0.4", "A 172.0.0.5"]) // 13
        #expect(z.ask("hdls1.testns.svc.cluster.local", .aaaa)?.answerText == ["AAAA 5678:abcd::1", "AAAA 5678:abcd::2"])             // 14
        let srv = z.ask("_http._tcp.hdls1.testns.svc.cluster.local", .srv)                                                             // 15
        #expect(Set(srv?.answerText ?? []) == Set(["172-0-0-2", "172-0-0-3", "dup-name", "5678-abcd--1", "5678-abcd--2"].map {
            "SRV 0 16 80 \($0).hdls1.testns.svc.cluster.local."
        }))
        #expect(srv?.answers.count == 5)
        #expect(srv?.additional.count == 6)
        #expect(z.ask("172-0-0-2.hdls1.testns.svc.cluster.local", .a)?.answerText == ["A 172.0.0.2"])                                 // 16
        #expect(z.ask("dup-name.hdls1.testns.svc.cluster.local", .a)?.answerText == ["A 172.0.0.4", "A 172.0.0.5"])                   // 17
        #expect(z.ask("5678-abcd--1.hdls1.testns.svc.cluster.local", .aaaa)?.answerText == ["AAAA 5678:abcd::1"])                     // 18
        #expect(z.ask("172-0-0-20.hdlsprtls.testns.svc.cluster.local", .a)?.answerText == ["A 172.0.0.20"])                           // 19
        #expect(z.ask("hdlsprtls.testns.svc.cluster.local", .srv)?.isNoData == true)
        #expect(z.ask("bogusendpoint.hdls1.testns.svc.cluster.local", .a)?.isNXDomain == true)                                        // 20
        #expect(z.ask("bogusendpoint.svc0.testns.svc.cluster.local", .a)?.isNXDomain == true)
        #expect(z.ask("hdlsempty.testns.svc.cluster.local", .a)?.isNXDomain == true)        // spec: no ready endpoints
        #expect(z.ask("notready.hdls1.testns.svc.cluster.local", .a)?.isNXDomain == true)
        // Endpoint names exist for ClusterIP services too (CoreDNS extension).
        #expect(z.ask("ep1a.svc1.testns.svc.cluster.local", .a)?.answerText == ["A 172.0.0.1"])
    }

    @Test func publishNotReadyAddresses() async {
        let store = await Fixture.store()
        var svc = Fixture.service("hdls1", headless: true, ports: Fixture.http)
        svc.publishNotReadyAddresses = true
        await store.apply([.upsert(.service(svc))])
        let z = ClusterZone(configuration: DNSConfiguration())
        z.rebuild(from: await store.snapshot())
        #expect(z.ask("notready.hdls1.testns.svc.cluster.local", .a)?.answerText == ["A 172.0.0.9"])
    }

    @Test func externalName() async {
        let z = await Fixture.zone()
        let c = z.ask("external.testns.svc.cluster.local", .cname)                                                   // 21
        #expect(c?.answerText == ["CNAME ext.interwebs.test."])
        #expect(c?.forwardTarget == nil)
        let a = z.ask("external.testns.svc.cluster.local", .a)                                                       // 22
        #expect(a?.answerText == ["CNAME ext.interwebs.test."])
        #expect(a?.forwardTarget?.description == "ext.interwebs.test.")
        let inZone = z.ask("external-to-service.testns.svc.cluster.local", .a)                                       // 23
        #expect(inZone?.answerText == ["CNAME svc1.testns.svc.cluster.local.", "A 10.0.0.1"])
        #expect(inZone?.answers.last?.name.description == "svc1.testns.svc.cluster.local.")
        #expect(z.ask("endpoint.external.testns.svc.cluster.local", .a)?.isNXDomain == true)                         // 24
        #expect(z.ask("subdomain.subdomain.external.testns.svc.cluster.local", .cname)?.isNXDomain == true)
    }

    @Test func emptyNonTerminalsAndApex() async {
        let z = await Fixture.zone()
        for n in ["svc.cluster.local", "pod.cluster.local", "testns.svc.cluster.local"] {                              // 25
            #expect(z.ask(n, .a)?.isNoData == true, "\(n)")
        }
        #expect(z.ask("svc.cluster.local", .ns)?.isNoData == true)
        #expect(z.ask("foo.cluster.local", .ns)?.isNXDomain == true)                                                  // 26
        #expect(z.ask("foo.svc.cluster.local", .ns)?.isNXDomain == true)
        let soa = z.ask("cluster.local", .soa)                                                                        // 27
        #expect(soa?.answerText == ["SOA ns.dns.cluster.local."])
        #expect(z.ask("cluster.local", .ns)?.answerText == ["NS ns.dns.cluster.local."])
        for t in [RRType.a, .aaaa, .srv, .hinfo] { #expect(z.ask("cluster.local", t)?.isNoData == true) }
        #expect(z.ask("a.b.c.d.e.f.svc.cluster.local", .a)?.isNXDomain == true)
        #expect(z.ask("example.com", .a) == nil)
        let neg = z.ask("svc0.testns.svc.cluster.local", .a)
        if case .soa(_, _, _, let refresh, let retry, let expire, let minimum)? = neg?.authority.first?.data {
            #expect([refresh, retry, expire, minimum] == [7200, 1800, 86400, 5])
        } else {
            Issue.record("no SOA in negative answer")
        }
    }

    @Test func reverse() async {
        let z = await Fixture.zone()                                                                                  // 29
        #expect(z.ask("1.0.0.10.in-addr.arpa", .ptr)?.answerText.sorted() == ["PTR svc1.testns.svc.cluster.local.", "PTR svcempty.testns.svc.cluster.local."].sorted())
        #expect(z.ask("1.0.0.172.in-addr.arpa", .ptr)?.answerText == ["PTR ep1a.svc1.testns.svc.cluster.local."])
        #expect(z.ask("4.0.0.172.in-addr.arpa", .ptr)?.answerText == ["PTR dup-name.hdls1.testns.svc.cluster.local."])
        let v6 = "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.d.c.b.a.4.3.2.1.ip6.arpa"
        #expect(z.ask(v6, .ptr)?.answerText == ["PTR svc6.testns.svc.cluster.local."])
        // Unknown addresses fall through to the forwarder (`fallthrough in-addr.arpa ip6.arpa`).
        #expect(z.ask("101.0.0.10.in-addr.arpa", .ptr) == nil)
        #expect(z.ask("0.10.in-addr.arpa", .ptr) == nil)
    }

    @Test func pods() async {
        let insecure = await Fixture.zone(podMode: .insecure)                                                         // 30
        #expect(insecure.ask("10-240-0-1.podns.pod.cluster.local", .a)?.answerText == ["A 10.240.0.1"])
        #expect(insecure.ask("172-0-0-2.podns.pod.cluster.local", .a)?.answerText == ["A 172.0.0.2"])
        #expect(insecure.ask("fd00--1.podns.pod.cluster.local", .aaaa)?.answerText == ["AAAA fd00::1"])
        for t in [RRType.a, .aaaa, .hinfo] { #expect(insecure.ask("blah.podns.pod.cluster.local", t)?.isNXDomain == true) }
        #expect(insecure.ask("podns.pod.cluster.local", .a)?.isNoData == true)
        #expect(insecure.ask("10-240-0-1.podns.pod.cluster.local", .aaaa)?.isNoData == true)
        let verified = await Fixture.zone(podMode: .verified)                                                         // 31
        #expect(verified.ask("10-240-0-1.podns.pod.cluster.local", .a)?.answerText == ["A 10.240.0.1"])
        #expect(verified.ask("172-0-0-2.podns.pod.cluster.local", .a)?.isNXDomain == true)
        #expect(verified.ask("10-240-0-1.otherns.pod.cluster.local", .a)?.isNXDomain == true)
        #expect(verified.ask("pod-nons.pod.cluster.local", .a)?.isNXDomain == true)
        #expect(verified.ask("podns.pod.cluster.local", .a)?.isNoData == true)
        let disabled = await Fixture.zone(podMode: .disabled)
        #expect(disabled.ask("10-240-0-1.podns.pod.cluster.local", .a)?.isNXDomain == true)
    }

    @Test func casePreservedAndSERVFAILBeforeSync() async {
        let z = await Fixture.zone()                                                                                  // 32
        let r = z.ask("SvC1.TeStNs.SvC.cLuStEr.LoCaL", .a)
        #expect(r?.answerText == ["A 10.0.0.1"])
        #expect(r?.answers.first?.name.wire == DNSName("SvC1.TeStNs.SvC.cLuStEr.LoCaL")!.wire)
        let early = await Fixture.zone(synced: false)                                                                 // 33
        #expect(early.ask("svc1.testns.svc.cluster.local", .a)?.rcode == .servFail)
        #expect(early.ask("nothing.testns.svc.cluster.local", .a)?.rcode == .servFail)
        #expect(early.ask("example.com", .a) == nil)
    }

    @Test func configurableDomainAndTTL() async {
        let z = ClusterZone(configuration: DNSConfiguration(clusterDomain: "Corp.Example.", ttl: 30))
        z.rebuild(from: await Fixture.store().snapshot())
        let r = z.ask("svc1.testns.svc.corp.example", .a)
        #expect(r?.answerText == ["A 10.0.0.1"])
        #expect(r?.answers.first?.ttl == 30)
        #expect(z.ask("svc1.testns.svc.cluster.local", .a) == nil)   // not ours any more: forwarded
        #expect(z.ask("_http._tcp.svc1.testns.svc.corp.example", .srv)?.answerText == ["SRV 0 100 80 svc1.testns.svc.corp.example."])
        #expect(z.ask("nope.testns.svc.corp.example", .a)?.authority.first?.ttl == 30)
    }

    @Test func incrementalUpdatesFromStoreEvents() async throws {
        let store = await Fixture.store()
        let z = ClusterZone(configuration: DNSConfiguration(podMode: .verified), replicas: 2)
        let follower = Task { await z.follow(store, logger: .init(label: "test")) }
        defer { follower.cancel() }
        try await waitUntil { z.serviceCount > 0 }
        await store.apply([.upsert(.service(Fixture.service("new", ips: ["10.0.9.9"])))])
        try await waitUntil { z.ask("new.testns.svc.cluster.local", .a)?.answerText == ["A 10.0.9.9"] }
        #expect(z.ask("new.testns.svc.cluster.local", .a, replica: 1)?.answerText == ["A 10.0.9.9"])   // every replica
        await store.apply([.delete(ObjectKey(.service, namespace: "testns", name: "new"))])
        try await waitUntil { z.ask("new.testns.svc.cluster.local", .a)?.isNXDomain == true }
        #expect(z.ask("new.testns.svc.cluster.local", .a, replica: 1)?.isNXDomain == true)
        #expect(z.ask("1.0.0.10.in-addr.arpa", .ptr)?.answers.count == 2)
        #expect(z.ask("9.9.0.10.in-addr.arpa", .ptr) == nil)
        // Endpoints change: a slice update alone moves the headless answer.
        await store.apply([.delete(ObjectKey(.endpointSlice, namespace: "testns", name: "hdls1-v4"))])
        try await waitUntil { z.ask("hdls1.testns.svc.cluster.local", .a)?.isNoData == true }
        // Attachments made by the CNI path count for verified pod records before any pod status.
        await store.apply([.upsert(.attachment(PodAttachment(containerID: "c1", ifname: "eth0", netns: "/run/netns/x",
                                                             podNamespace: "podns", podName: "cni-pod",
                                                             ips: [IPPrefix("10.240.0.7/24")!], hostInterface: "veth1")))])
        try await waitUntil { z.ask("10-240-0-7.podns.pod.cluster.local", .a)?.answerText == ["A 10.240.0.7"] }
        await store.apply([.delete(ObjectKey(.attachment, name: "c1/eth0"))])
        try await waitUntil { z.ask("10-240-0-7.podns.pod.cluster.local", .a)?.isNXDomain == true }
        // Pods (verified) follow too.
        await store.apply([.upsert(.pod(Pod(metadata: ObjectMeta(name: "p2", namespace: "podns"), podIPs: [Fixture.ip("10.240.0.2")])))])
        try await waitUntil { z.ask("10-240-0-2.podns.pod.cluster.local", .a)?.answerText == ["A 10.240.0.2"] }
    }
}

/// Polls (bounded: 5 s) until `condition` holds.
func waitUntil(_ condition: () -> Bool, sourceLocation: SourceLocation = #_sourceLocation) async throws {
    for _ in 0..<500 {
        if condition() { return }
        try await Task.sleep(for: .milliseconds(10))
    }
    Issue.record("condition not met within 5 s", sourceLocation: sourceLocation)
}
