import Foundation
import NodenetTestSupport
import Testing

/// Issue 22 item 4 (the pod MTU of issue 14 item 14, end to end): in every routing mode, with
/// an IPv4 and an IPv6 underlay, a dual-stack pod sends DF-set packets of exactly its MTU to
/// pods on other nodes, in IPv4 and in IPv6, and one byte more is refused by its own kernel
/// (EMSGSIZE, the interface's MTU), as with any Linux interface. A pod MTU above what the
/// path carries (the vxlan device's MTU, underlay less 50 bytes over IPv4 and 70 over IPv6)
/// fails the first check: the node drops the packet with fragmentation-needed / packet too big.
@Suite(.serialized, .enabled(if: isPrivileged && (try? Shell.which("ping")) != nil, "needs root and ping"))
struct PodMTUEndToEndTests {
    struct Case: Sendable, CustomStringConvertible {
        var routing: String
        var families: TestCluster.Families = .dualStack
        /// The node IP (the underlay vxlan uses) is the nodes' IPv6 address.
        var ipv6Underlay: Bool
        /// The last node on a second subnet behind the fabric's router (host-gw cannot reach it).
        var routed: Bool
        var nodes: Int
        /// The pod MTU with the fabric's 1500-byte links.
        var mtu: Int
        /// Start the agents on the README's dual-stack example config (its routing: vxlan).
        var readmeConfig = false
        var description: String { "\(routing) over IPv\(ipv6Underlay ? 6 : 4)\(routed ? ", routed" : "")\(families == .ipv6 ? ", IPv6-only" : "")" }
    }

    static let cases: [Case] = [
        Case(routing: "host-gw", ipv6Underlay: false, routed: false, nodes: 2, mtu: 1500),
        Case(routing: "host-gw", ipv6Underlay: true, routed: false, nodes: 2, mtu: 1500),
        Case(routing: "vxlan", ipv6Underlay: false, routed: true, nodes: 2, mtu: 1450, readmeConfig: true),
        Case(routing: "vxlan", ipv6Underlay: true, routed: true, nodes: 2, mtu: 1430),
        // auto: node2 on-link (host-gw), node3 behind the router (vxlan); pods get the overlay
        // MTU because some of their packets take the vxlan device.
        Case(routing: "auto", ipv6Underlay: false, routed: true, nodes: 3, mtu: 1450),
        Case(routing: "auto", ipv6Underlay: true, routed: true, nodes: 3, mtu: 1430),
        // An IPv6-only cluster: IPv6 pods, underlay and overlay.
        Case(routing: "auto", families: .ipv6, ipv6Underlay: true, routed: true, nodes: 3, mtu: 1430),
    ]

    /// `ping` with DF set and `payload` bytes of ICMP data.
    func ping(_ from: TestCluster.Pod, _ to: String, payload: Int) throws -> Shell.Result {
        try from.ns.run(["ping", "-c", "1", "-W", "2", "-M", "do", "-s", "\(payload)", to])
    }

    @Test(arguments: cases)
    func dfPacketsAtThePodMTUCrossNodes(_ c: Case) throws {
        let config = c.readmeConfig ? try TestCluster.readmeExample("dual-stack config") : nil
        let cluster = try TestCluster(nodes: c.nodes, families: c.families, routed: c.routed, ipv6Primary: c.ipv6Underlay, config: config) { _ in
            c.readmeConfig ? [] : ["--routing", c.routing]
        }
        defer { cluster.close() }
        try cluster.startAgents()
        try cluster.applyEverywhere(cluster.nodeManifest)
        let pods = try (0..<c.nodes).map { try cluster.addPod("mtu-\($0)", on: $0) }
        let client = pods[0]

        // The pod's interface and (with an overlay) the vxlan device agree on the MTU.
        func mtu(_ pod: TestCluster.Pod) throws -> Int {
            Int(try pod.ns.check(["cat", "/sys/class/net/eth0/mtu"]).stdout.trimmingCharacters(in: .whitespacesAndNewlines)) ?? 0
        }
        for pod in pods { #expect(try mtu(pod) == c.mtu, "\(pod.name) eth0 mtu") }
        // The packets below are sized from the pod's own MTU, whatever it is: the path must
        // carry what the pod is told it may send.
        let podMTU = try mtu(client)
        if c.routing != "host-gw" {
            let vx = try cluster.nodes[0].ns.check(["cat", "/sys/class/net/nodenet.1/mtu"]).stdout.trimmingCharacters(in: .whitespacesAndNewlines)
            #expect(vx == "\(c.mtu)", "vxlan device mtu")
        }

        for peer in pods.dropFirst() {
            for v6 in [false, true] where v6 ? c.families.hasV6 : c.families.hasV4 {
                let to = try #require(peer.ip(v6))
                // IPv4 header 20 + ICMP 8; IPv6 header 40 + ICMPv6 8.
                let payload = podMTU - (v6 ? 48 : 28)
                // Routes come with the agents' first sync of the Node objects: wait for a small packet first.
                var reachable = false
                for _ in 0..<40 where !reachable {
                    reachable = try cluster.ping(from: client.ns, to)
                    if !reachable { usleep(100_000) }
                }
                try #require(reachable, "\(client.name) reaches \(to) at all")
                let atMTU = try ping(client, to, payload: payload)
                #expect(atMTU.ok, "a DF packet of exactly \(podMTU) bytes to \(peer.name) \(to): \(atMTU.stdout)\(atMTU.stderr)")
                // One byte over: refused by the pod's own kernel, naming the MTU (ping says
                // "mtu=1450" for IPv4, "mtu: 1450" for IPv6).
                let over = try ping(client, to, payload: payload + 1)
                let text = over.stdout + over.stderr
                #expect(!over.ok && text.contains("message too long") && (text.contains("mtu=\(podMTU)") || text.contains("mtu: \(podMTU)")),
                        "one byte over the MTU to \(to): \(text)")
            }
        }
    }
}
