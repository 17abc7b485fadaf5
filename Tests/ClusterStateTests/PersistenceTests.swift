import Foundation
import IPAddressing
import Testing
@testable import ClusterState

func tempDir() -> String {
    let path = NSTemporaryDirectory() + "nodenet-test-" + UUID().uuidString
    try! FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    return path
}

@Suite struct PersistenceTests {
    @Test func committedObjectsSurviveReopen() async throws {
        let dir = tempDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        do {
            let db = try StateDatabase(directory: dir)
            let store = ClusterStore(persistence: db)
            try await store.commit([
                .upsert(.node(node("node1", "10.244.1.0/24", "192.168.1.11"))),
                .upsert(.service(service("apps", "web", ip: "10.96.0.20", selector: ["app": "web"]))),
                .upsert(.attachment(PodAttachment(containerID: "c1", ifname: "eth0", netns: "/var/run/netns/p1", podNamespace: "apps",
                                                  podName: "web-1", ips: [IPPrefix("10.244.1.5/24")!], hostInterface: "nn1234"))),
                .upsert(.lease(SubnetLease(nodeName: "node1", cidrs: [IPPrefix("10.244.1.0/24")!]))),
            ])
            try await store.commit([.delete(ObjectKey(.node, name: "node1"))])
        }
        let (snapshot, skipped) = try StateDatabase(directory: dir).loadSnapshot()
        #expect(skipped.isEmpty)
        #expect(snapshot.nodes.isEmpty)
        #expect(snapshot.services[NamespacedName("apps", "web")]?.clusterIPs == [IPAddress("10.96.0.20")!])
        #expect(snapshot.attachments["c1/eth0"]?.ips == [IPPrefix("10.244.1.5/24")!])
        #expect(snapshot.leases["node1"] != nil)
        #expect(snapshot.addresses(of: NamespacedName("apps", "web-1")) == [IPAddress("10.244.1.5")!])
    }

    @Test func undecodableRowsAreReportedNotFatal() throws {
        let dir = tempDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let db = try StateDatabase(directory: dir)
        try db.writer.write { d in
            try d.execute(sql: "INSERT INTO objects (kind, namespace, name, json) VALUES ('Service', 'apps', 'broken', '{\"kind\":\"Service\"}')")
            try d.execute(sql: "INSERT INTO objects (kind, namespace, name, json) VALUES ('Gadget', '', 'g', '{}')")
        }
        let (snapshot, skipped) = try db.loadSnapshot()
        #expect(snapshot.services.isEmpty)
        #expect(skipped.count == 2)
    }

    @Test func unwritableStateDirIsAClearError() {
        #expect(throws: PersistenceError.self) { try StateDatabase(directory: "/proc/nodenet-cannot-exist") }
    }
}

@Suite struct EndpointsControllerTests {
    func snapshot(_ objects: [ClusterObject]) async -> ClusterSnapshot {
        let store = ClusterStore()
        await store.apply(objects.map { .upsert($0) })
        return await store.snapshot()
    }

    @Test func selectsReadyPodsWithAddresses() async {
        let svc = service("apps", "web", ip: "10.96.0.20", selector: ["app": "web"], ports: [ServicePort(name: "http", port: 80, targetPort: .int(8080))])
        let snap = await snapshot([
            .service(svc),
            .pod(pod("apps", "web-1", labels: ["app": "web"], ips: ["10.244.1.5"])),
            .pod(pod("apps", "web-2", labels: ["app": "web"], ips: ["10.244.2.6"], node: "node2", ready: false)),
            .pod(pod("apps", "web-3", labels: ["app": "web"])),                  // no address yet: skipped
            .pod(pod("apps", "db-1", labels: ["app": "db"], ips: ["10.244.1.9"])), // other selector
            .pod(pod("other", "web-9", labels: ["app": "web"], ips: ["10.244.1.10"])), // other namespace
        ])
        let slices = EndpointsController.desiredSlices(for: svc, in: snap)
        #expect(slices.count == 1)
        let s = slices[0]
        #expect(s.metadata.name == "web-nodenet-ipv4")
        #expect(s.service == NamespacedName("apps", "web"))
        #expect(s.endpoints.map { $0.addresses.map(\.description) } == [["10.244.1.5"], ["10.244.2.6"]])
        #expect(s.endpoints[0].conditions.ready && !s.endpoints[1].conditions.ready)
        #expect(s.endpoints[1].nodeName == "node2")
        #expect(s.ports == [EndpointPort(name: "http", protocol: .tcp, port: 8080)])
    }

    @Test func attachmentAddressesAndNamedPortsAndHostnames() async {
        var p = pod("apps", "web-0", labels: ["app": "web"])
        p.hostname = "web-0"
        p.subdomain = "web"
        p.ports = [ContainerPort(name: "web", containerPort: 8443)]
        let svc = service("apps", "web", selector: ["app": "web"], ports: [ServicePort(name: "https", port: 443, targetPort: .string("web"))])
        let snap = await snapshot([
            .service(svc), .pod(p),
            .attachment(PodAttachment(containerID: "c0", ifname: "eth0", netns: "/x", podNamespace: "apps", podName: "web-0",
                                      ips: [IPPrefix("10.244.1.7/24")!], hostInterface: "nn0")),
        ])
        let s = EndpointsController.desiredSlices(for: svc, in: snap)[0]
        #expect(s.endpoints.first?.addresses == [IPAddress("10.244.1.7")!])
        #expect(s.endpoints.first?.hostname == "web-0")
        #expect(s.ports.first?.port == 8443)
    }

    @Test func noSelectorMeansNoManagedSlices() async {
        let svc = service("apps", "manual", ip: "10.96.0.21")
        let snap = await snapshot([.service(svc), .pod(pod("apps", "a", labels: [:], ips: ["10.244.1.2"]))])
        #expect(EndpointsController.desiredSlices(for: svc, in: snap).isEmpty)
    }

    @Test func runFollowsPodsAndServicesIncrementally() async throws {
        let store = ClusterStore()
        let task = Task { await EndpointsController().run(store: store) }
        defer { task.cancel() }
        let svc = service("apps", "web", ip: "10.96.0.20", selector: ["app": "web"])
        await store.apply([.upsert(.service(svc))])
        await store.apply([.upsert(.pod(pod("apps", "web-1", labels: ["app": "web"], ips: ["10.244.1.5"])))])
        let key = NamespacedName("apps", "web-nodenet-ipv4")
        try await eventually { await store.snapshot().endpointSlices[key]?.endpoints.count == 1 }
        // Relabel the pod out of the selector: its endpoint goes.
        await store.apply([.upsert(.pod(pod("apps", "web-1", labels: ["app": "other"], ips: ["10.244.1.5"])))])
        try await eventually { await store.snapshot().endpointSlices[key]?.endpoints.isEmpty == true }
        // Delete the service: its managed slice goes.
        await store.apply([.delete(ObjectKey(.service, namespace: "apps", name: "web"))])
        try await eventually { await store.snapshot().endpointSlices[key] == nil }
    }
}

struct Timeout: Error {}

/// Polls `condition` for up to 5 s.
func eventually(_ condition: @Sendable () async -> Bool) async throws {
    for _ in 0..<500 {
        if await condition() { return }
        try await Task.sleep(for: .milliseconds(10))
    }
    Issue.record("condition not met within 5 s")
    throw Timeout()
}

@Suite struct AdmissionTests {
    let admission = Admission(serviceCIDRs: [IPPrefix("10.96.0.0/12")!], nodePortRange: 30000...30002)

    @Test func allocatesClusterIPAndNodePorts() throws {
        var svc = service("apps", "web", selector: ["app": "web"], ports: [ServicePort(name: "a", port: 80), ServicePort(name: "b", port: 81)])
        svc.type = .nodePort
        let out = try admission.admit([.service(svc)], in: ClusterSnapshot())
        guard case .service(let s) = out[0] else { Issue.record("not a service"); return }
        #expect(s.clusterIPs == [IPAddress("10.96.0.11")!])
        #expect(s.ports.map(\.nodePort) == [30000, 30001])
    }

    @Test func keepsExistingAllocationsOnUpdate() async throws {
        let store = ClusterStore()
        await store.apply([.upsert(.service(service("apps", "web", ip: "10.96.0.99")))])
        let out = try admission.admit([.service(service("apps", "web"))], in: await store.snapshot())
        guard case .service(let s) = out[0] else { return }
        #expect(s.clusterIPs == [IPAddress("10.96.0.99")!])
    }

    @Test func refusesConflictsAndOutOfRange() async throws {
        let store = ClusterStore()
        await store.apply([.upsert(.service(service("apps", "web", ip: "10.96.0.99")))])
        let snap = await store.snapshot()
        #expect(throws: ManifestError.self) { try admission.admit([.service(service("apps", "other", ip: "10.96.0.99"))], in: snap) }
        #expect(throws: ManifestError.self) { try admission.admit([.service(service("apps", "far", ip: "10.200.0.1"))], in: snap) }
        var np = service("apps", "np", ports: [ServicePort(port: 80, nodePort: 31000)])
        np.type = .nodePort
        #expect(throws: ManifestError.self) { try admission.admit([.service(np)], in: snap) }
        let dup = ClusterObject.namespace(Namespace(metadata: ObjectMeta(name: "a")))
        #expect(throws: ManifestError.self) { try admission.admit([dup, dup], in: snap) }
    }

    @Test func nodePortPoolExhaustion() throws {
        var svc = service("apps", "np", ports: (0..<4).map { ServicePort(name: "p\($0)", port: UInt16(80 + $0)) })
        svc.type = .nodePort
        do {
            _ = try admission.admit([.service(svc)], in: ClusterSnapshot())
            Issue.record("accepted")
        } catch {
            #expect(error.description.contains("no free node port"))
        }
    }
}

@Suite struct PodSubnetTests {
    @Test func precedenceConfigThenNodeThenLease() async throws {
        let store = ClusterStore()
        await store.apply([
            .upsert(.node(node("node1", "10.244.1.0/24", "192.168.1.11"))),
            .upsert(.lease(SubnetLease(nodeName: "node2", cidrs: [IPPrefix("10.244.7.0/24")!]))),
        ])
        let snap = await store.snapshot()
        #expect(PodSubnets.resolve(node: "node1", configured: [IPPrefix("10.244.9.0/24")!], in: snap)?.1 == .config)
        #expect(PodSubnets.resolve(node: "node1", configured: [], in: snap)?.0 == [IPPrefix("10.244.1.0/24")!])
        #expect(PodSubnets.resolve(node: "node2", configured: [], in: snap)?.1 == .lease)
        #expect(PodSubnets.resolve(node: "node3", configured: [], in: snap) == nil)
        let lease = try PodSubnets.nextLease(node: "node3", clusterCIDR: IPPrefix("10.244.0.0/16")!, maskSize: 24, in: snap)
        #expect(lease.cidrs == [IPPrefix("10.244.0.0/24")!])
    }

    @Test func exhaustedClusterCIDR() async {
        let store = ClusterStore()
        await store.apply([.upsert(.node(node("a", "10.244.0.0/25", "192.168.1.1"))), .upsert(.node(node("b", "10.244.0.128/25", "192.168.1.2")))])
        let snap = await store.snapshot()
        #expect(throws: PodSubnetError.self) {
            try PodSubnets.nextLease(node: "c", clusterCIDR: IPPrefix("10.244.0.0/24")!, maskSize: 25, in: snap)
        }
    }

    @Test func attachmentsStoredBeforePortMappingsStillDecode() throws {
        let old = #"{"containerID":"c1","hostInterface":"nn1","ifname":"eth0","ips":["10.244.1.5/24"],"netns":"/x","network":"nodenet"}"#
        guard case .attachment(let a) = try ObjectCoding.decode(kind: .attachment, Data(old.utf8)) else {
            Issue.record("not an attachment"); return
        }
        #expect(a.portMappings.isEmpty)
        let mapped = PodAttachment(containerID: "c2", ifname: "eth0", netns: "/x", ips: [IPPrefix("10.244.1.6/24")!], hostInterface: "nn2",
                                   portMappings: [.init(hostPort: 8080, containerPort: 80, protocol: .udp, hostIP: IPAddress("192.168.1.11"))])
        guard case .attachment(let back) = try ObjectCoding.decode(kind: .attachment, try ObjectCoding.encode(.attachment(mapped))) else {
            Issue.record("not an attachment"); return
        }
        #expect(back == mapped)
    }
}

/// Cluster IP allocation by `ipFamilyPolicy` and `ipFamilies`, as the API server does it, on a
/// dual-stack cluster and on single-stack ones of either family. The manifests go through the
/// decoder, so the fields are read as users write them.
@Suite struct IPFamilyAdmissionTests {
    static let dual = Admission(serviceCIDRs: [IPPrefix("10.96.0.0/12")!, IPPrefix("fd00:10:96::/112")!], nodePortRange: 30000...32767)
    static let v4only = Admission(serviceCIDRs: [IPPrefix("10.96.0.0/12")!], nodePortRange: 30000...32767)
    static let v6only = Admission(serviceCIDRs: [IPPrefix("fd00:10:96::/112")!], nodePortRange: 30000...32767)

    func admitted(_ spec: String, _ admission: Admission, in snapshot: ClusterSnapshot = ClusterSnapshot()) throws(ManifestError) -> Service {
        let yaml = """
            apiVersion: v1
            kind: Service
            metadata: {name: checkout-payments-gateway, namespace: payments}
            spec: {selector: {app: gateway}, ports: [{name: https, port: 443, targetPort: 8443}]\(spec.isEmpty ? "" : ", " + spec)}
            """
        let objects = try ManifestDecoder.decode(yaml)
        guard case .service(let s)? = try admission.admit(objects, in: snapshot).first else {
            throw ManifestError(document: 1, message: "not a service")
        }
        return s
    }

    func refusal(_ spec: String, _ admission: Admission) -> ManifestError? {
        do {
            _ = try admitted(spec, admission)
            return nil
        } catch {
            return error
        }
    }

    @Test func policiesOnADualStackCluster() throws {
        let single = try admitted("", Self.dual)
        #expect(single.clusterIPs == [IPAddress("10.96.0.11")!] && single.ipFamilies == [.v4] && single.ipFamilyPolicy == .singleStack)
        let v6 = try admitted("ipFamilies: [IPv6]", Self.dual)
        #expect(v6.clusterIPs == [IPAddress("fd00:10:96::b")!] && v6.ipFamilies == [.v6] && v6.ipFamilyPolicy == .singleStack)
        let prefer = try admitted("ipFamilyPolicy: PreferDualStack", Self.dual)
        #expect(prefer.clusterIPs == [IPAddress("10.96.0.11")!, IPAddress("fd00:10:96::b")!] && prefer.ipFamilies == [.v4, .v6])
        let require6 = try admitted("ipFamilyPolicy: RequireDualStack, ipFamilies: [IPv6, IPv4]", Self.dual)
        #expect(require6.clusterIPs.map(\.family) == [.v6, .v4] && require6.ipFamilies == [.v6, .v4])
        // Two families without a policy: the API server defaults it to RequireDualStack.
        let two = try admitted("ipFamilies: [IPv4, IPv6]", Self.dual)
        #expect(two.ipFamilyPolicy == .requireDualStack && two.clusterIPs.count == 2)
        // A given primary keeps its address; the secondary is allocated.
        let given = try admitted("clusterIP: 10.96.44.7, ipFamilyPolicy: RequireDualStack", Self.dual)
        #expect(given.clusterIPs == [IPAddress("10.96.44.7")!, IPAddress("fd00:10:96::b")!])
        // Headless services get families too (their endpoints follow them), no addresses.
        let headless = try admitted("clusterIP: None, ipFamilyPolicy: PreferDualStack", Self.dual)
        #expect(headless.clusterIPs.isEmpty && headless.isHeadless && headless.ipFamilies == [.v4, .v6])
    }

    @Test func singleStackClustersOfEitherFamily() throws {
        let prefer4 = try admitted("ipFamilyPolicy: PreferDualStack", Self.v4only)
        #expect(prefer4.clusterIPs == [IPAddress("10.96.0.11")!] && prefer4.ipFamilyPolicy == .preferDualStack)
        let prefer6 = try admitted("ipFamilyPolicy: PreferDualStack, ipFamilies: [IPv6, IPv4]", Self.v6only)
        #expect(prefer6.clusterIPs == [IPAddress("fd00:10:96::b")!] && prefer6.ipFamilies == [.v6])
        let primary6 = try admitted("", Self.v6only)
        #expect(primary6.clusterIPs == [IPAddress("fd00:10:96::b")!] && primary6.ipFamilies == [.v6])
    }

    @Test func refusalsNameTheField() {
        let cases: [(String, Admission, String, String)] = [
            ("ipFamilyPolicy: RequireDualStack", Self.v4only, "spec.ipFamilyPolicy", "RequireDualStack needs an IPv4 and an IPv6"),
            ("ipFamilies: [IPv6]", Self.v4only, "spec.ipFamilies[0]", "IPv6 has no service range"),
            ("ipFamilies: [IPv4]", Self.v6only, "spec.ipFamilies[0]", "IPv4 has no service range"),
            ("ipFamilies: [IPv5]", Self.dual, "spec.ipFamilies[0]", "unknown IP family"),
            ("ipFamilies: [IPv4, IPv4]", Self.dual, "spec.ipFamilies", "at most one entry per family"),
            ("ipFamilyPolicy: Sometimes", Self.dual, "spec.ipFamilyPolicy", "unknown policy"),
            ("ipFamilyPolicy: SingleStack, ipFamilies: [IPv4, IPv6]", Self.dual, "spec.ipFamilyPolicy", "SingleStack allows one family"),
            ("clusterIPs: [10.96.0.50], ipFamilies: [IPv6]", Self.dual, "spec.ipFamilies[0]", "does not match spec.clusterIPs[0]"),
        ]
        for (spec, admission, field, message) in cases {
            let error = refusal(spec, admission)
            #expect(error?.description.contains(field) == true && error?.description.contains(message) == true,
                    "\(spec): \(error?.description ?? "accepted")")
        }
    }

    @Test func updateToDualStackKeepsTheAddressAndAddsOne() async throws {
        let store = ClusterStore()
        await store.apply([.upsert(.service(try admitted("", Self.dual)))])
        let upgraded = try admitted("ipFamilyPolicy: PreferDualStack", Self.dual, in: await store.snapshot())
        #expect(upgraded.clusterIPs == [IPAddress("10.96.0.11")!, IPAddress("fd00:10:96::b")!])
    }

    @Test func serializedShapeRoundTrips() throws {
        let s = try admitted("ipFamilyPolicy: PreferDualStack", Self.dual)
        let back = try ManifestDecoder.decode(String(decoding: try JSONEncoder().encode(s), as: UTF8.self))
        guard case .service(let again)? = back.first else { Issue.record("not a service"); return }
        #expect(again == s)
    }
}
