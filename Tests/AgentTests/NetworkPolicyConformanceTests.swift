import Foundation
import NodenetTestSupport
import Testing

/// The NetworkPolicy conformance cases (issue 13): the upstream model (x, y, z x a, b, c on
/// three agent nodes) and every case of NetworkPolicyCases/netpol-cases.yaml, each its own
/// test, probed with the full 9x9 matrix via pod IP and via Service ClusterIP.
///
/// Cases that create policies run only when the agent takes NetworkPolicy objects (checked
/// with a real `nodenet apply` on the model's cluster), so they start running, and failing
/// when wrong, as soon as the kind and its enforcement land.
@Suite(.serialized, .enabled(if: isPrivileged && FileManager.default.isExecutableFile(atPath: "/usr/bin/python3"),
                             "needs root and python3"),
       PolicyModelScope())
struct NetworkPolicyConformanceTests {
    static let cases: [PolicyCase] = (try? PolicyCases.load(path: NetworkPolicyCaseFileTests.path)) ?? []

    static func model() throws -> PolicyConformanceModel {
        try #require(PolicyConformanceModel.current, "the suite's model cluster")
    }

    @Test(arguments: cases)
    func conformance(_ c: PolicyCase) throws {
        let model = try Self.model()
        if c.usesPolicies, let missing = PolicyModelScope.policySupportMissing {
            print("netpol case \(c.name): not run: NetworkPolicy is not supported by this build")
            try Test.cancel("NetworkPolicy is not supported by this build: \(missing)")
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

    /// The first-packet check sees packets when nothing denies them, so a zero count under a
    /// deny policy means something. Cross-node and same-node peer.
    @Test func firstPacketCheckSeesPacketsWithoutPolicy() throws {
        let model = try Self.model()
        for (i, peer) in [ModelPod("y", "b"), ModelPod("x", "a")].enumerated() {
            let report = try model.firstPackets(newPod: "fresh-\(i)", namespace: "x", on: 0, labels: ["pod": "fresh"], to: peer, seconds: 0.5)
            print("first packets to \(peer) (\(model.node(of: peer) == 0 ? "same node" : "other node")): \(report)")
            #expect(report.packetsAtPeer > 0, "no packet from the new pod reached \(peer): \(report)")
            #expect(report.firstSendSeconds != nil, "the sender never sent: \(report)")
        }
    }

    /// Issue 13: a new pod selected by a deny policy cannot send a single packet before its
    /// policy applies. The sender starts the moment CNI ADD returns; the peer (on another node,
    /// and on the same node: bridged) captures. `firstPacketCheckSeesPacketsWithoutPolicy` shows
    /// the same probe sees packets when nothing denies them.
    @Test func aNewPodUnderADenyPolicySendsNothing() throws {
        let model = try Self.model()
        if let missing = PolicyModelScope.policySupportMissing { try Test.cancel("NetworkPolicy is not supported: \(missing)") }
        defer { do { try model.reset() } catch { Issue.record("reset: \(error)") } }
        try model.cluster.applyEverywhere("""
            apiVersion: networking.k8s.io/v1
            kind: NetworkPolicy
            metadata: {name: deny-egress-of-fresh-pods, namespace: x}
            spec: {podSelector: {matchLabels: {pod: fresh}}, policyTypes: [Egress]}
            """)
        for (i, peer) in [ModelPod("y", "b"), ModelPod("x", "a")].enumerated() {
            let report = try model.firstPackets(newPod: "denied-\(i)", namespace: "x", on: 0, labels: ["pod": "fresh"], to: peer, seconds: 0.5)
            print("first packets under deny to \(peer): \(report)")
            #expect(report.firstSendSeconds != nil, "the sender never sent: \(report)")
            #expect(report.packetsAtPeer == 0, "a packet of a denied new pod reached \(peer): \(report)")
        }
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

extension PolicyCase: CustomTestStringConvertible {
    public var testDescription: String { name }
}

/// Builds the model cluster once for the whole suite (and tears it down after), and checks
/// once whether the agent takes NetworkPolicy objects.
struct PolicyModelScope: SuiteTrait, TestScoping {
    nonisolated(unsafe) static var policySupportMissing: String?

    func provideScope(for test: Test, testCase: Test.Case?, performing function: @Sendable () async throws -> Void) async throws {
        // Building the cluster blocks (processes, polls): keep it off the cooperative pool.
        let model = try await withCheckedThrowingContinuation { (c: CheckedContinuation<PolicyConformanceModel, any Error>) in
            Thread.detachNewThread { c.resume(with: Result { try PolicyConformanceModel() }) }
        }
        defer { model.close() }
        Self.policySupportMissing = model.policySupportMissing()
        print(String(format: "netpol model: set up in %.1f s; NetworkPolicy %@; SCTP sockets %@", model.setupSeconds,
                     Self.policySupportMissing == nil ? "supported" : "not supported (\(Self.policySupportMissing!))",
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
