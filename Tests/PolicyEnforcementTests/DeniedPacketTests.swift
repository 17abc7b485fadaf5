import ClusterState
import IPAddressing
import Netlink
import NodenetTestSupport
import ServiceProxy
import Testing
@testable import PolicyEnforcement

extension PolicyKernelTests {
    /// The reject rules count what they refuse, per family and direction, and the reader gets
    /// the counts over netlink: a denied connection moves its own counter and no other, an
    /// allowed one moves none.
    @Test func deniedPacketsAreCountedPerFamilyAndDirection() async throws {
        let b = try Bridge()
        defer { b.close() }
        let backend = try NetlinkRulesetBackend(namespaceNamed: b.node.name, tableName: PolicyTables.tableName)
        let reader = try NetlinkDeniedPacketReader(namespace: NetworkNamespace(named: b.node.name))
        #expect(try await reader.read().isEmpty, "no tables yet: nothing counted")

        // x/a: ingress only from namespace x; x/b: egress only to the fabric.
        let allowX = NetworkPolicy(metadata: ObjectMeta(name: "allow-from-x", namespace: "x"),
                                   podSelector: LabelSelector(matchLabels: ["pod": "a"]),
                                   ingress: [.init(peers: [.init(namespaceSelector: LabelSelector(matchLabels: ["ns": "x"]))])])
        let egressB = NetworkPolicy(metadata: ObjectMeta(name: "egress-b", namespace: "x"),
                                    podSelector: LabelSelector(matchLabels: ["pod": "b"]), policyTypes: [.egress],
                                    egress: [.init(peers: [.init(ipBlock: .init(cidr: IPPrefix("192.168.1.0/24")!))])])
        let model = PolicyTables.model(PolicyCompiler().compile(inputs([allowX, egressB])))
        try await backend.apply(RulesetDiff.operations(from: nil, to: model))
        var last = try await reader.read()
        #expect(DeniedPacketKey.all.allSatisfy { last[$0] == 0 }, "every counter there, at zero: \(last)")

        /// After `connect` (expected to succeed or not), only `moved` counted more.
        func expectCounted(_ moved: DeniedPacketKey?, _ what: String, _ connect: () throws -> Bool) async throws {
            #expect(try connect() == (moved == nil), "\(what): connection \(moved == nil ? "allowed" : "refused")")
            let now = try await reader.read()
            for key in DeniedPacketKey.all {
                if key == moved {
                    #expect(now[key]! > last[key]!, "\(what): \(key) counted the refusal (\(last[key]!) -> \(now[key]!))")
                } else {
                    #expect(now[key] == last[key], "\(what): \(key) moved (\(last[key] ?? 0) -> \(now[key] ?? 0))")
                }
            }
            last = now
        }
        try await expectCounted(nil, "x/b to the fabric") { try b.connects("x/b", "192.168.1.1") }
        try await expectCounted(DeniedPacketKey(.v4, .ingress), "y/a to x/a") { try b.connects("y/a", "10.244.1.2") }
        try await expectCounted(DeniedPacketKey(.v6, .ingress), "y/a to x/a, IPv6") { try b.connects("y/a", "fd00:10:244:1::2") }
        try await expectCounted(DeniedPacketKey(.v4, .egress), "x/b to y/a") { try b.connects("x/b", "10.244.1.4") }
        try await expectCounted(DeniedPacketKey(.v6, .egress), "x/b to y/a, IPv6") { try b.connects("x/b", "fd00:10:244:1::4") }
    }
}

/// The Prometheus counter follows the kernel's totals: it only goes up.
struct DeniedPacketTotalsTests {
    @Test func followsTheKernelTotalsAndSurvivesNewTables() {
        var t = DeniedPacketTotals()
        let k = DeniedPacketKey(.v4, .ingress), other = DeniedPacketKey(.v6, .egress)
        #expect(t.advance(to: [k: 5]) == [k: 5, other: 0, DeniedPacketKey(.v4, .egress): 0, DeniedPacketKey(.v6, .ingress): 0])
        #expect(t.advance(to: [k: 7, other: 1])[k] == 2)
        #expect(t.advance(to: [k: 7, other: 1])[other] == 0, "nothing new")
        #expect(t.advance(to: [k: 3])[k] == 3, "below the last total: tables made anew, all of it is new")
        #expect(t.advance(to: [:])[k] == 0, "no tables: nothing to add")
        #expect(DeniedPacketKey(.v6, .egress).dimensions.map { "\($0.0)=\($0.1)" } == ["family=ipv6", "direction=egress"])
    }
}
