import ClusterState
import IPAddressing
import ServiceProxy
import Testing
@testable import PolicyEnforcement

/// The cluster-wide tiers (ClusterNetworkPolicy v1alpha2) on the upstream model: golden
/// semantics (Admin before NetworkPolicy before Baseline; Accept, Deny, Pass; priorities and
/// rule order; peers; named ports; fail closed), the explain answer equal to the verdicts, and
/// the incremental engine equal to a full compile.
struct TierTests {
    typealias CNP = ClusterNetworkPolicy
    static let ip = PolicyCompilerTests.ip

    static func cnp(_ name: String, _ tier: CNP.Tier = .admin, priority: Int = 10, subject: CNP.Subject = .namespaces(.everything),
                    ingress: [CNP.Rule] = [], egress: [CNP.Rule] = []) -> CNP {
        CNP(metadata: ObjectMeta(name: name), tier: tier, priority: priority, subject: subject, ingress: ingress, egress: egress)
    }

    static func ns(_ name: String) -> LabelSelector { LabelSelector(matchLabels: ["ns": name]) }

    static func inputs(_ cnps: [CNP], _ policies: [NetworkPolicy] = []) -> PolicyInputs {
        var i = PolicyCompilerTests.model(policies)
        for c in cnps { i.clusterPolicies[c.name] = c }
        return i
    }

    static func engine(_ cnps: [CNP], _ policies: [NetworkPolicy] = []) -> EnforcementEngine {
        var e = EnforcementEngine()
        e.load(inputs(cnps, policies))
        return e
    }

    static func verdict(_ e: EnforcementEngine, _ from: (String, String), _ to: (String, String), _ proto: L4Protocol = .tcp,
                        _ port: UInt16 = 80, v6: Bool = false) -> TieredVerdict {
        e.verdict(from: ip(from.0, from.1, v6), to: ip(to.0, to.1, v6), proto: proto, port: port)
    }

    /// The 9x9 matrix through the tiers.
    static func matrix(_ e: EnforcementEngine, proto: L4Protocol = .tcp, port: UInt16 = 80, v6: Bool = false) -> String {
        var rows: [String] = []
        for sns in PolicyCompilerTests.namespaces {
            for sp in PolicyCompilerTests.podNames {
                var row = ""
                for dns in PolicyCompilerTests.namespaces {
                    for dp in PolicyCompilerTests.podNames {
                        if sns == dns && sp == dp { row += "-"; continue }
                        row += verdict(e, (sns, sp), (dns, dp), proto, port, v6: v6).allowed ? "." : "X"
                    }
                }
                rows.append(row)
            }
        }
        return rows.joined(separator: "\n")
    }

    static let allowAllIngressX = PolicyCompilerTests.policy("allow-all", ingress: [.init()])
    static let denyAllIngressX = PolicyCompilerTests.policy("deny-all")

    @Test func adminDenyBeatsNetworkPolicyAllow() {
        let deny = Self.cnp("deny-from-y", subject: .namespaces(Self.ns("x")),
                            ingress: [CNP.Rule(name: "no-y", action: .deny, peers: [.namespaces(Self.ns("y"))])])
        let e = Self.engine([deny], [Self.allowAllIngressX])
        let v = Self.verdict(e, ("y", "a"), ("x", "a"))
        #expect(!v.allowed && v.deniedBy == .ingress)
        #expect(v.decisions[.ingress] == TierDecision(stage: .admin, allowed: false, policy: "deny-from-y", rule: "\"no-y\"", action: .deny))
        #expect(Self.verdict(e, ("z", "a"), ("x", "a")).decisions[.ingress]?.stage == .networkPolicy)
        #expect(Self.verdict(e, ("z", "a"), ("x", "a")).allowed)
        #expect(Self.matrix(e, v6: true) == Self.matrix(e), "the same in IPv6")
        #expect(Self.matrix(e) == """
            -........
            .-.......
            ..-......
            XXX-.....
            XXX.-....
            XXX..-...
            ......-..
            .......-.
            ........-
            """)
    }

    @Test func adminAcceptBeatsNetworkPolicyDeny() {
        let accept = Self.cnp("accept-y", subject: .pods(.init(namespaceSelector: Self.ns("x"), podSelector: LabelSelector(matchLabels: ["pod": "a"]))),
                              ingress: [CNP.Rule(action: .accept, peers: [.namespaces(Self.ns("y"))])])
        let e = Self.engine([accept], [Self.denyAllIngressX])
        #expect(Self.verdict(e, ("y", "b"), ("x", "a")).allowed, "admin accept over NP deny-all")
        #expect(Self.verdict(e, ("y", "b"), ("x", "a")).decisions[.ingress]?.rule == "ingress[0]")
        #expect(!Self.verdict(e, ("y", "b"), ("x", "b")).allowed, "x/b is no subject: NP decides")
        #expect(!Self.verdict(e, ("z", "b"), ("x", "a")).allowed, "z is no peer: NP decides")
        #expect(Self.verdict(e, ("z", "b"), ("x", "a")).decisions[.ingress]?.stage == .networkPolicy)
        // Accept decides one direction only: an Admin egress deny at the source still denies.
        let denyEgress = Self.cnp("y-egress", priority: 5, subject: .namespaces(Self.ns("y")),
                                  egress: [CNP.Rule(action: .deny, peers: [.namespaces(Self.ns("x"))])])
        let e2 = Self.engine([accept, denyEgress], [Self.denyAllIngressX])
        #expect(Self.verdict(e2, ("y", "b"), ("x", "a")).deniedBy == .egress)
    }

    @Test func passFallsThroughToNetworkPolicyAndBaseline() {
        let pass = Self.cnp("pass-y", priority: 1, subject: .namespaces(Self.ns("x")),
                            ingress: [CNP.Rule(action: .pass, peers: [.namespaces(Self.ns("y"))])])
        let laterDeny = Self.cnp("deny-all", priority: 2, subject: .namespaces(Self.ns("x")),
                                 ingress: [CNP.Rule(action: .deny, peers: [.namespaces(.everything)])])
        let baselineDeny = Self.cnp("baseline", .baseline, subject: .namespaces(.everything),
                                    ingress: [CNP.Rule(action: .deny, peers: [.namespaces(Self.ns("y"))])])
        // Pass skips the rest of the Admin tier; NP isolates x/* and allows all: allowed.
        var e = Self.engine([pass, laterDeny, baselineDeny], [Self.allowAllIngressX])
        var v = Self.verdict(e, ("y", "a"), ("x", "a"))
        #expect(v.allowed && v.decisions[.ingress]?.stage == .networkPolicy && v.decisions[.ingress]?.passedBy == "pass-y ingress[0]")
        #expect(!Self.verdict(e, ("z", "a"), ("x", "a")).allowed, "z is not passed: the later admin deny")
        // Without NetworkPolicy the Baseline tier decides what was passed.
        e = Self.engine([pass, laterDeny, baselineDeny])
        v = Self.verdict(e, ("y", "a"), ("x", "a"))
        #expect(!v.allowed && v.decisions[.ingress]?.stage == .baseline && v.decisions[.ingress]?.policy == "baseline")
    }

    @Test func networkPolicyIsolationOverridesBaseline() {
        let baselineDeny = Self.cnp("baseline-deny-y", .baseline, ingress: [CNP.Rule(action: .deny, peers: [.namespaces(Self.ns("y"))])])
        let e = Self.engine([baselineDeny], [Self.allowAllIngressX])
        #expect(Self.verdict(e, ("y", "a"), ("x", "a")).allowed, "x/a is isolated by NP: baseline not consulted")
        let v = Self.verdict(e, ("y", "a"), ("z", "a"))
        #expect(!v.allowed && v.decisions[.ingress] == TierDecision(stage: .baseline, allowed: false, policy: "baseline-deny-y",
                                                                    rule: "ingress[0]", action: .deny), "z/a has no NP: baseline denies")
        #expect(Self.verdict(e, ("x", "a"), ("z", "a")).allowed)
    }

    @Test func baselineAcceptThenDeny() {
        let b = Self.cnp("baseline", .baseline, subject: .namespaces(Self.ns("x")),
                         ingress: [CNP.Rule(name: "y-ok", action: .accept, peers: [.namespaces(Self.ns("y"))]),
                                   CNP.Rule(name: "rest", action: .deny, peers: [.namespaces(.everything)])])
        let e = Self.engine([b])
        #expect(Self.verdict(e, ("y", "a"), ("x", "a")).decisions[.ingress]?.rule == "\"y-ok\"")
        #expect(Self.verdict(e, ("y", "a"), ("x", "a")).allowed)
        #expect(!Self.verdict(e, ("z", "a"), ("x", "a")).allowed)
        #expect(!Self.verdict(e, ("x", "b"), ("x", "a")).allowed, "namespaces {} holds x itself")
    }

    @Test func prioritiesAndRuleOrderDecide() {
        let accept = Self.cnp("a-accept", priority: 10, ingress: [CNP.Rule(action: .accept, peers: [.namespaces(Self.ns("y"))])])
        let deny = Self.cnp("b-deny", priority: 20, ingress: [CNP.Rule(action: .deny, peers: [.namespaces(Self.ns("y"))])])
        #expect(Self.verdict(Self.engine([accept, deny]), ("y", "a"), ("x", "a")).allowed)
        var first = deny
        first.priority = 5
        #expect(!Self.verdict(Self.engine([accept, first]), ("y", "a"), ("x", "a")).allowed, "the lower priority number wins")
        var tie = deny
        tie.priority = 10
        #expect(Self.verdict(Self.engine([accept, tie]), ("y", "a"), ("x", "a")).allowed, "equal priorities: by name")
        // Rule order inside one policy.
        let acceptRule = CNP.Rule(action: .accept, peers: [.pods(.init(namespaceSelector: Self.ns("y"), podSelector: LabelSelector(matchLabels: ["pod": "a"])))])
        let denyRule = CNP.Rule(action: .deny, peers: [.namespaces(Self.ns("y"))])
        #expect(Self.verdict(Self.engine([Self.cnp("o", ingress: [acceptRule, denyRule])]), ("y", "a"), ("x", "a")).allowed)
        #expect(!Self.verdict(Self.engine([Self.cnp("o", ingress: [denyRule, acceptRule])]), ("y", "a"), ("x", "a")).allowed)
        #expect(!Self.verdict(Self.engine([Self.cnp("o", ingress: [acceptRule, denyRule])]), ("y", "b"), ("x", "a")).allowed)
    }

    @Test func networksMatchPodAddressesAndPorts() {
        let deny = Self.cnp("no-pods-80", subject: .namespaces(Self.ns("x")),
                            egress: [CNP.Rule(action: .deny, peers: [.networks([IPPrefix("10.244.1.0/24")!, IPPrefix("10.244.1.16/28")!,
                                                                                IPPrefix("fd00:10:244:1::/64")!])],
                                              protocols: [.port(.tcp, .number(80)), .port(.udp, .range(80...81))])])
        let e = Self.engine([deny])
        #expect(!Self.verdict(e, ("x", "a"), ("y", "b")).allowed, "a pod address inside the network, after DNAT")
        #expect(!Self.verdict(e, ("x", "a"), ("y", "b"), v6: true).allowed)
        #expect(Self.verdict(e, ("x", "a"), ("y", "b"), .tcp, 81).allowed)
        #expect(!Self.verdict(e, ("x", "a"), ("y", "b"), .udp, 81).allowed)
        #expect(Self.verdict(e, ("y", "a"), ("x", "b")).allowed, "y is no subject")
        #expect(e.verdict(from: Self.ip("x", "a", false), to: IPAddress("192.168.1.1")!, proto: .tcp, port: 80).allowed, "outside the network")
        #expect(!e.verdict(from: Self.ip("x", "a", false), to: IPAddress("10.244.1.200")!, proto: .tcp, port: 80).allowed)
    }

    @Test func namedPortsResolveOnTheDestination() {
        // Egress: resolved on each peer pod. Ingress: on the subject pod.
        var e = Self.engine([Self.cnp("egress-named", subject: .namespaces(Self.ns("x")),
                                      egress: [CNP.Rule(action: .deny, peers: [.namespaces(Self.ns("y"))], protocols: [.namedPort("serve-81-tcp")])])])
        #expect(!Self.verdict(e, ("x", "a"), ("y", "b"), .tcp, 81).allowed)
        #expect(Self.verdict(e, ("x", "a"), ("y", "b"), .tcp, 80).allowed)
        #expect(Self.verdict(e, ("x", "a"), ("y", "b"), .udp, 81).allowed, "the name is TCP's")
        #expect(Self.verdict(e, ("x", "a"), ("z", "b"), .tcp, 81).allowed, "z is no peer")
        e = Self.engine([Self.cnp("ingress-named", subject: .namespaces(Self.ns("x")),
                                  ingress: [CNP.Rule(action: .deny, peers: [.namespaces(Self.ns("y"))], protocols: [.namedPort("serve-80-udp"), .port(.tcp, .number(81))])])])
        #expect(!Self.verdict(e, ("y", "a"), ("x", "b"), .udp, 80).allowed)
        #expect(!Self.verdict(e, ("y", "a"), ("x", "b"), .tcp, 81).allowed)
        #expect(Self.verdict(e, ("y", "a"), ("x", "b"), .tcp, 80).allowed)
        #expect(Self.verdict(e, ("z", "a"), ("x", "b"), .udp, 80).allowed)
        // Networks with a named port: the pods inside the network that have the name.
        e = Self.engine([Self.cnp("net-named", subject: .namespaces(Self.ns("x")),
                                  egress: [CNP.Rule(action: .deny, peers: [.networks([IPPrefix("10.244.1.16/28")!])], protocols: [.namedPort("serve-80-tcp")])])])
        #expect(Self.verdict(e, ("x", "a"), ("y", "b")).allowed)
        #expect(!Self.verdict(e, ("x", "a"), ("z", "a")).allowed, "z/a is 10.244.1.16")
    }

    @Test func unsupportedPeersFailClosed() {
        let accept = Self.cnp("accept-unknown", ingress: [CNP.Rule(action: .accept, peers: [.unsupported(field: "nodes")])])
        var e = Self.engine([accept], [Self.denyAllIngressX])
        #expect(!Self.verdict(e, ("y", "a"), ("x", "a")).allowed, "an Accept with an unknown peer matches nothing")
        let deny = Self.cnp("deny-unknown", subject: .namespaces(Self.ns("z")),
                            egress: [CNP.Rule(action: .deny, peers: [.unsupported(field: "domainNames")], protocols: [.port(.tcp, .number(443))])])
        e = Self.engine([deny])
        #expect(!Self.verdict(e, ("z", "a"), ("x", "a")).allowed, "a Deny with an unknown peer matches everything")
        #expect(!Self.verdict(e, ("z", "a"), ("x", "a"), .udp, 53).allowed)
        #expect(Self.verdict(e, ("x", "a"), ("z", "a")).allowed, "x is no subject")
    }

    @Test func dnsFollowsTheTiers() throws {
        let kubeDNS = CNP.Peer.pods(.init(namespaceSelector: LabelSelector(matchLabels: [PolicyInputs.namespaceNameLabel: "kube-system"]),
                                          podSelector: LabelSelector(matchLabels: ["k8s-app": "kube-dns"])))
        let adminDeny = Self.cnp("no-dns", subject: .namespaces(Self.ns("x")), egress: [CNP.Rule(action: .deny, peers: [kubeDNS])])
        var e = Self.engine([adminDeny])
        let dns = IPAddress("169.254.20.10")!
        #expect(!e.verdict(from: Self.ip("x", "a", false), to: dns, proto: .udp, port: 53).allowed)
        #expect(e.tierDesired.dnsDeny.contains(DNSKey(source: Self.ip("x", "a", false), responder: dns, proto: .udp)))
        #expect(!e.tierDesired.dnsDeny.contains { $0.source == Self.ip("y", "a", false) })
        // Baseline deny applies only to pods NetworkPolicy does not isolate for egress.
        let npAllowsDNS = PolicyCompilerTests.policy("dns-ok", in: "y", types: [.egress], egress: [
            .init(ports: [.init(protocol: .udp, port: .int(53))], peers: [.init(podSelector: LabelSelector(matchLabels: ["k8s-app": "kube-dns"]), namespaceSelector: .everything)])])
        let baselineDeny = Self.cnp("baseline-no-dns", .baseline, egress: [CNP.Rule(action: .deny, peers: [kubeDNS])])
        e = Self.engine([baselineDeny], [npAllowsDNS])
        #expect(e.verdict(from: Self.ip("y", "a", false), to: dns, proto: .udp, port: 53).allowed, "NP isolates y/a and allows DNS")
        #expect(!e.verdict(from: Self.ip("x", "a", false), to: dns, proto: .udp, port: 53).allowed, "x/a is not isolated: baseline")
        #expect(!e.tierDesired.dnsDeny.contains { $0.source == Self.ip("y", "a", false) })
        #expect(e.tierDesired.dnsDeny.contains(DNSKey(source: Self.ip("x", "a", false), responder: dns, proto: .udp)))
        // Admin Accept of DNS for a pod NP isolates without allowing it.
        let adminAccept = Self.cnp("dns-always", egress: [CNP.Rule(action: .accept, peers: [kubeDNS])])
        e = Self.engine([adminAccept], [PolicyCompilerTests.policy("deny-egress", in: "y", types: [.egress])])
        #expect(e.verdict(from: Self.ip("y", "a", false), to: dns, proto: .tcp, port: 53).allowed)
        #expect(e.tierDesired.dnsAccept.contains(DNSKey(source: Self.ip("y", "a", false), responder: dns, proto: .tcp)))
        #expect(!e.tierDesired.dnsAccept.contains { $0.source == Self.ip("x", "a", false) }, "x/a is not isolated: no element needed")
    }

    @Test func explainAnswersAreTheVerdicts() throws {
        let cnps = [Self.cnp("deny-from-y", subject: .namespaces(Self.ns("x")),
                             ingress: [CNP.Rule(name: "no-y", action: .deny, peers: [.namespaces(Self.ns("y"))])]),
                    Self.cnp("pass-z", priority: 1, ingress: [CNP.Rule(action: .pass, peers: [.namespaces(Self.ns("z"))])]),
                    Self.cnp("baseline", .baseline, egress: [CNP.Rule(action: .deny, peers: [.networks([IPPrefix("10.244.1.0/28")!])],
                                                                     protocols: [.port(.tcp, .number(81))])])]
        let i = Self.inputs(cnps, [Self.denyAllIngressX])
        var e = EnforcementEngine(everyNodeLocal: true)
        e.load(i)
        for s in PolicyCompilerTests.namespaces.flatMap({ ns in PolicyCompilerTests.podNames.map { (ns, $0) } }) {
            for d in PolicyCompilerTests.namespaces.flatMap({ ns in PolicyCompilerTests.podNames.map { (ns, $0) } }) where s != d {
                for port: UInt16 in [80, 81] {
                    let r = try PolicyCheck.run(PolicyCheck.Query(from: NamespacedName(s.0, s.1), to: .pod(NamespacedName(d.0, d.1)), proto: .tcp, port: port), inputs: i)
                    let v = Self.verdict(e, s, d, .tcp, port)
                    #expect(r.allowed == v.allowed && r.deniedBy == v.deniedBy?.rawValue, "\(s) -> \(d) \(port)")
                    #expect(r.ingress.decidedBy == v.decisions[.ingress]?.stage.rawValue && r.ingress.rule == v.decisions[.ingress]?.rule)
                }
            }
        }
        let r = try PolicyCheck.run(PolicyCheck.Query(from: "y/a", to: "x/b", port: "80/TCP"), inputs: i)
        #expect(!r.allowed && r.ingress.clusterNetworkPolicy == "deny-from-y" && r.ingress.rule == "\"no-y\"" && r.ingress.action == "Deny")
        #expect(r.summary.contains("deny-from-y") && r.summary.contains("no-y"), "\(r.summary)")
    }

    // MARK: tables

    @Test func tablesFollowTheTiersAndPodsAreElements() {
        let cnps = [Self.cnp("admin", subject: .namespaces(Self.ns("x")),
                             ingress: [CNP.Rule(action: .deny, peers: [.pods(.init(namespaceSelector: .everything, podSelector: LabelSelector(matchLabels: ["pod": "b"])))])],
                             egress: [CNP.Rule(action: .accept, peers: [.networks([IPPrefix("10.0.0.0/8")!])], protocols: [.port(.tcp, nil)])]),
                    Self.cnp("base", .baseline, ingress: [CNP.Rule(action: .pass, peers: [.namespaces(.everything)])])]
        var e = Self.engine(cnps)
        _ = e.takeOperations()
        #expect(e.model == TierTables.model(e.desired, e.tierDesired))
        let text = NftRenderer(tableName: PolicyTables.tableName).ruleset(e.model)
        #expect(text.contains("goto tier-deny") && text.contains("goto eg-np") && text.contains("@cnp1-subject"), "\(text)")
        // A pod's labels change: element operations only, in both families.
        var pod = e.inputs.pods[NamespacedName("y", "a")]!
        pod.labels = ["pod": "b"]
        e.apply(PolicyChanges(pods: [pod.id: pod]))
        let ops = e.takeOperations()
        #expect(!ops.isEmpty && ops.allSatisfy { if case .addElements = $0 { true } else if case .deleteElements = $0 { true } else { false } }, "\(ops)")
        #expect(e.model == TierTables.model(e.desired, e.tierDesired))
        #expect(!Self.verdict(e, ("y", "a"), ("x", "c")).allowed)
    }

    // MARK: incremental = full

    @Test func incrementalChangesMatchAFullCompile() {
        var rng = PolicyEngineTests.SeededRandom(state: 0x7469657273)
        var engine = EnforcementEngine(dnsAddresses: [IPAddress("169.254.20.10")!, IPAddress("10.96.0.10")!])
        var kernel = RulesetModel()
        for f in TableFamily.allCases { kernel.tables[f] = PolicyTables.skeleton(f) }
        engine.setLocalSubnets([IPPrefix("10.244.1.0/24")!, IPPrefix("fd00:10:244:1::/64")!])
        let base = PolicyCompilerTests.model([])
        engine.load(base)
        Self.applyAll(engine.takeOperations(), to: &kernel)
        #expect(kernel == engine.model)

        let selectors: [LabelSelector] = [.everything, LabelSelector(matchLabels: ["pod": "a"]), LabelSelector(matchLabels: ["pod": "b"])]
        let nsSelectors: [LabelSelector] = [.everything, Self.ns("y"), LabelSelector(matchLabels: ["team": "blue"]),
                                            LabelSelector(matchLabels: [PolicyInputs.namespaceNameLabel: "kube-system"])]
        func peer() -> CNP.Peer {
            switch Int.random(in: 0...4, using: &rng) {
            case 0: .namespaces(nsSelectors.randomElement(using: &rng)!)
            case 1, 2: .pods(.init(namespaceSelector: nsSelectors.randomElement(using: &rng)!, podSelector: selectors.randomElement(using: &rng)!))
            case 3: .networks([IPPrefix("10.244.1.0/28")!, IPPrefix("fd00:10:244:1::/120")!])
            default: Int.random(in: 0...3, using: &rng) == 0 ? .unsupported(field: "nodes") : .namespaces(.everything)
            }
        }
        func rule() -> CNP.Rule {
            let protocols: [[CNP.ProtocolMatch]] = [[], [.port(.tcp, .number(80))], [.namedPort("serve-81-tcp"), .port(.udp, .range(80...81))],
                                                    [.port(.udp, nil), .namedPort("dns")]]
            return CNP.Rule(action: CNP.Action.allCases.randomElement(using: &rng)!,
                            peers: (0..<Int.random(in: 1...2, using: &rng)).map { _ in peer() },
                            protocols: protocols.randomElement(using: &rng)!)
        }
        var podIDs = Array(base.pods.keys).sorted()
        for step in 0..<300 {
            var changes = PolicyChanges()
            switch Int.random(in: 0...8, using: &rng) {
            case 0, 1, 2:
                let name = "c\(Int.random(in: 0..<5, using: &rng))"
                let subject: CNP.Subject = Bool.random(using: &rng) ? .namespaces(nsSelectors.randomElement(using: &rng)!)
                    : .pods(.init(namespaceSelector: nsSelectors.randomElement(using: &rng)!, podSelector: selectors.randomElement(using: &rng)!))
                let c = Self.cnp(name, Bool.random(using: &rng) ? .admin : .baseline, priority: Int.random(in: 0...3, using: &rng), subject: subject,
                                 ingress: (0..<Int.random(in: 0...2, using: &rng)).map { _ in rule() },
                                 egress: (0..<Int.random(in: 0...2, using: &rng)).map { _ in rule() })
                changes.clusterPolicies[name] = .some(c)
            case 3:
                if let name = engine.tierDesired.policies.keys.randomElement(using: &rng) { changes.clusterPolicies[name] = .some(nil) }
            case 4:
                let types: [NetworkPolicy.PolicyType] = [[.ingress], [.egress], [.ingress, .egress]].randomElement(using: &rng)!
                let p = PolicyCompilerTests.policy("np\(Int.random(in: 0..<3, using: &rng))", in: ["x", "y"].randomElement(using: &rng)!,
                                                   selecting: ["pod": "a"], types: types,
                                                   egress: Bool.random(using: &rng) ? [.init(ports: [.init(protocol: .udp, port: .int(53))])] : [])
                changes.policies[p.id] = .some(p)
            case 5:
                let id = podIDs.randomElement(using: &rng)!
                if var pod = engine.inputs.pods[id] {
                    pod.labels = ["pod": ["a", "b", "c"].randomElement(using: &rng)!]
                    pod.local = Bool.random(using: &rng)
                    changes.pods[id] = .some(pod)
                }
            case 6:
                let id = NamespacedName(["x", "y", "z"].randomElement(using: &rng)!, "extra-\(step)")
                let octet = 100 + step % 150
                changes.pods[id] = .some(.init(id: id, labels: ["pod": "a"], ips: [IPAddress("10.244.1.\(octet)")!, IPAddress("fd00:10:244:1::\(octet)")!],
                                               ports: [ContainerPort(name: "serve-81-tcp", containerPort: 8081, protocol: .tcp)],
                                               local: Bool.random(using: &rng)))
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
            Self.applyAll(engine.takeOperations(), to: &kernel)
            #expect(kernel == engine.model, "step \(step): the operations do not give the model")
            #expect(engine.model == TierTables.model(engine.desired, engine.tierDesired), "step \(step): the model is not its desired state's")
            var fresh = EnforcementEngine(dnsAddresses: [IPAddress("169.254.20.10")!, IPAddress("10.96.0.10")!])
            fresh.load(engine.inputs)
            #expect(engine.tierDesired.subjects == fresh.tierDesired.subjects && engine.tierDesired.dnsDeny == fresh.tierDesired.dnsDeny
                    && engine.tierDesired.dnsAccept == fresh.tierDesired.dnsAccept, "step \(step): tier state differs from a full compile")
            #expect(Self.matrix(engine) == Self.matrix(fresh), "step \(step): TCP 80 verdicts differ")
            #expect(Self.matrix(engine, proto: .tcp, port: 81, v6: true) == Self.matrix(fresh, proto: .tcp, port: 81, v6: true), "step \(step): TCP 81 differs")
            if kernel != engine.model { break }
        }
    }

    /// Element and whole-part operations applied to a model as the kernel would.
    static func applyAll(_ ops: [RulesetOperation], to model: inout RulesetModel) {
        for op in ops {
            switch op {
            case .addSet(let f, let spec): model.tables[f]!.sets[spec.name] = NFSet(spec)
            case .deleteSet(let f, let name):
                #expect(!model.tables[f]!.chains.values.contains { ($0.rules ?? []).contains { Self.sets($0).contains(name) } },
                        "set \(name) deleted while a rule uses it")
                model.tables[f]!.sets[name] = nil
            case .addChain(let f, let name, let base): model.tables[f]!.chains[name] = NFChain(name, base: base)
            case .deleteChain(let f, let name): model.tables[f]!.chains[name] = nil
            case .addRule(let f, let chain, let rule):
                for s in Self.sets(rule) { #expect(model.tables[f]!.sets[s] != nil, "rule uses missing set \(s)") }
                PolicyEngineTests.apply([.addRule(f, chain: chain, rule)], to: &model)
            default: PolicyEngineTests.apply([op], to: &model)
            }
        }
    }

    static func sets(_ rule: NFRule) -> [String] {
        rule.expressions.compactMap { if case .lookup(_, let s, _) = $0 { s } else { nil } }
    }
}
