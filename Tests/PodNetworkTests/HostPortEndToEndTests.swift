import Foundation
import NodenetTestSupport
import Testing

/// Host ports through the real path: the built agent in a node namespace on a fabric bridge,
/// pods attached by the CNI binary with `runtimeConfig.portMappings`, traffic from the fabric,
/// from pods of the node (hairpin) and from the node itself.
@Suite(.serialized, .enabled(if: isPrivileged && (try? Shell.which("socat")) != nil && (try? Shell.which("nft")) != nil,
                             "needs root, socat and nft"))
struct HostPortEndToEndTests {
    static let nodeIP = "192.168.1.11"

    final class Fixture: @unchecked Sendable {
        // @unchecked: used by one test at a time, from its own thread.
        let cluster: TestCluster
        var pods: [TestNamespace] = []
        var node: TestCluster.Node { cluster.nodes[0] }

        init(_ families: TestCluster.Families = .ipv4) throws {
            let cidrs = (families.hasV4 ? ["10.244.1.0/24"] : []) + (families.hasV6 ? ["fd00:10:244:1::/64"] : [])
            cluster = try TestCluster(nodes: 1, families: families) { _ in ["--pod-cidrs", cidrs.joined(separator: ",")] }
            try cluster.startAgents()
        }

        /// A pod attached with `mappings` (JSON array text); returns its namespace and the ADD's result.
        func pod(_ id: String, mappings: String) throws -> (TestNamespace, Shell.Result) {
            let ns = try TestNamespace("pod")
            pods.append(ns)
            let r = try node.cni.run("ADD", containerID: id, netns: ns.path, stdin: config(mappings))
            return (ns, r)
        }

        func config(_ mappings: String) -> String {
            String(node.cni.config.dropLast()) + ",\"runtimeConfig\":{\"portMappings\":\(mappings)}}"
        }

        /// Servers answering with the address they see the client at, on each family of the cluster.
        func serve(in ns: TestNamespace, tcp: Int, udp: Int) throws {
            for v6 in [false, true] where v6 ? cluster.families.hasV6 : cluster.families.hasV4 {
                let (t, u, only) = v6 ? ("TCP6-LISTEN", "UDP6-RECVFROM", ",ipv6only=1") : ("TCP4-LISTEN", "UDP4-RECVFROM", "")
                try cluster.spawn(in: ns, ["socat", "\(t):\(tcp),fork,reuseaddr\(only)", "SYSTEM:echo tcp-peer-$SOCAT_PEERADDR"])
                // One datagram per socat, in a bounded loop: with `fork` the parent waits for SIGCHLD,
                // which the test process's spawn leaves blocked.
                try cluster.spawn(in: ns, ["sh", "-c", "for i in $(seq 300); do socat -T1 \(u):\(udp)\(only) 'SYSTEM:echo udp-peer-$SOCAT_PEERADDR'; done"])
            }
        }

        /// One TCP exchange: the server's answer ("tcp-peer-<client address>", canonical), or "" (refused, timed out).
        func tcp(from ns: TestNamespace, port: Int, to host: String = HostPortEndToEndTests.nodeIP) throws -> String {
            Self.canonical(try cluster.request(from: ns, host, port, timeout: 2).stdout)
        }

        func udp(from ns: TestNamespace, port: Int, to host: String = HostPortEndToEndTests.nodeIP) throws -> String {
            Self.canonical(try cluster.udpRequest(from: ns, host, port).stdout)
        }

        /// "tcp-peer-[0000:...]" (socat's IPv6 form) as "tcp-peer-fd00::1".
        static func canonical(_ answer: String) -> String {
            let text = answer.trimmingCharacters(in: .whitespacesAndNewlines)
            guard let peer = TestCluster.peer(text), let dash = text.range(of: "-peer-") else { return text }
            return String(text[..<dash.upperBound]) + peer
        }
        /// Retries a probe until it answers (servers start asynchronously; the UDP server takes
        /// one datagram per process), bounded.
        func eventually(_ probe: () throws -> String) rethrows -> String {
            for _ in 0..<20 {
                let out = try probe()
                if !out.isEmpty { return out }
                usleep(200_000)
            }
            return ""
        }

        /// (handle, comment) of each rule of one of nodenet's chains.
        func rules(_ chain: String, family: String = "ip") throws -> [(handle: String, comment: String)] {
            let out = try node.ns.run(["nft", "-a", "list", "chain", family, "nodenet", chain]).stdout
            return out.split(separator: "\n").compactMap { line in
                guard let c = line.range(of: "comment \""), let h = line.range(of: "# handle ") else { return nil }
                let comment = line[c.upperBound...].prefix { $0 != "\"" }
                return (String(line[h.upperBound...]), String(comment))
            }
        }

        func attachments() throws -> String { try node.agent.cli(["status", "--json"]).stdout }

        func close() {
            cluster.close()
            pods.forEach { $0.delete() }
        }
    }

    /// In each family of an IPv4, a dual-stack and an IPv6-only node (issue 22): DNAT from the
    /// fabric on the node's address of that family, hairpin, the node itself; then CHECK, repair
    /// at restart and DEL on the primary family's rules.
    @Test(arguments: TestCluster.Families.allCases)
    func fabricHairpinNodeRestartAndDel(_ families: TestCluster.Families) throws {
        let f = try Fixture(families)
        defer { f.close() }
        let (web, add) = try f.pod("web", mappings: #"[{"hostPort":8080,"containerPort":80,"protocol":"tcp"},{"hostPort":9090,"containerPort":90,"protocol":"udp"}]"#)
        #expect(add.ok, "\(add.stdout)\(add.stderr)")
        let webIPs = CNIInvoker.addresses(add)
        #expect(webIPs.count == (families == .dualStack ? 2 : 1), "\(webIPs)")
        try f.serve(in: web, tcp: 80, udp: 90)
        let (client, _) = try f.pod("client", mappings: "[]")

        for (nodeIP, fabricIP) in zip(f.node.ips, families.fabricIPs) {
            let v6 = nodeIP.contains(":")
            let gateway = v6 ? "fd00:10:244:1::1" : "10.244.1.1"
            // From outside: DNAT to the pod, the client's address preserved.
            #expect(try f.eventually { try f.tcp(from: f.cluster.fabric, port: 8080, to: nodeIP) } == "tcp-peer-\(fabricIP)")
            #expect(try f.eventually { try f.udp(from: f.cluster.fabric, port: 9090, to: nodeIP) } == "udp-peer-\(fabricIP)")
            // Hairpin: a pod of this node, and the pod itself, through the node's address; the
            // replies come back through the node because the source was masqueraded.
            #expect(try f.tcp(from: client, port: 8080, to: nodeIP) == "tcp-peer-\(gateway)", "another pod of the node")
            #expect(try f.tcp(from: web, port: 8080, to: nodeIP) == "tcp-peer-\(gateway)", "the pod itself")
            #expect(try f.eventually { try f.udp(from: client, port: 9090, to: nodeIP) } == "udp-peer-\(gateway)")
            // The node itself, through its own address (the output chain).
            #expect(try f.tcp(from: f.node.ns, port: 8080, to: nodeIP) == "tcp-peer-\(nodeIP)")

            let table = v6 ? "ip6" : "ip"
            let webIP = try #require(webIPs.first { $0.contains(":") == v6 })
            let target = v6 ? "[\(webIP)]" : webIP
            let comments = try f.rules("hostports", family: table).map(\.comment)
            #expect(comments.sorted() == ["web/eth0 tcp *:8080>\(target):80", "web/eth0 udp *:9090>\(target):90"])
            #expect(try f.rules("hostports-hairpin", family: table).count == 2)
            #expect(try f.rules("hostports-output", family: table).count == 2)
        }

        // CHECK sees the rules; a rule deleted behind the agent's back fails it (the primary family's table).
        let nodeIP = f.node.ips[0], fabricIP = families.fabricIPs[0], table = families.hasV4 ? "ip" : "ip6"
        let prev = String(f.node.cni.config.dropLast()) + ",\"prevResult\":" + add.stdout + "}"
        #expect(try f.node.cni.run("CHECK", containerID: "web", netns: web.path, stdin: prev).ok)
        let tcpRule = try #require(try f.rules("hostports", family: table).first { $0.comment.contains(" tcp ") })
        let udpRule = try #require(try f.rules("hostports", family: table).first { $0.comment.contains(" udp ") })
        try f.node.ns.check(["nft", "delete", "rule", table, "nodenet", "hostports", "handle", tcpRule.handle])
        let check = try f.node.cni.run("CHECK", containerID: "web", netns: web.path, stdin: prev)
        #expect(!check.ok && check.stdout.contains("host port rule missing"), "\(check.stdout)")
        #expect(try f.tcp(from: f.cluster.fabric, port: 8080, to: nodeIP).isEmpty, "the TCP rule is gone")

        // The agent stopped: the rules stay (no flush on the way down), traffic keeps flowing.
        _ = f.node.agent.stop()
        #expect(try f.eventually { try f.udp(from: f.cluster.fabric, port: 9090, to: nodeIP) } == "udp-peer-\(fabricIP)", "while the agent is down")
        // Started again: the deleted rule is repaired, the kept one is the same rule (same handle).
        // This also proves the service proxy's start-up sync leaves the chains alone (without
        // them in its foreignObjects it deletes them).
        try f.node.agent.start()
        #expect(try f.rules("hostports", family: table).first { $0.comment.contains(" udp ") }?.handle == udpRule.handle, "kept, not rewritten")
        #expect(try f.rules("hostports", family: table).count == 2)
        #expect(try f.eventually { try f.tcp(from: f.cluster.fabric, port: 8080, to: nodeIP) } == "tcp-peer-\(fabricIP)", "repaired at start")
        #expect(try f.node.cni.run("CHECK", containerID: "web", netns: web.path, stdin: prev).ok)

        // DEL removes the rules of every family, twice is fine; the ports answer no more.
        #expect(try f.node.cni.run("DEL", containerID: "web", netns: web.path).ok)
        #expect(try f.node.cni.run("DEL", containerID: "web", netns: web.path).ok)
        for t in (families.hasV4 ? ["ip"] : []) + (families.hasV6 ? ["ip6"] : []) {
            for chain in ["hostports", "hostports-hairpin", "hostports-output"] { #expect(try f.rules(chain, family: t).isEmpty, "\(t) \(chain)") }
        }
        for ip in f.node.ips {
            #expect(try f.tcp(from: f.cluster.fabric, port: 8080, to: ip).isEmpty)
            #expect(try f.udp(from: f.cluster.fabric, port: 9090, to: ip).isEmpty)
        }
    }

    @Test func conflictingAndInvalidMappingsChangeNothing() throws {
        let f = try Fixture()
        defer { f.close() }
        let (_, first) = try f.pod("first", mappings: #"[{"hostPort":8080,"containerPort":80,"protocol":"tcp","hostIP":"192.168.1.11"}]"#)
        #expect(first.ok, "\(first.stdout)")
        let links = try f.node.ns.check(["ip", "-o", "link", "show"]).stdout.split(separator: "\n").count
        let rules = try f.rules("hostports").map(\.handle)

        let (_, taken) = try f.pod("second", mappings: #"[{"hostPort":8080,"containerPort":81}]"#)
        #expect(!taken.ok && CNIInvoker.json(taken)["code"] as? Int == 103, "\(taken.stdout)")
        #expect((CNIInvoker.json(taken)["msg"] as? String)?.contains("first/eth0") == true, "names the holder: \(taken.stdout)")
        let (_, v6) = try f.pod("third", mappings: #"[{"hostPort":8081,"containerPort":81,"hostIP":"fd00::11"}]"#)
        #expect(!v6.ok && CNIInvoker.json(v6)["code"] as? Int == 7, "\(v6.stdout)")

        #expect(try f.node.ns.check(["ip", "-o", "link", "show"]).stdout.split(separator: "\n").count == links, "no veth made")
        #expect(try f.rules("hostports").map(\.handle) == rules)
        let status = try f.attachments()
        #expect(!status.contains("\"second\"") && !status.contains("\"third\""), "no attachment recorded")
        // The same port on another protocol, or after the holder's DEL, is free.
        let (_, udp) = try f.pod("fourth", mappings: #"[{"hostPort":8080,"containerPort":80,"protocol":"udp"}]"#)
        #expect(udp.ok, "\(udp.stdout)")
        #expect(CNIInvoker.address(udp) == "10.244.1.3", "the refused ADDs took no address, not even for a moment (round-robin)")
        #expect(try f.node.cni.run("DEL", containerID: "first", netns: f.pods[0].path).ok)
        let again = try f.node.cni.run("ADD", containerID: "second", netns: f.pods[1].path, stdin: f.config(#"[{"hostPort":8080,"containerPort":81}]"#))
        #expect(again.ok, "after the DEL of its holder the port is free: \(again.stdout)")

        // GC keeping only "second": the mappings of "fourth" go with it.
        let gc = try f.node.cni.run("GC", ifname: "", stdin: String(f.node.cni.config.dropLast())
            + #","cni.dev/valid-attachments":[{"containerID":"second","ifname":"eth0"}]}"#)
        #expect(gc.ok, "\(gc.stdout)")
        #expect(try f.rules("hostports").map(\.comment) == ["second/eth0 tcp *:8080>10.244.1.4:81"])
    }
}
