import ClusterState
import Netlink
import NodenetTestSupport
import Testing
@testable import ServiceProxy

/// The shape's promise: a Service or EndpointSlice change only adds and deletes set and map
/// elements (NFT_MSG_NEWSETELEM / NFT_MSG_DELSETELEM), never a rule, chain or verdict-map
/// element, so no commit makes the kernel walk the table. Checked on the netlink messages the
/// backend sends for every kind of change, and (privileged) that the kernel takes them.
@Suite struct ElementOnlyTests {
    /// Message type of one nf_tables request (nlmsg_type: subsystem << 8 | message).
    static func messageType(_ r: NetlinkRequest) -> UInt16 { UInt16(r.bytes[4]) | UInt16(r.bytes[5]) << 8 }
    static let newSetElement: UInt16 = 10 << 8 | 12
    static let deleteSetElement: UInt16 = 10 << 8 | 14

    static let lb = ServicePort(name: "https", port: 443, targetPort: .int(8443), nodePort: 31443)
    static let np = ServicePort(name: "http", port: 80, targetPort: .int(8080), nodePort: 30080)

    /// A sequence of changes covering every semantic, each applied on top of the previous ones.
    static func scenario() -> [(String, [StoreChange])] {
        let eps = { (n: Int) in (1...n).map { EP(ip: "10.244.7.\($0)", node: $0 % 2 == 0 ? "node2" : nodeName) } }
        let web = { (type: ServiceType, ports: [ServicePort]) in service("web", type: type, ips: ["10.96.0.50"], ports: ports) }
        return [
            ("service added", [.upsert(.service(web(.clusterIP, [np]))), .upsert(.endpointSlice(slice("web", eps(3))))]),
            ("endpoint added", [.upsert(.endpointSlice(slice("web", eps(4))))]),
            ("endpoints removed", [.upsert(.endpointSlice(slice("web", eps(2))))]),
            ("endpoint replaced", [.upsert(.endpointSlice(slice("web", [EP(ip: "10.244.7.9"), EP(ip: "10.244.7.2", node: "node2")])))]),
            ("last endpoint gone", [.delete(ObjectKey(.endpointSlice, namespace: "ns1", name: "web-ipv4"))]),
            ("endpoints back", [.upsert(.endpointSlice(slice("web", eps(3))))]),
            ("terminating fallback", [.upsert(.endpointSlice(slice("web", [EP(ip: "10.244.7.5", ready: false, serving: true, terminating: true)])))]),
            ("ready again", [.upsert(.endpointSlice(slice("web", eps(3))))]),
            ("to NodePort", [.upsert(.service(web(.nodePort, [np])))]),
            ("to LoadBalancer, eTP Local, ranges, external IP", [.upsert(.service(service(
                "web", type: .loadBalancer, ips: ["10.96.0.50"], ports: [np, lb], etp: .local, externalIPs: ["203.0.113.50"],
                ingress: ["198.51.100.50"], sourceRanges: ["192.0.2.0/24"])))]),
            ("iTP Local", [.upsert(.service(service("web", type: .loadBalancer, ips: ["10.96.0.50"], ports: [np, lb], etp: .local, itp: .local,
                                                    ingress: ["198.51.100.50"], sourceRanges: ["192.0.2.0/24", "198.51.100.0/24"])))]),
            ("ClientIP affinity on", [.upsert(.service(service("web", ips: ["10.96.0.50"], ports: [np], affinity: CountRules.defaultAffinityTimeout)))]),
            ("affinity endpoint removed", [.upsert(.endpointSlice(slice("web", eps(2))))]),
            ("affinity off", [.upsert(.service(web(.clusterIP, [np])))]),
            ("dual-stack service added", [.upsert(.service(service("ds", ips: ["10.96.0.51", "fd00:96::51"]))),
                                          .upsert(.endpointSlice(slice("ds", [EP(ip: "10.244.7.20")]))),
                                          .upsert(.endpointSlice(slice("ds", family: .ipv6, [EP(ip: "fd00:10:244:7::20")])))]),
            ("services removed", [.delete(ObjectKey(.service, namespace: "ns1", name: "web")), .delete(ObjectKey(.service, namespace: "ns1", name: "ds"))]),
        ]
    }

    /// Runs the scenario through a planner; `apply` gets each plan (the kernel, when there is one).
    static func run(_ apply: ([RulesetOperation]) async throws -> Void) async throws -> [String: [UInt16]] {
        let store = ClusterStore()
        // A cluster already in place, so every fixed count and the shared sets have elements.
        var initial: [StoreChange] = []
        for i in 0..<20 {
            initial.append(.upsert(.service(service("bg\(i)", ips: ["10.96.1.\(i)"]))))
            initial.append(.upsert(.endpointSlice(slice("bg\(i)", (0...(i % 6)).map { EP(ip: "10.244.8.\(i * 8 + $0)") }))))
        }
        await store.apply(initial)
        let events = await store.subscribe()
        var planner = ServiceProxyPlanner(configuration: testConfig)
        try await apply(planner.plan(snapshot: await store.snapshot(), applied: nil).operations)
        var types: [String: [UInt16]] = [:]
        for (name, changes) in scenario() {
            await store.apply(changes)
            while let e = await events.nextIfBuffered() { planner.record(e) }
            let plan = planner.plan(snapshot: await store.snapshot(), applied: nil)
            #expect(!plan.full, "\(name)")
            // Learned affinity entries are deleted by element (the backend resolves the purge).
            let ops = plan.operations.filter { if case .purgeAffinity = $0 { false } else { true } }
            types[name] = NetlinkRuleEncoder().requests(ops).requests.map(messageType)
            try await apply(plan.operations)
        }
        return types
    }

    @Test func everyChangeIsElementsOnly() async throws {
        var kernel = SimulatedKernel()
        let types = try await Self.run { try kernel.apply($0) }
        #expect(types.count == Self.scenario().count)
        for (name, t) in types.sorted(by: { $0.key < $1.key }) {
            #expect(!t.isEmpty, "\(name): no change at all")
            #expect(t.allSatisfy { $0 == Self.newSetElement || $0 == Self.deleteSetElement }, "\(name): \(Set(t).sorted())")
        }
    }

    @Test(.enabled(if: isPrivileged, "needs root and ip")) func theKernelTakesEveryChange() async throws {
        let ns = try TestNamespace("elems")
        defer { ns.delete() }
        let backend = try NetlinkRulesetBackend(namespaceNamed: ns.name)
        _ = try await Self.run { try await backend.apply($0) }
    }
}
