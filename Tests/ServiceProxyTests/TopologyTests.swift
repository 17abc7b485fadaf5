import ClusterState
import IPAddressing
import Testing
@testable import ServiceProxy

/// Topology-aware routing (kube-proxy's canUseTopology): zone hints narrow the cluster-wide
/// endpoints only when the service asks, every ready endpoint is hinted and this zone has one.
@Suite struct TopologyTests {
    static func ep(_ ip: String, hints: [String], ready: Bool = true, local: Bool = false, terminating: Bool = false) -> ServiceEndpoint {
        ServiceEndpoint(address: IPAddress(ip)!, port: 8080, isLocal: local, ready: ready, serving: ready || terminating,
                        terminating: terminating, zoneHints: hints)
    }

    static let hinted = [ep("10.244.1.5", hints: ["zone-a"], local: true), ep("10.244.2.5", hints: ["zone-a"]),
                         ep("10.244.3.5", hints: ["zone-b"]), ep("fd00:10:244:3::5", hints: ["zone-b", "zone-c"])]

    func addresses(_ eps: [ServiceEndpoint]) -> [String] { eps.map(\.address.description) }

    @Test func hintsForThisZoneAreFollowed() {
        let a = EndpointSelection(Self.hinted, zone: "zone-a", topologyAware: true)
        #expect(a.usesTopology)
        #expect(addresses(a.cluster) == ["10.244.1.5", "10.244.2.5"])
        #expect(addresses(a.local) == ["10.244.1.5"], "the local set is not narrowed by hints")
        let c = EndpointSelection(Self.hinted, zone: "zone-c", topologyAware: true)
        #expect(addresses(c.cluster) == ["fd00:10:244:3::5"], "an endpoint hinted for several zones serves each")
    }

    @Test func oneReadyEndpointWithoutHintsFallsBackToAll() {
        let eps = Self.hinted + [Self.ep("10.244.4.5", hints: [])]
        let s = EndpointSelection(eps, zone: "zone-a", topologyAware: true)
        #expect(!s.usesTopology)
        #expect(s.cluster.count == 5)
    }

    @Test func aNotReadyEndpointWithoutHintsDoesNotCount() {
        let eps = Self.hinted + [Self.ep("10.244.4.5", hints: [], ready: false)]
        let s = EndpointSelection(eps, zone: "zone-a", topologyAware: true)
        #expect(s.usesTopology)
        #expect(addresses(s.cluster) == ["10.244.1.5", "10.244.2.5"])
    }

    @Test func noEndpointForThisZoneFallsBackToAll() {
        let s = EndpointSelection(Self.hinted, zone: "zone-d", topologyAware: true)
        #expect(!s.usesTopology)
        #expect(s.cluster.count == 4)
        // A zone whose only hinted endpoint is not ready has none either.
        let eps = [Self.ep("10.244.1.5", hints: ["zone-a"], ready: false), Self.ep("10.244.2.5", hints: ["zone-b"])]
        let t = EndpointSelection(eps, zone: "zone-a", topologyAware: true)
        #expect(!t.usesTopology)
        #expect(addresses(t.cluster) == ["10.244.2.5"])
    }

    @Test func hintsAreIgnoredUnlessTheServiceAsks() {
        let s = EndpointSelection(Self.hinted, zone: "zone-a", topologyAware: false)
        #expect(!s.usesTopology)
        #expect(s.cluster.count == 4)
        #expect(EndpointSelection(Self.hinted) == s, "the old initializer is the same as no topology")
    }

    @Test func aNodeWithoutZoneUsesEveryEndpoint() {
        for zone in [nil, ""] as [String?] {
            let s = EndpointSelection(Self.hinted, zone: zone, topologyAware: true)
            #expect(!s.usesTopology)
            #expect(s.cluster.count == 4)
        }
    }

    @Test func terminatingFallbackIgnoresHints() {
        let eps = [Self.ep("10.244.1.5", hints: ["zone-b"], ready: false, terminating: true),
                   Self.ep("10.244.2.5", hints: ["zone-a"], ready: false, terminating: true)]
        let s = EndpointSelection(eps, zone: "zone-a", topologyAware: true)
        #expect(!s.usesTopology)
        #expect(s.cluster.count == 2)
    }

    /// What asks for topology: spec.trafficDistribution, or the annotation Auto.
    @Test func whatAsksForTopology() {
        let meta = ObjectMeta(name: "web", namespace: "apps")
        #expect(!Service(metadata: meta).wantsTopologyAwareRouting)
        #expect(Service(metadata: meta, trafficDistribution: "PreferClose").wantsTopologyAwareRouting)
        for (key, value, wants) in [(Service.topologyModeAnnotation, "Auto", true), (Service.topologyModeAnnotation, "auto", true),
                                    (Service.topologyModeAnnotation, "Disabled", false), (Service.topologyAwareHintsAnnotation, "Auto", true),
                                    (Service.topologyModeAnnotation, "", false)] {
            let s = Service(metadata: ObjectMeta(name: "web", namespace: "apps", annotations: [key: value]))
            #expect(s.wantsTopologyAwareRouting == wants, "\(key): \(value)")
        }
    }

    /// The hints travel from the slice to the endpoints the rules are built from.
    @Test func endpointsCarryTheirSlicesHints() {
        let slice = EndpointSlice(
            metadata: ObjectMeta(name: "web-abc", namespace: "apps", labels: [EndpointSlice.serviceNameLabel: "web"]),
            addressType: .ipv4,
            endpoints: [Endpoint(addresses: [IPAddress("10.244.1.5")!], nodeName: "node1", zone: "zone-a", zoneHints: ["zone-a"]),
                        Endpoint(addresses: [IPAddress("10.244.2.5")!], nodeName: "node2", zone: "zone-b", zoneHints: ["zone-b"])],
            ports: [EndpointPort(name: "http", port: 8080)])
        var problems: [String] = []
        let eps = endpoints(for: ServicePort(name: "http", port: 80), family: .ip, slices: [slice], nodeName: "node1", problems: &problems)
        #expect(eps.map(\.zoneHints) == [["zone-a"], ["zone-b"]])
        let s = EndpointSelection(eps, zone: "zone-b", topologyAware: true)
        #expect(addresses(s.cluster) == ["10.244.2.5"])
        #expect(addresses(s.local) == ["10.244.1.5"])
    }
}
