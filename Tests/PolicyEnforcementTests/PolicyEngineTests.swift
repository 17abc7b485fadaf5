import ClusterState
import IPAddressing
import ServiceProxy
import Testing
@testable import PolicyEnforcement

/// The incremental engine against a full compile: after every change of a long seeded sequence,
/// (1) its model is exactly the model of its desired state, (2) the operations it handed out,
/// applied in order, give that model, and (3) its verdicts are a fresh compile's.
struct PolicyEngineTests {
    /// Element operations applied to a model, as the kernel applies them.
    static func apply(_ ops: [RulesetOperation], to model: inout RulesetModel) {
        for op in ops {
            switch op {
            case .addElements(let f, let set, let elements):
                for (k, v) in elements {
                    #expect(model.tables[f]!.sets[set]!.elements[k] == nil, "add of an element already there: \(set) \(k)")
                    if case .intervalEnd(let end)? = v {
                        // The kernel refuses an interval element that overlaps one it holds (EEXIST).
                        for (ok, ov) in model.tables[f]!.sets[set]!.elements {
                            guard case .intervalEnd(let oend)?? = ov else { continue }
                            #expect(!Self.overlap(k, end, ok, oend), "overlapping elements in \(set): \(k)-\(end) and \(ok)-\(oend)")
                        }
                    }
                    model.tables[f]!.sets[set]!.elements[k] = .some(v)
                }
            case .deleteElements(let f, let set, let keys):
                for k in keys {
                    #expect(model.tables[f]!.sets[set]!.elements[k] != nil, "delete of a missing element: \(set) \(k)")
                    model.tables[f]!.sets[set]!.elements[k] = nil
                }
            case .deleteRanges(let f, let set, let ranges):
                for (k, _) in ranges {
                    #expect(model.tables[f]!.sets[set]!.elements[k] != nil, "delete of a missing range: \(set) \(k)")
                    model.tables[f]!.sets[set]!.elements[k] = nil
                }
            case .flushChain(let f, let name): model.tables[f]!.chains[name]!.rules = []
            case .addRule(let f, let chain, let rule): model.tables[f]!.chains[chain]!.rules!.append(rule)
            default: Issue.record("not an element or forward-chain operation: \(op)")
            }
        }
    }

    /// Two concatenated ranges overlap when every field's ranges do.
    static func overlap(_ a: ElementKey, _ aEnd: ElementKey, _ b: ElementKey, _ bEnd: ElementKey) -> Bool {
        let (as_, ae, bs, be) = (a.values, aEnd.values, b.values, bEnd.values)
        for i in as_.indices where !(as_[i] <= be[i] && bs[i] <= ae[i]) { return false }
        return true
    }

    /// Overlapping rules (a protocol-only entry beside a port, a block inside a block, the
    /// same block from two policies) become disjoint elements the kernel takes.
    @Test func overlappingRulesGiveDisjointElements() {
        var engine = PolicyEngine()
        var kernel = RulesetModel()
        for f in TableFamily.allCases { kernel.tables[f] = PolicyTables.skeleton(f) }
        let p1 = PolicyCompilerTests.policy("wide", selecting: ["pod": "a"], ingress: [
            .init(ports: [.init(protocol: .tcp)], peers: [.init(podSelector: LabelSelector(matchLabels: ["pod": "b"]))]),
            .init(ports: [.init(protocol: .tcp, port: .int(80)), .init(protocol: .tcp, port: .int(79), endPort: 81)],
                  peers: [.init(podSelector: LabelSelector(matchLabels: ["pod": "b"]))]),
            .init(ports: [.init(protocol: .udp, port: .int(53))], peers: [
                .init(ipBlock: .init(cidr: IPPrefix("10.0.0.0/8")!)), .init(ipBlock: .init(cidr: IPPrefix("10.1.0.0/16")!)),
                .init(ipBlock: .init(cidr: IPPrefix("10.244.0.0/16")!, except: [IPPrefix("10.244.1.0/24")!]))]),
            .init(ports: [.init(protocol: .udp, port: .int(50), endPort: 60)], peers: [.init(ipBlock: .init(cidr: IPPrefix("10.1.2.0/24")!))]),
            .init(peers: [.init(ipBlock: .init(cidr: IPPrefix("192.168.0.0/16")!)), .init(ipBlock: .init(cidr: IPPrefix("192.168.1.0/24")!))]),
        ])
        let p2 = PolicyCompilerTests.policy("same-again", selecting: ["pod": "a"], ingress: p1.ingress)
        engine.load(PolicyCompilerTests.model([p1, p2]))
        Self.apply(engine.takeOperations(), to: &kernel)
        #expect(kernel == engine.model)
        let d = engine.desired
        let xa = PolicyCompilerTests.ip("x", "a"), xb = PolicyCompilerTests.ip("x", "b")
        #expect(d.verdict(from: xb, to: xa, proto: .tcp, port: 22).allowed)
        #expect(d.verdict(from: IPAddress("10.1.2.3")!, to: xa, proto: .udp, port: 55).allowed)
        #expect(!d.verdict(from: IPAddress("10.1.3.3")!, to: xa, proto: .udp, port: 55).allowed)
        #expect(d.verdict(from: IPAddress("10.1.3.3")!, to: xa, proto: .udp, port: 53).allowed)
        // One policy goes: the other still allows everything; elements stay disjoint.
        engine.apply(PolicyChanges(policies: [p2.id: Optional<NetworkPolicy>.none]))
        Self.apply(engine.takeOperations(), to: &kernel)
        #expect(kernel == engine.model)
        #expect(PolicyTables.disjointRectangles([(AddressRange(IPAddress("10.0.0.0")!, IPAddress("10.255.255.255")!), PortRange(.udp, 53, 53)),
                                                 (AddressRange(IPAddress("10.1.2.0")!, IPAddress("10.1.2.255")!), PortRange(.udp, 50, 60))])
                    .map { "\($0.0) \($0.1)" } == ["10.0.0.0-10.1.1.255 53/UDP", "10.1.2.0-10.1.2.255 50-60/UDP", "10.1.3.0-10.255.255.255 53/UDP"])
    }

    struct SeededRandom: RandomNumberGenerator {
        var state: UInt64
        mutating func next() -> UInt64 {
            state = state &* 6364136223846793005 &+ 1442695040888963407
            return state ^ (state >> 31)
        }
    }

    @Test func incrementalChangesMatchAFullCompile() {
        var rng = SeededRandom(state: 0x6e6f64656e6574)
        var engine = PolicyEngine(dnsAddresses: [IPAddress("169.254.20.10")!, IPAddress("10.96.0.10")!])
        var kernel = RulesetModel()
        for f in TableFamily.allCases { kernel.tables[f] = PolicyTables.skeleton(f) }
        engine.setLocalSubnets([IPPrefix("10.244.1.0/24")!, IPPrefix("fd00:10:244:1::/64")!])
        let base = PolicyCompilerTests.model([])
        engine.load(base)
        Self.apply(engine.takeOperations(), to: &kernel)
        #expect(kernel == engine.model)

        let selectors: [LabelSelector] = [.everything, LabelSelector(matchLabels: ["pod": "a"]), LabelSelector(matchLabels: ["pod": "b"]),
                                          LabelSelector(matchExpressions: [.init(key: "pod", operator: .in, values: ["a", "c"])])]
        let nsSelectors: [LabelSelector] = [.everything, LabelSelector(matchLabels: ["ns": "y"]), LabelSelector(matchLabels: ["team": "blue"])]
        func randomRule() -> NetworkPolicy.Rule {
            var peers: [NetworkPolicy.Peer] = []
            for _ in 0..<Int.random(in: 0...2, using: &rng) {
                switch Int.random(in: 0...3, using: &rng) {
                case 0: peers.append(.init(podSelector: selectors.randomElement(using: &rng)))
                case 1: peers.append(.init(namespaceSelector: nsSelectors.randomElement(using: &rng)))
                case 2: peers.append(.init(podSelector: selectors.randomElement(using: &rng), namespaceSelector: nsSelectors.randomElement(using: &rng)))
                default: peers.append(.init(ipBlock: .init(cidr: IPPrefix("10.244.1.0/27")!, except: [IPPrefix("10.244.1.16/30")!])))
                }
            }
            var ports: [NetworkPolicy.Port] = []
            switch Int.random(in: 0...3, using: &rng) {
            case 0: break
            case 1: ports = [.init(protocol: .tcp, port: .int(80))]
            case 2: ports = [.init(protocol: .tcp, port: .string("serve-81-tcp")), .init(protocol: .udp, port: .int(80), endPort: 81)]
            default: ports = [.init(protocol: .udp, port: .int(53))]
            }
            return .init(ports: ports, peers: peers)
        }
        var podIDs = Array(base.pods.keys).sorted()
        for step in 0..<500 {
            var changes = PolicyChanges()
            switch Int.random(in: 0...6, using: &rng) {
            case 6:
                // A pod moves between here and elsewhere (the same identity gains or loses its
                // local members).
                let id = podIDs.randomElement(using: &rng)!
                if var pod = engine.inputs.pods[id] {
                    pod.local.toggle()
                    changes.pods[id] = .some(pod)
                }
            case 0, 1:
                let name = "p\(Int.random(in: 0..<6, using: &rng))"
                let ns = ["x", "y", "z"].randomElement(using: &rng)!
                let types: [NetworkPolicy.PolicyType]? = [nil, [.ingress], [.egress], [.ingress, .egress]].randomElement(using: &rng)!
                let p = NetworkPolicy(metadata: ObjectMeta(name: name, namespace: ns), podSelector: selectors.randomElement(using: &rng)!,
                                      policyTypes: types, ingress: (0..<Int.random(in: 0...2, using: &rng)).map { _ in randomRule() },
                                      egress: (0..<Int.random(in: 0...2, using: &rng)).map { _ in randomRule() })
                changes.policies[p.id] = .some(p)
            case 2:
                if let id = engine.inputs.policies.keys.randomElement(using: &rng) { changes.policies[id] = .some(nil) }
            case 3:
                let id = podIDs.randomElement(using: &rng)!
                if var pod = engine.inputs.pods[id] {
                    pod.labels = ["pod": ["a", "b", "c", "d"].randomElement(using: &rng)!]
                    pod.local = Bool.random(using: &rng)
                    changes.pods[id] = .some(pod)
                }
            case 4:
                let id = NamespacedName(["x", "y", "z"].randomElement(using: &rng)!, "extra-\(step)")
                let octet = 100 + step % 150
                changes.pods[id] = .some(.init(id: id, labels: ["pod": "a"], ips: [IPAddress("10.244.1.\(octet)")!, IPAddress("fd00:10:244:1::\(octet)")!],
                                               local: Bool.random(using: &rng)))
                // Addresses are reused: whoever held this one goes in the same batch.
                for (other, pod) in engine.inputs.pods where pod.ips.contains(IPAddress("10.244.1.\(octet)")!) { changes.pods[other] = .some(nil) }
                podIDs.append(id)
                if let gone = podIDs.filter({ $0.name.hasPrefix("extra") && $0 != id }).randomElement(using: &rng), Bool.random(using: &rng) {
                    changes.pods[gone] = .some(nil)
                }
            default:
                let ns = ["x", "y", "z"].randomElement(using: &rng)!
                changes.namespaces[ns] = .some(Bool.random(using: &rng) ? ["ns": ns, "team": "blue"] : ["ns": ns])
            }
            engine.apply(changes)
            Self.apply(engine.takeOperations(), to: &kernel)
            #expect(kernel == engine.model, "step \(step): the operations do not give the model")
            #expect(engine.model == PolicyTables.model(engine.desired), "step \(step): the model is not its desired state's")
            PolicyIndexTests.expectCovers(engine, "step \(step)")
            let fresh = PolicyCompiler().compile(engine.inputs)
            #expect(PolicyCompilerTests.matrix(engine.desired) == PolicyCompilerTests.matrix(fresh), "step \(step): TCP 80 verdicts differ")
            #expect(PolicyCompilerTests.matrix(engine.desired, proto: .udp, port: 81, v6: true)
                    == PolicyCompilerTests.matrix(fresh, proto: .udp, port: 81, v6: true), "step \(step): UDP 81 verdicts differ")
            if kernel != engine.model { break }
        }
    }
}
