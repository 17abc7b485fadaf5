import ClusterState
import Testing
@testable import ServiceProxy

/// Real traffic: services with several ports and protocols, and services, endpoints and types
/// changing in the store while the actor runs.
extension TrafficTests {
    @Test(arguments: BackendKind.allCases) func multiportAndSamePortOnTCPAndUDP(_ kind: BackendKind) async throws {
        let t = try Topology(kind)
        defer { t.delete() }
        for (ns, name) in [(t.pod1, "pod1"), (t.pod2, "pod2")] {
            try t.serveTCP(ns, port: 8081, reply: "\(name)/8081")
            try t.serveTCP(ns, port: 5354, reply: "\(name)/tcp")
        }
        let store = ClusterStore()
        let web = service("web", ports: [ServicePort(name: "http", port: 80, targetPort: .int(8080)),
                                         ServicePort(name: "alt", port: 81, targetPort: .int(8081))])
        // A NodePort service with the same node port number on both protocols (allowed).
        let udp53 = ServicePort(name: "dns", protocol: .udp, port: 53, targetPort: .int(5353), nodePort: 30053)
        let tcp53 = ServicePort(name: "dns-tcp", protocol: .tcp, port: 53, targetPort: .int(5354), nodePort: 30053)
        func dns(_ ports: [ServicePort]) -> StoreChange { .upsert(.service(service("dns", type: .nodePort, ips: ["10.96.0.20"], ports: ports))) }
        let dnsPorts = [EndpointPort(name: "dns", protocol: .udp, port: 5353), EndpointPort(name: "dns-tcp", protocol: .tcp, port: 5354)]
        await store.apply([
            .upsert(.service(web)), dns([udp53, tcp53]),
            .upsert(.endpointSlice(slice("web", ports: [EndpointPort(name: "http", port: 8080), EndpointPort(name: "alt", port: 8081)],
                                         [EP(ip: "10.244.1.5"), EP(ip: "10.244.2.5")]))),
            .upsert(.endpointSlice(slice("dns", ports: dnsPorts, [EP(ip: "10.244.1.5"), EP(ip: "10.244.2.5")]))),
        ])
        let (actor, task) = try await t.startProxy(store)
        defer { task.cancel() }
        #expect(await actor.status().lastError == nil)

        // Each service port reaches its own target port, on every endpoint.
        #expect(try t.distinct(from: t.client, "10.96.0.10:80", expected: ["pod1", "pod2"]) == ["pod1", "pod2"])
        #expect(try t.distinct(from: t.client, "10.96.0.10:81", expected: ["pod1/8081", "pod2/8081"]) == ["pod1/8081", "pod2/8081"])

        // Port 53 on both protocols, each to its own listener.
        #expect(try t.distinct(from: t.client, "10.96.0.20:53", expected: ["pod1/tcp", "pod2/tcp"]) == ["pod1/tcp", "pod2/tcp"])
        let before = try t.udp(from: t.client, "10.96.0.20:53", sourcePort: 40153)
        #expect(["pod1", "pod2"].contains(before), "got \"\(before)\"")
        let tcpNodePort = try t.connect(from: t.fabric, "192.168.1.11:30053")
        #expect(["pod1/tcp", "pod2/tcp"].contains(tcpNodePort.text), "\(tcpNodePort.text)")
        let udpNodePort = try t.udp(from: t.fabric, "192.168.1.11:30053", sourcePort: 40154)
        #expect(["pod1", "pod2"].contains(udpNodePort), "\(udpNodePort)")

        // Removing the UDP port stops UDP at once (its flow from the same socket included),
        // TCP on the same number keeps working.
        try await applySynced([dns([tcp53])], to: store, actor)
        let after = try t.udp(from: t.client, "10.96.0.20:53", sourcePort: 40153)
        #expect(after == "refused", "UDP after its port went: \(after)")
        #expect(try t.distinct(from: t.client, "10.96.0.20:53", expected: ["pod1/tcp", "pod2/tcp"]) == ["pod1/tcp", "pod2/tcp"])
    }

    @Test(arguments: BackendKind.allCases) func endpointsAndTypeChangesWhileRunning(_ kind: BackendKind) async throws {
        let t = try Topology(kind)
        defer { t.delete() }
        let store = ClusterStore()
        let http = ServicePort(name: "http", port: 80, targetPort: .int(8080), nodePort: 30080)
        // A ClusterIP service may keep a nodePort field: it must not open the port.
        func web(_ type: ServiceType) -> StoreChange { .upsert(.service(service("web", type: type, ports: [http]))) }
        func endpoints(_ ips: [String]) -> StoreChange { .upsert(.endpointSlice(slice("web", ips.map { EP(ip: $0) }))) }
        await store.apply([web(.clusterIP), endpoints(["10.244.1.5"])])
        let (actor, task) = try await t.startProxy(store)
        defer { task.cancel() }
        let clusterIP = "10.96.0.10:80", nodePort = "192.168.1.11:30080"

        try t.expectOnly("pod1", from: t.client, clusterIP)
        try t.expectRefused(from: t.fabric, nodePort)

        // An endpoint added: both answer.
        try await applySynced([endpoints(["10.244.1.5", "10.244.2.5"])], to: store, actor)
        #expect(try t.distinct(from: t.client, clusterIP, expected: ["pod1", "pod2"]) == ["pod1", "pod2"])

        // ClusterIP -> NodePort: the node port opens, the ClusterIP keeps working.
        try await applySynced([web(.nodePort)], to: store, actor)
        #expect(try t.distinct(from: t.fabric, nodePort, expected: ["pod1", "pod2"]) == ["pod1", "pod2"])
        #expect(try t.distinct(from: t.client, clusterIP, expected: ["pod1", "pod2"]) == ["pod1", "pod2"])

        // An endpoint removed: only the other one, on both paths.
        try await applySynced([endpoints(["10.244.2.5"])], to: store, actor)
        try t.expectOnly("pod2", from: t.client, clusterIP)
        try t.expectOnly("pod2", from: t.fabric, nodePort, count: 6)

        // NodePort -> ClusterIP: the node port is gone (nothing listens on the node: refused).
        try await applySynced([web(.clusterIP)], to: store, actor)
        try t.expectRefused(from: t.fabric, nodePort)
        try t.expectOnly("pod2", from: t.client, clusterIP, count: 4)
        let nodePorts = try t.node.check(["nft", "list", "map", "ip", "nodenet", SharedName.backends]).stdout
        #expect(!nodePorts.contains("30080"), "\(nodePorts)")
    }

    /// e2e: service-proxy-name label on and off; ClusterIP -> ExternalName -> ClusterIP. While
    /// the service is not proxied nothing answers on its IP; after, it works again.
    @Test(arguments: BackendKind.allCases) func serviceStopsAndResumesBeingProxied(_ kind: BackendKind) async throws {
        let t = try Topology(kind)
        defer { t.delete() }
        let store = ClusterStore()
        await store.apply([.upsert(.service(service("web"))), .upsert(.endpointSlice(slice("web", [EP(ip: "10.244.1.5")])))])
        let (actor, task) = try await t.startProxy(store)
        defer { task.cancel() }
        func unanswered(sourceLocation: SourceLocation = #_sourceLocation) throws {
            let r = try t.connect(from: t.client, "10.96.0.10:80", timeout: 1)
            #expect(!r.ok && !r.text.contains("pod"), "\(r.text)", sourceLocation: sourceLocation)
        }

        try t.expectOnly("pod1", from: t.client, "10.96.0.10:80", count: 2)
        try await applySynced([.upsert(.service(service("web", labels: [Service.serviceProxyNameLabel: "other-proxy"])))], to: store, actor)
        try unanswered()
        try await applySynced([.upsert(.service(service("web")))], to: store, actor)
        try t.expectOnly("pod1", from: t.client, "10.96.0.10:80", count: 2)

        var external = service("web", type: .externalName, ips: [])
        external.externalName = "web.example.test"
        try await applySynced([.upsert(.service(external))], to: store, actor)
        try unanswered()
        try await applySynced([.upsert(.service(service("web")))], to: store, actor)
        try t.expectOnly("pod1", from: t.client, "10.96.0.10:80", count: 2)
    }

    /// kubernetes#48370 and the like: a UDP service whose endpoints come and change keeps
    /// answering the same client socket.
    @Test(arguments: BackendKind.allCases) func udpServiceFollowsEndpointChanges(_ kind: BackendKind) async throws {
        let t = try Topology(kind)
        defer { t.delete() }
        let store = ClusterStore()
        let dns = service("dns", ips: ["10.96.0.20"], ports: [ServicePort(name: "dns", protocol: .udp, port: 53, targetPort: .int(5353))])
        await store.apply([.upsert(.service(dns)), udpSlice("dns", [])])
        let (actor, task) = try await t.startProxy(store)
        defer { task.cancel() }
        let target = "10.96.0.20:53", port = 40253

        // No endpoint: refused (ICMP port unreachable), not left to time out.
        #expect(try t.udp(from: t.client, target, sourcePort: port) == "refused")

        // A first endpoint: the same socket now reaches it.
        try await applySynced([udpSlice("dns", ["10.244.1.5"])], to: store, actor)
        #expect(try t.udp(from: t.client, target, sourcePort: port) == "pod1")

        // A second endpoint: the running flow stays where it is (its conntrack entry is not
        // cut), new sockets reach both.
        try await applySynced([udpSlice("dns", ["10.244.1.5", "10.244.2.5"])], to: store, actor)
        for _ in 0..<3 { #expect(try t.udp(from: t.client, target, sourcePort: port) == "pod1") }
        var seen = Set<String>()
        for p in 40300..<40330 where seen.count < 2 { seen.insert(try t.udp(from: t.client, target, sourcePort: p)) }
        #expect(seen == ["pod1", "pod2"])

        // The flow's endpoint goes: the same socket moves to the remaining one.
        try await applySynced([udpSlice("dns", ["10.244.2.5"])], to: store, actor)
        #expect(try t.udp(from: t.client, target, sourcePort: port) == "pod2")
    }
}

extension TrafficTests {
    /// A dual-stack service: the ip6 table carries IPv6 traffic the same way (ClusterIP over
    /// every endpoint, NodePort from outside, refused without endpoints).
    @Test(arguments: BackendKind.allCases) func dualStackServiceServesIPv6(_ kind: BackendKind) async throws {
        let t = try Topology(kind)
        defer { t.delete() }
        let store = ClusterStore()
        let http = ServicePort(name: "http", port: 80, targetPort: .int(8080), nodePort: 30080)
        await store.apply([
            .upsert(.service(service("web", type: .nodePort, ips: ["10.96.0.10", "fd00:96::10"], ports: [http]))),
            .upsert(.endpointSlice(slice("web", [EP(ip: "10.244.1.5"), EP(ip: "10.244.2.5")]))),
            .upsert(.endpointSlice(slice("web", family: .ipv6, [EP(ip: "fd00:10:244:1::5"), EP(ip: "fd00:10:244:2::5")]))),
            .upsert(.service(service("empty", ips: ["fd00:96::11"]))),
        ])
        let (actor, task) = try await t.startProxy(store)
        defer { task.cancel() }
        #expect(await actor.status().lastError == nil)
        let both: Set = ["pod1", "pod2"]

        #expect(try t.distinct(from: t.client, "[fd00:96::10]:80", expected: both) == both)
        #expect(try t.distinct(from: t.client, "10.96.0.10:80", expected: both) == both)
        #expect(try t.distinct(from: t.fabric, "[fd00:1::11]:30080", expected: both) == both)
        try t.expectRefused(from: t.client, "[fd00:96::11]:80")
        // Hairpin over IPv6.
        var hairpin = false
        for _ in 0..<30 where !hairpin { hairpin = try t.connect(from: t.pod1, "[fd00:96::10]:80").text == "pod1" }
        #expect(hairpin)
    }

    /// ClientIP affinity over IPv6 sticks, and the learned entry (a 40-byte key and 20-byte data,
    /// packed into the kernel's 4-byte registers) is in the ip6 affinity map. Netlink backend
    /// only: nft 1.0.6 cannot express that record rule.
    @Test func clientIPAffinityOverIPv6() async throws {
        let t = try Topology(.netlink)
        defer { t.delete() }
        let store = ClusterStore()
        await store.apply([
            .upsert(.service(service("sticky6", ips: ["10.96.0.12", "fd00:96::12"], affinity: 300))),
            .upsert(.endpointSlice(slice("sticky6", [EP(ip: "10.244.1.5"), EP(ip: "10.244.2.5")]))),
            .upsert(.endpointSlice(slice("sticky6", family: .ipv6, [EP(ip: "fd00:10:244:1::5"), EP(ip: "fd00:10:244:2::5")]))),
        ])
        let (actor, task) = try await t.startProxy(store)
        defer { task.cancel() }
        #expect(await actor.status().lastError == nil)
        let first = try t.connect(from: t.client, "[fd00:96::12]:80").text
        #expect(["pod1", "pod2"].contains(first))
        for _ in 0..<10 { #expect(try t.connect(from: t.client, "[fd00:96::12]:80").text == first) }
        let listing = try t.node.check(["nft", "list", "map", "ip6", "nodenet", SharedName.affinity]).stdout
        let endpoint = first == "pod1" ? "fd00:10:244:1::5" : "fd00:10:244:2::5"
        #expect(listing.contains("fd00:10:244:3::5 . fd00:96::12 . tcp . 80") && listing.contains(": \(endpoint) . 8080"), "\(listing)")
    }
}
