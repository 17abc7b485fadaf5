// Issue 16 item 5: a Node event updates the routes' desired state for that Node alone
// (`DesiredState.update`) and diffs only the keys it touched. Seeded random event sequences
// (adds, changes, deletes, batches; overlaps, mixed lengths, shared addresses, refusals of
// every kind, both families) check the incremental result against a full `compute` after
// every step, and the restricted diff against the full one.
import ClusterState
import IPAddressing
@testable import Netlink
import NodenetTestSupport
import Testing
@testable import NodeRoutes


@Suite("incremental desired state")
struct IncrementalDesiredStateTests {
    static func randomNode(_ name: String, _ rng: inout SeededRandom) -> Node {
        let n = Int.random(in: 2...250, using: &rng)
        let ip: String? = switch Int.random(in: 0..<20, using: &rng) {
        case 0: nil                                          // no InternalIP
        case 1: "192.168.1.11"                               // this node's own address
        case 2: "192.168.1.\(Int.random(in: 12...14, using: &rng))"  // shared with another peer
        case 3, 4: "192.168.2.\(n)"                          // off-link
        default: "192.168.1.\(n)"
        }
        var cidrs: [String] = switch Int.random(in: 0..<25, using: &rng) {
        case 0: []                                           // no pod CIDRs
        case 1: ["10.244.1.0/24"]                            // this node's own subnet
        case 2: ["10.244.\(n).1/24"]                         // not a network address
        case 3: ["10.99.\(n).0/24"]                          // outside the cluster CIDR
        case 4: ["10.244.\(n).0/25"]                         // another length
        case 5, 6: ["10.244.\(Int.random(in: 2...5, using: &rng)).0/24"]  // likely overlapping
        default: ["10.244.\(n).0/24"]
        }
        if Int.random(in: 0..<8, using: &rng) == 0 { cidrs.append("fd00:10:244:\(String(n, radix: 16))::/64") }
        return node(name, ip, cidrs)
    }

    static func expectSame(_ a: DesiredState, _ b: DesiredState, _ context: String) {
        #expect(a.dataplane == b.dataplane, "\(context): dataplane")
        #expect(a.peers == b.peers, "\(context): peers")
        #expect(a.refused == b.refused, "\(context): refused")
        #expect(a.ownerOfRoute == b.ownerOfRoute, "\(context): route owners")
        #expect(a.ownerOfNeighbour == b.ownerOfNeighbour, "\(context): neighbour owners")
        #expect(a.ownerOfFDB == b.ownerOfFDB, "\(context): FDB owners")
    }

    @Test(arguments: [(RoutingMode.hostGW, UInt64(1)), (.vxlan, 2), (.auto, 3), (.auto, 4), (.hostGW, 5)])
    func updateEqualsFullCompute(mode: RoutingMode, seed: UInt64) {
        var rng = SeededRandom(seed: seed)
        let c = config(mode)
        let names = ["node1"] + (2...60).map { "node\($0)" }
        var nodes: [String: Node] = [:]
        for name in names.prefix(30) { nodes[name] = Self.randomNode(name, &rng) }
        var d = DesiredState.compute(configuration: c, topology: underlay, nodes: nodes.values)
        var incremental = 0, fallbacks = 0
        for step in 0..<600 {
            var changed: Set<String> = []
            for _ in 0..<(Int.random(in: 0..<6, using: &rng) == 0 ? Int.random(in: 2...4, using: &rng) : 1) {
                let name = names.randomElement(using: &rng)!
                changed.insert(name)
                if Int.random(in: 0..<5, using: &rng) == 0 { nodes[name] = nil } else { nodes[name] = Self.randomNode(name, &rng) }
            }
            let before = d.dataplane
            let full = DesiredState.compute(configuration: c, topology: underlay, nodes: nodes.values)
            if let touched = d.update(changed: changed, nodes: nodes, configuration: c, topology: underlay) {
                incremental += 1
                Self.expectSame(d, full, "seed \(seed) step \(step) changed \(changed.sorted())")
                #expect(DataplanePlan.diff(current: before, desired: d.dataplane, touching: touched)
                    == DataplanePlan.diff(current: before, desired: full.dataplane), "seed \(seed) step \(step): plan")
            } else {
                fallbacks += 1
                d = full
            }
        }
        // Both paths are exercised: many events incremental, the rest (overlaps, mixed lengths
        // persisting while a /25 or an IPv6 subnet is present) full.
        #expect(incremental >= 50, "\(incremental) incremental, \(fallbacks) full")
        #expect(fallbacks > 0)
    }

    /// The path a new Node takes at scale: 5,000 peers, one more, an O(change) plan.
    @Test func aNewNodeAmongThousandsTouchesOnlyItsEntries() throws {
        let c = config(.hostGW)
        var nodes: [String: Node] = [:]
        for i in 0..<5000 {
            let name = String(format: "node-%05d", i)
            nodes[name] = node(name, "192.168.1.\(12 + i % 200)", ["10.\(64 + i / 256).\(i % 256).0/24"])
        }
        let wide = NodeRoutesConfiguration(nodeName: c.nodeName, nodeIP: c.nodeIP, podCIDRs: c.podCIDRs, clusterCIDRs: [IPPrefix("10.0.0.0/8")!], mode: .hostGW)
        var d = DesiredState.compute(configuration: wide, topology: underlay, nodes: nodes.values)
        #expect(d.peers.count == 5000)
        nodes["node-new"] = node("node-new", "192.168.1.250", ["10.200.0.0/24"])
        let update = d.update(changed: ["node-new"], nodes: nodes, configuration: wide, topology: underlay)
        let touched = try #require(update)
        #expect(touched.routes == [IPPrefix("10.200.0.0/24")!])
        #expect(d.peers.count == 5001)
        let plan = DataplanePlan.diff(current: DesiredState.compute(configuration: wide, topology: underlay, nodes: nodes.values.filter { $0.name != "node-new" }).dataplane,
                                      desired: d.dataplane, touching: touched)
        #expect(plan.count == 1)
    }
}
