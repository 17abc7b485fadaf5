import ClusterState
import IPAddressing
import ServiceProxy
import Testing
@testable import PolicyEnforcement

/// Selection and verdicts on the upstream model (namespaces x, y, z; pods a, b, c), checked
/// through the same verdict procedure the tables implement, and the shape of the changes.
struct PolicyCompilerTests {
    static let namespaces = ["x", "y", "z"]
    static let podNames = ["a", "b", "c"]

    static func ip(_ ns: String, _ pod: String, v6: Bool = false) -> IPAddress {
        let n = namespaces.firstIndex(of: ns)! * 3 + podNames.firstIndex(of: pod)! + 10
        return IPAddress(v6 ? "fd00:10:244:1::\(n)" : "10.244.1.\(n)")!
    }

    static func model(_ policies: [NetworkPolicy], podLabels: [String: [String: String]] = [:],
                      namespaceLabels: [String: [String: String]] = [:], dns: Bool = true) -> PolicyInputs {
        var i = PolicyInputs(dnsAddresses: dns ? [IPAddress("169.254.20.10")!, IPAddress("10.96.0.10")!] : [])
        for ns in namespaces { i.namespaces[ns] = namespaceLabels[ns] ?? ["ns": ns] }
        for ns in namespaces {
            for p in podNames {
                let id = NamespacedName(ns, p)
                let ports = [80, 81].flatMap { port in
                    [L4Protocol.tcp, .udp].map { ContainerPort(name: "serve-\(port)-\($0.rawValue.lowercased())", containerPort: port, protocol: $0) }
                }
                i.pods[id] = .init(id: id, labels: podLabels["\(ns)/\(p)"] ?? ["pod": p], ips: [ip(ns, p), ip(ns, p, v6: true)],
                                   ports: ports, local: true)
            }
        }
        for p in policies { i.policies[p.id] = p }
        return i
    }

    static func policy(_ name: String, in ns: String = "x", selecting: [String: String] = [:], types: [NetworkPolicy.PolicyType]? = nil,
                       ingress: [NetworkPolicy.Rule] = [], egress: [NetworkPolicy.Rule] = []) -> NetworkPolicy {
        NetworkPolicy(metadata: ObjectMeta(name: name, namespace: ns), podSelector: LabelSelector(matchLabels: selecting),
                      policyTypes: types, ingress: ingress, egress: egress)
    }

    /// The 9x9 matrix (rows sources, columns destinations, diagonal "-") as upstream prints it.
    static func matrix(_ d: PolicyDesired, proto: L4Protocol = .tcp, port: UInt16 = 80, v6: Bool = false) -> String {
        var rows: [String] = []
        for sns in namespaces {
            for sp in podNames {
                var row = ""
                for dns in namespaces {
                    for dp in podNames {
                        if sns == dns && sp == dp { row += "-"; continue }
                        row += d.verdict(from: ip(sns, sp, v6: v6), to: ip(dns, dp, v6: v6), proto: proto, port: port).allowed ? "." : "X"
                    }
                }
                rows.append(row)
            }
        }
        return rows.joined(separator: "\n")
    }

    static func compile(_ i: PolicyInputs) -> PolicyDesired {
        PolicyCompiler().compile(i)
    }

    @Test func denyAllIngressInOneNamespace() {
        let d = Self.compile(Self.model([Self.policy("deny-all")]))
        #expect(Self.matrix(d) == """
            -XX......
            X-X......
            XX-......
            XXX-.....
            XXX.-....
            XXX..-...
            XXX...-..
            XXX....-.
            XXX.....-
            """)
        #expect(Self.matrix(d, v6: true) == Self.matrix(d), "the same in IPv6")
        let v = d.verdict(from: Self.ip("y", "a"), to: Self.ip("x", "a"), proto: .tcp, port: 80)
        #expect(v.deniedBy == .ingress && v.isolatingPolicies[.ingress] == [NamespacedName("x", "deny-all")])
    }

    @Test func peersInOneItemAreANDSeparateItemsOR() {
        let and = Self.policy("and", selecting: ["pod": "a"], ingress: [.init(peers: [
            .init(podSelector: LabelSelector(matchLabels: ["pod": "b"]), namespaceSelector: LabelSelector(matchLabels: ["ns": "y"])),
        ])])
        let or = Self.policy("or", selecting: ["pod": "a"], ingress: [.init(peers: [
            .init(podSelector: LabelSelector(matchLabels: ["pod": "b"])),
            .init(namespaceSelector: LabelSelector(matchLabels: ["ns": "y"])),
        ])])
        // Column x/a only: rows x/a..z/c.
        func column(_ d: PolicyDesired) -> String {
            Self.namespaces.flatMap { ns in Self.podNames.map { p in
                ns == "x" && p == "a" ? "-" : d.verdict(from: Self.ip(ns, p), to: Self.ip("x", "a"), proto: .tcp, port: 80).allowed ? "." : "X"
            } }.joined()
        }
        #expect(column(Self.compile(Self.model([and]))) == "-XXX.XXXX", "only y/b")
        #expect(column(Self.compile(Self.model([or]))) == "-.X...XXX", "x/b, and all of y")
    }

    @Test func ipBlockWithExceptMatchesPodAddresses() {
        let p = Self.policy("ipblock", selecting: ["pod": "a"], ingress: [.init(peers: [
            .init(ipBlock: .init(cidr: IPPrefix("10.244.1.0/24")!, except: [IPPrefix("\(Self.ip("x", "b"))/32")!])),
        ])])
        let d = Self.compile(Self.model([p]))
        #expect(!d.verdict(from: Self.ip("x", "b"), to: Self.ip("x", "a"), proto: .tcp, port: 80).allowed, "the except")
        #expect(d.verdict(from: Self.ip("x", "c"), to: Self.ip("x", "a"), proto: .tcp, port: 80).allowed)
        #expect(d.verdict(from: IPAddress("10.244.1.200")!, to: Self.ip("x", "a"), proto: .udp, port: 9).allowed)
        #expect(!d.verdict(from: IPAddress("192.0.2.1")!, to: Self.ip("x", "a"), proto: .tcp, port: 80).allowed)
        #expect(!d.verdict(from: Self.ip("x", "c", v6: true), to: Self.ip("x", "a", v6: true), proto: .tcp, port: 80).allowed,
                "an IPv4 block says nothing about IPv6")
        #expect(AddressRange.subtracting(IPPrefix("10.0.0.0/8")!, [IPPrefix("10.1.0.0/16")!]).map(\.description)
                == ["10.0.0.0-10.0.255.255", "10.2.0.0-10.255.255.255"])
    }

    @Test func portsNamedNumberedRangesAndProtocols() {
        // Named ports resolve on the destination: x/b says serve-80-tcp is 8080.
        var i = Self.model([Self.policy("named", selecting: [:], ingress: [.init(ports: [.init(protocol: .tcp, port: .string("serve-80-tcp"))])])])
        i.pods[NamespacedName("x", "b")]!.ports = [ContainerPort(name: "serve-80-tcp", containerPort: 8080, protocol: .tcp)]
        var d = Self.compile(i)
        #expect(d.verdict(from: Self.ip("y", "a"), to: Self.ip("x", "a"), proto: .tcp, port: 80).allowed)
        #expect(!d.verdict(from: Self.ip("y", "a"), to: Self.ip("x", "b"), proto: .tcp, port: 80).allowed, "x/b's serve-80-tcp is 8080")
        #expect(d.verdict(from: Self.ip("y", "a"), to: Self.ip("x", "b"), proto: .tcp, port: 8080).allowed)
        #expect(!d.verdict(from: Self.ip("y", "a"), to: Self.ip("x", "a"), proto: .udp, port: 80).allowed, "the name is TCP's")

        // endPort is inclusive; an SCTP or UDP rule is never TCP; a protocol-only entry is every port.
        d = Self.compile(Self.model([Self.policy("range", ingress: [.init(ports: [
            .init(protocol: .tcp, port: .int(80), endPort: 81), .init(protocol: .sctp, port: .int(90)), .init(protocol: .udp),
        ])])]))
        for (proto, port, allowed) in [(L4Protocol.tcp, UInt16(80), true), (.tcp, 81, true), (.tcp, 82, false), (.tcp, 90, false),
                                       (.sctp, 90, true), (.udp, 5353, true), (.udp, 1, true)] {
            #expect(d.verdict(from: Self.ip("y", "a"), to: Self.ip("x", "a"), proto: proto, port: port).allowed == allowed, "\(port)/\(proto)")
        }
        // A rule whose only port is SCTP still isolates.
        d = Self.compile(Self.model([Self.policy("sctp-only", ingress: [.init(ports: [.init(protocol: .sctp, port: .int(80))])])]))
        #expect(!d.verdict(from: Self.ip("y", "a"), to: Self.ip("x", "a"), proto: .tcp, port: 80).allowed)
    }

    @Test func egressOnlyRulesDefaultToBothTypesAndReplyDirectionIsIndependent() {
        let p = Self.policy("egress", selecting: ["pod": "a"], egress: [.init(peers: [.init(namespaceSelector: LabelSelector(matchLabels: ["ns": "y"]))])])
        #expect(p.policyTypes == [.ingress, .egress], "API server defaulting")
        let d = Self.compile(Self.model([p]))
        #expect(d.verdict(from: Self.ip("x", "a"), to: Self.ip("y", "c"), proto: .udp, port: 81).allowed)
        #expect(!d.verdict(from: Self.ip("x", "a"), to: Self.ip("z", "c"), proto: .tcp, port: 80).allowed)
        #expect(!d.verdict(from: Self.ip("y", "c"), to: Self.ip("x", "a"), proto: .tcp, port: 80).allowed, "ingress isolated, no rules")
    }

    @Test func dnsFollowsTheKubeDNSPodsAndDefaultDenyBlocksIt() {
        let dns = IPAddress("169.254.20.10")!
        let denyAll = Self.policy("deny-egress", types: [.egress])
        var d = Self.compile(Self.model([denyAll]))
        #expect(!d.verdict(from: Self.ip("x", "a"), to: dns, proto: .udp, port: 53).allowed, "default deny egress blocks DNS")
        #expect(d.dnsAllowed().isEmpty)
        let allowDNS = Self.policy("allow-dns", types: [.egress], egress: [.init(
            ports: [.init(protocol: .udp, port: .int(53)), .init(protocol: .tcp, port: .string("dns-tcp"))],
            peers: [.init(podSelector: LabelSelector(matchLabels: ["k8s-app": "kube-dns"]),
                          namespaceSelector: LabelSelector(matchLabels: ["kubernetes.io/metadata.name": "kube-system"]))])])
        d = Self.compile(Self.model([denyAll, allowDNS]))
        #expect(d.verdict(from: Self.ip("x", "a"), to: dns, proto: .udp, port: 53).allowed)
        #expect(d.verdict(from: Self.ip("x", "a"), to: dns, proto: .tcp, port: 53).allowed, "named port dns-tcp on the responder")
        #expect(!d.verdict(from: Self.ip("x", "a"), to: Self.ip("y", "a"), proto: .udp, port: 53).allowed)
        #expect(Set(d.dnsAllowed().map { "\($0.0) \($0.1) \($0.2)" }).contains("10.244.1.10 169.254.20.10 53/UDP"))
    }

    @Test func identitiesAreSharedAndStableAndChangesAreElementsOnly() {
        var c = PolicyEngine()
        let p = Self.policy("allow-y", selecting: ["pod": "a"], ingress: [.init(peers: [.init(namespaceSelector: LabelSelector(matchLabels: ["ns": "y"]))])])
        var i = Self.model([p])
        c.load(i)
        let first = c.desired
        // 9 pods + the DNS responder; pods a, b, c of different namespaces differ.
        #expect(first.identities.count == 10)
        let before = PolicyTables.model(first)
        func elementOnly(_ ops: [RulesetOperation]) -> Bool {
            ops.allSatisfy { switch $0 { case .addElements, .deleteElements, .deleteRanges: true; default: false } }
        }
        // A pod's labels change: x/b becomes a pod "a" (now selected).
        i.pods[NamespacedName("x", "b")]!.labels = ["pod": "a"]
        c.load(i)
        let second = c.desired
        #expect(second.identities.count == 9, "x/a and x/b share an identity now")
        #expect(first.addressIdentity[Self.ip("y", "c")] == second.addressIdentity[Self.ip("y", "c")], "numbers stay")
        let after = PolicyTables.model(second)
        let ops = RulesetDiff.operations(from: before, to: after)
        #expect(!ops.isEmpty && elementOnly(ops), "\(ops)")
        #expect(!second.verdict(from: Self.ip("x", "c"), to: Self.ip("x", "b"), proto: .tcp, port: 80).allowed)
        // A policy edited, a pod added: elements only.
        i.policies[p.id]!.ingress = [.init(ports: [.init(protocol: .tcp, port: .int(81))])]
        i.pods[NamespacedName("z", "d")] = .init(id: NamespacedName("z", "d"), labels: ["pod": "a"], ips: [IPAddress("10.244.1.99")!], local: true)
        c.load(i)
        let third = PolicyTables.model(c.desired)
        #expect(elementOnly(RulesetDiff.operations(from: after, to: third)))
    }

    @Test func policiesAreAdditive() {
        let a = Self.policy("from-b", selecting: ["pod": "a"], ingress: [.init(peers: [.init(podSelector: LabelSelector(matchLabels: ["pod": "b"]))])])
        let b = Self.policy("from-c", selecting: ["pod": "a"], ingress: [.init(peers: [.init(podSelector: LabelSelector(matchLabels: ["pod": "c"]))])])
        let d = Self.compile(Self.model([a, b]))
        let v = d.verdict(from: Self.ip("x", "c"), to: Self.ip("x", "a"), proto: .tcp, port: 80)
        #expect(v.allowed && v.allowingRules[.ingress] == [RuleRef(policy: NamespacedName("x", "from-c"), direction: .ingress, index: 0)])
        #expect(d.verdict(from: Self.ip("x", "b"), to: Self.ip("x", "a"), proto: .tcp, port: 80).allowed)
        #expect(!d.verdict(from: Self.ip("y", "b"), to: Self.ip("x", "a"), proto: .tcp, port: 80).allowed)
    }
}
