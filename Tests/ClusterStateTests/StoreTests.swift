import Foundation
import NodenetTestSupport
import IPAddressing
import Testing
@testable import ClusterState

func node(_ name: String, _ cidr: String, _ ip: String) -> Node {
    Node(metadata: ObjectMeta(name: name), podCIDRs: [IPPrefix(cidr)!], addresses: [NodeAddress(type: "InternalIP", address: ip)])
}

func service(_ ns: String, _ name: String, ip: String? = nil, selector: [String: String]? = nil, ports: [ServicePort] = [ServicePort(port: 80)]) -> Service {
    Service(metadata: ObjectMeta(name: name, namespace: ns), clusterIPs: ip.map { [IPAddress($0)!] } ?? [], ports: ports, selector: selector)
}

func pod(_ ns: String, _ name: String, labels: [String: String], ips: [String] = [], node: String = "node1", ready: Bool? = nil) -> Pod {
    Pod(metadata: ObjectMeta(name: name, namespace: ns, labels: labels), nodeName: node, podIPs: ips.map { IPAddress($0)! }, ready: ready)
}

@Suite struct StoreTests {
    @Test func applyPublishesOnlyRealChanges() async throws {
        let store = ClusterStore()
        let events = await store.subscribe()
        var it = events.makeAsyncIterator()
        let n1 = node("node1", "10.244.1.0/24", "192.168.1.11")
        let made = await store.apply([.upsert(.node(n1))])
        #expect(made.count == 1 && made[0].old == nil)
        #expect(await store.apply([.upsert(.node(n1))]).isEmpty, "an identical upsert is a no-op")
        #expect(await store.apply([.delete(ObjectKey(.node, name: "nope"))]).isEmpty)
        #expect(await store.version == 1)
        guard case .changed(let v, let changes)? = await it.next() else { Issue.record("no event"); return }
        #expect(v == 1)
        #expect(changes.map(\.key) == [ObjectKey(.node, name: "node1")])
    }

    @Test func snapshotsAreConsistentAndImmutable() async {
        let store = ClusterStore()
        await store.apply([.upsert(.node(node("node1", "10.244.1.0/24", "192.168.1.11")))])
        let before = await store.snapshot()
        await store.apply([.upsert(.node(node("node2", "10.244.2.0/24", "192.168.1.12"))), .delete(ObjectKey(.node, name: "node1"))])
        let after = await store.snapshot()
        #expect(before.nodes.keys.sorted() == ["node1"])
        #expect(before.version == 1)
        #expect(after.nodes.keys.sorted() == ["node2"])
        #expect(after.version == 2)
    }

    @Test func batchCollapsesRepeatedKeys() async {
        let store = ClusterStore()
        let a = node("node1", "10.244.1.0/24", "192.168.1.11")
        var b = a
        b.podCIDRs = [IPPrefix("10.244.9.0/24")!]
        let made = await store.apply([.upsert(.node(a)), .upsert(.node(b))])
        #expect(made.count == 1)
        #expect(made[0].old == nil && made[0].new == .node(b))
        // Created and deleted in one batch: nothing happened.
        let none = await store.apply([.upsert(.node(node("tmp", "10.244.3.0/24", "192.168.1.13"))), .delete(ObjectKey(.node, name: "tmp"))])
        #expect(none.isEmpty)
    }

    @Test func slowSubscriberIsToldToResync() async {
        let store = ClusterStore()
        let slow = await store.subscribe(bufferLimit: 4)
        for i in 0..<10 {
            await store.apply([.upsert(.namespace(Namespace(metadata: ObjectMeta(name: "ns\(i)"))))])
        }
        var it = slow.makeAsyncIterator()
        guard case .resync(let version)? = await it.next() else { Issue.record("expected resync first"); return }
        #expect(version >= 5)
        #expect(slow.resyncCount >= 1)
        // After the resync marker, the subscriber keeps receiving live events.
        await store.apply([.upsert(.namespace(Namespace(metadata: ObjectMeta(name: "late"))))])
        var sawLate = false
        while let e = await nextWithin(&it), !sawLate {
            if case .changed(_, let c) = e, c.contains(where: { $0.key.name == "late" }) { sawLate = true }
        }
        #expect(sawLate)
    }

    @Test func fastSubscriberSeesEveryVersionInOrder() async {
        let store = ClusterStore()
        let sub = await store.subscribe(bufferLimit: 1000)
        for i in 0..<50 { await store.apply([.upsert(.namespace(Namespace(metadata: ObjectMeta(name: "ns\(i)"))))]) }
        var it = sub.makeAsyncIterator()
        var versions: [UInt64] = []
        for _ in 0..<50 { if case .changed(let v, _)? = await it.next() { versions.append(v) } }
        #expect(versions == Array(1...50))
    }

    @Test func droppedSubscriptionUnregisters() async throws {
        let store = ClusterStore()
        do {
            let sub = await store.subscribe()
            _ = sub
            #expect(await store.subscriberCount == 1)
        }
        await store.apply([.upsert(.namespace(Namespace(metadata: ObjectMeta(name: "x"))))])
        try await Task.sleep(for: .milliseconds(50))
        #expect(await store.subscriberCount == 0)
    }

    @Test func syncedEvent() async {
        let store = ClusterStore()
        let sub = await store.subscribe()
        #expect(await store.snapshot().synced == false)
        await store.markSynced()
        var it = sub.makeAsyncIterator()
        guard case .synced? = await it.next() else { Issue.record("no synced event"); return }
        #expect(await store.snapshot().synced)
    }

    @Test func commitRollsBackWhenPersistenceFails() async {
        struct Failing: StorePersistence {
            func save(_ changes: [ObjectChange]) throws(PersistenceError) { throw PersistenceError("save", "disk full") }
        }
        let store = ClusterStore(persistence: Failing())
        let sub = await store.subscribe()
        await #expect(throws: PersistenceError.self) {
            try await store.commit([.upsert(.namespace(Namespace(metadata: ObjectMeta(name: "x"))))])
        }
        let snap = await store.snapshot()
        #expect(snap.namespaces.isEmpty)
        #expect(snap.version == 0)
        var it = sub.makeAsyncIterator()
        #expect(await nextWithin(&it) == nil, "a failed commit publishes nothing")
    }

    /// `commitTimed` says when the change was published (CLOCK_MONOTONIC, what the apply reply
    /// carries for the scale harness): within the call, at the version it made; nil for a no-op.
    @Test func commitTimedSaysWhenTheChangeWasPublished() async throws {
        let store = ClusterStore()
        let sub = await store.subscribe()
        let before = ClusterStore.monotonicSeconds()
        let made = try await store.commitTimed([.upsert(.namespace(Namespace(metadata: ObjectMeta(name: "apps"))))])
        let after = ClusterStore.monotonicSeconds()
        let at = try #require(made.publishedAt)
        #expect(before <= at && at <= after)
        #expect(made.version == 1)
        var it = sub.makeAsyncIterator()
        #expect(await nextWithin(&it) == .changed(version: 1, changes: [ObjectChange(key: ObjectKey(.namespace, name: "apps"), old: nil,
                                                                                        new: .namespace(Namespace(metadata: ObjectMeta(name: "apps"))))]))
        let again = try await store.commitTimed([.upsert(.namespace(Namespace(metadata: ObjectMeta(name: "apps"))))])
        #expect(again.publishedAt == nil, "nothing changed, nothing published")
        #expect(again.version == 1)
    }

    @Test func sliceIndexFollowsServiceLabel() async {
        let store = ClusterStore()
        let slice = EndpointSlice(metadata: ObjectMeta(name: "s1", namespace: "apps", labels: [EndpointSlice.serviceNameLabel: "web"]),
                                  addressType: .ipv4, endpoints: [], ports: [])
        await store.apply([.upsert(.endpointSlice(slice))])
        #expect(await store.snapshot().endpointSlices(for: NamespacedName("apps", "web")).count == 1)
        var moved = slice
        moved.metadata.labels = [EndpointSlice.serviceNameLabel: "other"]
        await store.apply([.upsert(.endpointSlice(moved))])
        let snap = await store.snapshot()
        #expect(snap.endpointSlices(for: NamespacedName("apps", "web")).isEmpty)
        #expect(snap.endpointSlices(for: NamespacedName("apps", "other")).count == 1)
    }
}

/// The pods-by-node index (what a Node event uses to find its pods without walking every Pod)
/// against a recount from the pods themselves, after seeded random creates, moves between
/// nodes, unscheduling and deletes.
@Suite struct PodsByNodeIndexTests {
    static func recount(_ s: ClusterSnapshot) -> [String: Set<NamespacedName>] {
        var out: [String: Set<NamespacedName>] = [:]
        for (id, p) in s.pods { if let n = p.nodeName { out[n, default: []].insert(id) } }
        return out
    }

    @Test func indexEqualsRecountAfterRandomChanges() async {
        let store = ClusterStore()
        var rng = SeededRandom(seed: 16)
        let nodes = ["node1", "node2", "node3"]
        for round in 0..<400 {
            let name = "web-\(rng.next() % 40)"
            let change: StoreChange
            switch rng.next() % 4 {
            case 0: change = .delete(ObjectKey(.pod, namespace: "apps", name: name))
            case 1:
                var p = pod("apps", name, labels: [:])
                p.nodeName = nil
                change = .upsert(.pod(p))
            default: change = .upsert(.pod(pod("apps", name, labels: [:], node: nodes[Int(rng.next() % 3)])))
            }
            await store.apply([change])
            let snap = await store.snapshot()
            #expect(snap.podsByNode == Self.recount(snap), "round \(round)")
        }
        let snap = await store.snapshot()
        for n in nodes { #expect(Set(snap.pods(on: n).map(\.id)) == Self.recount(snap)[n] ?? []) }
    }
}


/// The next event, or nil if none arrives within 200 ms.
func nextWithin(_ it: inout StoreSubscription.AsyncIterator) async -> StoreEvent? {
    let sub = it.subscription
    return await withTaskGroup(of: StoreEvent?.self) { group in
        group.addTask { await sub.next() }
        group.addTask { try? await Task.sleep(for: .milliseconds(200)); return nil }
        let first = await group.next() ?? nil
        group.cancelAll()
        return first
    }
}

extension StoreEvent: Equatable {
    public static func == (a: StoreEvent, b: StoreEvent) -> Bool {
        switch (a, b) {
        case (.changed(let v1, let c1), .changed(let v2, let c2)): v1 == v2 && c1 == c2
        case (.resync(let v1), .resync(let v2)): v1 == v2
        case (.synced(let v1), .synced(let v2)): v1 == v2
        default: false
        }
    }
}
