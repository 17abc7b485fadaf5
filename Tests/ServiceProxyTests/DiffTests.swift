import ClusterState
import Testing
@testable import ServiceProxy

/// A store, a planner fed by its events, and a simulated kernel: what the actor does, without
/// the actor.
private struct Harness {
    let store = ClusterStore()
    let events: StoreSubscription
    var planner = ServiceProxyPlanner(configuration: testConfig)
    var kernel = SimulatedKernel()

    init(_ services: [Service], _ slices: [EndpointSlice]) async throws {
        events = await store.subscribe()
        await store.apply(services.map { .upsert(.service($0)) } + slices.map { .upsert(.endpointSlice($0)) })
        _ = await events.nextEvent()
        let plan = planner.plan(snapshot: await store.snapshot(), applied: nil)
        #expect(plan.full)
        try kernel.apply(plan.operations)
    }

    /// Applies store changes, plans incrementally, applies to the kernel, and checks the kernel
    /// equals a from-scratch build of the new snapshot.
    mutating func change(_ changes: [StoreChange]) async throws -> ServiceProxyPlanner.Plan {
        await store.apply(changes)
        if let e = await events.nextEvent() { planner.record(e) }
        let snap = await store.snapshot()
        let plan = planner.plan(snapshot: snap, applied: nil)
        #expect(!plan.full)
        try kernel.apply(plan.operations)
        let scratch = DesiredState(snapshot: snap, configuration: testConfig).model
        #expect(sameTables(kernel.model, scratch))
        // And a full diff from what the kernel holds now finds nothing to do.
        #expect(RulesetDiff.operations(from: kernel.model, to: scratch).isEmpty)
        return plan
    }
}

private func text(_ ops: [RulesetOperation]) -> [String] {
    NftRenderer().script(ops).split(separator: "\n").map(String.init)
}

@Suite struct DiffTests {
    let base = [service("web"), service("other", ips: ["10.96.0.11"])]
    let slices = [slice("web", [EP(ip: "10.244.1.1"), EP(ip: "10.244.1.2")]), slice("other", [EP(ip: "10.244.2.1")])]

    @Test func fullBuildFromNothingIsAcceptedByTheKernelModel() async throws {
        let h = try await Harness(base, slices)
        #expect(sameTables(h.kernel.model, h.planner.desired.model))
    }

    @Test func endpointAdded() async throws {
        var h = try await Harness(base, slices)
        let plan = try await h.change([.upsert(.endpointSlice(slice("web", [EP(ip: "10.244.1.1"), EP(ip: "10.244.1.2"), EP(ip: "10.244.1.3")])))])
        #expect(text(plan.operations) == [
            "flush chain ip nodenet service-ns1/web/tcp/http",
            "add chain ip nodenet endpoint-ns1/web/tcp/http__10.244.1.3/8080",
            "add rule ip nodenet endpoint-ns1/web/tcp/http__10.244.1.3/8080 ip saddr 10.244.1.3 jump mark-for-masquerade comment \"hairpin\"",
            "add rule ip nodenet endpoint-ns1/web/tcp/http__10.244.1.3/8080 meta l4proto tcp dnat to 10.244.1.3:8080",
            "add rule ip nodenet service-ns1/web/tcp/http ip daddr 10.96.0.10 meta l4proto tcp th dport 80 ip saddr != 10.244.0.0/16 jump mark-for-masquerade",
            "add rule ip nodenet service-ns1/web/tcp/http numgen random mod 3 vmap { 0 : goto endpoint-ns1/web/tcp/http__10.244.1.1/8080, 1 : goto endpoint-ns1/web/tcp/http__10.244.1.2/8080, 2 : goto endpoint-ns1/web/tcp/http__10.244.1.3/8080 }",
        ])
        #expect(plan.services == 1)
    }

    @Test func endpointRemovedDeletesItsChainAfterTheJumpIsGone() async throws {
        var h = try await Harness(base, slices)
        let plan = try await h.change([.upsert(.endpointSlice(slice("web", [EP(ip: "10.244.1.1")])))])
        let t = text(plan.operations)
        let flush = try #require(t.firstIndex(of: "flush chain ip nodenet service-ns1/web/tcp/http"))
        let delete = try #require(t.firstIndex(of: "delete chain ip nodenet endpoint-ns1/web/tcp/http__10.244.1.2/8080"))
        #expect(flush < delete)
        #expect(!t.contains { $0.contains("ns1/other") })
    }

    @Test func lastEndpointGoneSwitchesToRejectAndBack() async throws {
        var h = try await Harness(base, slices)
        var plan = try await h.change([.delete(ObjectKey(.endpointSlice, namespace: "ns1", name: "web-ipv4"))])
        var t = text(plan.operations)
        #expect(t.contains("delete element ip nodenet service-ips { 10.96.0.10 . tcp . 80 }"))
        #expect(t.contains("add element ip nodenet no-endpoint-services { 10.96.0.10 . tcp . 80 : goto reject-chain }"))
        // The element goes before the chain it pointed to.
        #expect(t.firstIndex(of: "delete element ip nodenet service-ips { 10.96.0.10 . tcp . 80 }")!
            < t.firstIndex(of: "delete chain ip nodenet service-ns1/web/tcp/http")!)
        plan = try await h.change([.upsert(.endpointSlice(slices[0]))])
        t = text(plan.operations)
        #expect(t.contains("delete element ip nodenet no-endpoint-services { 10.96.0.10 . tcp . 80 }"))
    }

    @Test func serviceAddedAndRemoved() async throws {
        var h = try await Harness(base, slices)
        let svc = service("new", ips: ["10.96.0.12"])
        var plan = try await h.change([.upsert(.service(svc)), .upsert(.endpointSlice(slice("new", [EP(ip: "10.244.3.1")])))])
        #expect(text(plan.operations).allSatisfy { $0.contains("ns1/new/") || $0.contains("10.96.0.12") })
        plan = try await h.change([.delete(ObjectKey(.service, namespace: "ns1", name: "new"))])
        let t = text(plan.operations)
        #expect(t.contains("delete chain ip nodenet service-ns1/new/tcp/http"))
        #expect(t.contains("delete element ip nodenet cluster-ips { 10.96.0.12 }"))
    }

    @Test func portChanged() async throws {
        var h = try await Harness(base, slices)
        var svc = base[0]
        svc.ports = [ServicePort(name: "http", port: 8000, targetPort: .int(8080))]
        let plan = try await h.change([.upsert(.service(svc))])
        let t = text(plan.operations)
        #expect(t.contains("delete element ip nodenet service-ips { 10.96.0.10 . tcp . 80 }"))
        #expect(t.contains("add element ip nodenet service-ips { 10.96.0.10 . tcp . 8000 : goto service-ns1/web/tcp/http }"))
    }

    @Test func clusterIPToNodePort() async throws {
        var h = try await Harness(base, slices)
        var svc = base[0]
        svc.type = .nodePort
        svc.ports = [ServicePort(name: "http", port: 80, targetPort: .int(8080), nodePort: 30080)]
        let plan = try await h.change([.upsert(.service(svc))])
        let t = text(plan.operations)
        #expect(t.contains("add chain ip nodenet external-ns1/web/tcp/http"))
        #expect(t.contains("add element ip nodenet service-nodeports { tcp . 30080 : goto external-ns1/web/tcp/http }"))
        // The endpoint chains did not change.
        #expect(!t.contains { $0.contains("endpoint-") && !$0.contains("vmap") })
    }

    @Test func affinityOnAndOff() async throws {
        var h = try await Harness(base, slices)
        var svc = base[0]
        svc.sessionAffinityTimeout = 30
        var plan = try await h.change([.upsert(.service(svc))])
        var t = text(plan.operations)
        #expect(t.contains("add set ip nodenet affinity-ns1/web/tcp/http__10.244.1.1/8080 { type ipv4_addr ; flags dynamic,timeout ; timeout 30s ; }"))
        #expect(t.contains("flush chain ip nodenet endpoint-ns1/web/tcp/http__10.244.1.1/8080"))
        // Timeout change: the set is replaced, and the chains using it rewritten around that.
        svc.sessionAffinityTimeout = 60
        plan = try await h.change([.upsert(.service(svc))])
        t = text(plan.operations)
        #expect(t.contains("delete set ip nodenet affinity-ns1/web/tcp/http__10.244.1.1/8080"))
        svc.sessionAffinityTimeout = nil
        plan = try await h.change([.upsert(.service(svc))])
        t = text(plan.operations)
        #expect(t.contains("delete set ip nodenet affinity-ns1/web/tcp/http__10.244.1.2/8080"))
    }

    @Test func releasedExternalIPGoesToTheServiceThatWanted() async throws {
        let a = service("a", ips: ["10.96.0.1"], externalIPs: ["203.0.113.7"])
        let b = service("b", ips: ["10.96.0.2"], externalIPs: ["203.0.113.7"])
        var h = try await Harness([a, b], [slice("a", [EP(ip: "10.244.1.1")]), slice("b", [EP(ip: "10.244.1.2")])])
        #expect(h.planner.desired.conflicted == [NamespacedName("ns1", "b")])
        let plan = try await h.change([.delete(ObjectKey(.service, namespace: "ns1", name: "a"))])
        #expect(text(plan.operations).contains("add element ip nodenet service-ips { 203.0.113.7 . tcp . 80 : goto external-ns1/b/tcp/http }"))
        #expect(h.planner.desired.conflicted.isEmpty)
        #expect(h.planner.desired.skipped.isEmpty)
    }

    @Test func burstOfEventsIsOneTransaction() async throws {
        var h = try await Harness(base, slices)
        for i in 0..<50 {
            await h.store.apply([.upsert(.endpointSlice(slice("web", [EP(ip: "10.244.1.1"), EP(ip: "10.244.9.\(i)")])))])
        }
        while let e = await h.events.nextIfBuffered() { h.planner.record(e) }
        let plan = h.planner.plan(snapshot: await h.store.snapshot(), applied: nil)
        try h.kernel.apply(plan.operations)
        #expect(text(plan.operations).contains("add chain ip nodenet endpoint-ns1/web/tcp/http__10.244.9.49/8080"))
        #expect(!text(plan.operations).contains { $0.contains("10.244.9.10/") })
        #expect(sameTables(h.kernel.model, DesiredState(snapshot: await h.store.snapshot(), configuration: testConfig).model))
    }

    @Test func resyncEventMeansFullPlan() async throws {
        var h = try await Harness(base, slices)
        h.planner.record(.resync(version: 99))
        let plan = h.planner.plan(snapshot: await h.store.snapshot(), applied: h.kernel.model)
        #expect(plan.full)
        #expect(plan.operations.isEmpty)
    }

    @Test func kernelDriftIsRepairedWithoutFlushingTheTable() async throws {
        var h = try await Harness(base, slices)
        // Someone deleted an element and a chain's rules are unknown (read back by nft).
        h.kernel.model.tables[.ip]!.sets["service-ips"]!.elements.removeValue(forKey: ElementKey([.address(ip("10.96.0.11")), .proto(.tcp), .port(80)]))
        h.kernel.model.tables[.ip]!.chains["service-ns1/web/tcp/http"]!.rules = nil
        h.planner.requestFullSync()
        let plan = h.planner.plan(snapshot: await h.store.snapshot(), applied: h.kernel.model)
        #expect(text(plan.operations).sorted() == [
            "add element ip nodenet service-ips { 10.96.0.11 . tcp . 80 : goto service-ns1/other/tcp/http }",
            "add rule ip nodenet service-ns1/web/tcp/http ip daddr 10.96.0.10 meta l4proto tcp th dport 80 ip saddr != 10.244.0.0/16 jump mark-for-masquerade",
            "add rule ip nodenet service-ns1/web/tcp/http numgen random mod 2 vmap { 0 : goto endpoint-ns1/web/tcp/http__10.244.1.1/8080, 1 : goto endpoint-ns1/web/tcp/http__10.244.1.2/8080 }",
            "flush chain ip nodenet service-ns1/web/tcp/http",
        ])
    }

    @Test func tableGoneEntirelyIsDeletedInOneOperation() {
        let full = DesiredState(configuration: testConfig).model
        var onlyV4 = full
        onlyV4.tables[.ip6] = nil
        #expect(RulesetDiff.operations(from: full, to: onlyV4) == [.deleteTable(.ip6)])
    }

    @Test func desiredStateAlwaysHoldsBothFamilies() {
        let model = DesiredState(configuration: testConfig).model
        #expect(model.tables[.ip] != nil && model.tables[.ip6] != nil)
    }

    @Test func foreignChainsInTheKernelAreLeftAlone() {
        let desired = DesiredState(configuration: testConfig).model
        var kernel = desired
        kernel.tables[.ip]?.chains["pod-egress"] = NFChain("pod-egress", base: nil, rules: [])
        let ops = RulesetDiff.operations(from: kernel.without(["pod-egress"]), to: desired)
        #expect(ops.isEmpty)
    }

    @Test func oneServiceChangeAmong10000TouchesOnlyThatService() async throws {
        var services: [Service] = [], slices: [EndpointSlice] = []
        for i in 0..<10_000 {
            let name = "s\(i)"
            services.append(service(name, ips: ["10.96.\(i / 256).\(i % 256)"]))
            slices.append(slice(name, (0..<5).map { EP(ip: "10.\(128 + i / 8192).\((i / 32) % 256).\((i % 32) * 8 + $0)") }))
        }
        var h = try await Harness(services, slices)
        let plan = try await h.change([.upsert(.endpointSlice(slice("s1234", [EP(ip: "10.200.0.1")])))])
        let t = text(plan.operations)
        #expect(t.allSatisfy { $0.contains("ns1/s1234/") })
        // 5 old endpoint chains flushed and deleted (10), the service chain flushed and refilled
        // (3), one new endpoint chain with its 2 rules (3): no map element changes.
        #expect(t.count == 16)
    }
}

extension StoreSubscription {
    func nextEvent() async -> StoreEvent? {
        var it = makeAsyncIterator()
        return await it.next()
    }

    /// The next event if one is already queued (tests drain bursts with this).
    func nextIfBuffered() async -> StoreEvent? {
        await withTaskGroup(of: StoreEvent?.self) { g in
            g.addTask { await self.nextEvent() }
            g.addTask { try? await Task.sleep(for: .milliseconds(50)); return nil }
            let first = await g.next() ?? nil
            g.cancelAll()
            return first
        }
    }
}
