import ClusterState
import Foundation
import IPAddressing
import Netlink
import NodenetTestSupport
import ServiceProxy
import Testing
@testable import PolicyEnforcement

/// The tiers in the kernel: the tables (both families) written over netlink by the agent's
/// backend in a node namespace with the pod bridge, real TCP connections deciding exactly as
/// the verdicts (`nodenet policy check`) say, a label change that is element operations only,
/// and what a ClusterNetworkPolicy edit (a rewrite of the tier chains) costs a commit.
@Suite(.serialized, .enabled(if: isPrivileged && (try? Shell.which("socat")) != nil, "needs root and socat"))
struct TierKernelTests {
    typealias CNP = ClusterNetworkPolicy

    static func inputs(_ cnps: [CNP], _ policies: [NetworkPolicy]) -> PolicyInputs {
        var i = PolicyInputs(namespaces: ["x": ["ns": "x"], "y": ["ns": "y"]])
        for p in [PolicyKernelTests.pod("x/a", "10.244.1.2", "fd00:10:244:1::2", labels: ["pod": "a"]),
                  PolicyKernelTests.pod("x/b", "10.244.1.3", "fd00:10:244:1::3", labels: ["pod": "b"]),
                  PolicyKernelTests.pod("y/a", "10.244.1.4", "fd00:10:244:1::4", labels: ["pod": "a"])] { i.pods[p.id] = p }
        for p in policies { i.policies[p.id] = p }
        for c in cnps { i.clusterPolicies[c.name] = c }
        return i
    }

    /// Every pair of pods (and the fabric host) on ports 80 and 81, both families: the
    /// connection succeeds exactly when the verdict allows it.
    static func expectTrafficMatchesVerdicts(_ b: PolicyKernelTests.Bridge, _ e: EnforcementEngine, _ what: String) throws {
        let names = ["x/a", "x/b", "y/a"]
        for from in names {
            var targets: [(String, String)] = names.filter { $0 != from }.flatMap { [(b.pods[$0]!.ip, $0), (b.pods[$0]!.ip6, $0 + " v6")] }
            targets.append(("192.168.1.1", "fabric"))
            for (address, label) in targets {
                for port in [80, 81] where !(label == "fabric" && port == 81) {
                    let src = address.contains(":") ? b.pods[from]!.ip6 : b.pods[from]!.ip
                    let v = e.verdict(from: IPAddress(src)!, to: IPAddress(address)!, proto: .tcp, port: UInt16(port))
                    let got = try b.connects(from, address, port: port)
                    #expect(got == v.allowed, "\(what): \(from) -> \(label):\(port) connected \(got), verdict \(v)")
                }
            }
        }
    }

    @Test func tiersDecideRealTrafficAsExplained() async throws {
        let b = try PolicyKernelTests.Bridge()
        defer { b.close() }
        let backend = try NetlinkRulesetBackend(namespaceNamed: b.node.name, tableName: PolicyTables.tableName)
        let np = NetworkPolicy(metadata: ObjectMeta(name: "only-x", namespace: "x"), podSelector: LabelSelector(matchLabels: ["pod": "a"]),
                               ingress: [.init(peers: [.init(podSelector: .everything)])])
        let adminAccept = CNP(metadata: ObjectMeta(name: "y-a-to-x-a"), tier: .admin, priority: 10,
                              subject: .pods(.init(namespaceSelector: LabelSelector(matchLabels: ["ns": "x"]), podSelector: LabelSelector(matchLabels: ["pod": "a"]))),
                              ingress: [CNP.Rule(name: "from-y-a", action: .accept, peers: [.pods(.init(namespaceSelector: .everything,
                                                                                                      podSelector: LabelSelector(matchLabels: ["pod": "a"])))],
                                                 protocols: [.port(.tcp, .number(80))])])
        let adminDeny = CNP(metadata: ObjectMeta(name: "x-b-no-fabric"), tier: .admin, priority: 20, subject: .namespaces(LabelSelector(matchLabels: ["ns": "x"])),
                            egress: [CNP.Rule(action: .pass, peers: [.pods(.init(podSelector: LabelSelector(matchLabels: ["pod": "a"])))]),
                                     CNP.Rule(name: "no-81", action: .deny, peers: [.networks([IPPrefix("10.244.0.0/16")!, IPPrefix("fd00:10:244::/48")!])],
                                              protocols: [.namedPort("serve-81"), .port(.tcp, .number(81))]),
                                     CNP.Rule(action: .deny, peers: [.networks([IPPrefix("192.168.1.0/24")!])])])
        let baseline = CNP(metadata: ObjectMeta(name: "baseline"), tier: .baseline, priority: 0, subject: .namespaces(.everything),
                           ingress: [CNP.Rule(action: .deny, peers: [.namespaces(LabelSelector(matchLabels: ["ns": "x"]))], protocols: [.port(.tcp, nil)])])
        var e = EnforcementEngine()
        e.load(Self.inputs([adminAccept, adminDeny, baseline], [np]))
        _ = e.takeOperations()
        try await backend.apply(RulesetDiff.operations(from: nil, to: e.model))
        // Spot checks of the semantics, then every pair against the verdicts.
        #expect(try b.connects("y/a", "10.244.1.2"), "admin accept over NP (x/a only from x)")
        #expect(try !b.connects("y/a", "10.244.1.2", port: 81), "81: NP decides")
        #expect(try !b.connects("x/b", "192.168.1.1"), "admin deny to the fabric network")
        #expect(try !b.connects("x/a", "10.244.1.4"), "baseline denies x -> y (y/a not isolated)")
        try Self.expectTrafficMatchesVerdicts(b, e, "initial")
        // The Deny rules counted what they refused: x/b's and x/a's connections to the fabric.
        let session = try NetlinkSession(protocol: Netlink.netfilter, namespace: NetworkNamespace(named: b.node.name))
        let records = try [IPFamily.v4, .v6].flatMap { try session.nftablesRules(table: PolicyTables.tableName, family: $0) }
        let denied = TierTables.deniedPackets(records, e.tierDesired)
        print("denied packets per CNP rule: \(denied)")
        #expect(denied.first { $0.policy == "x-b-no-fabric" && $0.rule == "egress[2]" }.map { $0.packets > 0 } == true, "\(denied)")
        #expect(denied.first { $0.policy == "x-b-no-fabric" && $0.rule == "no-81" }.map { $0.packets > 0 } == true, "\(denied)")
        #expect(denied.first { $0.policy == "baseline" }.map { $0.packets > 0 } == true, "x -> y/a, baseline: \(denied)")

        // y/a's label changes: element operations only.
        var pod = e.inputs.pods[NamespacedName("y", "a")]!
        pod.labels = ["pod": "c"]
        e.apply(PolicyChanges(pods: [pod.id: pod]))
        let ops = e.takeOperations()
        #expect(!ops.isEmpty && ops.allSatisfy {
            switch $0 { case .addElements, .deleteElements, .deleteRanges: true; default: false }
        }, "a label change is elements: \(ops)")
        try await backend.apply(ops)
        #expect(try !b.connects("y/a", "10.244.1.2"), "y/a is no longer a peer of the admin accept")
        try Self.expectTrafficMatchesVerdicts(b, e, "after the label change")

        // A ClusterNetworkPolicy edit rewrites the tier chains: time the commit.
        var swapped = adminDeny
        swapped.priority = 5
        swapped.egress.swapAt(0, 2)
        e.apply(PolicyChanges(clusterPolicies: [swapped.name: swapped]))
        let edit = e.takeOperations()
        #expect(edit.contains { if case .flushChain = $0 { true } else { false } })
        let clock = ContinuousClock()
        let took = try await clock.measure { try await backend.apply(edit) }
        print("tier policy edit: \(edit.count) operations committed in \(took)")
        try Self.expectTrafficMatchesVerdicts(b, e, "after the edit")
        e.apply(PolicyChanges(clusterPolicies: [swapped.name: Optional<CNP>.none, baseline.name: Optional<CNP>.none]))
        try await backend.apply(e.takeOperations())
        try Self.expectTrafficMatchesVerdicts(b, e, "after deleting two")

        // A full sync reads the tables back: every tier set and element decodes as written, so
        // the diff is only the chains (which come back without their rules).
        let held = try #require(try await backend.currentState())
        let resync = RulesetDiff.operations(from: held, to: e.model)
        #expect(resync.allSatisfy { switch $0 { case .flushChain, .addRule: true; default: false } },
                "read back differs beyond the chains: \(resync.filter { switch $0 { case .flushChain, .addRule: false; default: true } })")
        for family in ["ip", "ip6"] {
            let listing = try b.node.run(["nft", "list", "table", family, PolicyTables.tableName])
            #expect(listing.ok && listing.stdout.contains("eg-tiers"), "nft list \(family): \(listing.stderr)")
        }
    }
    /// What a commit costs with a cluster's worth of elements in the tables (10,000 remote
    /// pods, 1,000 identities, 10 tier policies of 5 rules): a pod label change (elements) and
    /// a tier policy edit (the tier chains rewritten, so the kernel validates the table).
    /// Printed, not asserted (timings are benchmarks); the numbers are in the module README.
    @Test func tierEditCostWithAClusterOfElements() async throws {
        let node = try TestNamespace("ptier")
        defer { node.delete() }
        let backend = try NetlinkRulesetBackend(namespaceNamed: node.name, tableName: PolicyTables.tableName)
        var i = Self.inputs([], [])
        for n in 0..<10_000 {
            let ns = "ns\(n % 100)"
            i.namespaces[ns] = ["ns": ns, "team": n % 2 == 0 ? "blue" : "red"]
            let id = NamespacedName(ns, "p\(n)")
            i.pods[id] = PolicyInputs.PodInfo(id: id, labels: ["app": "a\(n % 10)"],
                                              ips: [IPAddress("10.\(100 + n / 65536).\((n / 256) % 256).\(n % 256)")!], local: false)
        }
        let cnps = (0..<10).map { k in
            CNP(metadata: ObjectMeta(name: "cnp\(k)"), tier: k < 5 ? .admin : .baseline, priority: k,
                subject: .namespaces(LabelSelector(matchLabels: ["ns": "x"])),
                ingress: (0..<5).map { r in CNP.Rule(action: [.accept, .deny, .pass][r % 3], peers: [.pods(.init(
                    namespaceSelector: LabelSelector(matchLabels: ["team": r % 2 == 0 ? "blue" : "red"]),
                    podSelector: LabelSelector(matchLabels: ["app": "a\(r)"])))], protocols: [.port(.tcp, .number(8000 + r))]) },
                egress: [CNP.Rule(action: .deny, peers: [.networks([IPPrefix("10.100.\(k).0/24")!])])])
        }
        for c in cnps { i.clusterPolicies[c.name] = c }
        var e = EnforcementEngine()
        e.load(i)
        _ = e.takeOperations()
        try await backend.apply(RulesetDiff.operations(from: nil, to: e.model))
        let clock = ContinuousClock()
        var labelTimes: [Duration] = [], editTimes: [Duration] = []
        var editOps = 0
        for round in 0..<20 {
            let id = NamespacedName("ns\(round)", "p\(round)")
            var pod = e.inputs.pods[id]!
            pod.labels = ["app": "a\((round + 1 + (round % 2)) % 10)"]
            e.apply(PolicyChanges(pods: [id: pod]))
            let ops = e.takeOperations()
            #expect(ops.allSatisfy { switch $0 { case .addElements, .deleteElements, .deleteRanges: true; default: false } })
            labelTimes.append(try await clock.measure { try await backend.apply(ops) })
            var c = cnps[round % 5]
            c.priority = 100 + round
            e.apply(PolicyChanges(clusterPolicies: [c.name: c]))
            let edit = e.takeOperations()
            editOps = edit.count
            editTimes.append(try await clock.measure { try await backend.apply(edit) })
        }
        func median(_ d: [Duration]) -> String { "\(d.sorted()[d.count / 2])" }
        print("tier kernel cost with \(e.model.elementCount) elements, \(e.model.ruleCount) rules: pod label change commit median \(median(labelTimes)); "
              + "tier policy edit (\(editOps) operations, chains rewritten) commit median \(median(editTimes))")
    }
}
