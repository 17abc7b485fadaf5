import ClusterState
import Foundation
import IPAddressing
import NodenetTestSupport
import Testing
@testable import ClusterSources

// NetworkPolicies and Namespaces (with their labels) through both remote sources: a real etcd
// (Debian's, as in EtcdSourceTests) and the Kubernetes stand-in serving the API's wire format
// (Fixtures/networkpolicy.json and namespace.json are what `kubectl get -o json` prints).

func policyKey(_ namespace: String, _ name: String) -> ObjectKey { ObjectKey(.networkPolicy, namespace: namespace, name: name) }

func policy(_ store: ClusterStore, _ namespace: String, _ name: String) async -> NetworkPolicy? {
    await store.snapshot().networkPolicies[NamespacedName(namespace, name)]
}

@Suite(.serialized, .enabled(if: EtcdServer.available, "etcd is not installed"))
struct EtcdNetworkPolicyTests {
    static let denyAll = """
    apiVersion: networking.k8s.io/v1
    kind: NetworkPolicy
    metadata: {name: default-deny, namespace: apps}
    spec: {podSelector: {}}
    """

    @Test func policiesAreAddedUpdatedAndDeletedAndInvalidOnesSkippedByName() async throws {
        let etcd = try EtcdServer()
        defer { etcd.stop() }
        let client = etcd.client()
        // Written by something other than nodenet: without the defaults, and a namespace
        // without its name label. Plus an invalid policy, which must never reach the store.
        try await client.put("/nodenet/objects/Namespace/apps", Data(#"{"apiVersion":"v1","kind":"Namespace","metadata":{"name":"apps","labels":{"team":"storefront"}}}"#.utf8))
        try await client.put("/nodenet/objects/NetworkPolicy/apps/bad-range",
                             Data(#"{"apiVersion":"networking.k8s.io/v1","kind":"NetworkPolicy","metadata":{"name":"bad-range","namespace":"apps"},"spec":{"podSelector":{},"ingress":[{"ports":[{"port":9000,"endPort":8000}]}]}}"#.utf8))
        let b = try RunningSource([etcd.endpoint], node: "b")
        defer { b.stop() }
        #expect(await b.source.waitForFirstSync(timeout: .seconds(10)))
        let first = await b.store.snapshot()
        #expect(first.namespaces["apps"]?.labels == ["kubernetes.io/metadata.name": "apps", "team": "storefront"])
        #expect(first.networkPolicies.isEmpty)
        #expect(b.source.status.skippedObjects == 1)
        let skipped = try #require(b.source.status.lastSkipped)
        #expect(skipped.contains("/nodenet/objects/NetworkPolicy/apps/bad-range"), "\(skipped)")
        #expect(skipped == "/nodenet/objects/NetworkPolicy/apps/bad-range: spec.ingress[0].ports[0].endPort: 8000: must be greater than or equal to `port` (9000)", "\(skipped)")

        // Added through the writer `nodenet apply` uses: arrives defaulted.
        let writer = EtcdWriter(client: client)
        let deny = try objects(Self.denyAll)[0]
        try await writer.apply([.upsert(deny)])
        #expect(await eventually { await policy(b.store, "apps", "default-deny") != nil })
        #expect(await policy(b.store, "apps", "default-deny")?.policyTypes == [.ingress])
        #expect(try #require(try await client.get("/nodenet/objects/NetworkPolicy/apps/default-deny")).value == (try ObjectCoding.encode(deny)))

        // Updated: now also egress, allowing DNS.
        let dnsOnly = try objects("""
        apiVersion: networking.k8s.io/v1
        kind: NetworkPolicy
        metadata: {name: default-deny, namespace: apps}
        spec: {podSelector: {}, egress: [{ports: [{protocol: UDP, port: 53}]}]}
        """)[0]
        try await writer.apply([.upsert(dnsOnly)])
        #expect(await eventually { await policy(b.store, "apps", "default-deny")?.policyTypes == [.ingress, .egress] })
        #expect(await policy(b.store, "apps", "default-deny")?.egress.first?.ports == [NetworkPolicy.Port(protocol: .udp, port: .int(53))])
        #expect(b.source.status.objects["NetworkPolicy"] == 1)

        // A watched update that makes it invalid removes it (never half-loaded) and is named.
        try await client.put("/nodenet/objects/NetworkPolicy/apps/default-deny",
                             Data(#"{"apiVersion":"networking.k8s.io/v1","kind":"NetworkPolicy","metadata":{"name":"default-deny","namespace":"apps"},"spec":{"podSelector":{},"egress":[{"to":[{"ipBlock":{"cidr":"10.0.0.0/8","except":["192.168.0.0/16"]}}]}]}}"#.utf8))
        #expect(await eventually { await policy(b.store, "apps", "default-deny") == nil })
        #expect(await eventually { b.source.status.lastSkipped?.contains("NetworkPolicy/apps/default-deny") == true })
        #expect(b.source.status.lastSkipped?.contains("must be a strict subset of `cidr`") == true, "\(b.source.status.lastSkipped ?? "")")

        // Back, then deleted.
        try await writer.apply([.upsert(dnsOnly)])
        #expect(await eventually { await policy(b.store, "apps", "default-deny") != nil })
        try await writer.apply([.delete(policyKey("apps", "default-deny"))])
        #expect(await eventually { await policy(b.store, "apps", "default-deny") == nil })
        #expect(try await client.get("/nodenet/objects/NetworkPolicy/apps/default-deny") == nil)
    }
}

@Suite struct KubernetesNetworkPolicyTests {
    static let nodes = "/api/v1/nodes", services = "/api/v1/services"
    static let slices = "/apis/discovery.k8s.io/v1/endpointslices", pods = "/api/v1/pods"
    static let namespaces = "/api/v1/namespaces", policies = "/apis/networking.k8s.io/v1/networkpolicies"

    @Test func listsAndWatchesPoliciesAndNamespacesSkippingInvalidOnesByName() async throws {
        let server = try await StandInAPIServer()
        let script = server.script
        for path in [Self.nodes, Self.services, Self.slices, Self.pods] { script.set(path, []) }
        let apps = Fixture.object("namespace")
        let allow = Fixture.object("networkpolicy")
        // An invalid one in the list (no API server would hold it; a conversion bug or a newer
        // field might): skipped and named, the rest of the list loads.
        let badList = renamed(allow, "bad-peer", rv: "51103") { setPath(&$0, ["spec", "ingress"], [["from": [[:] as [String: Any]]]]) }
        script.set(Self.namespaces, [Fixture.item(apps)])
        script.set(Self.policies, [allow, badList].map(Fixture.item))

        // Watch: a new namespace; the policy updated, a second one added, then changed so it no
        // longer validates (removed and named); the stream ends (server timeout) and the next
        // watch deletes the first policy.
        let shop = renamed(apps, "shop", rv: "51200") { setPath(&$0, ["metadata", "labels"], ["team": "shop"]) }
        let narrowed = renamed(allow, "allow-frontend-to-db", rv: "51201") {
            setPath(&$0, ["spec", "ingress"], [["ports": [["port": 6379, "protocol": "TCP"]], "from": [["podSelector": ["matchLabels": ["role": "frontend"]]]]]])
        }
        let second = renamed(allow, "allow-metrics", rv: "51202")
        let secondBroken = renamed(allow, "allow-metrics", rv: "51203") { setPath(&$0, ["spec", "policyTypes"], ["Ingress", "Sideways"]) }
        script.queueWatch(Self.namespaces, WatchReply(events: [Fixture.event("ADDED", shop)], end: .hold))
        script.queueWatch(Self.policies, WatchReply(events: [
            Fixture.event("MODIFIED", narrowed), Fixture.event("ADDED", second), Fixture.bookmark("NetworkPolicy", "51202"),
            Fixture.event("MODIFIED", secondBroken),
        ], end: .finish))
        script.queueWatch(Self.policies, WatchReply(events: [Fixture.event("DELETED", narrowed)], end: .hold))

        let store = ClusterStore()
        let subscription = await store.subscribe()
        let source = try KubernetesSource(configuration: .init(connection: KubeConnection(server: server.url), nodeName: "worker-1"), store: store)
        let task = Task { try? await source.run() }
        defer { task.cancel() }
        #expect(await source.waitForFirstSync(timeout: .seconds(10)))

        let allowKey = policyKey("apps", "allow-frontend-to-db"), metricsKey = policyKey("apps", "allow-metrics")
        let done = await eventually {
            let s = await store.snapshot()
            return s.namespaces["shop"] != nil && s.networkPolicies.isEmpty && source.status.lastSkipped?.contains("allow-metrics") == true
                && script.requests.contains { $0.hasPrefix(Self.policies + "?watch=1&resourceVersion=51203") }
        }
        let snapshot = await store.snapshot()
        #expect(done, "namespaces \(snapshot.namespaces.keys.sorted()), policies \(snapshot.networkPolicies.keys.sorted()), skipped \(source.status.lastSkipped ?? "")")
        // Namespaces carry their labels, and the name label even when the API object lacked it.
        #expect(snapshot.namespaces["apps"]?.labels == ["kubernetes.io/metadata.name": "apps", "team": "storefront"])
        #expect(snapshot.namespaces["shop"]?.labels == ["kubernetes.io/metadata.name": "shop", "team": "shop"])
        #expect(snapshot.namespaces["apps"]?.metadata.resourceVersion == nil)
        #expect(snapshot.networkPolicies[NamespacedName("apps", "bad-peer")] == nil)
        #expect(source.status.skippedObjects == 1)  // bad-peer, in the list
        #expect(source.status.lastSkipped?.contains("NetworkPolicy apps/allow-metrics: spec.policyTypes[1]") == true, "\(source.status.lastSkipped ?? "")")
        #expect(source.status.objects["Namespace"] == 2)

        // Every step reached the store in order: listed, narrowed, the second added then
        // removed when it broke, the first deleted.
        let changes = await drain(subscription).flatMap { e -> [ObjectChange] in
            if case .changed(_, let c) = e { c.filter { $0.key.kind == .networkPolicy } } else { [] }
        }
        func new(_ c: ObjectChange) -> NetworkPolicy? { if case .networkPolicy(let p)? = c.new { p } else { nil } }
        #expect(changes.map { "\($0.key.name) \($0.old == nil ? "+" : $0.new == nil ? "-" : "~")" }
                == ["allow-frontend-to-db +", "allow-frontend-to-db ~", "allow-metrics +", "allow-metrics -", "allow-frontend-to-db -"])
        let listed = try #require(changes.first.flatMap(new))
        #expect(listed.podSelector == LabelSelector(matchLabels: ["role": "db"]))
        #expect(listed.policyTypes == [.ingress, .egress])
        #expect(listed.ingress == [NetworkPolicy.Rule(
            ports: [NetworkPolicy.Port(protocol: .tcp, port: .int(6379)), NetworkPolicy.Port(protocol: .tcp, port: .int(32000), endPort: 32768)],
            peers: [NetworkPolicy.Peer(podSelector: LabelSelector(matchLabels: ["role": "frontend"])),
                    NetworkPolicy.Peer(ipBlock: NetworkPolicy.IPBlock(cidr: IPPrefix("172.17.0.0/16")!, except: [IPPrefix("172.17.1.0/24")!]))])])
        #expect(listed.egress == [NetworkPolicy.Rule(ports: [NetworkPolicy.Port(protocol: .udp, port: .int(53))],
                                                     peers: [NetworkPolicy.Peer(podSelector: LabelSelector(matchLabels: ["k8s-app": "kube-dns"]),
                                                                                namespaceSelector: LabelSelector(matchLabels: ["kubernetes.io/metadata.name": "kube-system"]))])])
        #expect(listed.metadata.resourceVersion == nil)
        #expect(changes.count > 1 && new(changes[1])?.ingress.first?.ports.count == 1)
        #expect(changes.contains { $0.key == metricsKey })
        #expect(changes.last?.key == allowKey)
        await server.stop()
    }

    @Test func theListedInvalidPolicyIsNamedWithItsField() async throws {
        let server = try await StandInAPIServer()
        let script = server.script
        for path in [Self.nodes, Self.services, Self.slices, Self.pods, Self.namespaces] { script.set(path, []) }
        let allow = Fixture.object("networkpolicy")
        let bad = renamed(allow, "bad-peer", rv: "51103") {
            setPath(&$0, ["spec", "ingress"], [["from": [["ipBlock": ["cidr": "10.0.0.0/8"], "podSelector": [:] as [String: Any]]]]])
        }
        script.set(Self.policies, [Fixture.item(bad)])
        script.queueWatch(Self.policies, WatchReply(events: [Fixture.event("DELETED", bad)], end: .hold))
        let store = ClusterStore()
        let source = try KubernetesSource(configuration: .init(connection: KubeConnection(server: server.url), nodeName: "worker-1"), store: store)
        let task = Task { try? await source.run() }
        defer { task.cancel() }
        #expect(await source.waitForFirstSync(timeout: .seconds(10)))
        #expect(await store.snapshot().networkPolicies.isEmpty)
        #expect(source.status.skippedObjects == 1)
        #expect(source.status.lastSkipped == "NetworkPolicy apps/bad-peer: spec.ingress[0].from[0]: may not specify both ipBlock and another peer",
                "\(source.status.lastSkipped ?? "")")
        await server.stop()
    }
}

/// The Kubernetes source lists and watches every resource it needs: the shipped ClusterRole
/// (deploy/nodenet.yaml) and the one README.md shows must grant each, or the source never
/// syncs on a real cluster (a 403 on one feed holds back the first sync).
@Suite struct KubernetesRBACTests {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    @Test(arguments: ["deploy/nodenet.yaml", "README.md"])
    func theClusterRoleGrantsEveryResourceTheSourceWatches(_ file: String) throws {
        let text = try String(contentsOf: Self.root.appendingPathComponent(file), encoding: .utf8)
        let role = try #require(text.components(separatedBy: "---").first { $0.contains("kind: ClusterRole\n") && !$0.contains("roleRef") })
        for resource in KubeResource.standard(podsOnNode: nil) {
            let parts = resource.path.split(separator: "/").map(String.init)
            let plural = parts.last!
            let group = parts.first == "api" ? "\"\"" : parts[1]
            // The rule for the resource's API group names the resource, with list and watch.
            let rule = role.components(separatedBy: "apiGroups:").first { $0.contains("[\(group)]") }
            #expect(rule?.contains(plural) == true, "\(file): no list/watch rule for \(plural) in API group \(group)")
            let verbs = rule.flatMap { $0.components(separatedBy: "verbs:").dropFirst().first }?.split(separator: "\n").first.map(String.init) ?? ""
            #expect(verbs.contains("list") && verbs.contains("watch"), "\(file): \(group): verbs \(verbs)")
        }
    }
}
