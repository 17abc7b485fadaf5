import ClusterState
import Foundation
import IPAddressing
import NodenetTestSupport
import Testing
@testable import ClusterSources

// These tests run Debian's real etcd (3.4, JSON gateway under /v3/) on 127.0.0.1 with free
// ports and a temporary data directory; `EtcdServer` stops it by pid in every path.

func objects(_ yaml: String) throws -> [ClusterObject] { try ManifestDecoder.decode(yaml) }

func service(_ name: String, namespace: String = "apps", port: Int = 80) throws -> ClusterObject {
    try objects("""
    apiVersion: v1
    kind: Service
    metadata: {name: \(name), namespace: \(namespace)}
    spec: {clusterIP: 10.96.0.\(10 + name.count), ports: [{port: \(port)}], selector: {app: \(name)}}
    """)[0]
}

/// A source running in the background, cancelled by `stop()`.
struct RunningSource {
    let source: EtcdSource
    let store: ClusterStore
    let task: Task<Void, Never>

    init(_ endpoints: [String], node: String, store: ClusterStore = ClusterStore(), stallBound: Duration = .seconds(11 * 60),
         tls: TLSMaterial? = nil) throws {
        self.store = store
        source = try EtcdSource(configuration: EtcdSourceConfiguration(endpoints: endpoints, nodeName: node, tls: tls, stallBound: stallBound,
                                                                       requestTimeout: .seconds(2)), store: store)
        let s = source
        task = Task { try? await s.run() }
    }

    func stop() { task.cancel() }

    func has(_ key: ObjectKey) async -> Bool { await store.snapshot()[key] != nil }
}

@Suite(.serialized, .enabled(if: EtcdServer.available, "etcd is not installed"))
struct EtcdSourceTests {
    @Test func writesOnOneNodeReachAnotherNodesStore() async throws {
        let etcd = try EtcdServer()
        defer { etcd.stop() }
        // Node B's store starts with an object etcd does not have (from its persisted state) and
        // a slice its own endpoints controller derived: the first sync removes the first only.
        let stale = try service("stale")
        let derived = try objects("""
        apiVersion: discovery.k8s.io/v1
        kind: EndpointSlice
        metadata: {name: web-nodenet-ipv4, namespace: apps, labels: {kubernetes.io/service-name: web, endpointslice.kubernetes.io/managed-by: nodenet}}
        addressType: IPv4
        endpoints: []
        """)[0]
        let storeB = ClusterStore()
        await storeB.apply([.upsert(stale), .upsert(derived)])
        let a = try RunningSource([etcd.endpoint], node: "a")
        let b = try RunningSource([etcd.endpoint], node: "b", store: storeB)
        defer { a.stop(); b.stop() }
        #expect(await a.source.waitForFirstSync(timeout: .seconds(10)))
        #expect(await b.source.waitForFirstSync(timeout: .seconds(10)))
        #expect(await storeB.snapshot().synced)
        #expect(await !b.has(stale.key))
        #expect(await b.has(derived.key))

        let web = try service("web")
        let ns = try objects("apiVersion: v1\nkind: Namespace\nmetadata: {name: apps}")[0]
        let writer = EtcdWriter(client: etcd.client())
        let subscription = await storeB.subscribe()
        try await writer.apply([.upsert(ns), .upsert(web)])
        #expect(await eventually { let s = await b.store.snapshot(); return s[web.key] != nil && s[ns.key] != nil })
        #expect(await eventually { await a.has(web.key) })
        // Both objects arrive in one store change: the writer's single transaction is one watch response.
        let sawBoth = await drain(subscription).contains {
            if case .changed(_, let changes) = $0 { Set(changes.map(\.key)) == [web.key, ns.key] } else { false }
        }
        #expect(sawBoth)
        // Stored in the documented layout, as Kubernetes JSON.
        let kv = try #require(try await etcd.client().get("/nodenet/objects/Service/apps/web"))
        #expect(try ManifestDecoder.decode(json: kv.value) == web)

        try await writer.apply([.delete(web.key)])
        #expect(await eventually { await !b.has(web.key) })
        #expect(b.source.status.connected)
        #expect(b.source.status.objects["Namespace"] == 1)
    }

    @Test func undecodableObjectsAreSkippedByKey() async throws {
        let etcd = try EtcdServer()
        defer { etcd.stop() }
        let client = etcd.client()
        try await client.put("/nodenet/objects/Service/apps/broken", Data(#"{"apiVersion":"v1","kind":"Service","metadata":{"name":"broken","namespace":"apps"},"spec":{"ports":[{"port":99999}]}}"#.utf8))
        try await client.put("/nodenet/objects/Service/apps/elsewhere", try ObjectCoding.encode(try service("web")))
        try await client.put("/nodenet/objects/Service/apps/ok", try ObjectCoding.encode(try service("ok")))
        let b = try RunningSource([etcd.endpoint], node: "b")
        defer { b.stop() }
        #expect(await b.source.waitForFirstSync(timeout: .seconds(10)))
        let snapshot = await b.store.snapshot()
        #expect(snapshot.services.keys.map(\.name) == ["ok"])
        #expect(b.source.status.skippedObjects == 2)
        // An update that makes an object undecodable removes it, as a re-list would.
        try await client.put("/nodenet/objects/Service/apps/ok", Data("not json".utf8))
        #expect(await eventually { await b.store.snapshot().services.isEmpty })
    }

    @Test func listsInPagesAtOneRevisionAndRefusesOversizedTransactions() async throws {
        let etcd = try EtcdServer()
        defer { etcd.stop() }
        let writer = EtcdWriter(client: etcd.client())
        // 1,300 services (more than one 1,000-key page), 100 per transaction.
        for batch in 0..<13 {
            let changes = try (0..<100).map { i in StoreChange.upsert(try service("svc-\(batch)-\(i)")) }
            try await writer.apply(changes)
        }
        let (kvs, revision) = try await etcd.client().range(prefix: "/nodenet/objects/")
        #expect(kvs.count == 1300)
        #expect(Set(kvs.map(\.key)).count == 1300)
        #expect(revision == 14)  // one revision per transaction, after etcd's initial 1
        let b = try RunningSource([etcd.endpoint], node: "b")
        defer { b.stop() }
        #expect(await b.source.waitForFirstSync(timeout: .seconds(20)))
        #expect(await b.store.snapshot().services.count == 1300)
        // All or nothing: etcd refuses more than 128 operations, and nothing is written.
        let tooMany = try (0..<200).map { i in StoreChange.upsert(try service("big-\(i)")) }
        await #expect(throws: EtcdError.self) { try await writer.apply(tooMany) }
        #expect(try await etcd.client().range(prefix: "/nodenet/objects/").kvs.count == 1300)
    }

    @Test func compactionWhileBehindForcesARelistWithoutLosingChanges() async throws {
        let etcd = try EtcdServer()
        defer { etcd.stop() }
        let client = etcd.client()
        let writer = EtcdWriter(client: client)
        let keep = try service("keep"), gone = try service("gone")
        try await writer.apply([.upsert(keep), .upsert(gone)])

        // A feed that lists, then waits at a gate before its first watch: the watcher is behind.
        let store = ClusterStore()
        let gate = Gate()
        let inner = EtcdFeed(client: client, keys: EtcdKeys(), logger: .init(label: "test"))
        let tracker = StatusTracker(kind: "etcd", feeds: [inner.name])
        let reconciler = Reconciler(feed: GatedFeed(inner: inner, gate: gate), store: store, tracker: tracker,
                                    logger: .init(label: "test"), stallBound: .seconds(30))
        let subscription = await store.subscribe()
        let task = Task { await reconciler.run() }
        defer { task.cancel() }
        #expect(await tracker.waitForFirstSync(timeout: .seconds(10)))

        let added = try service("added")
        try await writer.apply([.upsert(added), .delete(gone.key)])
        let revision = try await client.put("/nodenet/unrelated", Data("x".utf8))
        try await client.compact(revision: revision)
        let late = try service("late")
        try await writer.apply([.upsert(late)])
        await gate.open()

        #expect(await eventually { await store.snapshot().services.keys.map(\.name).sorted() == ["added", "keep", "late"] })
        #expect(tracker.status.relists >= 1)
        // Actors saw only real changes: "keep" was never deleted and re-added.
        #expect(!deleted(keep.key, in: await drain(subscription)))
    }

    @Test func stalledWatchIsRestarted() async throws {
        let etcd = try EtcdServer()
        defer { etcd.stop() }
        let store = ClusterStore()
        // etcd here notifies progress every second; a bound below that makes every watch "stall".
        let inner = EtcdFeed(client: etcd.client(), keys: EtcdKeys(), logger: .init(label: "test"))
        let tracker = StatusTracker(kind: "etcd", feeds: [inner.name])
        let reconciler = Reconciler(feed: inner, store: store, tracker: tracker, logger: .init(label: "test"), stallBound: .milliseconds(300))
        let task = Task { await reconciler.run() }
        defer { task.cancel() }
        #expect(await eventually(timeout: .seconds(10)) { tracker.status.watchRestarts >= 2 })
        #expect(tracker.status.lastError?.contains("no progress") == true)

        // With a bound above the notification interval the watch stays up on an idle prefix.
        let healthyStore = ClusterStore()
        let healthy = try RunningSource([etcd.endpoint], node: "b", store: healthyStore, stallBound: .seconds(3))
        defer { healthy.stop() }
        #expect(await healthy.source.waitForFirstSync(timeout: .seconds(10)))
        try await Task.sleep(for: .seconds(5))
        #expect(healthy.source.status.watchRestarts == 0)
        #expect(healthy.source.status.lastEvent != nil)
    }

    @Test func unreachableAtStartThenFailoverToASecondEndpoint() async throws {
        let dead = "http://127.0.0.1:\(try freePort())"
        let alone = try RunningSource([dead], node: "b")
        defer { alone.stop() }
        #expect(await !alone.source.waitForFirstSync(timeout: .seconds(3)))
        #expect(!alone.source.status.connected)
        #expect(await eventually { alone.source.status.lastError?.contains("unreachable") == true })

        let etcd = try EtcdServer()
        defer { etcd.stop() }
        try await EtcdWriter(client: etcd.client()).apply([.upsert(try service("web"))])
        let both = try RunningSource([dead, etcd.endpoint], node: "b")
        defer { both.stop() }
        #expect(await both.source.waitForFirstSync(timeout: .seconds(10)))
        #expect(await both.store.snapshot().services.count == 1)
        #expect(both.source.client.currentEndpoint == etcd.endpoint)
    }

    @Test(.enabled(if: (try? Shell.which("openssl")) != nil, "openssl makes the certificates"))
    func httpsWithClientCertificates() async throws {
        let pki = TempDirectory()
        try KubernetesTLSTests.makePKI(in: pki)
        let etcd = try EtcdServer(pki: pki)
        defer { etcd.stop() }
        let material = try TLSMaterial.files(ca: pki.file("ca.crt"), certificate: pki.file("client.crt"), key: pki.file("client.key"))
        try await EtcdWriter(client: try EtcdClient(endpoints: [etcd.endpoint], tls: material)).apply([.upsert(try service("web"))])
        let b = try RunningSource([etcd.endpoint], node: "b", tls: material)
        defer { b.stop() }
        #expect(await b.source.waitForFirstSync(timeout: .seconds(10)))
        #expect(await b.store.snapshot().services.count == 1)
        // Without the client certificate etcd refuses: retried and reported, never synced.
        let refused = try RunningSource([etcd.endpoint], node: "c", tls: TLSMaterial(certificateAuthorityPEM: material.certificateAuthorityPEM))
        defer { refused.stop() }
        #expect(await !refused.source.waitForFirstSync(timeout: .seconds(2)))
        #expect(await eventually { refused.source.status.lastError != nil })
    }

    @Test func reconnectsAndCatchesUpAfterEtcdRestarts() async throws {
        let etcd = try EtcdServer()
        defer { etcd.stop() }
        let writer = EtcdWriter(client: etcd.client())
        try await writer.apply([.upsert(try service("before"))])
        let b = try RunningSource([etcd.endpoint], node: "b")
        defer { b.stop() }
        #expect(await b.source.waitForFirstSync(timeout: .seconds(10)))

        etcd.stop()
        #expect(await eventually { !b.source.status.connected })
        try etcd.start()
        let after = try service("after")
        try await writer.apply([.upsert(after), .delete(try service("before").key)])
        #expect(await eventually(timeout: .seconds(30)) { await b.store.snapshot().services.keys.map(\.name) == ["after"] })
        #expect(await eventually { b.source.status.connected })
        #expect(b.source.status.relists >= 1)
    }
}

/// Every event the subscription buffered so far (it is finished afterwards).
func drain(_ subscription: StoreSubscription) async -> [StoreEvent] {
    subscription.finish()
    var out: [StoreEvent] = []
    for await event in subscription { out.append(event) }
    return out
}

/// Whether any change in `events` removed `key` (actors must never see a re-list as delete + add).
func deleted(_ key: ObjectKey, in events: [StoreEvent]) -> Bool {
    events.contains {
        if case .changed(_, let changes) = $0 { changes.contains { $0.key == key && $0.new == nil } } else { false }
    }
}

/// Holds a feed's first watch until opened.
actor Gate {
    private var isOpen = false
    private var waiters: [CheckedContinuation<Void, Never>] = []
    func open() { isOpen = true; waiters.forEach { $0.resume() }; waiters = [] }
    func wait() async {
        if isOpen { return }
        await withCheckedContinuation { waiters.append($0) }
    }
}

struct GatedFeed: Feed {
    let inner: any Feed
    let gate: Gate
    var name: String { inner.name }
    var kinds: [ObjectKind] { inner.kinds }
    var endpoint: String { inner.endpoint }
    func owns(_ object: ClusterObject) -> Bool { inner.owns(object) }
    func list(page: (FeedPage) async throws -> Void) async throws -> String { try await inner.list(page: page) }
    func watch(from resume: String) async throws -> AsyncThrowingStream<FeedEvent, any Error> {
        await gate.wait()
        return try await inner.watch(from: resume)
    }
}
