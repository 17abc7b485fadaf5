import ClusterState
import Testing
@testable import ServiceProxy

/// The actor's copy of the Services and EndpointSlices, kept from store events, must read
/// exactly as a snapshot of the store would: an incremental sync plans from it alone.
@Suite struct MirrorTests {
    static func same(_ mirror: ServiceMirror, _ snap: ClusterSnapshot, _ ids: [NamespacedName]) {
        for id in ids {
            #expect(mirror.service(id) == snap.services[id], "service \(id)")
            #expect(mirror.slices(for: id) == snap.endpointSlices(for: id), "slices of \(id)")
        }
    }

    @Test func eventsKeepTheMirrorEqualToTheStore() async throws {
        let store = ClusterStore()
        await store.apply([.upsert(.service(service("a", ips: ["10.96.0.1"]))), .upsert(.endpointSlice(slice("a", [EP(ip: "10.244.1.1")])))])
        var mirror = ServiceMirror(await store.snapshot())
        let events = await store.subscribe()
        let moved = slice("b", name: "a-ipv4", [EP(ip: "10.244.1.9")])   // the same slice name, now labelled for b
        for batch: [StoreChange] in [
            [.upsert(.service(service("b", ips: ["10.96.0.2"]))), .upsert(.endpointSlice(slice("b", name: "b-1", [EP(ip: "10.244.2.1")])))],
            [.upsert(.endpointSlice(slice("a", [EP(ip: "10.244.1.1"), EP(ip: "10.244.1.2")])))],
            [.upsert(.endpointSlice(moved))],
            [.upsert(.endpointSlice(slice("b", name: "b-2", family: .ipv6, [EP(ip: "fd00:10:244::2")])))],
            [.delete(ObjectKey(.endpointSlice, namespace: "ns1", name: "b-1")), .delete(ObjectKey(.service, namespace: "ns1", name: "a"))],
        ] {
            await store.apply(batch)
            while let e = await events.nextIfBuffered() { mirror.record(e) }
            Self.same(mirror, await store.snapshot(), [NamespacedName("ns1", "a"), NamespacedName("ns1", "b")])
        }
        // The slice that moved from a to b is b's only (with b-2), a has none and is gone.
        #expect(mirror.slices(for: NamespacedName("ns1", "b")).map(\.metadata.name) == ["a-ipv4", "b-2"])
        #expect(mirror.slices(for: NamespacedName("ns1", "a")).isEmpty)
        #expect(mirror.version == (await store.snapshot()).version)
    }

    @Test func eventsAlreadyInTheSnapshotAreIgnored() async throws {
        let store = ClusterStore()
        let events = await store.subscribe()
        await store.apply([.upsert(.service(service("a", ips: ["10.96.0.1"]))), .upsert(.endpointSlice(slice("a", [EP(ip: "10.244.1.1")])))])
        await store.apply([.upsert(.endpointSlice(slice("a", [EP(ip: "10.244.1.2")])))])
        // A full sync's snapshot is newer than the events still queued for the actor: replaying
        // them must not bring the older endpoint back.
        var mirror = ServiceMirror(await store.snapshot())
        var queued: [StoreEvent] = []
        while let e = await events.nextIfBuffered() { queued.append(e) }
        #expect(queued.count == 2)
        for e in queued {
            mirror.record(e)
            #expect(mirror.slices(for: NamespacedName("ns1", "a")).first?.endpoints.first?.addresses == [ip("10.244.1.2")])
        }
        Self.same(mirror, await store.snapshot(), [NamespacedName("ns1", "a")])
    }
}
