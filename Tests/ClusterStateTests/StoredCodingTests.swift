import Foundation
import GRDB
import IPAddressing
import Testing
@testable import ClusterState

/// The state database's binary form: every object comes back equal, and equal to its
/// Kubernetes JSON; rows in the old JSON form still load; damaged rows are refused.
@Suite struct StoredCodingTests {
    static func fixtureObjects() throws -> [ClusterObject] {
        try JSONFastPathTests.fixtures.flatMap { try ManifestDecoder.decode($0) }
    }

    /// Objects with every optional field set and unset, both address families, odd values.
    static func extremes() -> [ClusterObject] {
        var meta = ObjectMeta(name: "x", namespace: "ns-1", uid: "u", labels: [:], annotations: ["a": "é ✓ \u{0}", "b": ""])
        meta.resourceVersion = "123"
        meta.deletionTimestamp = "2026-12-07T10:00:00Z"
        var service = Service(metadata: meta, type: .nodePort, clusterIPs: [IPAddress("fd00::1")!, IPAddress("10.96.0.1")!],
                              ports: [ServicePort(name: "p", protocol: .sctp, port: 65535, targetPort: .string("web"), nodePort: 30000),
                                      ServicePort(port: 1, targetPort: .int(-1))],
                              selector: [:], sessionAffinityTimeout: Int.max, externalTrafficPolicy: .local, internalTrafficPolicy: .local,
                              externalIPs: [IPAddress("192.0.2.1")!], loadBalancerIngress: [IPAddress("2001:db8::ffff")!],
                              loadBalancerSourceRanges: [IPPrefix("0.0.0.0/0")!, IPPrefix("2001:db8::/128")!],
                              externalName: "", publishNotReadyAddresses: true)
        service.ipFamilies = [.v6, .v4]
        service.ipFamilyPolicy = .requireDualStack
        let bare = Service(metadata: ObjectMeta(name: "bare"), isHeadless: true)
        let slice = EndpointSlice(metadata: meta, addressType: .ipv6, endpoints: [
            Endpoint(addresses: [IPAddress("fd00::5")!, IPAddress("::")!], conditions: EndpointConditions(ready: false, serving: true, terminating: true),
                     hostname: "h", nodeName: "n", targetRef: ObjectReference(kind: nil, namespace: "ns", name: nil, uid: "")),
            Endpoint(addresses: [], conditions: EndpointConditions(ready: true, serving: false, terminating: false)),
        ], ports: [EndpointPort(name: "", protocol: .udp, port: nil), EndpointPort(name: "a", port: 0)])
        let pod = Pod(metadata: meta, nodeName: "", hostname: nil, subdomain: "s", hostNetwork: true,
                      ports: [ContainerPort(name: nil, containerPort: 8080, protocol: nil), ContainerPort(name: "x", containerPort: 1, protocol: .udp)],
                      podIPs: [IPAddress("255.255.255.255")!, IPAddress("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff")!], phase: "Pending", ready: false)
        let podBare = Pod(metadata: ObjectMeta(name: "p"))
        let node = Node(metadata: ObjectMeta(name: "n"), podCIDRs: [IPPrefix("10.244.0.0/16")!, IPPrefix("fd00::/0")!],
                        addresses: [NodeAddress(type: "InternalIP", address: "not checked here")])
        var policyMeta = meta
        policyMeta.name = "np-every"
        let policy = NetworkPolicy(
            metadata: policyMeta,
            podSelector: LabelSelector(matchLabels: ["app": "web", "": ""], matchExpressions: [.init(key: "tier", operator: .notIn, values: ["a", "é"]),
                                                                                             .init(key: "x", operator: .exists)]),
            policyTypes: [.egress, .ingress],
            ingress: [NetworkPolicy.Rule(), NetworkPolicy.Rule(
                ports: [NetworkPolicy.Port(), NetworkPolicy.Port(protocol: .udp, port: .int(53)), NetworkPolicy.Port(protocol: .sctp, port: .int(1), endPort: 65535),
                        NetworkPolicy.Port(port: .string("serve-80-tcp"))],
                peers: [NetworkPolicy.Peer(podSelector: .everything),
                        NetworkPolicy.Peer(podSelector: LabelSelector(matchLabels: ["pod": "b"]), namespaceSelector: LabelSelector(matchLabels: ["ns": "y"])),
                        NetworkPolicy.Peer(namespaceSelector: .everything)])],
            egress: [NetworkPolicy.Rule(peers: [
                NetworkPolicy.Peer(ipBlock: NetworkPolicy.IPBlock(cidr: IPPrefix("0.0.0.0/0")!, except: [IPPrefix("10.244.0.0/16")!, IPPrefix("10.96.0.0/12")!])),
                NetworkPolicy.Peer(ipBlock: NetworkPolicy.IPBlock(cidr: IPPrefix("fd00::/8")!))])])
        let denyAll = NetworkPolicy(metadata: ObjectMeta(name: "deny", namespace: "x"))
        var cnpMeta = meta
        cnpMeta.name = "cnp-every"
        cnpMeta.namespace = nil
        let cnp = ClusterNetworkPolicy(
            metadata: cnpMeta, tier: .baseline, priority: 1000,
            subject: .pods(.init(namespaceSelector: LabelSelector(matchExpressions: [.init(key: "k", operator: .doesNotExist)]),
                                 podSelector: LabelSelector(matchLabels: ["app": "é"]))),
            ingress: [.init(action: .pass, peers: [.namespaces(.everything), .unsupported(field: "serviceAccounts")]),
                      .init(name: String(repeating: "r", count: 100), action: .accept, peers: [.pods(.init())],
                            protocols: [.namedPort("serve-80-tcp"), .port(.sctp, nil), .port(.udp, .number(65535)), .port(.tcp, .range(1...65535))])],
            egress: [.init(name: "", action: .deny, peers: [.networks([IPPrefix("0.0.0.0/0")!, IPPrefix("fd00::/8")!]), .unsupported(field: "nodes")])])
        let cnpBare = ClusterNetworkPolicy(metadata: ObjectMeta(name: "bare"), tier: .admin, priority: 0, subject: .namespaces(.everything))
        return [.service(service), .service(bare), .endpointSlice(slice), .pod(pod), .pod(podBare), .node(node),
                .namespace(Namespace(metadata: ObjectMeta(name: "ns", labels: ["k": "v"]))),
                .networkPolicy(policy), .networkPolicy(denyAll), .clusterNetworkPolicy(cnp), .clusterNetworkPolicy(cnpBare)]
    }

    @Test func everyObjectComesBackEqualAndAsTheSameKubernetesJSON() throws {
        let objects = try Self.fixtureObjects() + Self.extremes()
        #expect(objects.count >= 14)
        for object in objects {
            let bytes = try #require(StoredCoding.encode(object))
            #expect(StoredCoding.isBinary(bytes))
            let back = try StoredCoding.decode(bytes)
            #expect(back == object, "\(object.key)")
            #expect(try ObjectCoding.encode(back) == (try ObjectCoding.encode(object)), "\(object.key)")
            // Smaller than the JSON it replaces.
            #expect(bytes.count < (try ObjectCoding.encode(object)).count, "\(object.key)")
        }
    }

    /// A property added to a model type must be added to the stored form too, or it would be
    /// lost at the next restart: these counts fail first and say where.
    @Test func storedFormCoversEveryProperty() {
        func count(_ value: Any) -> Int { Mirror(reflecting: value).children.count }
        let meta = ObjectMeta(name: "x")
        #expect(count(meta) == 7, "ObjectMeta changed: update StoredCoding (Writer.meta / Reader.meta)")
        #expect(count(Pod(metadata: meta)) == 9, "Pod changed: update StoredCoding")
        #expect(count(ContainerPort(containerPort: 1)) == 3, "ContainerPort changed: update StoredCoding")
        #expect(count(Node(metadata: meta, podCIDRs: [], addresses: [])) == 3, "Node changed: update StoredCoding")
        #expect(count(NodeAddress(type: "", address: "")) == 2, "NodeAddress changed: update StoredCoding")
        #expect(count(Service(metadata: meta)) == 18, "Service changed: update StoredCoding (Writer.service / Reader.service)")
        #expect(count(ServicePort(port: 1)) == 5, "ServicePort changed: update StoredCoding")
        #expect(count(EndpointSlice(metadata: meta, addressType: .ipv4, endpoints: [], ports: [])) == 4, "EndpointSlice changed: update StoredCoding")
        #expect(count(Endpoint(addresses: [])) == 7, "Endpoint changed: update StoredCoding")
        #expect(count(EndpointConditions()) == 3, "EndpointConditions changed: update StoredCoding")
        #expect(count(EndpointPort(port: 1)) == 3, "EndpointPort changed: update StoredCoding")
        #expect(count(ObjectReference()) == 4, "ObjectReference changed: update StoredCoding")
        #expect(count(Namespace(metadata: meta)) == 1, "Namespace changed: update StoredCoding")
        #expect(count(NetworkPolicy(metadata: meta)) == 5, "NetworkPolicy changed: update StoredCoding (Writer.networkPolicy / Reader.networkPolicy)")
        #expect(count(NetworkPolicy.Rule()) == 2, "NetworkPolicy.Rule changed: update StoredCoding")
        #expect(count(NetworkPolicy.Port()) == 3, "NetworkPolicy.Port changed: update StoredCoding")
        #expect(count(NetworkPolicy.Peer()) == 3, "NetworkPolicy.Peer changed: update StoredCoding")
        #expect(count(NetworkPolicy.IPBlock(cidr: IPPrefix("10.0.0.0/8")!)) == 2, "NetworkPolicy.IPBlock changed: update StoredCoding")
        let cnp = ClusterNetworkPolicy(metadata: meta, tier: .admin, priority: 0, subject: .namespaces(.everything))
        #expect(count(cnp) == 6, "ClusterNetworkPolicy changed: update StoredCoding (Writer.clusterNetworkPolicy / Reader.clusterNetworkPolicy)")
        #expect(count(ClusterNetworkPolicy.Rule(action: .deny, peers: [])) == 4, "ClusterNetworkPolicy.Rule changed: update StoredCoding")
        #expect(count(ClusterNetworkPolicy.NamespacedPods()) == 2, "ClusterNetworkPolicy.NamespacedPods changed: update StoredCoding")
        #expect(count(LabelSelector()) == 2, "LabelSelector changed: update StoredCoding")
        #expect(count(LabelSelector.Requirement(key: "k", operator: .exists)) == 3, "LabelSelector.Requirement changed: update StoredCoding")
    }

    /// A Namespace row written before the name label was defaulted (binary, without it) gets
    /// it when loaded, so namespaceSelector on `kubernetes.io/metadata.name` works after an upgrade.
    @Test func oldNamespaceRowsGetTheNameLabel() throws {
        // marker, tag 5, meta: name "apps", namespace nil, uid nil, resourceVersion nil, labels {team: a}, annotations nil, deletionTimestamp nil.
        let old: [UInt8] = [StoredCoding.marker, 5, 4] + Array("apps".utf8) + [0, 0, 0, 2, 4] + Array("team".utf8) + [1] + Array("a".utf8) + [0, 0]
        guard case .namespace(let ns) = try StoredCoding.decode(old) else { Issue.record("not a namespace"); return }
        #expect(ns.labels == ["team": "a", "kubernetes.io/metadata.name": "apps"])
        // Through the database, also in the form before the topology fields (marker 0xB1),
        // which the loader took for JSON and skipped.
        let dir = NSTemporaryDirectory() + "nodenet-stored-" + UUID().uuidString.prefix(8)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let db = try StateDatabase(directory: dir)
        try db.writer.write { d in
            try d.execute(sql: "INSERT INTO objects (kind, namespace, name, json) VALUES (?, ?, ?, ?)",
                          arguments: ["Namespace", "", "apps", Data([StoredCoding.markerWithoutTopology] + old.dropFirst())])
        }
        let (loaded, skipped) = try db.loadAll()
        #expect(skipped.isEmpty, "\(skipped)")
        #expect(loaded == [.namespace(ns)])
    }

    @Test func damagedRowsAreRefusedNotTrusted() throws {
        for object in Self.extremes() {
            let bytes = try #require(StoredCoding.encode(object))
            // Every truncation fails with an error (no crash, no partial object).
            for n in 0..<bytes.count {
                #expect(throws: StoredCodingError.self) { try StoredCoding.decode(Array(bytes.prefix(n))) }
            }
            #expect(throws: StoredCodingError.self) { try StoredCoding.decode(bytes + [0]) }
        }
        #expect(throws: StoredCodingError.self) { try StoredCoding.decode([StoredCoding.marker, 99]) }
        // A count larger than the row is refused before anything is allocated for it.
        #expect(throws: StoredCodingError.self) { try StoredCoding.decode([StoredCoding.marker, 1, 1, 0x6e, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0x7f]) }
    }

    @Test func theDatabaseWritesTheBinaryFormAndStillReadsJSONRows() throws {
        let dir = NSTemporaryDirectory() + "nodenet-stored-" + UUID().uuidString.prefix(8)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let db = try StateDatabase(directory: dir)
        let objects = try Self.fixtureObjects() + Self.extremes().filter { $0.key.name != "x" || $0.kind == .service }
        let lease = SubnetLease(nodeName: "node1", cidrs: [IPPrefix("10.244.1.0/24")!])
        try db.save((objects + [.lease(lease)]).map { ObjectChange(key: $0.key, old: nil, new: $0) })
        // An object stored by an earlier version, as JSON.
        let legacy = try #require(try ManifestDecoder.decode(Fixtures.namespace).first)
        var legacyKey = legacy.key
        legacyKey.name = "legacy"
        var legacyJSON = String(decoding: try ObjectCoding.encode(legacy), as: UTF8.self)
        legacyJSON = legacyJSON.replacingOccurrences(of: "\"name\":\"apps\"", with: "\"name\":\"legacy\"")
        try db.writer.write { d in
            try d.execute(sql: "INSERT INTO objects (kind, namespace, name, json) VALUES (?, ?, ?, ?)",
                          arguments: [legacyKey.kind.rawValue, "", "legacy", Data(legacyJSON.utf8)])
        }
        let forms = try db.writer.read { d in
            try Row.fetchAll(d, sql: "SELECT kind, json FROM objects").map { (String($0["kind"] as String), ($0["json"] as Data).first) }
        }
        for (kind, first) in forms {
            let k = try #require(ObjectKind(rawValue: kind))
            if k == .lease { #expect(first == UInt8(ascii: "{")) }
        }
        #expect(forms.filter { $0.1 == StoredCoding.marker }.count == objects.count)
        let (loaded, skipped) = try db.loadAll()
        #expect(skipped.isEmpty)
        var byKey: [ObjectKey: ClusterObject] = [:]
        for o in loaded { byKey[o.key] = o }
        for o in objects { #expect(byKey[o.key] == o, "\(o.key)") }
        #expect(byKey[lease.key] == .lease(lease))
        // The name label follows the name, as the API server sets it.
        if case .namespace(let ns)? = byKey[legacyKey] { #expect(ns.metadata.labels == ["kubernetes.io/metadata.name": "legacy"]) } else {
            Issue.record("the JSON row did not load")
        }
    }
}

private extension SubnetLease {
    var key: ObjectKey { ClusterObject.lease(self).key }
}
