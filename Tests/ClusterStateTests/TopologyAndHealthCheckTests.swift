import Foundation
import IPAddressing
import Testing
@testable import ClusterState

/// The fields behind topology-aware routing and health check node ports: decoded the same by
/// the YAML path and the JSON fast path (the Kubernetes and etcd sources use the same Codable
/// models), kept through encoding, and bad values refused naming the field.
@Suite struct TopologyAndHealthCheckDecodingTests {
    static let service = """
        {"apiVersion": "v1", "kind": "Service",
         "metadata": {"name": "checkout", "namespace": "shop", "annotations": {"service.kubernetes.io/topology-mode": "Auto"}},
         "spec": {"type": "LoadBalancer", "clusterIP": "10.96.41.17", "externalTrafficPolicy": "Local", "healthCheckNodePort": 31999,
                  "trafficDistribution": "PreferClose", "selector": {"app": "checkout"},
                  "ports": [{"name": "https", "port": 443, "targetPort": 8443, "nodePort": 31443}]}}
        """
    static let slice = """
        {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
         "metadata": {"name": "checkout-7xq2p", "namespace": "shop", "labels": {"kubernetes.io/service-name": "checkout"}},
         "addressType": "IPv4",
         "endpoints": [
           {"addresses": ["10.244.1.5"], "nodeName": "node1", "zone": "eu-west-1a", "hints": {"forZones": [{"name": "eu-west-1a"}]}},
           {"addresses": ["10.244.2.7"], "nodeName": "node2", "zone": "eu-west-1b",
            "hints": {"forZones": [{"name": "eu-west-1b"}, {"name": "eu-west-1c"}]}},
           {"addresses": ["10.244.3.9"], "nodeName": "node3"}],
         "ports": [{"name": "https", "port": 8443, "protocol": "TCP"}]}
        """
    static let node = """
        {"apiVersion": "v1", "kind": "Node",
         "metadata": {"name": "node1", "labels": {"topology.kubernetes.io/zone": "eu-west-1a"}},
         "spec": {"podCIDRs": ["10.244.1.0/24"]}, "status": {"addresses": [{"type": "InternalIP", "address": "192.168.1.11"}]}}
        """

    /// JSON fast path, YAML path (the same text, and a YAML rewrite), and a round trip through
    /// the store's encoding all agree.
    func everyWay(_ text: String, yaml: String) throws -> [ClusterObject] {
        let fast = try #require(ManifestDecoder.decodeJSON(text), "the JSON fast path took it")
        #expect(fast == (try ManifestDecoder.decodeYAML(text)))
        #expect(fast == (try ManifestDecoder.decodeYAML(yaml)), "written as YAML")
        for o in fast { #expect(try ObjectCoding.decode(kind: o.key.kind, try ObjectCoding.encode(o)) == o, "round trip") }
        return fast
    }

    @Test func serviceTrafficDistributionAndHealthCheckNodePort() throws {
        let yaml = """
            apiVersion: v1
            kind: Service
            metadata: {name: checkout, namespace: shop, annotations: {service.kubernetes.io/topology-mode: Auto}}
            spec:
              type: LoadBalancer
              clusterIP: 10.96.41.17
              externalTrafficPolicy: Local
              healthCheckNodePort: 31999
              trafficDistribution: PreferClose
              selector: {app: checkout}
              ports: [{name: https, port: 443, targetPort: 8443, nodePort: 31443}]
            """
        guard case .service(let s)? = try everyWay(Self.service, yaml: yaml).first else { Issue.record("not a service"); return }
        #expect(s.trafficDistribution == "PreferClose")
        #expect(s.healthCheckNodePort == 31999)
        #expect(s.wantsTopologyAwareRouting)
    }

    @Test func endpointZonesAndHints() throws {
        let yaml = """
            apiVersion: discovery.k8s.io/v1
            kind: EndpointSlice
            metadata: {name: checkout-7xq2p, namespace: shop, labels: {kubernetes.io/service-name: checkout}}
            addressType: IPv4
            endpoints:
            - {addresses: [10.244.1.5], nodeName: node1, zone: eu-west-1a, hints: {forZones: [{name: eu-west-1a}]}}
            - addresses: [10.244.2.7]
              nodeName: node2
              zone: eu-west-1b
              hints:
                forZones: [{name: eu-west-1b}, {name: eu-west-1c}]
            - {addresses: [10.244.3.9], nodeName: node3}
            ports: [{name: https, port: 8443, protocol: TCP}]
            """
        guard case .endpointSlice(let s)? = try everyWay(Self.slice, yaml: yaml).first else { Issue.record("not a slice"); return }
        #expect(s.endpoints.map(\.zone) == ["eu-west-1a", "eu-west-1b", nil])
        #expect(s.endpoints.map(\.zoneHints) == [["eu-west-1a"], ["eu-west-1b", "eu-west-1c"], []])
    }

    @Test func nodeZoneFromItsLabel() throws {
        let yaml = """
            apiVersion: v1
            kind: Node
            metadata: {name: node1, labels: {topology.kubernetes.io/zone: eu-west-1a}}
            spec: {podCIDRs: [10.244.1.0/24]}
            status: {addresses: [{type: InternalIP, address: 192.168.1.11}]}
            """
        guard case .node(let n)? = try everyWay(Self.node, yaml: yaml).first else { Issue.record("not a node"); return }
        #expect(n.zone == "eu-west-1a")
        #expect(Node(metadata: ObjectMeta(name: "node2", labels: [Node.zoneLabel: ""]), podCIDRs: [], addresses: []).zone == nil)
    }

    @Test(arguments: [
        ("trafficDistribution: Anywhere", "spec.trafficDistribution: unknown traffic distribution"),
        ("type: LoadBalancer, healthCheckNodePort: 31999", "spec.healthCheckNodePort: only a LoadBalancer or NodePort service with externalTrafficPolicy Local"),
        ("type: ClusterIP, externalTrafficPolicy: Local, healthCheckNodePort: 31999", "spec.healthCheckNodePort: only"),
        ("type: LoadBalancer, externalTrafficPolicy: Local, healthCheckNodePort: 70000", "spec.healthCheckNodePort: port 70000 is out of range"),
    ])
    func badValuesAreRefusedNamingTheField(spec: String, message: String) {
        let yaml = "apiVersion: v1\nkind: Service\nmetadata: {name: checkout, namespace: shop}\nspec: {ports: [{port: 443}], \(spec)}\n"
        #expect {
            _ = try ManifestDecoder.decode(yaml)
        } throws: { error in
            "\(error)".contains(message)
        }
    }
}

/// healthCheckNodePort allocation, as the API server does it for LoadBalancer services with
/// externalTrafficPolicy Local.
@Suite struct HealthCheckAdmissionTests {
    let admission = Admission(serviceCIDRs: [IPPrefix("10.96.0.0/12")!], nodePortRange: 30000...30003)

    func admitted(_ spec: String, in snapshot: ClusterSnapshot = ClusterSnapshot(), name: String = "checkout",
                  ports: String = "[{name: https, port: 443}]") throws(ManifestError) -> Service {
        let yaml = "apiVersion: v1\nkind: Service\nmetadata: {name: \(name), namespace: shop}\nspec: {ports: \(ports), \(spec)}\n"
        guard case .service(let s)? = try admission.admit(try ManifestDecoder.decode(yaml), in: snapshot).first else {
            throw ManifestError(document: 1, message: "not a service")
        }
        return s
    }

    @Test func loadBalancerWithLocalPolicyGetsOne() throws {
        let s = try admitted("type: LoadBalancer, externalTrafficPolicy: Local")
        #expect(s.ports.map(\.nodePort) == [30000])
        #expect(s.healthCheckNodePort == 30001, "the next free node port")
        // Cluster policy, or a NodePort service: none allocated.
        #expect(try admitted("type: LoadBalancer").healthCheckNodePort == nil)
        #expect(try admitted("type: NodePort, externalTrafficPolicy: Local").healthCheckNodePort == nil)
        // Given on a NodePort service: kept.
        #expect(try admitted("type: NodePort, externalTrafficPolicy: Local, healthCheckNodePort: 30003").healthCheckNodePort == 30003)
    }

    @Test func keptOnUpdateAndNeverShared() async throws {
        let store = ClusterStore()
        var existing = try admitted("type: LoadBalancer, externalTrafficPolicy: Local, healthCheckNodePort: 30002")
        existing.ports[0].nodePort = 30003
        await store.apply([.upsert(.service(existing))])
        let snap = await store.snapshot()
        // Re-applied without it: the same port again.
        #expect(try admitted("type: LoadBalancer, externalTrafficPolicy: Local", in: snap).healthCheckNodePort == 30002)
        // Another service never gets it, as a node port or a health check port.
        let other = try admitted("type: LoadBalancer, externalTrafficPolicy: Local", in: snap, name: "other")
        #expect(other.ports.map(\.nodePort) == [30000])
        #expect(other.healthCheckNodePort == 30001)
        #expect(throws: ManifestError.self) { try admitted("type: NodePort, externalTrafficPolicy: Local, healthCheckNodePort: 30002", in: snap, name: "other") }
        #expect(throws: ManifestError.self) { try admitted("type: NodePort", in: snap, name: "other", ports: "[{port: 80, nodePort: 30002}]") }
    }

    @Test func refusedOutOfRangeOrOnItsOwnNodePort() {
        #expect {
            try admitted("type: LoadBalancer, externalTrafficPolicy: Local, healthCheckNodePort: 31999")
        } throws: { "\($0)".contains("spec.healthCheckNodePort: 31999 is outside the node port range 30000-30003") }
        #expect {
            try admitted("type: LoadBalancer, externalTrafficPolicy: Local, healthCheckNodePort: 30000", ports: "[{port: 443, nodePort: 30000}]")
        } throws: { "\($0)".contains("one of this Service's own node ports") }
    }

    @Test func noFreePortLeft() {
        let full = Admission(serviceCIDRs: [IPPrefix("10.96.0.0/12")!], nodePortRange: 30000...30000)
        let yaml = "apiVersion: v1\nkind: Service\nmetadata: {name: checkout, namespace: shop}\nspec: {type: LoadBalancer, externalTrafficPolicy: Local, ports: [{port: 443}]}\n"
        #expect {
            _ = try full.admit(try ManifestDecoder.decode(yaml), in: ClusterSnapshot())
        } throws: { "\($0)".contains("spec.healthCheckNodePort: no free node port left") }
    }
}

/// The built-in endpoints controller fills in what Kubernetes' does for topology: each
/// endpoint's zone from its node's label, and for a service with trafficDistribution a hint for
/// that zone; a node's zone change reaches the slices of its pods.
@Suite struct EndpointsControllerZoneTests {
    static func zoned(_ name: String, _ zone: String?) -> Node {
        var n = node(name, name == "node1" ? "10.244.1.0/24" : "10.244.2.0/24", name == "node1" ? "192.168.1.11" : "192.168.1.12")
        if let zone { n.metadata.labels = [Node.zoneLabel: zone] }
        return n
    }

    @Test func zonesAndHintsFromTheNodes() async throws {
        var svc = service("shop", "checkout", ip: "10.96.41.17", selector: ["app": "checkout"])
        let store = ClusterStore()
        await store.apply([.upsert(.node(Self.zoned("node1", "eu-west-1a"))), .upsert(.node(Self.zoned("node2", nil))),
                           .upsert(.service(svc)),
                           .upsert(.pod(pod("shop", "checkout-1", labels: ["app": "checkout"], ips: ["10.244.1.5"]))),
                           .upsert(.pod(pod("shop", "checkout-2", labels: ["app": "checkout"], ips: ["10.244.2.5"], node: "node2")))])
        var slice = try #require(EndpointsController.desiredSlices(for: svc, in: await store.snapshot()).first)
        #expect(slice.endpoints.map(\.zone) == ["eu-west-1a", nil])
        #expect(slice.endpoints.map(\.zoneHints) == [[], []], "no hints unless the service asks")
        svc.trafficDistribution = "PreferClose"
        await store.apply([.upsert(.service(svc))])
        slice = try #require(EndpointsController.desiredSlices(for: svc, in: await store.snapshot()).first)
        #expect(slice.endpoints.map(\.zoneHints) == [["eu-west-1a"], []], "an endpoint without a zone gets no hint")

        // node2 gets a zone: the running controller updates the slice.
        let task = Task { await EndpointsController().run(store: store) }
        defer { task.cancel() }
        let key = NamespacedName("shop", "checkout-nodenet-ipv4")
        try await eventually { await store.snapshot().endpointSlices[key]?.endpoints.map(\.zoneHints) == [["eu-west-1a"], []] }
        await store.apply([.upsert(.node(Self.zoned("node2", "eu-west-1b")))])
        try await eventually { await store.snapshot().endpointSlices[key]?.endpoints.map(\.zoneHints) == [["eu-west-1a"], ["eu-west-1b"]] }
    }
}
