import ClusterState
import Foundation
import IPAddressing
import NodenetTestSupport
import Testing
@testable import ClusterSources

// ClusterNetworkPolicies (cluster-scoped, a CRD) through both remote sources: a real etcd and
// the Kubernetes stand-in serving the API's wire format (Fixtures/clusternetworkpolicy.json is
// what `kubectl get clusternetworkpolicy -o json` prints). Most clusters do not install the
// CRD: the Kubernetes source must then treat the kind as empty, sync anyway, say so in its
// status, and start watching once the CRD appears.

func cnpKey(_ name: String) -> ObjectKey { ObjectKey(.clusterNetworkPolicy, name: name) }

func cnp(_ store: ClusterStore, _ name: String) async -> ClusterNetworkPolicy? {
    await store.snapshot().clusterNetworkPolicies[name]
}

@Suite(.serialized, .enabled(if: EtcdServer.available, "etcd is not installed"))
struct EtcdClusterNetworkPolicyTests {
    static let denyAll = """
    apiVersion: policy.networking.k8s.io/v1alpha2
    kind: ClusterNetworkPolicy
    metadata: {name: deny-slytherin}
    spec:
      tier: Admin
      priority: 10
      subject: {namespaces: {matchLabels: {kubernetes.io/metadata.name: gryffindor}}}
      ingress: [{action: Deny, from: [{namespaces: {matchLabels: {kubernetes.io/metadata.name: slytherin}}}]}]
    """

    @Test func policiesAreAddedUpdatedAndDeletedAndInvalidOnesSkippedByName() async throws {
        let etcd = try EtcdServer()
        defer { etcd.stop() }
        let client = etcd.client()
        // Put by another writer and invalid: never reaches the store, named in the status.
        try await client.put("/nodenet/objects/ClusterNetworkPolicy/bad-priority",
                             Data(#"{"apiVersion":"policy.networking.k8s.io/v1alpha2","kind":"ClusterNetworkPolicy","metadata":{"name":"bad-priority"},"spec":{"tier":"Admin","priority":1001,"subject":{"namespaces":{}}}}"#.utf8))
        let b = try RunningSource([etcd.endpoint], node: "b")
        defer { b.stop() }
        #expect(await b.source.waitForFirstSync(timeout: .seconds(10)))
        #expect(await b.store.snapshot().clusterNetworkPolicies.isEmpty)
        #expect(b.source.status.skippedObjects == 1)
        #expect(b.source.status.lastSkipped == "/nodenet/objects/ClusterNetworkPolicy/bad-priority: spec.priority: 1001: must be between 0 and 1000, inclusive",
                "\(b.source.status.lastSkipped ?? "")")

        // Added through the writer `nodenet apply` uses: at the cluster-scoped key.
        let writer = EtcdWriter(client: client)
        let deny = try objects(Self.denyAll)[0]
        try await writer.apply([.upsert(deny)])
        #expect(await eventually { await cnp(b.store, "deny-slytherin") != nil })
        #expect(try #require(try await client.get("/nodenet/objects/ClusterNetworkPolicy/deny-slytherin")).value == (try ObjectCoding.encode(deny)))
        #expect(.clusterNetworkPolicy(try #require(await cnp(b.store, "deny-slytherin"))) == deny)

        // Updated: the rule now passes, on one port range.
        let pass = try objects(Self.denyAll.replacingOccurrences(
            of: "action: Deny, from: [{namespaces: {matchLabels: {kubernetes.io/metadata.name: slytherin}}}]",
            with: "action: Pass, from: [{namespaces: {}}], protocols: [{tcp: {destinationPort: {range: {start: 8080, end: 8090}}}}]"))[0]
        try await writer.apply([.upsert(pass)])
        #expect(await eventually { await cnp(b.store, "deny-slytherin")?.ingress.first?.action == .pass })
        #expect(await cnp(b.store, "deny-slytherin")?.ingress.first?.protocols == [.port(.tcp, .range(8080...8090))])
        #expect(b.source.status.objects["ClusterNetworkPolicy"] == 1)

        // A watched update that makes it invalid removes it (never half-loaded) and is named.
        try await client.put("/nodenet/objects/ClusterNetworkPolicy/deny-slytherin",
                             Data(#"{"apiVersion":"policy.networking.k8s.io/v1alpha2","kind":"ClusterNetworkPolicy","metadata":{"name":"deny-slytherin"},"spec":{"tier":"Admin","priority":10,"subject":{"namespaces":{}},"egress":[{"action":"Deny","to":[{"networks":["10.0.0.0/8"]}],"protocols":[{"destinationNamedPort":"web"}]}]}}"#.utf8))
        #expect(await eventually { await cnp(b.store, "deny-slytherin") == nil })
        #expect(await eventually { b.source.status.lastSkipped?.contains("ClusterNetworkPolicy/deny-slytherin") == true })
        #expect(b.source.status.lastSkipped?.contains("spec.egress[0]: a networks peer cannot be set with destinationNamedPort") == true,
                "\(b.source.status.lastSkipped ?? "")")

        // Back, then deleted.
        try await writer.apply([.upsert(pass)])
        #expect(await eventually { await cnp(b.store, "deny-slytherin") != nil })
        try await writer.apply([.delete(cnpKey("deny-slytherin"))])
        #expect(await eventually { await cnp(b.store, "deny-slytherin") == nil })
        #expect(try await client.get("/nodenet/objects/ClusterNetworkPolicy/deny-slytherin") == nil)
    }
}

@Suite struct KubernetesClusterNetworkPolicyTests {
    static let cnps = "/apis/policy.networking.k8s.io/v1alpha2/clusternetworkpolicies"
    static let others = ["/api/v1/nodes", "/api/v1/services", "/apis/discovery.k8s.io/v1/endpointslices", "/api/v1/pods",
                         "/api/v1/namespaces", "/apis/networking.k8s.io/v1/networkpolicies"]

    @Test func listsAndWatchesPoliciesSkippingInvalidOnesByName() async throws {
        let server = try await StandInAPIServer()
        let script = server.script
        for path in Self.others { script.set(path, []) }
        let protect = Fixture.object("clusternetworkpolicy")
        let bad = renamed(protect, "bad-tier", rv: "71205") { setPath(&$0, ["spec", "tier"], "Namespace") }
        script.set(Self.cnps, [protect, bad].map(Fixture.item))
        // Watch: the policy updated, a second added, then changed so it no longer validates
        // (removed and named); the stream ends and the next watch deletes the first.
        let raised = renamed(protect, "protect-gryffindor", rv: "71301") { setPath(&$0, ["spec", "priority"], 5) }
        let baseline = renamed(protect, "baseline-default", rv: "71302") {
            setPath(&$0, ["spec", "tier"], "Baseline")
            setPath(&$0, ["spec", "subject"], ["pods": ["namespaceSelector": [:] as [String: Any], "podSelector": ["matchLabels": ["app": "web"]]]])
        }
        let broken = renamed(baseline, "baseline-default", rv: "71303") { setPath(&$0, ["spec", "subject"], [:] as [String: Any]) }
        script.queueWatch(Self.cnps, WatchReply(events: [
            Fixture.event("MODIFIED", raised), Fixture.event("ADDED", baseline), Fixture.bookmark("ClusterNetworkPolicy", "71302"),
            Fixture.event("MODIFIED", broken),
        ], end: .finish))
        script.queueWatch(Self.cnps, WatchReply(events: [Fixture.event("DELETED", raised)], end: .hold))

        let store = ClusterStore()
        let subscription = await store.subscribe()
        let source = try KubernetesSource(configuration: .init(connection: KubeConnection(server: server.url), nodeName: "worker-1"), store: store)
        let task = Task { try? await source.run() }
        defer { task.cancel() }
        #expect(await source.waitForFirstSync(timeout: .seconds(10)))
        #expect(source.status.skippedObjects == 1)  // bad-tier, in the list
        #expect(source.status.absent == nil, "the CRD is installed")

        let done = await eventually {
            await store.snapshot().clusterNetworkPolicies.isEmpty && source.status.lastSkipped?.contains("baseline-default") == true
                && script.requests.contains { $0.hasPrefix(Self.cnps + "?watch=1&resourceVersion=71303") }
        }
        let left = await store.snapshot().clusterNetworkPolicies.keys.sorted()
        #expect(done, "policies \(left), skipped \(source.status.lastSkipped ?? "")")
        #expect(source.status.lastSkipped == "ClusterNetworkPolicy baseline-default: spec.subject: must set exactly one of namespaces or pods",
                "\(source.status.lastSkipped ?? "")")

        let changes = await drain(subscription).flatMap { e -> [ObjectChange] in
            if case .changed(_, let c) = e { c.filter { $0.key.kind == .clusterNetworkPolicy } } else { [] }
        }
        func new(_ c: ObjectChange) -> ClusterNetworkPolicy? { if case .clusterNetworkPolicy(let p)? = c.new { p } else { nil } }
        #expect(changes.map { "\($0.key.name) \($0.old == nil ? "+" : $0.new == nil ? "-" : "~")" }
                == ["protect-gryffindor +", "protect-gryffindor ~", "baseline-default +", "baseline-default -", "protect-gryffindor -"])
        let listed = try #require(changes.first.flatMap(new))
        #expect(listed.metadata.resourceVersion == nil)
        #expect(listed.tier == .admin && listed.priority == 10)
        #expect(listed.subject == .namespaces(LabelSelector(matchLabels: ["kubernetes.io/metadata.name": "gryffindor"])))
        #expect(listed.ingress == [
            .init(name: "deny-from-slytherin", action: .deny, peers: [.namespaces(LabelSelector(matchLabels: ["kubernetes.io/metadata.name": "slytherin"]))]),
            .init(name: "pass-from-cedric", action: .pass,
                  peers: [.pods(.init(namespaceSelector: LabelSelector(matchLabels: ["kubernetes.io/metadata.name": "hufflepuff"]),
                                      podSelector: LabelSelector(matchLabels: ["app": "cedric"])))],
                  protocols: [.port(.tcp, .number(8080)), .port(.udp, .range(53...5353)), .namedPort("web")]),
        ])
        #expect(listed.egress == [.init(name: "deny-cloud-metadata", action: .deny,
                                        peers: [.networks([IPPrefix("169.254.169.254/32")!, IPPrefix("fd00:ec2::254/128")!])])])
        #expect(changes.count > 1 && new(changes[1])?.priority == 5)
        #expect(changes.count > 2 && new(changes[2])?.tier == .baseline)
        await server.stop()
    }

    @Test func theListedInvalidPolicyIsNamedWithItsField() async throws {
        let server = try await StandInAPIServer()
        let script = server.script
        for path in Self.others { script.set(path, []) }
        let bad = renamed(Fixture.object("clusternetworkpolicy"), "bad-tier", rv: "71205") { setPath(&$0, ["spec", "tier"], "Namespace") }
        script.set(Self.cnps, [Fixture.item(bad)])
        script.queueWatch(Self.cnps, WatchReply(events: [], end: .hold))
        let store = ClusterStore()
        let source = try KubernetesSource(configuration: .init(connection: KubeConnection(server: server.url), nodeName: "worker-1"), store: store)
        let task = Task { try? await source.run() }
        defer { task.cancel() }
        #expect(await source.waitForFirstSync(timeout: .seconds(10)))
        #expect(await store.snapshot().clusterNetworkPolicies.isEmpty)
        #expect(source.status.skippedObjects == 1)
        #expect(source.status.lastSkipped == "ClusterNetworkPolicy bad-tier: spec.tier: Unsupported value: \"Namespace\": supported values: \"Admin\", \"Baseline\"",
                "\(source.status.lastSkipped ?? "")")
        await server.stop()
    }

    /// The CRD is not installed (the API server answers 404): the source syncs anyway with the
    /// kind empty and says so in its status; once the CRD is installed the next check lists it
    /// and watches it. Deleting the CRD empties the kind again.
    @Test func aMissingCRDIsEmptyUntilInstalled() async throws {
        let server = try await StandInAPIServer()
        let script = server.script
        for path in Self.others { script.set(path, []) }
        // No list state for the CRD's path: the stand-in answers 404 as the API server does.

        let store = ClusterStore()
        var configuration = KubernetesSourceConfiguration(connection: KubeConnection(server: server.url), nodeName: "worker-1")
        configuration.absentRecheck = .milliseconds(300)
        let source = try KubernetesSource(configuration: configuration, store: store)
        let task = Task { try? await source.run() }
        defer { task.cancel() }
        #expect(await source.waitForFirstSync(timeout: .seconds(10)), "a missing CRD must not hold back the first sync")
        #expect(source.status.synced)
        let absent = source.status.absent?["clusternetworkpolicies"] ?? ""
        #expect(absent.contains("\(Self.cnps) is not served (HTTP 404"), "\(source.status.absent ?? [:])")
        #expect(source.status.lastError == nil, "not an error: \(source.status.lastError ?? "")")
        #expect(await store.snapshot().clusterNetworkPolicies.isEmpty)
        // It is checked again, without a watch on a path that does not exist.
        #expect(await eventually { script.requests.filter { $0.hasPrefix(Self.cnps + "?") }.count >= 3 })
        #expect(!script.requests.contains { $0.hasPrefix(Self.cnps + "?watch=1") })

        // The CRD is installed with one policy; a watch event then adds another; then the CRD
        // is deleted (the next watch is refused with 404, the list after it too).
        let protect = Fixture.object("clusternetworkpolicy")
        let second = renamed(protect, "second", rv: "71400")
        let notFound = Data(#"{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"the server could not find the requested resource","reason":"NotFound","code":404}"#.utf8)
        script.queueWatch(Self.cnps, WatchReply(events: [Fixture.event("ADDED", second)], end: .finish))
        script.queueWatch(Self.cnps, WatchReply(status: 404, events: [notFound], end: .finish, listUpdates: [.removeResource]))
        let subscription = await store.subscribe()
        script.set(Self.cnps, [Fixture.item(protect)])
        #expect(await eventually { script.requests.filter { $0.hasPrefix(Self.cnps + "?watch=1") }.count >= 2 })
        func listsAfterRemoval() -> Int {
            script.requests.drop { !$0.hasPrefix(Self.cnps + "?watch=1") }.dropFirst(2).filter { $0.hasPrefix(Self.cnps + "?limit=") }.count
        }
        var listsWhenEmptied = 0
        #expect(await eventually {
            let emptied = source.status.absent?["clusternetworkpolicies"] != nil && source.status.objects["ClusterNetworkPolicy"] == 0
            if emptied { listsWhenEmptied = listsAfterRemoval() }
            return emptied
        })
        #expect(await store.snapshot().clusterNetworkPolicies.isEmpty)
        let changes = await drain(subscription).flatMap { e -> [ObjectChange] in
            if case .changed(_, let c) = e { c.filter { $0.key.kind == .clusterNetworkPolicy } } else { [] }
        }
        #expect(changes.map { "\($0.key.name) \($0.old == nil ? "+" : $0.new == nil ? "-" : "~")" }.sorted()
                == ["protect-gryffindor +", "protect-gryffindor -", "second +", "second -"])
        #expect(changes.prefix(2).map { "\($0.key.name)\($0.new == nil ? "-" : "+")" } == ["protect-gryffindor+", "second+"],
                "listed once installed, then watched")
        #expect(source.status.lastError == nil, "a deleted CRD is not an error: \(source.status.lastError ?? "")")
        // The policies were dropped only after the absence was confirmed (three lists in a row):
        // an API server that is starting answers 404 for a CRD until it has loaded it.
        #expect(listsWhenEmptied >= 3, "emptied after \(listsWhenEmptied) lists")
        await server.stop()
    }
}
