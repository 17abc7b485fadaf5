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
        // A third slot, the tuple moves from the 2-endpoint set to the 3-endpoint one, and the
        // new endpoint's hairpin pair: elements only.
        #expect(text(plan.operations) == [
            "delete element ip nodenet n2 { 10.96.0.10 . tcp . 80 }",
            "add element ip nodenet backends { 10.96.0.10 . tcp . 80 . 2 : 10.244.1.3 . 8080 }",
            "add element ip nodenet hairpin { 10.244.1.3 . 10.244.1.3 }",
            "add element ip nodenet n3 { 10.96.0.10 . tcp . 80 }",
        ])
        #expect(plan.services == 1)
    }

    @Test func endpointRemovedMovesTheLastSlots() async throws {
        var h = try await Harness(base, slices)
        let plan = try await h.change([.upsert(.endpointSlice(slice("web", [EP(ip: "10.244.1.2")])))])
        #expect(text(plan.operations) == [
            "delete element ip nodenet backends { 10.96.0.10 . tcp . 80 . 0, 10.96.0.10 . tcp . 80 . 1 }",
            "delete element ip nodenet hairpin { 10.244.1.1 . 10.244.1.1 }",
            "delete element ip nodenet n2 { 10.96.0.10 . tcp . 80 }",
            "add element ip nodenet backends { 10.96.0.10 . tcp . 80 . 0 : 10.244.1.2 . 8080 }",
            "add element ip nodenet n1 { 10.96.0.10 . tcp . 80 }",
        ])
    }

    @Test func lastEndpointGoneSwitchesToRejectAndBack() async throws {
        var h = try await Harness(base, slices)
        var plan = try await h.change([.delete(ObjectKey(.endpointSlice, namespace: "ns1", name: "web-ipv4"))])
        var t = text(plan.operations)
        #expect(t.contains("delete element ip nodenet n2 { 10.96.0.10 . tcp . 80 }"))
        #expect(t.contains("delete element ip nodenet cluster-masq { 10.96.0.10 . tcp . 80 }"))
        #expect(t.contains("add element ip nodenet no-ep-reject { 10.96.0.10 . tcp . 80 }"))
        plan = try await h.change([.upsert(.endpointSlice(slices[0]))])
        t = text(plan.operations)
        #expect(t.contains("delete element ip nodenet no-ep-reject { 10.96.0.10 . tcp . 80 }"))
        #expect(t.contains("add element ip nodenet n2 { 10.96.0.10 . tcp . 80 }"))
    }

    @Test func serviceAddedAndRemoved() async throws {
        var h = try await Harness(base, slices)
        let svc = service("new", ips: ["10.96.0.12"])
        var plan = try await h.change([.upsert(.service(svc)), .upsert(.endpointSlice(slice("new", [EP(ip: "10.244.3.1")])))])
        #expect(text(plan.operations) == [
            "add element ip nodenet backends { 10.96.0.12 . tcp . 80 . 0 : 10.244.3.1 . 8080 }",
            "add element ip nodenet cluster-ips { 10.96.0.12 }",
            "add element ip nodenet cluster-masq { 10.96.0.12 . tcp . 80 }",
            "add element ip nodenet hairpin { 10.244.3.1 . 10.244.3.1 }",
            "add element ip nodenet n1 { 10.96.0.12 . tcp . 80 }",
        ])
        plan = try await h.change([.delete(ObjectKey(.service, namespace: "ns1", name: "new"))])
        let t = text(plan.operations)
        #expect(t.contains("delete element ip nodenet cluster-ips { 10.96.0.12 }"))
        #expect(t.contains("delete element ip nodenet backends { 10.96.0.12 . tcp . 80 . 0 }"))
        #expect(t.allSatisfy { $0.hasPrefix("delete element") })
    }

    @Test func sharedEndpointKeepsItsHairpinPairUntilTheLastServiceGoes() async throws {
        let twin = service("twin", ips: ["10.96.0.13"])
        var h = try await Harness(base + [twin], slices + [slice("twin", [EP(ip: "10.244.2.1")])])
        var plan = try await h.change([.delete(ObjectKey(.service, namespace: "ns1", name: "twin"))])
        #expect(!text(plan.operations).contains { $0.contains("hairpin") })
        plan = try await h.change([.delete(ObjectKey(.service, namespace: "ns1", name: "other"))])
        #expect(text(plan.operations).contains("delete element ip nodenet hairpin { 10.244.2.1 . 10.244.2.1 }"))
    }

    @Test func portChanged() async throws {
        var h = try await Harness(base, slices)
        var svc = base[0]
        svc.ports = [ServicePort(name: "http", port: 8000, targetPort: .int(8080))]
        let plan = try await h.change([.upsert(.service(svc))])
        let t = text(plan.operations)
        #expect(t.contains("delete element ip nodenet n2 { 10.96.0.10 . tcp . 80 }"))
        #expect(t.contains("add element ip nodenet n2 { 10.96.0.10 . tcp . 8000 }"))
        #expect(t.contains("add element ip nodenet backends { 10.96.0.10 . tcp . 8000 . 0 : 10.244.1.1 . 8080, 10.96.0.10 . tcp . 8000 . 1 : 10.244.1.2 . 8080 }"))
    }

    @Test func clusterIPToNodePort() async throws {
        var h = try await Harness(base, slices)
        var svc = base[0]
        svc.type = .nodePort
        svc.ports = [ServicePort(name: "http", port: 80, targetPort: .int(8080), nodePort: 30080)]
        let plan = try await h.change([.upsert(.service(svc))])
        // The node port is a tuple on the node's address, masqueraded (eTP Cluster).
        #expect(text(plan.operations) == [
            "add element ip nodenet backends { 192.168.1.11 . tcp . 30080 . 0 : 10.244.1.1 . 8080, 192.168.1.11 . tcp . 30080 . 1 : 10.244.1.2 . 8080 }",
            "add element ip nodenet ext { 192.168.1.11 . tcp . 30080 }",
            "add element ip nodenet n2 { 192.168.1.11 . tcp . 30080 }",
        ])
    }

    @Test func affinityOnTimeoutChangeAndOff() async throws {
        var h = try await Harness(base, slices)
        var svc = base[0]
        svc.sessionAffinityTimeout = CountRules.defaultAffinityTimeout
        var plan = try await h.change([.upsert(.service(svc))])
        // The default timeout's set and rules exist already: one element.
        #expect(text(plan.operations) == ["add element ip nodenet aff-10800s { 10.96.0.10 . tcp . 80 }"])
        // Another timeout: its set and its record rules come (rare), the chains rewritten.
        svc.sessionAffinityTimeout = 60
        plan = try await h.change([.upsert(.service(svc))])
        var t = text(plan.operations)
        #expect(t.contains("add set ip nodenet aff-60s { type ipv4_addr . inet_proto . inet_service ; }"))
        #expect(t.contains("add element ip nodenet aff-60s { 10.96.0.10 . tcp . 80 }"))
        #expect(t.contains("flush chain ip nodenet nat-postrouting"))
        // Learned choices of the tuple are checked against its endpoints (none went: kept).
        #expect(!t.contains { $0.contains("purge") })
        svc.sessionAffinityTimeout = nil
        plan = try await h.change([.upsert(.service(svc))])
        t = text(plan.operations)
        #expect(t.contains("delete set ip nodenet aff-60s"))
        // Affinity off: what the kernel learned for the tuple goes in the same transaction.
        #expect(plan.operations.contains(.purgeAffinity(.ip, map: SharedName.affinity,
                                                        keep: [ElementKey([.address(ip("10.96.0.10")), .proto(.tcp), .port(80)]): []], strict: false)))
    }

    @Test func endpointGoneFromAnAffinityServicePurgesItsLearnedChoices() async throws {
        var svc = base[0]
        svc.sessionAffinityTimeout = 300
        var h = try await Harness([svc, base[1]], slices)
        let plan = try await h.change([.upsert(.endpointSlice(slice("web", [EP(ip: "10.244.1.1")])))])
        let tuple = ElementKey([.address(ip("10.96.0.10")), .proto(.tcp), .port(80)])
        #expect(plan.operations.last == .purgeAffinity(.ip, map: SharedName.affinity,
                                                        keep: [tuple: [ElementKey([.address(ip("10.244.1.1")), .port(8080)])]], strict: false))
    }

    @Test func endpointCountBeyondTheFixedRulesAddsOneSetAndRule() async throws {
        var h = try await Harness(base, slices)
        let many = (1...20).map { EP(ip: "10.244.4.\($0)") }
        var plan = try await h.change([.upsert(.endpointSlice(slice("other", many)))])
        var t = text(plan.operations)
        #expect(t.contains("add set ip nodenet n20 { type ipv4_addr . inet_proto . inet_service ; }"))
        #expect(t.contains("add rule ip nodenet cluster-lb ip daddr . meta l4proto . th dport @n20 dnat ip to ip daddr . meta l4proto . th dport . numgen random mod 20 map @backends"))
        plan = try await h.change([.upsert(.endpointSlice(slices[1]))])
        t = text(plan.operations)
        #expect(t.contains("delete set ip nodenet n20"))
    }

    @Test func releasedExternalIPGoesToTheServiceThatWanted() async throws {
        let a = service("a", ips: ["10.96.0.1"], externalIPs: ["203.0.113.7"])
        let b = service("b", ips: ["10.96.0.2"], externalIPs: ["203.0.113.7"])
        var h = try await Harness([a, b], [slice("a", [EP(ip: "10.244.1.1")]), slice("b", [EP(ip: "10.244.1.2")])])
        #expect(h.planner.desired.conflicted == [NamespacedName("ns1", "b")])
        let plan = try await h.change([.delete(ObjectKey(.service, namespace: "ns1", name: "a"))])
        #expect(text(plan.operations).contains("add element ip nodenet backends { 203.0.113.7 . tcp . 80 . 0 : 10.244.1.2 . 8080 }"))
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
        #expect(text(plan.operations).contains("add element ip nodenet backends { 10.96.0.10 . tcp . 80 . 1 : 10.244.9.49 . 8080 }"))
        #expect(!text(plan.operations).contains { $0.contains("10.244.9.10 ") })
        #expect(sameTables(h.kernel.model, DesiredState(snapshot: await h.store.snapshot(), configuration: testConfig).model))
    }

    @Test func resyncEventMeansFullPlan() async throws {
        var h = try await Harness(base, slices)
        h.planner.record(.resync(version: 99))
        let plan = h.planner.plan(snapshot: await h.store.snapshot(), applied: h.kernel.model)
        #expect(plan.full)
        // Nothing to change; the learned affinity entries are checked (the kernel has the map).
        #expect(plan.operations.allSatisfy { if case .purgeAffinity = $0 { true } else { false } })
    }

    @Test func kernelDriftIsRepairedWithoutFlushingTheTable() async throws {
        var h = try await Harness(base, slices)
        // Someone deleted an element and a chain's rules are unknown (read back by nft).
        h.kernel.model.tables[.ip]!.sets["backends"]!.elements.removeValue(forKey: ElementKey([.address(ip("10.96.0.11")), .proto(.tcp), .port(80), .slot(0)]))
        h.kernel.model.tables[.ip]!.chains["services"]!.rules = nil
        h.planner.requestFullSync()
        let plan = h.planner.plan(snapshot: await h.store.snapshot(), applied: h.kernel.model)
        #expect(text(plan.operations).filter { !$0.hasPrefix("#") }.sorted() == [
            "add element ip nodenet backends { 10.96.0.11 . tcp . 80 . 0 : 10.244.2.1 . 8080 }",
            "add rule ip nodenet services goto cluster-lb",
            "add rule ip nodenet services ip daddr . meta l4proto . th dport @ext goto external",
            "add rule ip nodenet services ip saddr != 10.244.0.0/16 ip daddr . meta l4proto . th dport @cluster-masq meta mark set meta mark or 0x4000",
            "flush chain ip nodenet services",
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

    /// What the actor keeps as the kernel's believed rules after each sync: the chains and
    /// nothing else (holding the sets would make the next incremental plan copy every element),
    /// and still enough for a full sync to fill in rules the kernel read-back lacks.
    @Test func believedStateIsTheChainsOnlyAndStillFillsUnknownRules() async throws {
        let d = await desired(base, slices)
        let believed = d.model.chainsOnly
        #expect(believed.tables.keys.sorted() == d.model.tables.keys.sorted())
        for (family, table) in believed.tables {
            #expect(table.sets.isEmpty)
            #expect(table.chains == d.model.tables[family]?.chains)
        }
        #expect(believed.contributions.isEmpty)
        var kernel = d.model
        kernel.tables[.ip]?.chains["services"]?.rules = nil
        #expect(kernel.assumingRules(from: believed) == d.model)
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
        // 5 slots replaced by 1, 5 hairpin pairs by 1, the tuple from n5 to n1: 3 deletes, 3 adds.
        #expect(plan.operations.count == 6)
        #expect(plan.operations.allSatisfy { op in
            switch op {
            case .addElements, .deleteElements: true
            default: false
            }
        })
        #expect(text(plan.operations).allSatisfy { $0.contains("10.96.4.210") || $0.contains("10.200.0.1") || $0.contains("hairpin") })
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
