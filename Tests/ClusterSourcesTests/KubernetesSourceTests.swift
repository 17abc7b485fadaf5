import ClusterState
import Foundation
import NodenetTestSupport
import Testing
@testable import ClusterSources

// The Kubernetes source against StandInAPIServer (see that file: a scripted stand-in, because
// no real API server can run here), serving real API objects from Fixtures/.

enum Fixture {
    static let directory = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures")

    static func object(_ name: String) -> [String: Any] {
        let data = try! Data(contentsOf: directory.appendingPathComponent(name + ".json"))
        return try! JSONSerialization.jsonObject(with: data) as! [String: Any]
    }

    /// A fixture changed: `edit` gets the object as a dictionary.
    static func object(_ name: String, _ edit: (inout [String: Any]) -> Void) -> [String: Any] {
        var o = object(name)
        edit(&o)
        return o
    }

    /// As list items come: without apiVersion and kind.
    static func item(_ o: [String: Any]) -> [String: Any] {
        var o = o
        o["apiVersion"] = nil
        o["kind"] = nil
        return o
    }

    static func itemData(_ o: [String: Any]) -> Data {
        try! JSONSerialization.data(withJSONObject: item(o))
    }

    static func event(_ type: String, _ object: [String: Any]) -> Data {
        try! JSONSerialization.data(withJSONObject: ["type": type, "object": object])
    }

    static func bookmark(_ kind: String, _ rv: String) -> Data {
        event("BOOKMARK", ["kind": kind, "apiVersion": "v1", "metadata": ["resourceVersion": rv, "annotations": ["k8s.io/initial-events-end": "true"]]])
    }
}

func renamed(_ o: [String: Any], _ name: String, rv: String, _ more: (inout [String: Any]) -> Void = { _ in }) -> [String: Any] {
    var o = o
    var meta = o["metadata"] as! [String: Any]
    meta["resourceVersion"] = rv
    if meta["name"] as? String != name { meta["uid"] = UUID().uuidString.lowercased() }
    meta["name"] = name
    o["metadata"] = meta
    more(&o)
    return o
}

func setPath(_ o: inout [String: Any], _ path: [String], _ value: Any) {
    guard let first = path.first else { return }
    if path.count == 1 { o[first] = value; return }
    var inner = o[first] as? [String: Any] ?? [:]
    setPath(&inner, Array(path.dropFirst()), value)
    o[first] = inner
}

@Suite struct KubernetesSourceTests {
    static let nodes = "/api/v1/nodes", services = "/api/v1/services"
    static let slices = "/apis/discovery.k8s.io/v1/endpointslices", pods = "/api/v1/pods"
    static let namespaces = "/api/v1/namespaces", policies = "/apis/networking.k8s.io/v1/networkpolicies"

    @Test func listsWatchesAndRelistsOnGoneAndBrokenStreams() async throws {
        let server = try await StandInAPIServer()
        let script = server.script
        let node1 = Fixture.object("node")
        let node2 = renamed(node1, "worker-2", rv: "90") {
            setPath(&$0, ["spec", "podCIDRs"], ["10.244.2.0/24"]); setPath(&$0, ["spec", "podCIDR"], "10.244.2.0/24")
            setPath(&$0, ["status", "addresses"], [["type": "InternalIP", "address": "192.168.56.12"]])
        }
        let node3 = renamed(node2, "worker-3", rv: "130") { setPath(&$0, ["spec", "podCIDRs"], ["10.244.3.0/24"]); setPath(&$0, ["spec", "podCIDR"], "10.244.3.0/24") }
        let web = Fixture.object("service")
        let api = renamed(web, "api", rv: "110") { setPath(&$0, ["spec", "clusterIP"], "10.96.120.8"); setPath(&$0, ["spec", "clusterIPs"], ["10.96.120.8"]) }
        let late = renamed(web, "late", rv: "112") { setPath(&$0, ["spec", "clusterIP"], "10.96.120.9"); setPath(&$0, ["spec", "clusterIPs"], ["10.96.120.9"]) }
        let slice = Fixture.object("endpointslice")
        let pod = Fixture.object("pod")
        let badPod = renamed(pod, "bad", rv: "115") { setPath(&$0, ["spec", "hostname"], "Not_A_Label") }

        script.set(Self.nodes, [node1, node2].map(Fixture.item))
        script.set(Self.services, [Fixture.item(web)])
        script.set(Self.slices, [Fixture.item(slice)])
        script.set(Self.pods, [Fixture.item(pod)])
        script.set(Self.namespaces, [])
        script.set(Self.policies, [])

        // Nodes: a heartbeat-only change and a bookmark, then watch ERROR 410 (worker-2 was
        // deleted meanwhile); then HTTP 410 Gone (worker-3 was added meanwhile).
        let heartbeat = renamed(node1, "worker-1", rv: "120") { setPath(&$0, ["status", "conditions"], []) }
        script.queueWatch(Self.nodes, WatchReply(events: [
            Fixture.event("MODIFIED", heartbeat), Fixture.bookmark("Node", "121"),
            Fixture.event("ERROR", ["kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "Expired", "code": 410,
                                    "message": "The resourceVersion for the provided watch is too old."]),
        ], end: .hold, listUpdates: [.delete("/worker-2")]))
        script.queueWatch(Self.nodes, WatchReply.gone().with { $0.listUpdates = [.put(Fixture.itemData(node3))] })
        // Services: an ADDED and a bookmark, then the connection drops; "late" was created
        // while the stream was down and only a re-list can find it.
        script.queueWatch(Self.services, WatchReply(events: [Fixture.event("ADDED", api), Fixture.bookmark("Service", "111")], end: .drop,
                                                    listUpdates: [.put(Fixture.itemData(api)), .put(Fixture.itemData(late))]))
        // EndpointSlices: the watch ends cleanly (server timeout), the next one deletes the slice.
        let notReady = Fixture.object("endpointslice") {
            var eps = $0["endpoints"] as! [[String: Any]]
            eps[0]["conditions"] = ["ready": false, "serving": false, "terminating": true]
            $0["endpoints"] = eps
        }
        script.queueWatch(Self.slices, WatchReply(events: [Fixture.event("MODIFIED", notReady)], end: .finish))
        script.queueWatch(Self.slices, WatchReply(events: [Fixture.event("DELETED", notReady)], end: .hold, listUpdates: [.delete("apps/web-8kq2m")]))
        // Pods: one that nodenet cannot decode (skipped, named in the log), then a new IP.
        let moved = Fixture.object("pod") { setPath(&$0, ["status", "podIPs"], [["ip": "10.244.1.18"]]); setPath(&$0, ["status", "podIP"], "10.244.1.18") }
        script.queueWatch(Self.pods, WatchReply(events: [Fixture.event("ADDED", badPod), Fixture.event("MODIFIED", moved)], end: .hold))

        let store = ClusterStore()
        let subscription = await store.subscribe()
        let configuration = KubernetesSourceConfiguration(connection: KubeConnection(server: server.url), nodeName: "worker-1",
                                                          allPods: true, requestTimeout: .seconds(5), pageSize: 1)
        let source = try KubernetesSource(configuration: configuration, store: store)
        let task = Task { try? await source.run() }
        defer { task.cancel() }
        #expect(await source.waitForFirstSync(timeout: .seconds(10)))

        let done = await eventually {
            let s = await store.snapshot()
            return Set(s.nodes.keys) == ["worker-1", "worker-3"] && Set(s.services.keys.map(\.name)) == ["web", "api", "late"]
                && s.endpointSlices.isEmpty && s.pods.count == 1
                && s.pods.values.first?.podIPs.map(\.description) == ["10.244.1.18"]
        }
        let snapshot = await store.snapshot()
        #expect(done, "nodes \(snapshot.nodes.keys.sorted()), services \(snapshot.services.keys.map(\.name).sorted()), slices \(snapshot.endpointSlices.count), pods \(snapshot.pods.values.map(\.podIPs))")
        #expect(snapshot.synced)
        #expect(snapshot.nodes["worker-3"]?.podCIDRs.map(\.description) == ["10.244.3.0/24"])
        #expect(snapshot.nodes["worker-1"]?.metadata.resourceVersion == nil)
        let status = source.status
        #expect(status.relists >= 3, "\(status)")
        #expect(status.skippedObjects == 0)  // the bad pod came in a watch event, not a list
        #expect(status.objects["Service"] == 3)

        // Never dropped: worker-1 and web stayed in the store throughout, and worker-1's
        // heartbeat (only resourceVersion and conditions changed) published nothing.
        let events = await drain(subscription)
        #expect(!deleted(ObjectKey(.node, name: "worker-1"), in: events))
        #expect(!deleted(ObjectKey(.service, namespace: "apps", name: "web"), in: events))
        let worker1Changes = events.flatMap { e -> [ObjectChange] in
            if case .changed(_, let c) = e { c.filter { $0.key == ObjectKey(.node, name: "worker-1") } } else { [] }
        }
        #expect(worker1Changes.count == 1)  // only its creation

        let requests = script.requests
        #expect(requests.contains { $0.hasPrefix(Self.nodes + "?limit=1&continue=1") })
        // Watches resume from the list's resourceVersion (the stand-in's counter, shared by all
        // resources, starts at 100) and ask for bookmarks.
        let nodeWatches = requests.filter { $0.hasPrefix(Self.nodes + "?watch=1") }
        #expect(nodeWatches.count >= 3)
        #expect(nodeWatches.allSatisfy { $0.contains("allowWatchBookmarks=true") && $0.contains("resourceVersion=1") })
        // The clean end of the slices watch resumed from the last event, without a re-list.
        #expect(requests.filter { $0.hasPrefix(Self.slices + "?limit") }.count == 1)
        #expect(requests.contains { $0.hasPrefix(Self.slices + "?watch=1&resourceVersion=51040") })
        await server.stop()
    }

    @Test func podsOfThisNodeOnlyWithAFieldSelector() async throws {
        let server = try await StandInAPIServer()
        let pod = Fixture.object("pod")
        let elsewhere = renamed(pod, "other", rv: "99") { setPath(&$0, ["spec", "nodeName"], "worker-2") }
        for path in [Self.nodes, Self.services, Self.slices, Self.namespaces, Self.policies] { server.script.set(path, []) }
        server.script.set(Self.pods, [pod, elsewhere].map(Fixture.item))
        let store = ClusterStore()
        let source = try KubernetesSource(configuration: .init(connection: KubeConnection(server: server.url), nodeName: "worker-1", allPods: false), store: store)
        let task = Task { try? await source.run() }
        defer { task.cancel() }
        #expect(await source.waitForFirstSync(timeout: .seconds(10)))
        #expect(await store.snapshot().pods.keys.map(\.name) == ["web-7c9d8f6b5-x2x4q"])
        #expect(server.script.requests.contains { $0.contains("fieldSelector=spec.nodeName%3Dworker-1") })
        await server.stop()
    }

    @Test func unreachableServerIsRetriedAndReported() async throws {
        let store = ClusterStore()
        // AsyncHTTPClient retries a refused connection until the request's deadline: keep it short.
        let source = try KubernetesSource(configuration: .init(connection: KubeConnection(server: "http://127.0.0.1:\(try freePort())"), nodeName: "n",
                                                               requestTimeout: .milliseconds(300)), store: store)
        let task = Task { try? await source.run() }
        defer { task.cancel() }
        #expect(await !source.waitForFirstSync(timeout: .seconds(2)))
        #expect(await eventually { source.status.lastError != nil })
        #expect(!source.status.connected)
        #expect(await !store.snapshot().synced)
    }

    @Test func fixturesDecodeAsTheModelTypes() throws {
        for name in ["node", "service", "endpointslice", "pod", "namespace", "networkpolicy"] {
            let data = try Data(contentsOf: Fixture.directory.appendingPathComponent(name + ".json"))
            _ = try ManifestDecoder.decode(json: data)
        }
    }
}

extension WatchReply {
    func with(_ edit: (inout WatchReply) -> Void) -> WatchReply { var r = self; edit(&r); return r }
}
