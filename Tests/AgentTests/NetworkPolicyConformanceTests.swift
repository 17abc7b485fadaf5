import Foundation
import NodenetTestSupport
import Testing

/// The NetworkPolicy conformance cases (issue 13): the upstream model (x, y, z x a, b, c on
/// three agent nodes) and every case of NetworkPolicyCases/netpol-cases.yaml, each its own
/// test, probed with the full 9x9 matrix via pod IP and via Service ClusterIP.
///
/// Cases that create policies run only when the agent takes NetworkPolicy objects (checked
/// once at set-up with a real `nodenet apply --dry-run` of a policy on the model's cluster),
/// so they start running, and failing when wrong, as soon as the kind lands; until then they
/// are cancelled with the agent's answer as the reason.
@Suite(.serialized, .enabled(if: isPrivileged && FileManager.default.isExecutableFile(atPath: "/usr/bin/python3"),
                             "needs root and python3"),
       PolicyModelScope())
struct NetworkPolicyConformanceTests {
    static let cases: [PolicyCase] = (try? PolicyCases.load(path: NetworkPolicyCaseFileTests.path)) ?? []

    static func model() throws -> PolicyConformanceModel {
        try #require(PolicyConformanceModel.current, "the suite's model cluster")
    }

    /// NODENET_NETPOL_CASE=<text> runs only the cases whose name contains it (a debugging
    /// loop on one case; --filter cannot pick arguments).
    static let only = ProcessInfo.processInfo.environment["NODENET_NETPOL_CASE"].flatMap { $0.isEmpty ? nil : $0 }

    @Test(arguments: cases)
    func conformance(_ c: PolicyCase) throws {
        if let only = Self.only, !c.name.contains(only) { try Test.cancel("not selected by NODENET_NETPOL_CASE=\(only)") }
        let model = try Self.model()
        if c.usesPolicies, let missing = model.policySupportMissing {
            print("netpol case \(c.name): not run: NetworkPolicy is not supported by this build")
            try Test.cancel("NetworkPolicy is not supported by this build: \(missing)")
        }
        if c.usesClusterPolicies, let missing = model.clusterPolicySupportMissing {
            print("netpol case \(c.name): not run: ClusterNetworkPolicy is not supported by this build")
            try Test.cancel("ClusterNetworkPolicy is not supported by this build: \(missing)")
        }
        if !model.sctpAvailable, c.portProtocols.allSatisfy({ $0.proto == .sctp }) {
            print("netpol case \(c.name): not run: SCTP only, and this kernel has no SCTP sockets")
            try Test.cancel("SCTP traffic not probed: this kernel has no SCTP sockets (no /proc/sys/net/sctp)")
        }
        defer {
            do { try model.reset() } catch { Issue.record("resetting the model after \(c.name): \(error)") }
        }
        let outcome = try model.run(c)
        for note in outcome.notes { print("\(c.name): \(note)") }
        print(String(format: "netpol case %@: %d probes in %.2f s", c.name, outcome.probes, outcome.seconds))
        if !outcome.failures.isEmpty {
            Issue.record("\(c.name) (\(c.summary))\n\(outcome.failures.joined(separator: "\n\n"))")
        }
    }

    /// The first-packet checks see packets when nothing denies them, so a zero count under a
    /// deny policy means something: out of a new pod and into it, peers on another node and on
    /// the same node.
    @Test func firstPacketChecksSeePacketsWithoutPolicy() throws {
        let model = try Self.model()
        for (i, peer) in [ModelPod("y", "b"), ModelPod("x", "a")].enumerated() {
            let where_ = model.node(of: peer) == 0 ? "same node" : "other node"
            let out = try model.firstPackets(newPod: "fresh-out-\(i)", namespace: "x", on: 0, labels: ["pod": "fresh"], to: peer, seconds: 0.5)
            print("first packets out of a new pod to \(peer) (\(where_)): \(out)")
            #expect(out.delivered > 0, "no packet from the new pod reached \(peer): \(out)")
            #expect(out.firstSendSeconds != nil, "the sender never sent: \(out)")
            let into = try model.firstPacketsInto(newPod: "fresh-in-\(i)", namespace: "x", on: 0, labels: ["pod": "fresh"], from: peer, seconds: 0.5)
            print("first packets into a new pod from \(peer) (\(where_)): \(into)")
            #expect(into.delivered > 0, "no packet from \(peer) reached the new pod: \(into)")
        }
    }

    /// Issue 13: a new pod selected by a deny policy sends nothing (deny egress) and receives
    /// nothing (deny ingress) from the instant its CNI ADD returns (its Pod object and the
    /// policy are in the store before the ADD, as with a scheduled pod). Peers on another node
    /// and on the same node.
    @Test func newPodSelectedByDenyPolicySendsAndReceivesNoPacket() throws {
        let model = try Self.model()
        if let missing = model.policySupportMissing {
            try Test.cancel("NetworkPolicy is not supported by this build: \(missing)")
        }
        defer {
            do { try model.reset() } catch { Issue.record("resetting the model: \(error)") }
        }
        try model.applyPolicies("""
            apiVersion: networking.k8s.io/v1
            kind: NetworkPolicy
            metadata: {name: deny-fresh, namespace: x}
            spec: {podSelector: {matchLabels: {pod: fresh}}, policyTypes: [Ingress, Egress]}
            """)
        for (i, peer) in [ModelPod("y", "b"), ModelPod("x", "a")].enumerated() {
            let out = try model.firstPackets(newPod: "fresh-denied-out-\(i)", namespace: "x", on: 0, labels: ["pod": "fresh"], to: peer, seconds: 0.5)
            print("first packets out of a denied new pod to \(peer): \(out)")
            #expect(out.delivered == 0, "the new pod's packets reached \(peer) before its policy applied: \(out)")
            let into = try model.firstPacketsInto(newPod: "fresh-denied-in-\(i)", namespace: "x", on: 0, labels: ["pod": "fresh"], from: peer, seconds: 0.5)
            print("first packets into a denied new pod from \(peer): \(into)")
            #expect(into.delivered == 0, "\(peer)'s packets reached the new pod before its policy applied: \(into)")
        }
    }

    /// `nodenet policy check` answers through the tiers and names the ClusterNetworkPolicy and
    /// rule that decided (an Admin Deny over a NetworkPolicy that allows; an Admin Pass handing
    /// on to NetworkPolicy), and the real probes agree with it.
    @Test func policyCheckNamesTheClusterPolicyRule() throws {
        let model = try Self.model()
        if let missing = model.clusterPolicySupportMissing {
            try Test.cancel("ClusterNetworkPolicy is not supported by this build: \(missing)")
        }
        defer {
            do { try model.reset() } catch { Issue.record("resetting the model: \(error)") }
        }
        try model.applyPolicies("""
            apiVersion: networking.k8s.io/v1
            kind: NetworkPolicy
            metadata: {name: allow-all, namespace: x}
            spec: {podSelector: {}, ingress: [{}]}
            ---
            apiVersion: policy.networking.k8s.io/v1alpha2
            kind: ClusterNetworkPolicy
            metadata: {name: guard-x}
            spec:
              tier: Admin
              priority: 5
              subject: {namespaces: {matchLabels: {ns: x}}}
              ingress:
                - {name: pass-z, action: Pass, from: [{namespaces: {matchLabels: {ns: z}}}]}
                - {name: no-y, action: Deny, from: [{namespaces: {matchLabels: {ns: "y"}}}]}
            """)
        var expected = ReachabilityMatrix(pods: model.shape.pods, all: true)
        for from in model.shape.pods where from.namespace == "y" {
            for to in model.shape.pods where to.namespace == "x" { expected[from, to] = false }
        }
        let (failures, _) = model.validate([.init(ports: [PortProtocol(80, .tcp)], matrix: expected)])
        #expect(failures.isEmpty, "\(failures.joined(separator: "\n\n"))")
        for node in model.cluster.nodes.indices {
            let denied = try model.cluster.nodes[node].agent.cli(["policy", "check", "--from", "y/b", "--to", "x/a", "--port", "80/TCP"])
            #expect(denied.status == 4, "node \(node): \(denied.stdout)\(denied.stderr)")
            #expect(denied.stdout.contains("Deny by ClusterNetworkPolicy guard-x (Admin tier) rule \"no-y\""), "node \(node): \(denied.stdout)")
            let passed = try model.cluster.nodes[node].agent.cli(["policy", "check", "--from", "z/c", "--to", "x/a", "--port", "80/TCP", "--json"])
            #expect(passed.ok, "\(passed.stdout)\(passed.stderr)")
            struct Answer: Decodable {
                struct Direction: Decodable { var decidedBy: String?; var passedBy: String?; var allowingRules: [String] }
                var allowed: Bool; var ingress: Direction
            }
            let a = try JSONDecoder().decode(Answer.self, from: Data(passed.stdout.utf8))
            #expect(a.allowed && a.ingress.decidedBy == "NetworkPolicy" && a.ingress.passedBy == "guard-x \"pass-z\""
                    && a.ingress.allowingRules == ["x/allow-all ingress[0]"], "node \(node): \(passed.stdout)")
        }
    }

    /// DNS honours the tiers: an Admin Deny of egress to the kube-dns pods stops a pod's
    /// queries to the node-local responder (which stands for them), and no other pod's; the
    /// explain says which rule.
    @Test func adminDenyOfKubeDNSDeniesDNS() throws {
        let model = try Self.model()
        if let missing = model.clusterPolicySupportMissing {
            try Test.cancel("ClusterNetworkPolicy is not supported by this build: \(missing)")
        }
        defer {
            do { try model.reset() } catch { Issue.record("resetting the model: \(error)") }
        }
        let xa = try #require(model.pods[ModelPod("x", "a")]).ns, ya = try #require(model.pods[ModelPod("y", "a")]).ns
        /// A reply (any rcode) from the node-local responder, over UDP and over TCP.
        func answers(_ ns: TestNamespace, tcp: Bool = false) throws -> Bool {
            try ns.run(["dig", "+time=1", "+tries=1"] + (tcp ? ["+tcp"] : []) + ["@169.254.20.10", "x.svc.cluster.local"], timeout: 10).ok
        }
        #expect(try answers(xa) && answers(ya), "DNS answers before any policy")
        try model.applyPolicies("""
            apiVersion: policy.networking.k8s.io/v1alpha2
            kind: ClusterNetworkPolicy
            metadata: {name: no-dns-for-x}
            spec:
              tier: Admin
              priority: 1
              subject: {namespaces: {matchLabels: {ns: x}}}
              egress:
                - name: deny-kube-dns
                  action: Deny
                  to: [{pods: {namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: kube-system}}, podSelector: {matchLabels: {k8s-app: kube-dns}}}}]
            """)
        var denied = false
        for _ in 0..<40 where !denied {
            denied = try !answers(xa)
            if !denied { usleep(250_000) }
        }
        #expect(denied, "x/a still resolves under an Admin Deny of kube-dns")
        #expect(try !answers(xa, tcp: true), "DNS over TCP too")
        #expect(try answers(ya), "y/a is no subject")
        let check = try model.cluster.nodes[model.node(of: ModelPod("x", "a"))].agent.cli(
            ["policy", "check", "--from", "x/a", "--to", "169.254.20.10", "--port", "53/UDP"])
        #expect(check.status == 4 && check.stdout.contains("no-dns-for-x") && check.stdout.contains("deny-kube-dns"), "\(check.stdout)\(check.stderr)")
    }

    /// The prober can fail: UDP/81 connects everywhere in both modes, a port nobody serves
    /// is X everywhere, with the reason recorded.
    @Test func proberReportsAnUnservedPortAsBlocked() throws {
        let model = try Self.model()
        let expected = ReachabilityMatrix(pods: model.shape.pods, all: true)
        let port = PortProtocol(81, .udp)
        let results = model.probeMatrices([port], modes: ProbeMode.allCases)
        for mode in ProbeMode.allCases {
            let r = try #require(results[.init(port: port, mode: mode)])
            #expect(r.matrix == expected, "\(ReachabilityMatrix.sideBySide(title: "\(port) via \(mode)", expected: expected, actual: r.matrix))")
        }
        // A port no pod serves: every cell blocked, with a reason.
        let unserved = PortProtocol(82, .tcp)
        let none = model.probeMatrices([unserved], modes: [.podIP])[.init(port: unserved, mode: .podIP)]!
        #expect(none.matrix == ReachabilityMatrix(pods: model.shape.pods, all: false))
        #expect(none.outcomes[ModelPod("x", "a")]?[ModelPod("z", "c")]?.hasPrefix("error:") == true)
    }
}

extension NetworkPolicyConformanceTests {
    /// The prober against drops it did not cause: nftables rules inside two pods' own
    /// namespaces stand in for a policy (x/a drops TCP 80 and UDP 81 coming in, y/b drops TCP
    /// 80 going out). Blocked probes must time out into X in both modes, exactly there, and
    /// removing the rules must bring the full matrix back. Also measures what a pass with
    /// blocked probes costs (each blocked probe waits the 1 s timeout, all in parallel).
    @Test func proberSeesDropsInsidePods() throws {
        let model = try Self.model()
        let pods = model.shape.pods
        let xa = ModelPod("x", "a"), yb = ModelPod("y", "b")
        var tcp = ReachabilityMatrix(pods: pods, all: true)
        var udp = ReachabilityMatrix(pods: pods, all: true)
        for p in pods where p != xa { tcp[p, xa] = false; udp[p, xa] = false }
        for p in pods where p != yb { tcp[yb, p] = false }
        let xaNS = try #require(model.pods[xa]).ns, ybNS = try #require(model.pods[yb]).ns
        let table = "nnt-standin"
        try xaNS.check(["nft", "-f", "-"], stdin: """
            table inet \(table) {
              chain input { type filter hook input priority 0; tcp dport 80 drop; udp dport 81 drop; }
            }
            """)
        defer { _ = try? xaNS.run(["nft", "delete", "table", "inet", table]) }
        try ybNS.check(["nft", "-f", "-"], stdin: """
            table inet \(table) {
              chain output { type filter hook output priority 0; tcp dport 80 drop; }
            }
            """)
        defer { _ = try? ybNS.run(["nft", "delete", "table", "inet", table]) }

        let start = Date()
        let blocked = model.validate([.init(ports: [PortProtocol(80, .tcp)], matrix: tcp), .init(ports: [PortProtocol(81, .udp)], matrix: udp)])
        print(String(format: "netpol prober: %d probes with 64 blocked per pass in %.2f s", blocked.probes, Date().timeIntervalSince(start)))
        #expect(blocked.failures.isEmpty, "\(blocked.failures.joined(separator: "\n\n"))")
        // The same expectation without the drops is wrong everywhere it said X: the check fails.
        try xaNS.check(["nft", "delete", "table", "inet", table])
        try ybNS.check(["nft", "delete", "table", "inet", table])
        let open = model.validate([.init(ports: [PortProtocol(80, .tcp)], matrix: tcp)])
        #expect(open.failures.count == 2, "both modes differ once the drops are gone")
        #expect(open.failures.first?.contains("X*") == false && open.failures.first?.contains(".*") == true)
    }
}

extension NetworkPolicyConformanceTests {
    /// A case's label changes reach every node's store, and reset() restores the model's
    /// labels everywhere (what the next case relies on).
    @Test func labelChangesReachEveryNodeAndResetRestoresThem() throws {
        let model = try Self.model()
        let xb = ModelPod("x", "b")
        let podLabels = ["pod": "b", "isolated": "true"]
        let nsLabels = ["ns": "y", "kubernetes.io/metadata.name": "y", "team": "blue"]
        let start = Date()
        try model.setPodLabels(xb, podLabels)
        try model.setNamespaceLabels("y", nsLabels)
        let changed = Date().timeIntervalSince(start)
        for node in model.cluster.nodes.indices {
            #expect(try model.storedLabels(node: node, kind: "Pod", namespace: "x", name: "b") == podLabels, "node\(node + 1)")
            #expect(try model.storedLabels(node: node, kind: "Namespace", namespace: nil, name: "y") == nsLabels, "node\(node + 1)")
        }
        let resetStart = Date()
        try model.reset()
        print(String(format: "netpol model: two label changes applied on 3 nodes in %.2f s, reset in %.2f s", changed, Date().timeIntervalSince(resetStart)))
        for node in model.cluster.nodes.indices {
            #expect(try model.storedLabels(node: node, kind: "Pod", namespace: "x", name: "b") == ["pod": "b"], "node\(node + 1)")
            #expect(try model.storedLabels(node: node, kind: "Namespace", namespace: nil, name: "y") == PolicyConformanceModel.defaultNamespaceLabels("y"))
        }
        // Still the whole model after the round trip: the Pod re-applied with its address.
        let all = ReachabilityMatrix(pods: model.shape.pods, all: true)
        #expect(model.validate([.init(ports: [PortProtocol(80, .tcp)], matrix: all)]).failures.isEmpty)
    }
}

extension PolicyCase: CustomTestStringConvertible {
    public var testDescription: String { name }
}

/// Builds the model cluster once for the whole suite (and tears it down after), and checks
/// once whether the agent takes NetworkPolicy objects.
struct PolicyModelScope: SuiteTrait, TestScoping {
    func provideScope(for test: Test, testCase: Test.Case?, performing function: @Sendable () async throws -> Void) async throws {
        // Building the cluster blocks (processes, polls): keep it off the cooperative pool.
        let model = try await withCheckedThrowingContinuation { (c: CheckedContinuation<PolicyConformanceModel, any Error>) in
            Thread.detachNewThread { c.resume(with: Result { try PolicyConformanceModel() }) }
        }
        defer { model.close() }
        print(String(format: "netpol model: set up in %.1f s; NetworkPolicy %@; SCTP sockets %@", model.setupSeconds,
                     model.policySupportMissing.map { "not supported (\($0))" } ?? "supported",
                     model.sctpAvailable ? "available" : "absent"))
        try await PolicyConformanceModel.$current.withValue(model) { try await function() }
    }
}

/// The cases file itself, without privileges: it loads, names are unique, the baseline is
/// there, and bad files are refused with the case and field named.
@Suite struct NetworkPolicyCaseFileTests {
    static let path = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .appendingPathComponent("NetworkPolicyCases/netpol-cases.yaml").path

    @Test func casesFileLoads() throws {
        let cases = try PolicyCases.load(path: Self.path)
        let baseline = try #require(cases.first { $0.name == "baseline-no-policies" })
        #expect(!baseline.usesPolicies)
        #expect(baseline.portProtocols == [PortProtocol(80, .tcp), PortProtocol(81, .tcp), PortProtocol(80, .udp), PortProtocol(81, .udp)])
        #expect(NetworkPolicyConformanceTests.cases.count == cases.count)
        for c in cases { #expect(c.steps.allSatisfy { !$0.expect.isEmpty }, "\(c.name) has a step without expectations") }
    }

    /// The committed file is what generate.py writes: nobody edited a matrix by hand.
    @Test(.enabled(if: (try? Shell.run(["/usr/bin/python3", "-c", "import yaml"]))?.ok == true, "needs python3-yaml"))
    func casesFileIsTheGeneratorsOutput() throws {
        let generator = URL(fileURLWithPath: Self.path).deletingLastPathComponent().appendingPathComponent("generate.py").path
        let r = try Shell.check(["/usr/bin/python3", generator])
        let committed = try String(contentsOfFile: Self.path, encoding: .utf8)
        #expect(r.stdout == committed, "netpol-cases.yaml differs from generate.py's output: regenerate it")
    }

    /// A second derivation of some matrices, written the way upstream builds its expectations
    /// (ExpectAllIngress, ExpectPeer ...), against the generator's evaluator.
    @Test func generatedMatricesAgreeWithUpstreamStyleExpectations() throws {
        let cases = Dictionary(uniqueKeysWithValues: try PolicyCases.load(path: Self.path).map { ($0.name, $0) })
        let pods = ModelShape.upstream.pods
        let x = pods.filter { $0.namespace == "x" }, xa = ModelPod("x", "a")
        func matrix(_ c: String, step: Int = 0, _ port: PortProtocol = PortProtocol(80, .tcp)) throws -> ReachabilityMatrix {
            let steps = try #require(cases[c]?.steps)
            return try #require(steps[step].expect.first { $0.ports.contains(port) }).matrix
        }
        func expect(_ build: (inout ReachabilityMatrix) -> Void) -> ReachabilityMatrix {
            var m = ReachabilityMatrix(pods: pods, all: true)
            build(&m)
            return m
        }
        // ExpectAllIngress(x, false)
        #expect(try matrix("deny-all-ingress-in-x") == expect { m in for f in pods { for t in x { m[f, t] = false } } })
        // ExpectAllEgress(x, false)
        #expect(try matrix("deny-all-egress-in-x") == expect { m in for f in x { for t in pods { m[f, t] = false } } })
        // Only the peers a rule names reach x/a.
        func onlyInto(_ a: ModelPod, from allowed: [ModelPod]) -> ReachabilityMatrix {
            expect { m in for f in pods where !allowed.contains(f) { m[f, a] = false } }
        }
        let y = pods.filter { $0.namespace == "y" }
        #expect(try matrix("pod-and-namespace-one-peer") == onlyInto(xa, from: [ModelPod("y", "b")]))
        #expect(try matrix("pod-or-namespace-two-peers") == onlyInto(xa, from: y + [ModelPod("x", "b")]))
        #expect(try matrix("allow-to-pod-from-pod-in-namespace") == onlyInto(xa, from: [ModelPod("x", "b")]))
        #expect(try matrix("ipblock-with-except-ingress") == onlyInto(xa, from: pods.filter { $0 != ModelPod("y", "b") }))
        #expect(try matrix("named-port-ingress", PortProtocol(81, .tcp)) == onlyInto(xa, from: []))
        #expect(try matrix("named-port-ingress", PortProtocol(80, .tcp)) == ReachabilityMatrix(pods: pods, all: true))
        #expect(try matrix("udp-rule-is-not-tcp") == onlyInto(xa, from: []))
        #expect(try matrix("pod-label-added-to-client", step: 1) == onlyInto(xa, from: [ModelPod("y", "c")]))
        #expect(try matrix("policy-updated-allow-all-to-deny-all", step: 2) == ReachabilityMatrix(pods: pods, all: true))
        // The tiers, built by hand from the CNP semantics.
        let z = pods.filter { $0.namespace == "z" }
        #expect(try matrix("tier-admin-deny-overrides-np-allow") == expect { m in for f in y { for t in x { m[f, t] = false } } })
        #expect(try matrix("tier-admin-accept-overrides-np-deny") == expect { m in
            for f in pods { for t in x where f != t && !(y.contains(f) && t == xa) { m[f, t] = false } }
        })
        #expect(try matrix("tier-admin-accept-overrides-np-deny", PortProtocol(81, .tcp)) == expect { m in
            for f in pods { for t in x where f != t { m[f, t] = false } }
        })
        #expect(try matrix("tier-baseline-deny-non-isolated") == expect { m in for f in y { for t in pods where f != t { m[f, t] = false } } })
        #expect(try matrix("tier-baseline-ignored-for-np-isolated") == expect { m in
            for f in y { for t in pods where f != t && t.namespace != "x" { m[f, t] = false } }
        })
        #expect(try matrix("tier-egress-networks-deny") == expect { m in for f in x { m[f, ModelPod("y", "b")] = false } })
        #expect(try matrix("tier-rule-order") == expect { m in for f in pods where f.name != "a" { for t in z where f != t { m[f, t] = false } } })
        #expect(try matrix("tier-rule-order", step: 1) == expect { m in for f in pods { for t in z where f != t { m[f, t] = false } } })
    }

    @Test func matrixRoundTripsAndMarksMismatches() throws {
        let pods = ModelShape.upstream.pods
        var m = ReachabilityMatrix(pods: pods, all: true)
        m[ModelPod("x", "a"), ModelPod("y", "b")] = false
        let parsed = try ReachabilityMatrix.parse(m.render().joined(separator: "\n"), pods: pods)
        #expect(parsed == m)
        let all = ReachabilityMatrix(pods: pods, all: true)
        #expect(all.mismatches(m).map { "\($0.from)>\($0.to)" } == ["x/a>y/b"])
        #expect(ReachabilityMatrix.sideBySide(title: "TCP/80", expected: all, actual: m).contains("X*"))
    }

    @Test func badFilesAreRefusedWithTheCaseNamed() throws {
        let header = "x/a x/b x/c y/a y/b y/c z/a z/b z/c\n"
        let row = { (p: String) in "\(p) . . . . . . . . .\n" }
        let full = header + ["x/a", "x/b", "x/c", "y/a", "y/b", "y/c", "z/a", "z/b", "z/c"].map(row).joined()
        func file(_ step: String) -> String {
            "cases:\n- name: broken\n  steps:\n  - " + step
        }
        let indented = full.split(separator: "\n").map { "          " + $0 }.joined(separator: "\n")
        let bad: [(String, String)] = [
            (file("expect:\n    - ports: [TCP/80]\n      matrix: |\n" + indented.replacingOccurrences(of: "z/c . . . . . . . . .", with: "z/c . . . . . . . .")), "row z/c has 8 cells"),
            (file("expect:\n    - ports: [TCP/8080]\n      matrix: |\n" + indented), "not PROTO/PORT on a model port"),
            (file("podLabels: {q/a: {pod: a}}\n    expect: []"), "q/a is not a model pod"),
            (file("apply: |\n      apiVersion: v1\n      kind: Service\n      metadata: {name: s, namespace: x}\n    expect: []"), "only namespaced NetworkPolicies"),
        ]
        for (text, message) in bad {
            #expect {
                try PolicyCases.parse(text)
            } throws: { error in
                "\(error)".contains("case broken") && "\(error)".contains(message)
            }
        }
    }
}
