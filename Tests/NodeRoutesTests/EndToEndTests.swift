// End to end with real traffic, without the agent binary: a fabric namespace with bridges,
// node namespaces each with a pod bridge `nodenet0` and one pod namespace, one NodeRoutesActor
// per node (each with its own ClusterStore holding the same Node objects). Pods reach pods on
// other nodes without NAT (the receiver reports the source it saw), over host-gw on one L2
// subnet and over vxlan/auto across two subnets joined by a router; traffic to an address
// outside the cluster leaves masqueraded to the node address.
import ClusterState
import Foundation
import IPAddressing
import Netlink
import NodenetTestSupport
import Testing
@testable import NodeRoutes

/// The namespaces of one test cluster, deleted together.
final class TestCluster: Sendable {
    let fabric: TestNamespace
    let router: TestNamespace?
    let external: TestNamespace
    let nodes: [TestNamespace]
    let pods: [TestNamespace]
    /// Node addresses by index (node i+1).
    let addresses: [String]

    /// `routed`: node3 sits on 192.168.2.0/24 behind a router namespace, the others on 192.168.1.0/24.
    init(routed: Bool) throws {
        fabric = try TestNamespace("fab")
        try Self.ip(fabric, "link add br0 type bridge", "link set br0 up", "link add br1 type bridge", "link set br1 up")
        addresses = routed ? ["192.168.1.11", "192.168.1.12", "192.168.2.13"] : ["192.168.1.11", "192.168.1.12", "192.168.1.13"]
        var nodes: [TestNamespace] = [], pods: [TestNamespace] = []
        for (i, address) in addresses.enumerated() {
            let n = i + 1
            let node = try TestNamespace("node\(n)"), pod = try TestNamespace("pod\(n)")
            nodes.append(node); pods.append(pod)
            let bridge = address.hasPrefix("192.168.2.") ? "br1" : "br0"
            try Self.ip(fabric, "link add f\(n) type veth peer name eth0 netns \(node.name)", "link set f\(n) master \(bridge) up")
            let gateway = address.hasPrefix("192.168.2.") ? "192.168.2.1" : "192.168.1.1"
            try Self.ip(node, "addr add \(address)/24 dev eth0", "link set eth0 up",
                        "link add nodenet0 type bridge", "addr add 10.244.\(n).1/24 dev nodenet0", "link set nodenet0 up",
                        "link add p\(n) type veth peer name eth0 netns \(pod.name)", "link set p\(n) master nodenet0 up")
            if routed { try Self.ip(node, "route add default via \(gateway)") }
            try Self.ip(pod, "addr add 10.244.\(n).5/24 dev eth0", "link set eth0 up", "route add default via 10.244.\(n).1")
        }
        self.nodes = nodes
        self.pods = pods
        if routed {
            let r = try TestNamespace("router")
            try Self.ip(fabric, "link add r0 type veth peer name eth0 netns \(r.name)", "link set r0 master br0 up",
                        "link add r1 type veth peer name eth1 netns \(r.name)", "link set r1 master br1 up")
            try Self.ip(r, "addr add 192.168.1.1/24 dev eth0", "addr add 192.168.2.1/24 dev eth1", "link set eth0 up", "link set eth1 up")
            try r.check(["sysctl", "-qw", "net.ipv4.ip_forward=1"])
            router = r
        } else {
            router = nil
        }
        external = try TestNamespace("ext")
        try Self.ip(fabric, "link add x0 type veth peer name eth0 netns \(external.name)", "link set x0 master br0 up")
        try Self.ip(external, "addr add 192.168.1.100/24 dev eth0", "link set eth0 up")
        if routed { try Self.ip(external, "route add default via 192.168.1.1") }
    }

    static func ip(_ ns: TestNamespace, _ commands: String...) throws {
        for c in commands { try Shell.check(["ip", "-n", ns.name] + c.split(separator: " ").map(String.init)) }
    }

    var nodeObjects: [Node] {
        addresses.enumerated().map { makeNode("node\($0.offset + 1)", $0.element, "10.244.\($0.offset + 1).0/24") }
    }

    /// One actor per node, each with its own store holding every Node.
    func startActors(mode: RoutingMode) async throws -> [RunningActor] {
        var out: [RunningActor] = []
        for (i, node) in nodes.enumerated() {
            let c = NodeRoutesConfiguration(nodeName: "node\(i + 1)", nodeIP: IPAddress(addresses[i])!, podCIDRs: [IPPrefix("10.244.\(i + 1).0/24")!],
                                            clusterCIDRs: [IPPrefix("10.244.0.0/16")!], mode: mode, namespace: try NetworkNamespace(path: node.path))
            out.append(try await RunningActor(c, store: await store(nodeObjects)))
        }
        return out
    }

    /// Starts a TCP listener in `ns` that answers each connection with the source address it
    /// saw, connects from `from` and returns that answer. The listener is a child process
    /// ended here (not a shell background job: it would inherit the test's pipes and blocked
    /// signals, so neither EOF nor `timeout` would ever come).
    func observedSource(from: TestNamespace, to ns: TestNamespace, address: String, port: Int) throws -> String {
        let server = try ChildProcess([try Shell.which("ip"), "netns", "exec", ns.name, "socat", "TCP-LISTEN:\(port),fork,reuseaddr", "SYSTEM:echo $SOCAT_PEERADDR"])
        defer {
            // socat forks per connection; the children exit once they answered.
            server.signal(SIGKILL)
            server.waitUntilExit()
        }
        for _ in 0..<30 {
            let r = try from.run(["socat", "-T2", "-", "TCP:\(address):\(port),connect-timeout=1"], stdin: "", timeout: 5)
            let text = r.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
            if r.ok, !text.isEmpty { return text }
            usleep(100_000)
        }
        return ""
    }

    func ping(from: TestNamespace, _ address: String) throws -> Bool {
        try from.run(["ping", "-c", "1", "-W", "2", address]).ok
    }

    func delete() {
        for ns in pods + nodes + [external, fabric] + (router.map { [$0] } ?? []) { ns.delete() }
    }
}

@Suite("pod traffic between nodes (root)", .enabled(if: isRoot), .serialized)
struct EndToEndTests {
    @Test func hostGWWithoutNATAndMasqueradeToOutside() async throws {
        let cluster = try TestCluster(routed: false)
        defer { cluster.delete() }
        let actors = try await cluster.startActors(mode: .hostGW)
        #expect(try cluster.ping(from: cluster.pods[0], "10.244.2.5"))
        #expect(try cluster.ping(from: cluster.pods[0], "10.244.3.5"))
        #expect(try cluster.observedSource(from: cluster.pods[0], to: cluster.pods[1], address: "10.244.2.5", port: 7101) == "10.244.1.5")
        #expect(try cluster.observedSource(from: cluster.pods[0], to: cluster.pods[2], address: "10.244.3.5", port: 7102) == "10.244.1.5")
        #expect(try cluster.observedSource(from: cluster.pods[2], to: cluster.pods[0], address: "10.244.1.5", port: 7103) == "10.244.3.5")
        // Leaving the cluster: masqueraded to node1's address.
        #expect(try cluster.observedSource(from: cluster.pods[0], to: cluster.external, address: "192.168.1.100", port: 7104) == "192.168.1.11")
        for a in actors { await a.stop() }
        // The dataplane outlives the actors.
        #expect(try cluster.ping(from: cluster.pods[1], "10.244.3.5"))
    }

    @Test(arguments: [RoutingMode.vxlan, .auto])
    func acrossTwoSubnets(mode: RoutingMode) async throws {
        let cluster = try TestCluster(routed: true)
        defer { cluster.delete() }
        let actors = try await cluster.startActors(mode: mode)
        let peers = actors[0].actor.status.peers
        #expect(peers.map(\.state) == [.inSync, .inSync], "\(peers)")
        #expect(peers.map(\.mode) == (mode == .auto ? ["host-gw", "vxlan"] : ["vxlan", "vxlan"]))
        #expect(try cluster.ping(from: cluster.pods[0], "10.244.3.5"))
        #expect(try cluster.observedSource(from: cluster.pods[0], to: cluster.pods[2], address: "10.244.3.5", port: 7201) == "10.244.1.5")
        #expect(try cluster.observedSource(from: cluster.pods[2], to: cluster.pods[1], address: "10.244.2.5", port: 7202) == "10.244.3.5")
        #expect(try cluster.observedSource(from: cluster.pods[0], to: cluster.pods[1], address: "10.244.2.5", port: 7203) == "10.244.1.5")
        #expect(try cluster.observedSource(from: cluster.pods[2], to: cluster.external, address: "192.168.1.100", port: 7204) == "192.168.2.13")
        for a in actors { await a.stop() }
    }

    @Test func hostGWCannotCrossSubnetsAndSaysSo() async throws {
        let cluster = try TestCluster(routed: true)
        defer { cluster.delete() }
        let actors = try await cluster.startActors(mode: .hostGW)
        let node3 = actors[0].actor.status.peers.first { $0.name == "node3" }
        #expect(node3?.state == .refused)
        #expect(node3?.message?.contains("not on-link") == true)
        #expect(try cluster.ping(from: cluster.pods[0], "10.244.2.5"))
        for a in actors { await a.stop() }
    }
}
