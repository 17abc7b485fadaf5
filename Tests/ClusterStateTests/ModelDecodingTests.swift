import Foundation
import NodenetTestSupport
import IPAddressing
import Testing
@testable import ClusterState

@Suite struct ModelDecodingTests {
    func decode(_ json: String) throws -> ClusterObject {
        try ManifestDecoder.decode(json: Data(json.utf8))
    }

    @Test func node() throws {
        guard case .node(let n) = try decode(Fixtures.node) else { Issue.record("not a node"); return }
        #expect(n.name == "node2")
        #expect(n.podCIDRs.map(\.description) == ["10.244.2.0/24", "fd00:10:244:2::/64"])
        #expect(n.internalIP(.v4)?.description == "192.168.1.12")
        #expect(n.internalIP(.v6)?.description == "fc00:f853:ccd:e793::3")
        #expect(n.metadata.namespace == nil)
    }

    @Test func serviceKeepsEveryFieldNodenetUses() throws {
        guard case .service(let s) = try decode(Fixtures.service) else { Issue.record("not a service"); return }
        #expect(s.id == NamespacedName("apps", "web-service"))
        #expect(s.type == .loadBalancer)
        #expect(s.clusterIPs.map(\.description) == ["10.107.37.188", "fd00:10:96::1c4"])
        #expect(s.ipFamilies == [.v4, .v6])
        #expect(!s.isHeadless)
        #expect(s.ports.count == 2)
        #expect(s.ports[0] == ServicePort(name: "http", protocol: .tcp, port: 80, targetPort: .string("web"), nodePort: 31080))
        #expect(s.ports[1] == ServicePort(name: "dns", protocol: .udp, port: 53, targetPort: .int(5353), nodePort: 31053))
        #expect(s.selector == ["app": "web"])
        #expect(s.sessionAffinityTimeout == 600)
        #expect(s.externalTrafficPolicy == .local)
        #expect(s.internalTrafficPolicy == .cluster)
        #expect(s.externalIPs == [IPAddress("192.0.2.50")!])
        #expect(s.loadBalancerIngress == [IPAddress("192.0.2.100")!])
        #expect(s.loadBalancerSourceRanges == [IPPrefix("198.51.100.0/24")!])
        #expect(s.publishNotReadyAddresses)
    }

    @Test func headlessAndExternalName() throws {
        guard case .service(let h) = try decode(Fixtures.headless), case .service(let e) = try decode(Fixtures.externalName) else {
            Issue.record("not services"); return
        }
        #expect(h.isHeadless)
        #expect(h.clusterIPs.isEmpty)
        #expect(h.ports[0].targetPort == .int(5432))
        #expect(e.type == .externalName)
        #expect(e.externalName == "db.example.test")
    }

    @Test func endpointSliceConditionsDefaultAsTheAPISays() throws {
        guard case .endpointSlice(let s) = try decode(Fixtures.endpointSlice) else { Issue.record("not a slice"); return }
        #expect(s.service == NamespacedName("apps", "web-service"))
        #expect(s.addressType == .ipv4)
        #expect(s.endpoints.count == 3)
        #expect(s.endpoints[0].hostname == "web-0")
        #expect(s.endpoints[0].conditions == EndpointConditions(ready: true, serving: true, terminating: false))
        #expect(s.endpoints[1].conditions == EndpointConditions(ready: false, serving: true, terminating: true))
        // Unset conditions: ready (nil means ready), serving follows ready, not terminating.
        #expect(s.endpoints[2].conditions == EndpointConditions(ready: true, serving: true, terminating: false))
        #expect(s.ports.map(\.port) == [8080, 5353])
        #expect(s.ports[1].protocol == .udp)
    }

    @Test func pod() throws {
        guard case .pod(let p) = try decode(Fixtures.pod) else { Issue.record("not a pod"); return }
        #expect(p.id == NamespacedName("apps", "web-0"))
        #expect(p.metadata.labels?["app"] == "web")
        #expect(p.nodeName == "node1")
        #expect(p.hostname == "web-0")
        #expect(p.subdomain == "web-service")
        #expect(p.podIPs.map(\.description) == ["10.244.1.5", "fd00:10:244:1::5"])
        #expect(p.ready == true)
        #expect(p.ports == [ContainerPort(name: "web", containerPort: 8080, protocol: .tcp)])
    }

    @Test(arguments: [Fixtures.node, Fixtures.service, Fixtures.headless, Fixtures.externalName, Fixtures.endpointSlice, Fixtures.pod, Fixtures.namespace,
                      Fixtures.networkPolicy])
    func encodeDecodeRoundTrip(_ json: String) throws {
        let object = try decode(json)
        let again = try ObjectCoding.decode(kind: object.kind, ObjectCoding.encode(object))
        #expect(again == object)
    }

    @Test func yamlMultiDocumentAndList() throws {
        let yaml = """
        apiVersion: v1
        kind: Namespace
        metadata: {name: apps}
        ---
        # a comment-only document is skipped
        ---
        apiVersion: v1
        kind: List
        items:
        - apiVersion: v1
          kind: Node
          metadata: {name: node1}
          spec: {podCIDRs: [10.244.1.0/24]}
        - apiVersion: v1
          kind: Service
          metadata: {name: web, namespace: apps}
          spec: {clusterIP: 10.96.0.20, ports: [{port: 80}]}
        """
        let objects = try ManifestDecoder.decode(yaml)
        #expect(objects.map(\.key.description) == ["Namespace apps", "Node node1", "Service apps/web"])
    }

    @Test(arguments: [
        ("apiVersion: v1\nkind: Secret\nmetadata: {name: x}", "document 1: kind: unsupported kind \"Secret\""),
        ("kind: Service\nmetadata: {name: x}", "document 1: apiVersion: apiVersion is required"),
        ("apiVersion: apps/v1\nkind: Service\nmetadata: {name: x}", "document 1: apiVersion: Service must have apiVersion v1"),
        ("apiVersion: v1\nkind: Namespace\nmetadata: {name: ok}\n---\napiVersion: v1\nkind: Service\nmetadata: {name: web, namespace: apps}\nspec: {ports: [{port: 80, protocol: ICMP}]}",
         "document 2 (Service apps/web): spec.ports[0].protocol: unsupported protocol \"ICMP\""),
        ("apiVersion: v1\nkind: Service\nmetadata: {name: web}\nspec: {clusterIP: 10.1.2.300}", "spec.clusterIPs: \"10.1.2.300\" is not an IP address"),
        ("apiVersion: v1\nkind: Service\nmetadata: {name: web}\nspec: {ports: [{port: eighty}]}", "spec.ports[0].port: expected a number"),
        ("apiVersion: v1\nkind: Service\nmetadata: {name: Web_1}", "metadata.name: \"Web_1\" is not a valid Service name"),
        ("apiVersion: v1\nkind: Node\nmetadata: {name: n}\nspec: {podCIDRs: [10.244.1.7/24]}", "spec.podCIDRs: \"10.244.1.7/24\" is not a network CIDR"),
        ("apiVersion: v1\nkind: Service\nmetadata: {name: web}\nspec: {type: Magic}", "spec.type: unknown service type \"Magic\""),
        ("apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {name: s}\naddressType: IPv4\nendpoints: [{addresses: [\"fd00::1\"]}]",
         "endpoints[0].addresses: address family does not match addressType IPv4"),
        ("- just\n- a list", "document 1: expected an object"),
        ("apiVersion: v1\nkind: Service\nmetadata: {name: web}\nspec: {ports: [{port: 80}, {port: 81}]}", "every port needs a name"),
    ])
    func refusesWithAMessageNamingDocumentAndField(_ input: (String, String)) {
        do {
            _ = try ManifestDecoder.decode(input.0)
            Issue.record("accepted: \(input.0)")
        } catch {
            #expect(error.description.contains(input.1), "got: \(error.description)")
        }
    }

    /// A syntax error in a later document fails the whole file, naming that document;
    /// the valid documents around it are not returned.
    @Test func yamlSyntaxErrorInALaterDocumentFailsTheWholeFile() {
        let yaml = """
        apiVersion: v1
        kind: Namespace
        metadata: {name: apps}
        ---
        apiVersion: v1
        kind: Service
        metadata: {name: web-service, namespace: apps
        spec: {clusterIP: 10.107.37.188, ports: [{port: 80}]}
        ---
        apiVersion: v1
        kind: Node
        metadata: {name: node1}
        """
        do {
            let objects = try ManifestDecoder.decode(yaml)
            Issue.record("accepted \(objects.count) object(s) from a file with a syntax error")
        } catch {
            #expect(error.document == 2, "got: \(error.description)")
            #expect(error.description.hasPrefix("document 2: not valid YAML or JSON"), "got: \(error.description)")
        }
    }

    // MARK: Kubernetes' size limits

    static let half = String(repeating: "x", count: 150 * 1024)
    static let longIPv6Text = "fd00:10:244:1:" + String(repeating: "0", count: 291)  // 305 characters
    static let fqdn305 = (0..<5).map { _ in String(repeating: "a", count: 59) }.joined(separator: ".") + ".testa"  // 305 characters

    @Test(arguments: [
        ("apiVersion: v1\nkind: Namespace\nmetadata: {name: apps, annotations: {a: \(ModelDecodingTests.half), b: \(ModelDecodingTests.half)}}",
         "document 1 (Namespace apps): metadata.annotations: 307202 bytes in all, over the 262144 (256 KiB) Kubernetes allows"),
        ("apiVersion: v1\nkind: Namespace\nmetadata: {name: apps, annotations: {\"bad key!\": x}}",
         "metadata.annotations: key \"bad key!\" is not a valid annotation key"),
        ("apiVersion: v1\nkind: Pod\nmetadata: {name: web-1, namespace: apps, labels: {app: \(String(repeating: "w", count: 64))}}",
         "metadata.labels: value of \"app\""),
        ("apiVersion: v1\nkind: Pod\nmetadata: {name: web-1, namespace: apps, labels: {app.kubernetes.io/\(String(repeating: "n", count: 64)): web}}",
         "is not a valid label key"),
        ("apiVersion: v1\nkind: Node\nmetadata: {name: \(String(repeating: "n", count: 254))}",
         "metadata.name: "),
        ("apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {name: web-abc12, namespace: apps}\naddressType: IPv6\nendpoints: [{addresses: [\"\(ModelDecodingTests.longIPv6Text)\"]}]",
         "endpoints[0].addresses: \"\(ModelDecodingTests.longIPv6Text.prefix(40))...\" (305 bytes) is not an IP address"),
        ("apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {name: web-abc12, namespace: apps}\naddressType: FQDN\nendpoints: [{addresses: [\"\(ModelDecodingTests.fqdn305)\"]}]",
         "endpoints[0].addresses: \"\(ModelDecodingTests.fqdn305.prefix(40))...\" (305 bytes) is not a valid FQDN"),
        ("apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {name: web-abc12, namespace: apps}\naddressType: IPv4\nports: [{name: \(String(repeating: "p", count: 64)), port: 80}]",
         "ports[0].name: "),
        ("apiVersion: v1\nkind: Service\nmetadata: {name: web, namespace: apps}\nspec: {ports: [{name: \(String(repeating: "p", count: 64)), port: 80}]}",
         "spec.ports[0].name: "),
    ])
    func refusesWhatKubernetesRefusesBySize(_ input: (String, String)) {
        do {
            _ = try ManifestDecoder.decode(input.0)
            Issue.record("accepted: \(input.0.prefix(200))")
        } catch {
            #expect(error.description.contains(input.1), "got: \(error.description.prefix(400))")
            #expect(error.description.utf8.count < 1000, "the message quotes no huge value")
        }
    }

    /// Right at Kubernetes' limits: accepted. Port names as the upstream conformance tests
    /// name them (service-port-tcp-80) and up to 63 characters.
    @Test func acceptsWhatKubernetesAcceptsAtTheLimits() throws {
        let port63 = "service-port-" + String(repeating: "tcp-80-", count: 7) + "x"
        let label63 = String(repeating: "v", count: 62) + "1"
        let annotations = String(repeating: "y", count: 256 * 1024 - 200)
        let yaml = """
        apiVersion: v1
        kind: Service
        metadata:
          name: web
          namespace: apps
          labels: {app.kubernetes.io/name: \(label63), tier: ""}
          annotations: {kubectl.kubernetes.io/last-applied-configuration: \(annotations)}
        spec: {clusterIP: 10.96.0.20, ports: [{name: service-port-tcp-80, port: 80}, {name: \(port63), port: 8080}]}
        ---
        apiVersion: discovery.k8s.io/v1
        kind: EndpointSlice
        metadata: {name: web-abc12, namespace: apps, labels: {kubernetes.io/service-name: web}}
        addressType: FQDN
        endpoints: [{addresses: [\((0..<4).map { _ in String(repeating: "a", count: 61) }.joined(separator: ".") + ".test")]}]
        ports: [{name: \(port63), port: 8080}]
        """
        let objects = try ManifestDecoder.decode(yaml)
        guard case .service(let service) = objects.first else { Issue.record("not a service"); return }
        #expect(service.ports.map(\.name) == ["service-port-tcp-80", port63])
        #expect(objects.count == 2)
    }
}

/// The JSON fast path of `nodenet apply` gives exactly the objects the YAML path gives, and
/// leaves errors to the YAML path (same messages as before).
@Suite struct JSONFastPathTests {
    static let fixtures = [Fixtures.node, Fixtures.service, Fixtures.headless, Fixtures.externalName, Fixtures.endpointSlice,
                           Fixtures.pod, Fixtures.namespace, Fixtures.networkPolicy, Fixtures.clusterNetworkPolicy]

    @Test(arguments: fixtures)
    func sameObjectsAsTheYAMLPath(_ json: String) throws {
        let fast = try #require(ManifestDecoder.decodeJSON(json), "the fixture takes the JSON path")
        #expect(fast == (try ManifestDecoder.decodeYAML(json)))
        // Re-encoded (sorted keys, the store's shape) it still agrees.
        let encoded = String(decoding: try ObjectCoding.encode(fast[0]), as: UTF8.self)
        #expect(ManifestDecoder.decodeJSON(encoded) == (try ManifestDecoder.decodeYAML(encoded)))
    }

    /// The API server's objects the source tests serve (Tests/ClusterSourcesTests/Fixtures) and
    /// the scale harness's generated shapes (bench/scale/gen.py, written there as JSON and as
    /// kubectl-style YAML): the fast path and the YAML path agree on each.
    @Test func sameObjectsForTheSourceFixturesAndTheGeneratedCluster() throws {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        let dir = root.appendingPathComponent("Tests/ClusterSourcesTests/Fixtures")
        let files = try FileManager.default.contentsOfDirectory(atPath: dir.path).filter { $0.hasSuffix(".json") }.sorted()
        #expect(files.count >= 4)
        for file in files {
            let text = try String(contentsOf: dir.appendingPathComponent(file), encoding: .utf8)
            let fast = try #require(ManifestDecoder.decodeJSON(text), "\(file) takes the JSON path")
            #expect(fast == (try ManifestDecoder.decodeYAML(text)), "\(file)")
        }
        let gen = root.appendingPathComponent("bench/scale/gen.py").path
        let out = NSTemporaryDirectory() + "nodenet-gen-" + UUID().uuidString.prefix(8)
        defer { try? FileManager.default.removeItem(atPath: out) }
        for format in ["json", "yaml"] {
            let r = try Shell.run(["/usr/bin/python3", gen, "ci", out + "/" + format, "--format", format, "--chunk", "100000"], timeout: 120)
            #expect(r.ok, "\(r.stderr)")
        }
        let json = try String(contentsOfFile: out + "/json/chunk-0000.json", encoding: .utf8)
        let yaml = try String(contentsOfFile: out + "/yaml/chunk-0000.yaml", encoding: .utf8)
        let fast = try #require(ManifestDecoder.decodeJSON(json))
        #expect(fast.count == 2410)
        #expect(fast == (try ManifestDecoder.decodeYAML(json)))
        #expect(fast == (try ManifestDecoder.decodeYAML(yaml)), "the same cluster written as YAML")
    }

    @Test func listsOfEveryKind() throws {
        let items = Self.fixtures.joined(separator: ",\n")
        for kind in ["List", "ServiceList"] {
            let list = #"{"apiVersion": "v1", "kind": "\#(kind)", "items": [\#(items)]}"#
            let fast = try #require(ManifestDecoder.decodeJSON(list))
            #expect(fast.count == Self.fixtures.count)
            #expect(fast == (try ManifestDecoder.decodeYAML(list)))
            #expect(try ManifestDecoder.decode(list) == fast)
        }
    }

    @Test func anythingUnusualFallsBackWithTheSameErrors() throws {
        let bad = [
            #"{"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web", "namespace": "apps"}, "spec": {"ports": [{"port": 70000}]}}"#,
            #"{"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "token"}}"#,
            #"{"kind": "Namespace", "metadata": {"name": "apps"}}"#,
            #"{"apiVersion": "v1", "kind": "List", "items": [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "ok"}}, {"apiVersion": "v1", "kind": "Pod"}]}"#,
        ]
        for text in bad {
            #expect(ManifestDecoder.decodeJSON(text) == nil, "\(text)")
            var yamlError: ManifestError?, error: ManifestError?
            do { _ = try ManifestDecoder.decodeYAML(text) } catch { yamlError = error }
            do { _ = try ManifestDecoder.decode(text) } catch let e { error = e }
            #expect(error != nil && error == yamlError, "\(text): \(String(describing: error))")
        }
        // YAML (and JSON streams) take the YAML path as before.
        #expect(ManifestDecoder.decodeJSON("apiVersion: v1\nkind: Namespace\nmetadata: {name: apps}\n") == nil)
        #expect(try ManifestDecoder.decode("apiVersion: v1\nkind: Namespace\nmetadata: {name: apps}\n").count == 1)
    }
}
