// Issue 16 item 4: the first sync streams. Each list page is decoded and applied to the store
// as its own transaction while the next is fetched; the store is synced only after the last
// page and the deletions of what no page had; the list is one snapshot at the first page's
// revision, so what changes while paging arrives through the watch from revision + 1.
import ClusterState
import Foundation
import Logging
import NodenetTestSupport
import Synchronization
import Testing
@testable import ClusterSources

/// Wraps a feed: `afterFirstPage` runs once the first page is in the store, before the
/// second page is handed over.
struct HookedFeed: Feed {
    let inner: any Feed
    let afterFirstPage: @Sendable () async throws -> Void
    var name: String { inner.name }
    var kinds: [ObjectKind] { inner.kinds }
    var endpoint: String { inner.endpoint }
    func owns(_ object: ClusterObject) -> Bool { inner.owns(object) }
    func list(page: (FeedPage) async throws -> Void) async throws -> String {
        var pages = 0
        return try await inner.list { p in
            try await page(p)
            pages += 1
            if pages == 1 { try await afterFirstPage() }
        }
    }
    func watch(from resume: String) async throws -> AsyncThrowingStream<FeedEvent, any Error> { try await inner.watch(from: resume) }
}

/// A feed whose list is scripted page by page and whose watch stays open without events.
final class ScriptedFeed: Feed {
    let pages: [FeedPage]
    private let open = Mutex<[AsyncThrowingStream<FeedEvent, any Error>.Continuation]>([])
    init(pages: [FeedPage]) { self.pages = pages }
    var name: String { "scripted" }
    var kinds: [ObjectKind] { [.service] }
    var endpoint: String { "nowhere" }
    func owns(_ object: ClusterObject) -> Bool { object.kind == .service }
    func list(page: (FeedPage) async throws -> Void) async throws -> String {
        for p in pages { try await page(p) }
        return "1"
    }
    func watch(from resume: String) async throws -> AsyncThrowingStream<FeedEvent, any Error> {
        let (stream, continuation) = AsyncThrowingStream<FeedEvent, any Error>.makeStream()
        open.withLock { $0.append(continuation) }
        return stream
    }
    deinit { open.withLock { $0.forEach { $0.finish() } } }
}

func changeEvents(_ events: some Collection<StoreEvent>) -> [[ObjectChange]] {
    events.compactMap { if case .changed(_, let changes) = $0 { changes } else { nil } }
}

@Suite struct StreamingListUnitTests {
    /// A list that starts over (an expired Kubernetes continue token) forgets the keys of
    /// the abandoned pages: what only they had is deleted at the end, like any unlisted object.
    @Test func aRestartedListDeletesWhatOnlyTheAbandonedPagesHad() async throws {
        let a = try service("a"), b = try service("b"), c = try service("c")
        let feed = ScriptedFeed(pages: [FeedPage(objects: [a, b]), FeedPage(objects: [a], restart: true), FeedPage(objects: [c])])
        let store = ClusterStore()
        let subscription = await store.subscribe()
        let tracker = StatusTracker(kind: "test", feeds: [feed.name])
        let reconciler = Reconciler(feed: feed, store: store, tracker: tracker, logger: Logger(label: "test"), stallBound: .seconds(60))
        let task = Task { await reconciler.run() }
        defer { task.cancel() }
        #expect(await eventually { tracker.status.synced })
        #expect(Set(await store.snapshot().services.keys.map(\.name)) == ["a", "c"])
        let events = await drain(subscription)
        // Three page transactions that changed something (a+b, c) and the deletion of b; then synced.
        #expect(changeEvents(events).map { $0.map(\.key.name) } == [["a", "b"], ["c"], ["b"]])
        #expect(events.last.map { if case .synced = $0 { true } else { false } } == true)
    }
}

@Suite(.serialized, .enabled(if: EtcdServer.available, "etcd is not installed"))
struct StreamingListEtcdTests {
    /// 23 services in pages of 5 (the page size is configurable): every page reaches the store
    /// on its own before the store is synced; a key deleted and one changed while paging, and
    /// one added, come through the watch from the list's revision; the end state is exactly
    /// etcd's (the stale object the store started with is gone, the derived slice kept).
    @Test func firstSyncStreamsPagesAtOneRevisionThenWatches() async throws {
        let etcd = try EtcdServer()
        defer { etcd.stop() }
        let client = etcd.client()
        let writer = EtcdWriter(client: client)
        let names = (0..<23).map { String(format: "svc-%02d", $0) }
        try await writer.apply(try names.map { .upsert(try service($0)) })

        let stale = try service("stale")
        let derived = try objects("""
        apiVersion: discovery.k8s.io/v1
        kind: EndpointSlice
        metadata: {name: web-nodenet-ipv4, namespace: apps, labels: {kubernetes.io/service-name: web, endpointslice.kubernetes.io/managed-by: nodenet}}
        addressType: IPv4
        endpoints: []
        """)[0]
        let store = ClusterStore()
        await store.apply([.upsert(stale), .upsert(derived)])
        let subscription = await store.subscribe()
        let feed = EtcdFeed(client: client, keys: EtcdKeys(prefix: "/nodenet"), logger: Logger(label: "test"), pageSize: 5)
        let tracker = StatusTracker(kind: "etcd", feeds: [feed.name])

        let removed = ObjectKey(.service, namespace: "apps", name: "svc-22")
        let changed = try service("svc-20", port: 8080)
        let added = try service("svc-new")
        let atFirstPage = Mutex<(synced: Bool, trackerSynced: Bool, services: Set<String>)?>(nil)
        let hooked = HookedFeed(inner: feed) {
            let s = await store.snapshot()
            atFirstPage.withLock { $0 = (s.synced, tracker.status.synced, Set(s.services.keys.map(\.name))) }
            // All three are on later pages (or beyond them) of a list already at its revision.
            try await writer.apply([.delete(removed), .upsert(changed), .upsert(added)])
        }
        let reconciler = Reconciler(feed: hooked, store: store, tracker: tracker, logger: Logger(label: "test"), stallBound: .seconds(60))
        let task = Task { await reconciler.run() }
        defer { task.cancel() }
        #expect(await eventually { tracker.status.synced })

        // Streaming: the first page was in the store, alone, before the store was synced.
        let firstPage = atFirstPage.withLock { $0 }
        let first = try #require(firstPage)
        #expect(!first.synced && !first.trackerSynced)
        #expect(first.services == Set(names.prefix(5) + ["stale"]))

        let expected = Set(names.filter { $0 != "svc-22" } + ["svc-new"])
        #expect(await eventually { Set(await store.snapshot().services.keys.map(\.name)) == expected })
        let final = await store.snapshot()
        #expect(final[changed.key] == changed)
        #expect(final[added.key] == added)
        #expect(final[stale.key] == nil)
        #expect(final[derived.key] != nil)

        let events = await drain(subscription)
        let syncedAt = try #require(events.firstIndex { if case .synced = $0 { true } else { false } })
        let beforeSync = changeEvents(events[..<syncedAt])
        // Five page transactions (5, 5, 5, 5, 3 keys) and the deletion of the stale object.
        #expect(beforeSync.map(\.count) == [5, 5, 5, 5, 3, 1])
        // The list is at its revision: svc-22 listed and svc-20 at its listed version before
        // the sync, the watch's delete, update and add after it.
        #expect(!deleted(removed, in: Array(events[..<syncedAt])))
        #expect(deleted(removed, in: Array(events[syncedAt...])))
        #expect(beforeSync.joined().contains { $0.key == changed.key && $0.new != changed })
        #expect(changeEvents(events[syncedAt...]).joined().contains { $0.key == changed.key && $0.new == changed })
    }
}
