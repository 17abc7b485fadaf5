import ClusterState
import Foundation
import IPAddressing
import Netlink
import NodenetTestSupport
import ServiceProxy
import Testing
@testable import PolicyEnforcement

/// Real packets through the policy tables, written over netlink by the agent's backend: a node
/// namespace with the pod bridge (pods on one L2 segment: same-node traffic is bridged, and
/// br_netfilter hands it to the forward hook), three pods and a host on a fabric link.
@Suite(.serialized, .enabled(if: isPrivileged && (try? Shell.which("socat")) != nil, "needs root and socat"))
struct PolicyKernelTests {
    final class Bridge: Sendable {
        let node: TestNamespace, fabric: TestNamespace
        let pods: [String: (ns: TestNamespace, ip: String, ip6: String)]

        init() throws {
            node = try TestNamespace("pnode")
            fabric = try TestNamespace("pfab")
            try node.check(["sysctl", "-qw", "net.ipv4.ip_forward=1"])
            try node.check(["sysctl", "-qw", "net.ipv6.conf.all.forwarding=1"])
            try node.check(["sysctl", "-qw", "net.bridge.bridge-nf-call-iptables=1"])
            try node.check(["sysctl", "-qw", "net.bridge.bridge-nf-call-ip6tables=1"])
            try node.check(["ip", "link", "add", "nodenet0", "type", "bridge"])
            try node.check(["ip", "addr", "add", "10.244.1.1/24", "dev", "nodenet0"])
            try node.check(["ip", "addr", "add", "fd00:10:244:1::1/64", "dev", "nodenet0", "nodad"])
            try node.check(["ip", "link", "set", "nodenet0", "up"])
            var pods: [String: (ns: TestNamespace, ip: String, ip6: String)] = [:]
            for (i, name) in ["x/a", "x/b", "y/a"].enumerated() {
                let ns = try TestNamespace("ppod")
                let ip = "10.244.1.\(i + 2)", ip6 = "fd00:10:244:1::\(i + 2)"
                try node.check(["ip", "link", "add", "veth\(i)", "type", "veth", "peer", "name", "eth0", "netns", ns.name])
                try node.check(["ip", "link", "set", "veth\(i)", "master", "nodenet0", "up"])
                try ns.check(["ip", "addr", "add", ip + "/24", "dev", "eth0"])
                try ns.check(["ip", "addr", "add", ip6 + "/64", "dev", "eth0", "nodad"])
                try ns.check(["ip", "link", "set", "eth0", "up"])
                try ns.check(["ip", "route", "add", "default", "via", "10.244.1.1"])
                try ns.check(["ip", "-6", "route", "add", "default", "via", "fd00:10:244:1::1"])
                for port in [80, 81] {
                    try Shell.spawn([try Shell.which("ip"), "netns", "exec", ns.name, "socat", "TCP4-LISTEN:\(port),fork,reuseaddr", "SYSTEM:echo \(name)"])
                    try Shell.spawn([try Shell.which("ip"), "netns", "exec", ns.name, "socat", "TCP6-LISTEN:\(port),fork,reuseaddr,ipv6only=1", "SYSTEM:echo \(name)"])
                }
                pods[name] = (ns: ns, ip: ip, ip6: ip6)
            }
            try node.check(["ip", "link", "add", "fab0", "type", "veth", "peer", "name", "eth0", "netns", fabric.name])
            try node.check(["ip", "addr", "add", "192.168.1.11/24", "dev", "fab0"])
            try node.check(["ip", "link", "set", "fab0", "up"])
            try fabric.check(["ip", "addr", "add", "192.168.1.1/24", "dev", "eth0"])
            try fabric.check(["ip", "link", "set", "eth0", "up"])
            try fabric.check(["ip", "route", "add", "10.244.0.0/16", "via", "192.168.1.11"])
            try Shell.spawn([try Shell.which("ip"), "netns", "exec", fabric.name, "socat", "TCP4-LISTEN:80,fork,reuseaddr", "SYSTEM:echo fabric"])
            self.pods = pods
            for p in pods.values {
                try poll("listening in \(p.ns.name)") { try p.ns.run(["ss", "-H", "-ltn"]).stdout.split(separator: "\n").count >= 4 }
            }
            try poll("fabric listening") { try fabric.run(["ss", "-H", "-ltn"]).stdout.contains(":80") }
        }

        func close() {
            for p in pods.values { p.ns.delete() }
            fabric.delete()
            node.delete()
        }

        /// One TCP connection: did the server answer?
        func connects(_ from: String, _ to: String, port: Int = 80) throws -> Bool {
            let target = to.contains(":") ? "[\(to)]" : to
            let r = try pods[from]!.ns.run(["socat", "-T2", "-", "TCP:\(target):\(port),connect-timeout=2"], stdin: "", timeout: 10)
            return r.ok && !r.stdout.isEmpty
        }
    }

    static func poll(_ what: String, _ condition: () throws -> Bool) throws {
        for _ in 0..<100 {
            if try condition() { return }
            usleep(30_000)
        }
        throw PollTimeout(what: what)
    }
    struct PollTimeout: Error { var what: String }

    static func pod(_ id: String, _ ip: String, _ ip6: String, labels: [String: String], local: Bool = true,
                    ports: [ContainerPort] = []) -> PolicyInputs.PodInfo {
        let parts = id.split(separator: "/")
        return PolicyInputs.PodInfo(id: NamespacedName(String(parts[0]), String(parts[1])), labels: labels,
                                    ips: [IPAddress(ip)!, IPAddress(ip6)!], ports: ports, local: local)
    }

    func inputs(_ policies: [NetworkPolicy]) -> PolicyInputs {
        var i = PolicyInputs(namespaces: ["x": ["ns": "x"], "y": ["ns": "y"]])
        for p in [Self.pod("x/a", "10.244.1.2", "fd00:10:244:1::2", labels: ["pod": "a"]),
                  Self.pod("x/b", "10.244.1.3", "fd00:10:244:1::3", labels: ["pod": "b"]),
                  Self.pod("y/a", "10.244.1.4", "fd00:10:244:1::4", labels: ["pod": "a"])] { i.pods[p.id] = p }
        for p in policies { i.policies[p.id] = p }
        return i
    }

    @Test func sameNodeBridgedTrafficIsFilteredBothFamilies() async throws {
        let b = try Bridge()
        defer { b.close() }
        let backend = try NetlinkRulesetBackend(namespaceNamed: b.node.name, tableName: PolicyTables.tableName)
        var compiler = PolicyCompiler()
        // Before any policy: everything connects.
        #expect(try b.connects("y/a", "10.244.1.2"))

        // x/a: ingress only from pods of namespace x, on port 80.
        let allowX = NetworkPolicy(metadata: ObjectMeta(name: "allow-from-x", namespace: "x"),
                                   podSelector: LabelSelector(matchLabels: ["pod": "a"]),
                                   ingress: [.init(ports: [.init(protocol: .tcp, port: .int(80))],
                                                   peers: [.init(namespaceSelector: LabelSelector(matchLabels: ["ns": "x"]))])])
        let model = PolicyTables.model(compiler.compile(inputs([allowX])))
        try await backend.apply(RulesetDiff.operations(from: nil, to: model))
        #expect(try b.connects("x/b", "10.244.1.2"), "same namespace, port 80")
        #expect(try !b.connects("x/b", "10.244.1.2", port: 81), "port 81 is not allowed")
        #expect(try !b.connects("y/a", "10.244.1.2"), "namespace y is not allowed (bridged, same node)")
        #expect(try b.connects("x/b", "fd00:10:244:1::2"), "IPv6, same namespace")
        #expect(try !b.connects("y/a", "fd00:10:244:1::2"), "IPv6, namespace y")
        #expect(try b.connects("x/a", "10.244.1.4"), "x/a is not isolated for egress; y/a not for ingress")
        #expect(try b.connects("x/a", "192.168.1.1"), "off-cluster egress")

        // Egress default deny for x/b, except to the fabric's /24 minus nothing and to pods a on 81.
        let egressB = NetworkPolicy(metadata: ObjectMeta(name: "egress-b", namespace: "x"),
                                    podSelector: LabelSelector(matchLabels: ["pod": "b"]), policyTypes: [.egress],
                                    egress: [.init(peers: [.init(ipBlock: .init(cidr: IPPrefix("192.168.1.0/24")!, except: [IPPrefix("192.168.1.128/25")!]))]),
                                             .init(ports: [.init(protocol: .tcp, port: .int(81))],
                                                   peers: [.init(podSelector: LabelSelector(matchLabels: ["pod": "a"]),
                                                                 namespaceSelector: .everything)])])
        let next = PolicyTables.model(compiler.compile(inputs([allowX, egressB])))
        let ops = RulesetDiff.operations(from: model, to: next)
        #expect(ops.allSatisfy { if case .addElements = $0 { true } else if case .deleteElements = $0 { true } else if case .deleteRanges = $0 { true } else { false } },
                "a policy added is elements only: \(ops)")
        try await backend.apply(ops)
        #expect(try b.connects("x/b", "192.168.1.1"), "ipBlock allows the fabric host")
        #expect(try !b.connects("x/b", "10.244.1.2"), "x/b may reach pods a only on 81")
        #expect(try !b.connects("x/b", "10.244.1.4"), "y/a on 80 neither")
        #expect(try b.connects("x/b", "10.244.1.4", port: 81), "y/a on 81 (namespaceSelector {} AND pod a)")
        #expect(try !b.connects("x/b", "10.244.1.2", port: 81), "x/a on 81: egress allows, x/a's ingress does not (81)")
        #expect(try b.connects("x/a", "10.244.1.3"), "x/b is not isolated for ingress")
        // nft still lists the tables (operators read them with nft).
        let listing = try b.node.run(["nft", "list", "table", "ip", PolicyTables.tableName])
        #expect(listing.ok, "nft list: \(listing.stderr)")
        print(listing.stdout)
    }
}
