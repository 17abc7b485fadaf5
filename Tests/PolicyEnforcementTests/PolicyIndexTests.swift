import ClusterState
import IPAddressing
import Testing
@testable import PolicyEnforcement

/// The engine asks `canSee` only about the policies `PolicyIndex` files under an identity's
/// namespace: the index must hold every policy that can see an identity there, through every
/// change that moves it (namespace labels, a namespace known only from its pods, policy edits
/// and deletions). When it misses one, the policy is not re-evaluated and the verdicts go
/// stale, which the checks below see.
struct PolicyIndexTests {
    typealias T = PolicyCompilerTests

    /// Every (policy, identity) pair `canSee` accepts is among the identity's candidates.
    static func expectCovers(_ engine: PolicyEngine, _ step: String, sourceLocation: SourceLocation = #_sourceLocation) {
        for identity in engine.identitiesByNumber.values {
            let candidates = engine.candidatePolicies(identity.namespace)
            for (id, p) in engine.inputs.policies where engine.canSee(p, identity) {
                #expect(candidates.contains(id), "\(step): \(id) can see \(identity.namespace) \(identity.labels) but is not filed there",
                        sourceLocation: sourceLocation)
            }
        }
    }

    @Test func candidatesHoldEveryPolicyThatCanSee() {
        let blue = LabelSelector(matchLabels: ["team": "blue"])
        let fromBlue = T.policy("from-blue", in: "x", selecting: ["pod": "a"], ingress: [.init(peers: [.init(namespaceSelector: blue)])])
        let toW = T.policy("to-w", in: "y", selecting: ["pod": "a"], types: [.egress], egress: [
            .init(peers: [.init(podSelector: LabelSelector(matchLabels: ["pod": "a"]),
                                namespaceSelector: LabelSelector(matchLabels: [PolicyInputs.namespaceNameLabel: "w"]))])])
        let sameNamespace = T.policy("from-b", in: "z", ingress: [.init(peers: [.init(podSelector: LabelSelector(matchLabels: ["pod": "b"]))])])
        let block = T.policy("block", in: "x", selecting: ["pod": "b"], types: [.egress],
                             egress: [.init(peers: [.init(ipBlock: .init(cidr: IPPrefix("10.0.0.0/8")!))])])
        var engine = PolicyEngine()
        engine.load(T.model([fromBlue, toW, sameNamespace, block]))
        Self.expectCovers(engine, "load")
        #expect(engine.candidatePolicies("x") == [fromBlue.id, block.id])
        #expect(engine.candidatePolicies("y") == [toW.id], "no namespace is blue yet")
        #expect(!engine.desired.verdict(from: T.ip("z", "a"), to: T.ip("x", "a"), proto: .tcp, port: 80).allowed)

        // z turns blue: from-blue is filed under z, and z's pods may reach x/a.
        engine.apply(PolicyChanges(namespaces: ["z": ["ns": "z", "team": "blue"]]))
        Self.expectCovers(engine, "z blue")
        #expect(engine.candidatePolicies("z").contains(fromBlue.id))
        #expect(engine.desired.verdict(from: T.ip("z", "a"), to: T.ip("x", "a"), proto: .tcp, port: 80).allowed)

        // A pod of w, a namespace no Namespace object names (only its name label): to-w sees it
        // only if the index filed to-w under w when w appeared.
        let w = NamespacedName("w", "a"), wIP = IPAddress("10.244.2.9")!
        #expect(!engine.desired.verdict(from: T.ip("y", "a"), to: wIP, proto: .tcp, port: 80).allowed)
        engine.apply(PolicyChanges(pods: [w: .init(id: w, labels: ["pod": "a"], ips: [wIP], local: false)]))
        Self.expectCovers(engine, "w appears")
        #expect(engine.candidatePolicies("w") == [toW.id])
        #expect(engine.desired.verdict(from: T.ip("y", "a"), to: wIP, proto: .tcp, port: 80).allowed, "to-w re-evaluated for w/a")
        // A second identity in w (another label set) joins through the index alone.
        let w2 = NamespacedName("w", "a2"), w2IP = IPAddress("10.244.2.10")!
        engine.apply(PolicyChanges(pods: [w2: .init(id: w2, labels: ["pod": "a", "tier": "2"], ips: [w2IP], local: false)]))
        #expect(engine.desired.verdict(from: T.ip("y", "a"), to: w2IP, proto: .tcp, port: 80).allowed)

        // z is not blue any more: unfiled, and the verdict follows.
        engine.apply(PolicyChanges(namespaces: ["z": ["ns": "z"]]))
        Self.expectCovers(engine, "z not blue")
        #expect(!engine.candidatePolicies("z").contains(fromBlue.id))
        #expect(!engine.desired.verdict(from: T.ip("z", "a"), to: T.ip("x", "a"), proto: .tcp, port: 80).allowed)

        // A policy edited to select peers elsewhere is filed anew; a deleted one is nowhere.
        let toAll = T.policy("from-b", in: "z", ingress: [.init(peers: [.init(namespaceSelector: .everything)])])
        engine.apply(PolicyChanges(policies: [toAll.id: toAll, fromBlue.id: Optional<NetworkPolicy>.none]))
        Self.expectCovers(engine, "edit and delete")
        for ns in ["x", "y", "z", "w"] {
            #expect(engine.candidatePolicies(ns).contains(toAll.id), "\(ns)")
            #expect(!engine.candidatePolicies(ns).contains(fromBlue.id), "\(ns)")
        }
        // A pod appearing in x now reaches z through to-all: the verdict of a fresh compile.
        let x9 = NamespacedName("x", "new"), x9IP = IPAddress("10.244.1.99")!
        engine.apply(PolicyChanges(pods: [x9: .init(id: x9, labels: ["pod": "new"], ips: [x9IP], local: true)]))
        #expect(engine.desired.verdict(from: x9IP, to: T.ip("z", "a"), proto: .tcp, port: 80).allowed)
        #expect(T.matrix(engine.desired) == T.matrix(PolicyCompiler().compile(engine.inputs)))
    }
}
