import ClusterState
import Foundation
import IPAddressing
import Synchronization
import Testing
@testable import ClusterSources

// Pure parts: the list-versus-store difference, the JSON stream splitter, the etcd key layout.

@Suite struct StoreDiffTests {
    @Test func onlyRealChangesAndOnlyOwnedDeletes() async throws {
        let a = try service("a"), b = try service("b"), c = try service("c")
        let bChanged = try service("b", port: 8080)
        let node = try objects("apiVersion: v1\nkind: Node\nmetadata: {name: n1}")[0]
        let store = ClusterStore()
        await store.apply([.upsert(a), .upsert(b), .upsert(c), .upsert(node)])
        let snapshot = await store.snapshot()
        // Listed: a unchanged, b changed, c gone, d new; nodes are not this feed's.
        let d = try service("d")
        let changes = StoreDiff.changes(listed: [a, bChanged, d], current: snapshot) { $0.kind == .service }
        #expect(changes == [.upsert(bChanged), .upsert(d), .delete(c.key)])
        // Applying it leaves exactly the list, and a second diff is empty.
        await store.apply(changes)
        let after = await store.snapshot()
        #expect(StoreDiff.changes(listed: [a, bChanged, d], current: after) { $0.kind == .service }.isEmpty)
        #expect(await store.snapshot().nodes["n1"] != nil)
    }

    @Test func emptyListDeletesEverythingOwnedAndDuplicatesKeepTheLast() async throws {
        let a = try service("a"), a2 = try service("a", port: 81)
        let store = ClusterStore()
        await store.apply([.upsert(a)])
        let snapshot = await store.snapshot()
        #expect(StoreDiff.changes(listed: [], current: snapshot) { _ in true } == [.delete(a.key)])
        #expect(StoreDiff.changes(listed: [a, a2], current: snapshot) { _ in true } == [.upsert(a2)])
    }
}

@Suite struct JSONStreamSplitterTests {
    @Test func splitsAtAnyChunkBoundary() throws {
        let docs = [#"{"a":"x}{\"y"}"#, #"{"b":[1,{"c":2}]}"#, #"{"result":{"events":[]}}"#]
        let stream = Array((docs.joined(separator: "\n") + "\n").utf8)
        for chunk in [1, 2, 3, 7, 64] {
            var splitter = JSONStreamSplitter()
            var out: [String] = []
            var i = 0
            while i < stream.count {
                let piece = stream[i..<min(i + chunk, stream.count)]
                out += try splitter.feed(piece).map { String(decoding: $0, as: UTF8.self) }
                i += chunk
            }
            #expect(out == docs, "chunk size \(chunk)")
        }
    }

    @Test func refusesAnEndlessDocument() {
        var splitter = JSONStreamSplitter()
        splitter.limit = 100
        #expect(throws: JSONStreamSplitter.TooLarge.self) { _ = try splitter.feed(Array(("{\"a\":\"" + String(repeating: "x", count: 200)).utf8)) }
    }
}

@Suite struct EtcdKeysTests {
    @Test func layoutRoundTrips() {
        let keys = EtcdKeys(prefix: "/nodenet/")
        let svc = ObjectKey(.service, namespace: "apps", name: "web")
        let node = ObjectKey(.node, name: "worker-1")
        #expect(keys.key(for: svc) == "/nodenet/objects/Service/apps/web")
        #expect(keys.key(for: node) == "/nodenet/objects/Node/worker-1")
        #expect(keys.objectKey("/nodenet/objects/Service/apps/web") == svc)
        #expect(keys.objectKey("/nodenet/objects/Node/worker-1") == node)
        #expect(keys.objectKey("/nodenet/objects/Service/web") == nil)
        #expect(keys.objectKey("/nodenet/objects/PodAttachment/x") == nil)
        #expect(keys.objectKey("/other/objects/Node/x") == nil)
        #expect(keys.subnetKey(IPPrefix("10.244.3.0/24")!) == "/nodenet/subnets/10.244.3.0-24")
        #expect(EtcdClient.prefixEnd("/nodenet/") == Data("/nodenet0".utf8))
    }

    @Test func writerRefusesNodeLocalKinds() throws {
        let writer = EtcdWriter(client: try EtcdClient(endpoints: ["http://127.0.0.1:1"]))
        let lease = ClusterObject.lease(SubnetLease(nodeName: "a", cidrs: []))
        #expect(throws: EtcdWriteError.self) { _ = try writer.operations([.upsert(lease)]) }
        #expect(try writer.operations([.upsert(try service("web")), .delete(ObjectKey(.node, name: "b"))]).count == 2)
    }

    @Test func backoffGrowsWithJitterAndResets() {
        var b = Backoff(initial: .milliseconds(100), maximum: .seconds(1))
        let delays = (0..<6).map { _ in b.next() }
        #expect(delays[0] >= .milliseconds(50) && delays[0] <= .milliseconds(100))
        #expect(delays[5] >= .milliseconds(500) && delays[5] <= .seconds(1))
        b.reset()
        #expect(b.next() <= .milliseconds(100))
    }
}

/// A feed whose list always works and whose watch always fails or ends at once (as a 403,
/// an expiry on every try, or a proxy closing every watch would): the reconciler must back
/// off, not spin.
struct RefusingFeed: Feed {
    enum Mode: Sendable, CaseIterable { case fail, expire, endAtOnce }
    final class Counter: Sendable {
        let lists = Mutex(0)
    }
    let counter = Counter()
    let mode: Mode
    var name: String { "refusing" }
    var kinds: [ObjectKind] { [.service] }
    var endpoint: String { "nowhere" }
    func owns(_ object: ClusterObject) -> Bool { object.kind == .service }
    func list(page: (FeedPage) async throws -> Void) async throws -> String {
        counter.lists.withLock { $0 += 1 }
        try await page(FeedPage(objects: [try service("web")]))
        return "1"
    }
    func watch(from resume: String) async throws -> AsyncThrowingStream<FeedEvent, any Error> {
        switch mode {
        case .fail: throw EtcdTestError(message: "forbidden")
        case .expire: return AsyncThrowingStream { $0.yield(.expired("always")); $0.finish() }
        case .endAtOnce: return AsyncThrowingStream { $0.finish() }
        }
    }
}

@Suite struct ReconcilerTests {
    @Test(arguments: RefusingFeed.Mode.allCases) func failingWatchesBackOff(mode: RefusingFeed.Mode) async throws {
        let feed = RefusingFeed(mode: mode)
        let store = ClusterStore()
        let tracker = StatusTracker(kind: "test", feeds: [feed.name])
        let reconciler = Reconciler(feed: feed, store: store, tracker: tracker, logger: .init(label: "test"), stallBound: .seconds(10),
                                    backoff: Backoff(initial: .milliseconds(100), maximum: .seconds(10)))
        let task = Task { await reconciler.run() }
        #expect(await eventually { feed.counter.lists.withLock { $0 } >= (mode == .endAtOnce ? 1 : 2) && tracker.status.watchRestarts >= 1 })
        try await Task.sleep(for: .seconds(1.5))
        task.cancel()
        await task.value
        let lists = feed.counter.lists.withLock { $0 }
        // 100, 200, 400, 800 ms (halved at worst by jitter): a handful of lists, not hundreds.
        #expect(lists <= 9, "\(lists) lists")
        #expect(tracker.status.watchRestarts <= 10, "\(tracker.status.watchRestarts) watches")
        #expect(tracker.status.synced)
        #expect(await store.snapshot().services.count == 1)
    }
}

/// Persistence that records what it saved, or refuses everything.
final class RecordingPersistence: StorePersistence {
    let saved = Mutex<[ObjectChange]>([])
    let refuse: Bool
    init(refuse: Bool) { self.refuse = refuse }
    func save(_ changes: [ObjectChange]) throws(PersistenceError) {
        if refuse { throw PersistenceError("save", "disk full") }
        saved.withLock { $0 += changes }
    }
}

@Suite struct ReconcilerPersistenceTests {
    @Test func listedObjectsArePersistedAndAFailedWriteIsReported() async throws {
        for refuse in [false, true] {
            let persistence = RecordingPersistence(refuse: refuse)
            let store = ClusterStore(persistence: persistence)
            let feed = RefusingFeed(mode: .expire)
            let tracker = StatusTracker(kind: "test", feeds: [feed.name])
            let reconciler = Reconciler(feed: feed, store: store, tracker: tracker, logger: .init(label: "test"), stallBound: .seconds(10))
            let task = Task { await reconciler.run() }
            if refuse {
                #expect(await eventually { tracker.status.lastError?.contains("disk full") == true })
                #expect(!tracker.status.synced)
                #expect(await store.snapshot().services.isEmpty)
            } else {
                #expect(await eventually { tracker.status.synced })
                #expect(persistence.saved.withLock { $0.map(\.key.name) } == ["web"])
            }
            task.cancel()
            await task.value
        }
    }
}

/// Issue 14 item 16: a watch stream holds at most its limit for a consumer that does not keep
/// up, then fails with `StreamOverflow` (the reconciler lists again) and stops its producer.
/// Without the bound all 500 elements were queued and the stream ended cleanly.
@Suite struct RelayBoundTests {
    @Test func aSlowConsumerGetsTheLimitThenAnOverflow() async throws {
        let produced = Mutex(0)
        let stream = relay(limit: 16) { (sink: RelaySink<Int>) in
            for i in 0..<500 {
                try sink.yield(i)
                produced.withLock { $0 += 1 }
            }
        }
        // The consumer starts once the producer has stopped, one way or the other.
        let deadline = ContinuousClock.now + .seconds(5)
        var last = -1
        while ContinuousClock.now < deadline {
            let now = produced.withLock { $0 }
            if now == last, now > 0 { break }
            last = now
            try await Task.sleep(for: .milliseconds(50))
        }
        var received: [Int] = []
        var failure: (any Error)?
        do {
            for try await i in stream { received.append(i) }
        } catch {
            failure = error
        }
        #expect(received == Array(0..<16))
        #expect(failure is StreamOverflow, "ended with \(String(describing: failure)) after \(received.count) elements")
        #expect(produced.withLock { $0 } == 16, "the producer stopped at the overflow")
    }
}

/// Issue 14 item 3: a refused connection fails the request at once, so the callers' own
/// bounded backoffs decide when to retry. Without the fix the HTTP pool retried on its own
/// schedule (a backoff that grew past a minute over a long outage) and the request hung until
/// its deadline: after a long etcd outage renewals still failed tens of seconds after etcd was
/// back, and the node's lease expired.
@Suite struct RefusedConnectionTests {
    @Test func aRefusedConnectionFailsAtOnce() async throws {
        let port = try freePort()  // nothing listens there
        let client = try EtcdClient(endpoints: ["http://127.0.0.1:\(port)"], requestTimeout: .seconds(5))
        let started = ContinuousClock.now
        await #expect(throws: EtcdError.self) { _ = try await client.get("/nodenet/subnets/x") }
        let took = ContinuousClock.now - started
        #expect(took < .seconds(1), "a refused connection took \(took) to fail")
    }
}
