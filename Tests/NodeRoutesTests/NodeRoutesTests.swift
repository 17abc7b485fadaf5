// Pure tests: desired state for host-gw, vxlan and auto from sets of Nodes, refusals, the
// dataplane diff and its order, the VTEP MAC rule, and the masquerade rule encoding.
import ClusterState
import IPAddressing
@testable import Netlink
import Testing
@testable import NodeRoutes

func node(_ name: String, _ ip: String?, _ cidrs: [String]) -> Node {
    Node(metadata: ObjectMeta(name: name), podCIDRs: cidrs.map { IPPrefix($0)! },
         addresses: ip.map { [NodeAddress(type: "InternalIP", address: $0)] } ?? [])
}

func config(_ mode: RoutingMode, own: [String] = ["10.244.1.0/24"]) -> NodeRoutesConfiguration {
    NodeRoutesConfiguration(nodeName: "node1", nodeIP: IPAddress("192.168.1.11")!, podCIDRs: own.map { IPPrefix($0)! },
                            clusterCIDRs: [IPPrefix("10.244.0.0/16")!], mode: mode)
}

let underlay = Topology(underlayIndex: 2, underlayPrefixes: [IPPrefix("192.168.1.11/24")!], vxlanIndex: 7)
let cluster = [node("node1", "192.168.1.11", ["10.244.1.0/24"]), node("node2", "192.168.1.12", ["10.244.2.0/24"]),
               node("node3", "192.168.2.13", ["10.244.3.0/24"])]

@Suite("desired state")
struct DesiredStateTests {
    @Test func hostGWRoutesViaPeersAndRefusesOffLinkPeer() {
        let d = DesiredState.compute(configuration: config(.hostGW), topology: underlay, nodes: cluster)
        #expect(d.dataplane.routes.count == 1)
        let r = d.dataplane.routes[IPPrefix("10.244.2.0/24")!]
        #expect(r?.gateway == IPAddress("192.168.1.12"))
        #expect(r?.outputIndex == 2)
        #expect(r?.protocol == 78)
        #expect(r?.table == Route.mainTable)
        #expect(d.dataplane.neighbours.isEmpty && d.dataplane.fdb.isEmpty)
        #expect(d.refused["node3"]?.contains("not on-link") == true)
        #expect(d.peers["node1"] == nil && d.refused["node1"] == nil, "own node is not a peer")
    }

    @Test func vxlanHasNeighbourFDBAndOnlinkRoutePerPeer() {
        let d = DesiredState.compute(configuration: config(.vxlan), topology: underlay, nodes: cluster)
        #expect(d.dataplane.routes.count == 2 && d.dataplane.neighbours.count == 2 && d.dataplane.fdb.count == 2)
        let mac3 = MACAddress("0e:6e:c0:a8:02:0d")!
        let r = d.dataplane.routes[IPPrefix("10.244.3.0/24")!]!
        #expect(r.gateway == IPAddress("10.244.3.0") && r.outputIndex == 7 && r.onlink)
        #expect(d.dataplane.neighbours[IPAddress("10.244.3.0")!] == Neighbour(index: 7, address: IPAddress("10.244.3.0")!, mac: mac3))
        #expect(d.dataplane.fdb[mac3] == FDBEntry(index: 7, mac: mac3, destination: IPAddress("192.168.2.13")))
        #expect(d.peers["node3"]?.mode == .vxlan)
        #expect(d.refused.isEmpty)
    }

    @Test func autoPicksPerPeer() {
        let d = DesiredState.compute(configuration: config(.auto), topology: underlay, nodes: cluster)
        #expect(d.peers["node2"]?.mode == .hostGW)
        #expect(d.peers["node3"]?.mode == .vxlan)
        #expect(d.dataplane.routes[IPPrefix("10.244.2.0/24")!]?.gateway == IPAddress("192.168.1.12"))
        #expect(d.dataplane.fdb.count == 1 && d.dataplane.neighbours.count == 1)
    }

    @Test func badPeersAreRefusedAndTheRestServed() {
        let nodes = cluster + [
            node("noaddr", nil, ["10.244.4.0/24"]),
            node("nocidr", "192.168.1.15", []),
            node("ownsubnet", "192.168.1.16", ["10.244.1.0/25"]),
            node("dupA", "192.168.1.17", ["10.244.7.0/24"]),
            node("dupB", "192.168.1.18", ["10.244.7.128/25"]),
            node("outside", "192.168.1.19", ["10.99.0.0/24"]),
            node("sameip", "192.168.1.11", ["10.244.9.0/24"]),
        ]
        let d = DesiredState.compute(configuration: config(.hostGW), topology: underlay, nodes: nodes)
        #expect(d.refused["noaddr"]?.contains("no IPv4 InternalIP") == true)
        #expect(d.refused["nocidr"] == "has no pod CIDRs")
        #expect(d.refused["ownsubnet"]?.contains("own subnet") == true)
        #expect(d.refused["dupA"]?.contains("overlaps dupB") == true)
        #expect(d.refused["dupB"]?.contains("overlaps dupA") == true)
        #expect(d.refused["outside"]?.contains("outside the cluster CIDR") == true)
        #expect(d.refused["sameip"]?.contains("own address") == true)
        #expect(Set(d.peers.keys) == ["node2"])
        #expect(d.nodeErrors.isEmpty)
    }

    @Test func overlapSweepFindsNestedAndSparesDisjoint() {
        let found = DesiredState.overlaps([("a", [IPPrefix("10.0.0.0/8")!]), ("b", [IPPrefix("10.1.0.0/16")!]),
                                           ("c", [IPPrefix("10.2.0.0/16")!]), ("d", [IPPrefix("11.0.0.0/24")!]),
                                           ("e", [IPPrefix("11.0.1.0/24")!, IPPrefix("fd00::/64")!]), ("f", [IPPrefix("fd00:0:0:1::/64")!])])
        #expect(Set(found.keys) == ["a", "b", "c"])
        #expect(found["c"] == "pod CIDR 10.2.0.0/16 overlaps a's 10.0.0.0/8")
    }

    @Test func missingOwnSubnetIsANodeErrorButPeersAreServed() {
        let d = DesiredState.compute(configuration: config(.hostGW, own: []), topology: underlay, nodes: cluster)
        #expect(d.nodeErrors.first?.contains("no pod subnet") == true)
        #expect(d.peers["node2"] != nil)
    }

    @Test func vxlanWithoutDeviceRefusesVxlanPeers() {
        var t = underlay
        t.vxlanIndex = nil
        let d = DesiredState.compute(configuration: config(.auto), topology: t, nodes: cluster)
        #expect(d.peers["node2"] != nil)
        #expect(d.refused["node3"]?.contains("vxlan device") == true)
    }

    @Test func dualStackHostGW() {
        let nodes = [Node(metadata: ObjectMeta(name: "node2"), podCIDRs: [IPPrefix("10.244.2.0/24")!, IPPrefix("fd00:244:0:2::/64")!],
                          addresses: [NodeAddress(type: "InternalIP", address: "192.168.1.12"), NodeAddress(type: "InternalIP", address: "fd00:1::12")])]
        var c = config(.hostGW)
        c.clusterCIDRs.append(IPPrefix("fd00:244::/56")!)
        let d = DesiredState.compute(configuration: c, topology: underlay, nodes: nodes)
        #expect(d.dataplane.routes[IPPrefix("fd00:244:0:2::/64")!]?.gateway == IPAddress("fd00:1::12"))
        #expect(d.dataplane.routes.count == 2)
    }
}

@Suite("diff")
struct DiffTests {
    @Test func fromEmptyAddsLinkLayerBeforeRoutes() {
        let d = DesiredState.compute(configuration: config(.vxlan), topology: underlay, nodes: cluster)
        let plan = DataplanePlan.diff(current: Dataplane(), desired: d.dataplane)
        #expect(plan.setLinkLayer.count == 4 && plan.setRoutes.count == 2)
        #expect(plan.deleteRoutes.isEmpty && plan.deleteLinkLayer.isEmpty)
        let steps = plan.steps
        let firstRoute = steps.firstIndex { if case .route = $0 { true } else { false } }!
        #expect(steps[..<firstRoute].count == 4, "neighbours and FDB go before any route")
        #expect(plan.setRoutes.allSatisfy { if case .add = $0 { true } else { false } })
    }

    @Test func sameStateIsEmptyPlan() {
        let d = DesiredState.compute(configuration: config(.vxlan), topology: underlay, nodes: cluster)
        // As read back from the kernel: scope and onlink may differ, gateway and device match.
        var read = d.dataplane
        for (k, var r) in read.routes { r.onlink = false; r.scope = .link; read.routes[k] = r }
        #expect(DataplanePlan.diff(current: read, desired: d.dataplane).isEmpty)
    }

    @Test func removedPeerDeletesRouteThenLinkLayer() {
        let before = DesiredState.compute(configuration: config(.vxlan), topology: underlay, nodes: cluster).dataplane
        let after = DesiredState.compute(configuration: config(.vxlan), topology: underlay, nodes: Array(cluster.prefix(2))).dataplane
        let plan = DataplanePlan.diff(current: before, desired: after)
        #expect(plan.deleteRoutes == [.delete(before.routes[IPPrefix("10.244.3.0/24")!]!)])
        #expect(plan.deleteLinkLayer.count == 2)
        #expect(plan.setRoutes.isEmpty && plan.setLinkLayer.isEmpty)
        let steps = plan.steps
        #expect({ if case .route(.delete) = steps[0] { true } else { false } }(), "route goes first")
    }

    @Test func changedAddressReplacesRouteAndFDB() {
        let before = DesiredState.compute(configuration: config(.vxlan), topology: underlay, nodes: cluster).dataplane
        var moved = cluster
        moved[2] = node("node3", "192.168.2.99", ["10.244.3.0/24"])
        let after = DesiredState.compute(configuration: config(.vxlan), topology: underlay, nodes: moved).dataplane
        let plan = DataplanePlan.diff(current: before, desired: after)
        // New MAC: new neighbour (replacing the old one's address) and FDB; old FDB removed.
        #expect(plan.setLinkLayer.count == 2)
        #expect(plan.setRoutes.isEmpty, "same next hop subnet.0 on the same device")
        #expect(plan.deleteLinkLayer.count == 1)

        // host-gw: the route's gateway changes: replace.
        let hg1 = DesiredState.compute(configuration: config(.hostGW), topology: underlay, nodes: cluster).dataplane
        var c2 = cluster
        c2[1] = node("node2", "192.168.1.22", ["10.244.2.0/24"])
        let hg2 = DesiredState.compute(configuration: config(.hostGW), topology: underlay, nodes: c2).dataplane
        let p2 = DataplanePlan.diff(current: hg1, desired: hg2)
        #expect(p2.setRoutes == [.replace(hg2.routes[IPPrefix("10.244.2.0/24")!]!)])
    }

    @Test func staleKernelEntriesAreRemovedAndFailedStepsStayMissing() {
        let d = DesiredState.compute(configuration: config(.hostGW), topology: underlay, nodes: cluster).dataplane
        let stale = Route(destination: IPPrefix("10.244.50.0/24")!, gateway: IPAddress("192.168.1.50"), outputIndex: 2)
        let current = Dataplane(routes: [stale], neighbours: [], fdb: [])
        let plan = DataplanePlan.diff(current: current, desired: d)
        #expect(plan.deleteRoutes == [.delete(stale)])
        #expect(plan.setRoutes.count == 1)
        // If the add failed, the believed state lacks it, so the next diff retries it.
        let steps = plan.steps
        let addIndex = steps.firstIndex { if case .route(.add) = $0 { true } else { false } }!
        let after = DataplanePlan.applying(steps, failed: [addIndex], to: current)
        #expect(after.routes.isEmpty)
        #expect(DataplanePlan.diff(current: after, desired: d).setRoutes.count == 1)
    }
}

@Suite("naming and masquerade")
struct NamingTests {
    @Test func vtepMACFromAddress() {
        #expect(VTEPAddress.mac(for: IPAddress("192.168.1.12")!).description == "0e:6e:c0:a8:01:0c")
        #expect(VTEPAddress.mac(for: IPAddress("fd00::1:2:3:4")!).description == "0e:6e:00:03:00:04")
        #expect(VTEPAddress.overlayMTU(underlayMTU: 1500, underlayFamily: .v4) == 1450)
    }

    @Test func deviceName() {
        #expect(config(.vxlan).vxlanDeviceName == "nodenet.1")
        var c = config(.vxlan)
        c.vxlanVNI = 16_000_000
        #expect(c.vxlanDeviceName == "nnvx16000000")
    }

    @Test func masqueradeRuleExpressions() {
        let r = Masquerade.rule(source: IPPrefix("10.244.0.0/16")!, clusterCIDRs: [IPPrefix("10.244.0.0/16")!])
        #expect(r.comment == "nodenet pod-egress 10.244.0.0/16")
        #expect(r.expressions == [
            .loadNetworkHeader(offset: 12, length: 2), .compare(equal: true, data: [10, 244]),
            .loadNetworkHeader(offset: 16, length: 2), .compare(equal: false, data: [10, 244]),
            .masquerade,
        ])
        // Not byte-aligned: the last byte is masked (as nft does).
        #expect(NFTablesExpression.match(IPPrefix("172.16.0.0/12")!, source: false) == [
            .loadNetworkHeader(offset: 16, length: 4), .mask([255, 240, 0, 0]), .compare(equal: true, data: [172, 16, 0, 0]),
        ])
        let v6 = NFTablesExpression.match(IPPrefix("fd00:244::/56")!, source: true)
        #expect(v6 == [.loadNetworkHeader(offset: 8, length: 7), .compare(equal: true, data: [0xfd, 0, 0x02, 0x44, 0, 0, 0])])
    }

    @Test func masqueradePlanIsIdempotentAndRemovesForeignRulesInItsChain() {
        let cidrs = [IPPrefix("10.244.0.0/16")!]
        #expect(Masquerade.plan(family: .v4, clusterCIDRs: cidrs, existing: []).count == 1)
        let wanted = Masquerade.wanted(family: .v4, clusterCIDRs: cidrs)[0]
        let ours = NFTablesRule(handle: 4, comment: wanted.comment, digest: NFTablesRuleDigest.of(wanted))
        #expect(Masquerade.plan(family: .v4, clusterCIDRs: cidrs, existing: [ours]).isEmpty)
        let dup = NFTablesRule(handle: 5, comment: ours.comment, digest: ours.digest)
        let other = NFTablesRule(handle: 6, comment: nil)
        let p = Masquerade.plan(family: .v4, clusterCIDRs: cidrs, existing: [ours, dup, other])
        #expect(p.map(\.operation) == ["delete nftables rule", "delete nftables rule"])
        #expect(Masquerade.plan(family: .v6, clusterCIDRs: cidrs, existing: []).isEmpty)
        // Rules are keyed by digest, not comment: the same comment over other expressions (or
        // a rule written before digests) is replaced.
        let stale = NFTablesRule(handle: 7, comment: wanted.comment, digest: NFTablesRuleDigest.of((wanted.comment, [.masquerade])))
        let unkeyed = NFTablesRule(handle: 8, comment: wanted.comment)
        for old in [stale, unkeyed] {
            #expect(Masquerade.plan(family: .v4, clusterCIDRs: cidrs, existing: [old]).map(\.operation) == ["delete nftables rule", "add nftables rule"])
        }
    }
}

@Suite("drift detection")
struct DriftWatchTests {
    func watch(_ mode: RoutingMode = .vxlan) -> DriftWatch {
        let d = DesiredState.compute(configuration: config(mode), topology: underlay, nodes: cluster).dataplane
        return DriftWatch(topology: underlay, wanted: d, believed: d, vxlanDevice: "nodenet.1",
                          vxlanShape: .init(mtu: 1450, mac: VTEPAddress.mac(for: IPAddress("192.168.1.11")!)), nodeIP: IPAddress("192.168.1.11")!)
    }

    @Test func ownChangesAreNotDrift() {
        let w = watch()
        for r in w.wanted.routes.values { #expect(!w.isDrift(.route(r, removed: false))) }
        for n in w.wanted.neighbours.values { #expect(!w.isDrift(.neighbour(n, removed: false))) }
        for f in w.wanted.fdb.values { #expect(!w.isDrift(.fdb(f, removed: false))) }
        // Deleting a stale route of ours, or routes of other protocols, is not drift either.
        #expect(!w.isDrift(.route(Route(destination: IPPrefix("10.244.50.0/24")!, gateway: IPAddress("192.168.1.50")), removed: true)))
        #expect(!w.isDrift(.route(Route(destination: IPPrefix("10.244.2.0/24")!, protocol: 4), removed: true)))
        // Neighbours the kernel learns on other devices.
        #expect(!w.isDrift(.neighbour(Neighbour(index: 2, address: IPAddress("192.168.1.12")!, mac: nil, state: 2), removed: false)))
    }

    @Test func changesBehindOurBackAreDrift() {
        let w = watch()
        let r = w.wanted.routes[IPPrefix("10.244.2.0/24")!]!
        #expect(w.isDrift(.route(r, removed: true)))
        var moved = r
        moved.gateway = IPAddress("10.244.9.9")
        #expect(w.isDrift(.route(moved, removed: false)))
        #expect(w.isDrift(.route(Route(destination: IPPrefix("10.244.77.0/24")!, gateway: IPAddress("192.168.1.77")), removed: false)),
                "a protocol-78 route nobody wants")
        let n = w.wanted.neighbours.values.first!
        #expect(w.isDrift(.neighbour(n, removed: true)))
        #expect(w.isDrift(.fdb(w.wanted.fdb.values.first!, removed: true)))
        let device = Link(index: 7, name: "nodenet.1", kind: "vxlan", mtu: 1450, mac: VTEPAddress.mac(for: IPAddress("192.168.1.11")!),
                          flags: 1, masterIndex: nil, parentIndex: nil, operState: 6, vxlan: nil)
        #expect(!w.isDrift(.link(device, removed: false)))
        var smaller = device
        smaller.mtu = 1400
        #expect(w.isDrift(.link(smaller, removed: false)))
        #expect(w.isDrift(.link(device, removed: true)))
        #expect(w.isDrift(.overrun))
        #expect(w.isDrift(.address(InterfaceAddress(index: 2, prefix: IPPrefix("192.168.1.11/24")!), removed: true)))
    }

    @Test func aFailedRouteVanishingIsNoNews() {
        var w = watch(.hostGW)
        let r = w.wanted.routes.values.first!
        w.believed.routes[r.destination] = nil
        #expect(!w.isDrift(.route(r, removed: true)))
    }
}

@Suite("status rows")
struct StatusRowTests {
    @Test func rowsPerPeer() {
        let c = config(.auto)
        let d = DesiredState.compute(configuration: c, topology: underlay, nodes: cluster + [node("bad", nil, ["10.244.5.0/24"])])
        let rows = PeerRouteStatus.rows(nodes: cluster + [node("bad", nil, ["10.244.5.0/24"])], configuration: c, desired: d,
                                        errors: ["node3": "boom"])
        #expect(rows.map(\.name) == ["bad", "node2", "node3"])
        #expect(rows[0].state == .refused && rows[0].message?.contains("InternalIP") == true && rows[0].mode == nil)
        #expect(rows[1].state == .inSync && rows[1].mode == "host-gw" && rows[1].nextHop == "192.168.1.12")
        #expect(rows[2].state == .error && rows[2].message == "boom" && rows[2].nextHop == "10.244.3.0 dev nodenet.1 onlink")
    }
}

@Suite("pod MTU")
struct PodMTUTests {
    /// The pods' MTU follows every path their packets may take: with `auto`, off-link peers go
    /// through the vxlan device, so pods get the overlay MTU as with `vxlan`; an IPv6 underlay
    /// costs 20 bytes more of outer header than an IPv4 one.
    @Test(arguments: [(RoutingMode.hostGW, IPFamily.v4, UInt32(1500)), (.vxlan, .v4, 1450), (.auto, .v4, 1450),
                      (.hostGW, .v6, 1500), (.vxlan, .v6, 1430), (.auto, .v6, 1430)])
    func podMTUMatchesTheVxlanDevice(routing: RoutingMode, family: IPFamily, expected: UInt32) {
        #expect(VTEPAddress.podMTU(underlayMTU: 1500, underlayFamily: family, routing: routing) == expected)
        if routing != .hostGW {
            #expect(VTEPAddress.podMTU(underlayMTU: 9000, underlayFamily: family, routing: routing)
                    == VTEPAddress.overlayMTU(underlayMTU: 9000, underlayFamily: family))
        }
    }
}

/// Issue 14 item 16: the routes actor subscribes to what drift detection reads, no more. In
/// host-gw mode no neighbour or FDB entry is nodenet's, so the node's ARP/NDP churn (the
/// busiest rtnetlink group) is not queued for it at all; with an overlay it is needed.
@Suite("event subscription")
struct EventSubscriptionTests {
    @Test func hostGWDoesNotSubscribeToNeighbours() {
        #expect(!NodeRoutesActor.groups(for: .hostGW).contains(.neighbours))
        #expect(NodeRoutesActor.groups(for: .hostGW).isSuperset(of: [.links, .addresses, .routes]))
        #expect(NodeRoutesActor.groups(for: .vxlan) == .all)
        #expect(NodeRoutesActor.groups(for: .auto) == .all)
    }
}

/// The routes status keeps its peer counters without building the per-peer rows on each change
/// (`PeerRowInputs.counts`); they must equal a recount of the rows in every situation: this
/// node present or not, refused peers, programmed peers with errors, errors of peers gone.
@Suite("status counters")
struct StatusCounterTests {
    @Test(arguments: [RoutingMode.hostGW, .vxlan, .auto])
    func countersEqualARecountOfTheRows(_ mode: RoutingMode) {
        var nodes: [String: Node] = [:]
        var rng = SystemRandomNumberGenerator()
        for step in 0..<400 {
            let i = Int.random(in: 1...60, using: &rng)
            let name = "node\(i)"
            switch Int.random(in: 0..<6, using: &rng) {
            case 0: nodes[name] = nil
            case 1: nodes[name] = node(name, nil, ["10.244.\(i).0/24"])                       // no address: refused
            case 2: nodes[name] = node(name, "192.168.9.\(i)", ["10.244.\(i).0/24"])          // off-link: refused in host-gw
            case 3: nodes[name] = node(name, "192.168.1.\(i + 20)", [])                       // no subnet: refused
            default: nodes[name] = node(name, "192.168.1.\(i + 20)", ["10.244.\(i).0/24"])
            }
            if step % 7 == 0 { nodes["node1"] = step % 14 == 0 ? cluster[0] : nil }        // this node comes and goes
            let c = config(mode)
            let desired = DesiredState.compute(configuration: c, topology: underlay, nodes: nodes.values)
            var errors: [String: String] = [:]
            for name in nodes.keys.sorted().prefix(3) { errors[name] = "boom" }
            errors["node-gone"] = "stale"
            errors["-"] = "unattributed"
            let inputs = PeerRowInputs(configuration: c, nodes: nodes, desired: desired, errors: errors)
            let rows = inputs.rows()
            let counts = inputs.counts
            #expect(counts.peers == rows.count, "step \(step)")
            #expect(counts.failing == rows.filter { $0.state != .inSync }.count, "step \(step)")
        }
    }
}

/// Issue 22 item 3: a dual-stack peer shows both families, each pod subnet with its next hop and
/// state, and an IPv6 subnet of a peer without an IPv6 address is refused on its own.
@Suite("dual-stack status rows")
struct DualStackStatusTests {
    @Test func eachFamilyHasItsRouteRow() {
        let two = Node(metadata: ObjectMeta(name: "node2"), podCIDRs: [IPPrefix("10.244.2.0/24")!, IPPrefix("fd00:10:244:2::/64")!],
                       addresses: [NodeAddress(type: "InternalIP", address: "192.168.1.12"), NodeAddress(type: "InternalIP", address: "fd00:1::12")])
        let three = node("node3", "192.168.1.13", ["10.244.3.0/24", "fd00:10:244:3::/64"])
        let c = NodeRoutesConfiguration(nodeName: "node1", nodeIP: IPAddress("192.168.1.11")!,
                                        podCIDRs: [IPPrefix("10.244.1.0/24")!, IPPrefix("fd00:10:244:1::/64")!],
                                        clusterCIDRs: [IPPrefix("10.244.0.0/16")!, IPPrefix("fd00:10:244::/56")!], mode: .hostGW)
        let desired = DesiredState.compute(configuration: c, topology: underlay, nodes: [cluster[0], two, three])
        let rows = PeerRowInputs(configuration: c, nodes: ["node1": cluster[0], "node2": two, "node3": three], desired: desired, errors: [:]).rows()
        let r2 = rows.first { $0.name == "node2" }, r3 = rows.first { $0.name == "node3" }
        #expect(r2?.nodeIPs == ["192.168.1.12", "fd00:1::12"])
        #expect(r2?.routes == [.init(subnet: "10.244.2.0/24", nextHop: "192.168.1.12", state: .inSync),
                               .init(subnet: "fd00:10:244:2::/64", nextHop: "fd00:1::12", state: .inSync)])
        #expect(r3?.routes == [.init(subnet: "10.244.3.0/24", nextHop: "192.168.1.13", state: .inSync),
                               .init(subnet: "fd00:10:244:3::/64", nextHop: nil, state: .refused)])
        #expect(r3?.message?.contains("no InternalIP") == true, "\(String(describing: r3))")
    }
}
