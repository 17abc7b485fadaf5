// Privileged: NodeRoutesActor inside a node namespace of its own against a ClusterStore:
// routes appear, deleted entries come back (timed), removed peers lose their routes, stale
// nodenet routes go while foreign ones stay, a restart changes nothing, vxlan entries are
// installed in order and the device is re-created, masquerade is present once.
import ClusterState
import Foundation
import Synchronization
import IPAddressing
import Logging
import Netlink
import NodenetTestSupport
import Testing
@testable import NodeRoutes

let peers = [makeNode("node1", "192.168.1.11", "10.244.1.0/24"), makeNode("node2", "192.168.1.12", "10.244.2.0/24"),
             makeNode("node3", "192.168.1.13", "10.244.3.0/24")]

func nodeConfig(_ ns: TestNamespace, mode: RoutingMode, ip: String = "192.168.1.11", cidr: String = "10.244.1.0/24",
                name: String = "node1") throws -> NodeRoutesConfiguration {
    NodeRoutesConfiguration(nodeName: name, nodeIP: IPAddress(ip)!, podCIDRs: [IPPrefix(cidr)!],
                            clusterCIDRs: [IPPrefix("10.244.0.0/16")!], mode: mode, namespace: try NetworkNamespace(path: ns.path))
}

@Suite("NodeRoutesActor in a namespace (root)", .enabled(if: isRoot), .serialized)
struct PrivilegedActorTests {
    @Test func hostGWRoutesRepairRemovalStaleAndRestart() async throws {
        let ns = try standaloneNode("hg", address: "192.168.1.11/24")
        defer { ns.delete() }
        // Left from an earlier life: a stale nodenet route and a foreign one.
        try Shell.check(["ip", "-n", ns.name, "route", "add", "10.244.9.0/24", "via", "192.168.1.99", "proto", "78"])
        try Shell.check(["ip", "-n", ns.name, "route", "add", "10.244.8.0/24", "via", "192.168.1.98", "proto", "static"])
        let s = await store(peers)
        let client = try RouteClient(namespace: NetworkNamespace(path: ns.path))
        var running = try await RunningActor(try nodeConfig(ns, mode: .hostGW), store: s)

        var routes = try nodenetRoutes(client)
        #expect(Set(routes.keys) == [IPPrefix("10.244.2.0/24")!, IPPrefix("10.244.3.0/24")!])
        #expect(routes[IPPrefix("10.244.2.0/24")!]?.gateway == IPAddress("192.168.1.12"))
        #expect(sh("ip -n \(ns.name) route show 10.244.8.0/24").contains("via 192.168.1.98"), "foreign route left alone")
        #expect(sh("ip netns exec \(ns.name) sysctl -n net.ipv4.ip_forward").hasPrefix("1"))
        var status = running.actor.status
        #expect(status.peers.map(\.state) == [.inSync, .inSync])
        #expect(status.peers.first?.nextHop == "192.168.1.12")

        // Deleted behind the agent's back: back within milliseconds.
        var repairs: [Double] = []
        for _ in 0..<5 {
            try Shell.check(["ip", "-n", ns.name, "route", "del", "10.244.2.0/24"])
            let took = try await waitFor("route repair") { try nodenetRoutes(client)[IPPrefix("10.244.2.0/24")!] != nil }
            repairs.append(ms(took))
        }
        print("host-gw route repair after `ip route del` (ms, includes the ip process exit and 1 ms polling):", repairs)
        #expect(repairs.sorted()[2] < 500)
        #expect(running.actor.status.repairs >= 5)

        // The underlay going down flushes the routes (silently); up again, they come back.
        try Shell.check(["ip", "-n", ns.name, "link", "set", "eth0", "down"])
        try await waitFor("routes flushed by link down") { try nodenetRoutes(client).isEmpty }
        try Shell.check(["ip", "-n", ns.name, "link", "set", "eth0", "up"])
        let back = try await waitFor("routes back after link up") { try nodenetRoutes(client).count == 2 }
        print("routes back \(ms(back)) ms after the underlay came up")

        // Altered behind its back (another gateway, still proto 78): put back.
        try Shell.check(["ip", "-n", ns.name, "route", "replace", "10.244.3.0/24", "via", "192.168.1.77", "proto", "78"])
        try await waitFor("altered route restored") { try nodenetRoutes(client)[IPPrefix("10.244.3.0/24")!]?.gateway == IPAddress("192.168.1.13") }

        // Peer removed from the store: its route goes.
        await s.apply([.delete(ObjectKey(.node, name: "node3"))])
        try await waitFor("route of removed peer deleted") { try nodenetRoutes(client)[IPPrefix("10.244.3.0/24")!] == nil }
        // A changed peer (new address): route replaced.
        await s.apply([.upsert(.node(makeNode("node2", "192.168.1.22", "10.244.2.0/24")))])
        try await waitFor("changed peer's route") { try nodenetRoutes(client)[IPPrefix("10.244.2.0/24")!]?.gateway == IPAddress("192.168.1.22") }

        // Masquerade present once.
        let table = sh("ip netns exec \(ns.name) nft -j list table ip nodenet")
        #expect(table.contains("\"pod-egress\""))
        #expect(table.components(separatedBy: "\"masquerade\"").count == 2)

        // Restart: nothing deleted or re-added.
        await running.stop()
        let monitor = try NetlinkMonitor(namespace: NetworkNamespace(path: ns.path), groups: [.routes, .links, .neighbours])
        let collected = EventLog()
        let reader = Task { for await e in monitor.events { collected.append(e) } }
        routes = try nodenetRoutes(client)
        running = try await RunningActor(try nodeConfig(ns, mode: .hostGW), store: s)
        try await Task.sleep(for: .milliseconds(300))
        monitor.stop()
        reader.cancel()
        let touched = collected.events.filter { if case .route(let r, _) = $0 { r.destination.description.hasPrefix("10.244.") } else { false } }
        #expect(touched.isEmpty, "restart changed routes: \(touched)")
        #expect(try nodenetRoutes(client) == routes)
        #expect(sh("ip netns exec \(ns.name) nft -j list table ip nodenet").components(separatedBy: "\"masquerade\"").count == 2,
                "masquerade rule not duplicated on restart")
        status = running.actor.status
        #expect(status.repairs == 0)
        await running.stop()
        // Cancellation left the dataplane in place.
        #expect(try nodenetRoutes(client).count == 1)
    }

    @Test func nothingRemovedBeforeTheStoreSynced() async throws {
        let ns = try standaloneNode("sync", address: "192.168.1.11/24")
        defer { ns.delete() }
        try Shell.check(["ip", "-n", ns.name, "route", "add", "10.244.9.0/24", "via", "192.168.1.99", "proto", "78"])
        let s = ClusterStore()  // a source still listing: not synced, only some Nodes so far
        await s.apply([.upsert(.node(peers[0])), .upsert(.node(peers[1]))])
        let client = try RouteClient(namespace: NetworkNamespace(path: ns.path))
        let running = try await RunningActor(try nodeConfig(ns, mode: .hostGW), store: s)
        #expect(Set(try nodenetRoutes(client).keys) == [IPPrefix("10.244.2.0/24")!, IPPrefix("10.244.9.0/24")!])
        await s.markSynced()
        try await waitFor("stale route removed once synced") { try nodenetRoutes(client)[IPPrefix("10.244.9.0/24")!] == nil }
        #expect(Set(try nodenetRoutes(client).keys) == [IPPrefix("10.244.2.0/24")!])
        await running.stop()
    }

    @Test func foreignRouteOnAPeerSubnetIsReportedNotReplaced() async throws {
        let ns = try standaloneNode("foreign", address: "192.168.1.11/24")
        defer { ns.delete() }
        try Shell.check(["ip", "-n", ns.name, "route", "add", "10.244.3.0/24", "via", "192.168.1.98", "proto", "static"])
        let running = try await RunningActor(try nodeConfig(ns, mode: .hostGW), store: await store(peers))
        let node3 = running.actor.status.peers.first { $0.name == "node3" }
        #expect(node3?.state == .error)
        #expect(node3?.message?.contains("does not own") == true, "\(String(describing: node3))")
        #expect(running.actor.status.peers.first { $0.name == "node2" }?.state == .inSync)
        #expect(sh("ip -n \(ns.name) route show 10.244.3.0/24").contains("via 192.168.1.98 dev eth0 proto static"))
        await running.stop()
    }

    @Test func autoServesHostGWPeersWhenTheVxlanDeviceCannotBeMade() async throws {
        let ns = try standaloneNode("novx", address: "192.168.1.11/24")
        defer { ns.delete() }
        // Someone else's device already uses VNI 1 on port 8472: the kernel refuses ours.
        try Shell.check(["ip", "-n", ns.name, "link", "add", "other", "type", "vxlan", "id", "1", "dstport", "8472",
                         "local", "192.168.1.11", "dev", "eth0"])
        let s = await store([peers[0], peers[1], makeNode("node3", "192.168.2.13", "10.244.3.0/24")])
        let running = try await RunningActor(try nodeConfig(ns, mode: .auto), store: s)
        let status = running.actor.status
        #expect(status.errors.contains { $0.contains("vxlan device nodenet.1") }, "\(status.errors)")
        #expect(status.peers.first { $0.name == "node2" }?.state == .inSync)
        #expect(status.peers.first { $0.name == "node3" }?.message?.contains("vxlan device") == true)
        #expect(sh("ip -n \(ns.name) -d link show other").contains("vxlan id 1"), "the other device is left alone")
        await running.stop()
    }

    @Test func hostGWRefusesOffLinkPeerAndServesTheRest() async throws {
        let ns = try standaloneNode("off", address: "192.168.1.11/24")
        defer { ns.delete() }
        let s = await store(peers + [makeNode("far", "192.168.2.20", "10.244.20.0/24"),
                                     Node(metadata: ObjectMeta(name: "noip"), podCIDRs: [IPPrefix("10.244.21.0/24")!], addresses: [])])
        let calls = Mutex<[NodeRoutesStatus]>([])
        let actor = NodeRoutesActor(configuration: try nodeConfig(ns, mode: .hostGW), store: s, logger: Logger(label: "test"),
                                    onReconciled: { status in calls.withLock { $0.append(status) } })
        let task = Task { try await actor.run() }
        await actor.waitUntilReconciled()
        let status = actor.status
        #expect(calls.withLock { $0.first } == status, "onReconciled gets the status after the first full reconcile")
        let far = status.peers.first { $0.name == "far" }
        #expect(far?.state == .refused)
        #expect(far?.message?.contains("not on-link") == true)
        #expect(status.peers.first { $0.name == "noip" }?.message?.contains("InternalIP") == true)
        #expect(status.peers.filter { $0.state == .inSync }.count == 2)
        #expect(status.summary == "routes: host-gw, 2/4 peers in sync, 0 repairs")
        task.cancel()
        _ = try? await task.value
    }

    @Test func vxlanEntriesInOrderAndDeviceRecreated() async throws {
        let ns = try standaloneNode("vx", address: "192.168.1.11/24")
        defer { ns.delete() }
        let handle = try NetworkNamespace(path: ns.path)
        let client = try RouteClient(namespace: handle)
        let monitor = try NetlinkMonitor(namespace: handle, groups: [.routes, .neighbours])
        let log = EventLog()
        let reader = Task { for await e in monitor.events { log.append(e) } }
        defer { monitor.stop(); reader.cancel() }
        let s = await store([peers[0], makeNode("node2", "192.168.2.12", "10.244.2.0/24")])
        let running = try await RunningActor(try nodeConfig(ns, mode: .vxlan), store: s)

        let dev = try #require(try client.link(named: "nodenet.1"))
        #expect(dev.mtu == 1450 && dev.isUp && dev.vxlan?.vni == 1 && dev.vxlan?.learning == false)
        #expect(dev.mac == VTEPAddress.mac(for: IPAddress("192.168.1.11")!))
        #expect(sh("ip -n \(ns.name) -4 addr show dev nodenet.1").contains("10.244.1.0/32"))
        let mac = VTEPAddress.mac(for: IPAddress("192.168.2.12")!)
        func entries() throws -> (Bool, Bool, Bool) {
            guard let d = try client.link(named: "nodenet.1") else { return (false, false, false) }
            let n = try client.neighbours(index: d.index).contains { $0.address == IPAddress("10.244.2.0") && $0.mac == mac && $0.state == Neighbour.permanent }
            let f = try client.fdbEntries(index: d.index).contains { $0.mac == mac && $0.destination == IPAddress("192.168.2.12") }
            let r = try nodenetRoutes(client)[IPPrefix("10.244.2.0/24")!].map { $0.gateway == IPAddress("10.244.2.0") && $0.outputIndex == d.index } ?? false
            return (n, f, r)
        }
        #expect(try entries() == (true, true, true))
        #expect(sh("ip -n \(ns.name) route show 10.244.2.0/24").contains("onlink"))
        try await Task.sleep(for: .milliseconds(50))
        let order = log.events.compactMap { e -> String? in
            switch e {
            case .neighbour(let n, false) where n.address == IPAddress("10.244.2.0"): "neighbour"
            case .fdb(let f, false) where f.mac == mac: "fdb"
            case .route(let r, false) where r.destination == IPPrefix("10.244.2.0/24"): "route"
            default: nil
            }
        }
        #expect(order.first.map { $0 != "route" } == true && order.contains("route") && order.last == "route", "order: \(order)")

        // Neighbour and FDB deleted behind its back: restored.
        try Shell.check(["ip", "-n", ns.name, "neigh", "del", "10.244.2.0", "dev", "nodenet.1"])
        try await waitFor("neighbour restored") { try entries().0 }
        try Shell.check(["bridge", "-n", ns.name, "fdb", "del", mac.description, "dev", "nodenet.1", "dst", "192.168.2.12"])
        try await waitFor("fdb restored") { try entries().1 }

        // The device altered (MTU): put back.
        try Shell.check(["ip", "-n", ns.name, "link", "set", "nodenet.1", "mtu", "1400"])
        try await waitFor("vxlan MTU restored") { try client.link(named: "nodenet.1")?.mtu == 1450 }

        // The device deleted: re-created with every entry.
        try Shell.check(["ip", "-n", ns.name, "link", "del", "nodenet.1"])
        let took = try await waitFor("vxlan device and entries re-created") { try entries() == (true, true, true) }
        print("vxlan device re-created with its entries in \(ms(took)) ms")

        // Restart: the device and its entries are kept as they are (no link, neighbour or route churn).
        #expect(running.actor.status.repairs >= 3)
        await running.stop()
        let restartLog = EventLog()
        let restartMonitor = try NetlinkMonitor(namespace: handle, groups: .all)
        let restartReader = Task { for await e in restartMonitor.events { restartLog.append(e) } }
        let indexBefore = try client.link(named: "nodenet.1")?.index
        let restarted = try await RunningActor(try nodeConfig(ns, mode: .vxlan), store: s)
        try await Task.sleep(for: .milliseconds(300))
        restartMonitor.stop()
        restartReader.cancel()
        #expect(restartLog.events.isEmpty, "restart changed the kernel: \(restartLog.events)")
        #expect(try client.link(named: "nodenet.1")?.index == indexBefore)
        #expect(restarted.actor.status.repairs == 0)

        // Entries of a node removed while the agent was down: gone after the next start,
        // while the live peer's entries stay untouched.
        await restarted.stop()
        let ghost = VTEPAddress.mac(for: IPAddress("192.168.2.66")!).description
        try Shell.check(["ip", "-n", ns.name, "neigh", "add", "10.244.66.0", "lladdr", ghost, "dev", "nodenet.1", "nud", "permanent"])
        try Shell.check(["bridge", "-n", ns.name, "fdb", "add", ghost, "dev", "nodenet.1", "dst", "192.168.2.66", "self", "permanent"])
        try Shell.check(["ip", "-n", ns.name, "route", "add", "10.244.66.0/24", "via", "10.244.66.0", "dev", "nodenet.1", "onlink", "proto", "78"])
        let third = try await RunningActor(try nodeConfig(ns, mode: .vxlan), store: s)
        #expect(!sh("ip -n \(ns.name) neigh show dev nodenet.1").contains("10.244.66.0"))
        #expect(!sh("bridge -n \(ns.name) fdb show dev nodenet.1").contains(ghost))
        #expect(try nodenetRoutes(client)[IPPrefix("10.244.66.0/24")!] == nil)
        #expect(try entries() == (true, true, true))

        // The node's own subnet changes: the device's address follows.
        await third.actor.updatePodCIDRs([IPPrefix("10.244.11.0/24")!])
        try await waitFor("device address follows the new subnet") {
            let a = sh("ip -n \(ns.name) -4 addr show dev nodenet.1")
            return a.contains("10.244.11.0/32") && !a.contains("10.244.1.0/32")
        }

        // Peer removed: route, FDB and neighbour go.
        await s.apply([.delete(ObjectKey(.node, name: "node2"))])
        try await waitFor("vxlan peer removed") { try entries() == (false, false, false) }
        await third.stop()
    }
}

/// Collects events from a reader task.
final class EventLog: Sendable {
    private let state = Mutex<[NetlinkEvent]>([])
    func append(_ e: NetlinkEvent) { state.withLock { $0.append(e) } }
    var events: [NetlinkEvent] { state.withLock { $0 } }
}

@Suite("masquerade rules (root)", .enabled(if: isRoot), .serialized)
struct PrivilegedMasqueradeTests {
    /// The expression lines `nft --debug=netlink` prints for the rules of a chain.
    func expressions(_ ns: TestNamespace, _ family: String, _ table: String, _ chain: String) -> [String] {
        sh("ip netns exec \(ns.name) nft --debug=netlink list chain \(family) \(table) \(chain)")
            .split(separator: "\n").map { $0.trimmingCharacters(in: .whitespaces) }.filter { $0.hasPrefix("[ ") }
    }

    @Test func encodedLikeNftAndDualStack() async throws {
        let ns = try standaloneNode("masq", address: "192.168.1.11/24")
        defer { ns.delete() }
        var c = try nodeConfig(ns, mode: .hostGW)
        c.clusterCIDRs += [IPPrefix("172.16.0.0/12")!, IPPrefix("fd00:244::/56")!]
        let running = try await RunningActor(c, store: await store([]))
        await running.stop()

        #expect(sh("ip netns exec \(ns.name) nft list chain ip nodenet pod-egress").contains(
            "ip saddr 10.244.0.0/16 ip daddr != 10.244.0.0/16 ip daddr != 172.16.0.0/12 masquerade comment \"nodenet pod-egress 10.244.0.0/16\""))
        #expect(sh("ip netns exec \(ns.name) nft list chain ip nodenet pod-egress").contains("type nat hook postrouting priority srcnat; policy accept;"))
        #expect(sh("ip netns exec \(ns.name) nft list chain ip6 nodenet pod-egress").contains(
            "ip6 saddr fd00:244::/56 ip6 daddr != fd00:244::/56 masquerade"))
        #expect(sh("ip netns exec \(ns.name) sysctl -n net.ipv6.conf.all.forwarding").hasPrefix("1"))

        // The oracle: nft encodes the same rule text the same way.
        let script = """
        add table ip oracle
        add chain ip oracle c { type nat hook postrouting priority srcnat; }
        add rule ip oracle c ip saddr 10.244.0.0/16 ip daddr != 10.244.0.0/16 ip daddr != 172.16.0.0/12 masquerade
        add rule ip oracle c ip saddr 172.16.0.0/12 ip daddr != 10.244.0.0/16 ip daddr != 172.16.0.0/12 masquerade
        add table ip6 oracle
        add chain ip6 oracle c { type nat hook postrouting priority srcnat; }
        add rule ip6 oracle c ip6 saddr fd00:244::/56 ip6 daddr != fd00:244::/56 masquerade

        """
        try ns.check(["nft", "-f", "-"], stdin: script)
        let ours4 = expressions(ns, "ip", "nodenet", "pod-egress"), nft4 = expressions(ns, "ip", "oracle", "c")
        #expect(!ours4.isEmpty && ours4 == nft4, "ours \(ours4) nft \(nft4)")
        let ours6 = expressions(ns, "ip6", "nodenet", "pod-egress"), nft6 = expressions(ns, "ip6", "oracle", "c")
        #expect(!ours6.isEmpty && ours6 == nft6, "ours \(ours6) nft \(nft6)")

        // Other chains in the table are never touched; a duplicate of our rule is removed.
        try ns.check(["nft", "add", "chain", "ip", "nodenet", "services"])
        try ns.check(["nft", "add", "rule", "ip", "nodenet", "services", "counter"])
        try ns.check(["nft", "add", "rule", "ip", "nodenet", "pod-egress", "ip", "saddr", "10.244.0.0/16", "masquerade",
                      "comment", "\"nodenet pod-egress 10.244.0.0/16\""])
        let again = try await RunningActor(c, store: await store([]))
        await again.stop()
        #expect(sh("ip netns exec \(ns.name) nft list chain ip nodenet pod-egress").components(separatedBy: "masquerade").count == 3)
        #expect(sh("ip netns exec \(ns.name) nft list chain ip nodenet services").contains("counter"))
    }
}

/// Issue 14 item 15: the vxlan device's addresses are nodenet's kernel objects like its routes.
@Suite("vxlan device addresses (root)", .enabled(if: isRoot), .serialized)
struct VxlanAddressTests {
    /// An address removed behind nodenet's back is put back at once (event-driven: the device's
    /// address events are drift); one that cannot be added is an error in status, retried, and
    /// clears once it can. Without the fix the address error was swallowed (status in sync)
    /// and a deleted address stayed away until the next periodic pass.
    @Test func addressesAreRepairedAndTheirErrorsReported() async throws {
        let ns = try standaloneNode("vxa", address: "192.168.1.11/24")
        defer { ns.delete() }
        let handle = try NetworkNamespace(path: ns.path)
        let client = try RouteClient(namespace: handle)
        var config = try nodeConfig(ns, mode: .vxlan)
        config.podCIDRs = [IPPrefix("10.244.1.0/24")!, IPPrefix("fd00:10:244:1::/64")!]
        config.clusterCIDRs = [IPPrefix("10.244.0.0/16")!, IPPrefix("fd00:10:244::/56")!]
        let s = await store([peers[0], makeNode("node2", "192.168.2.12", "10.244.2.0/24")])
        let running = try await RunningActor(config, store: s)
        defer { Task { await running.stop() } }
        func addresses() throws -> Set<IPPrefix> {
            guard let d = try client.link(named: "nodenet.1") else { return [] }
            return Set(try client.addresses(index: d.index).map(\.prefix))
        }
        let v4 = IPPrefix("10.244.1.0/32")!, v6 = IPPrefix("fd00:10:244:1::/128")!
        try await waitFor("both addresses on the device") { try addresses().isSuperset(of: [v4, v6]) }
        #expect(running.actor.status.errors.isEmpty)

        // Deleted behind its back: back within the drift bound (the periodic pass is minutes away).
        try Shell.check(["ip", "-n", ns.name, "addr", "del", "10.244.1.0/32", "dev", "nodenet.1"])
        try await waitFor("the IPv4 address restored", limit: .seconds(3)) { try addresses().contains(v4) }

        // IPv6 turned off on the device: its address cannot be added; status says so.
        try Shell.check(["ip", "netns", "exec", ns.name, "sysctl", "-qw", "net.ipv6.conf.nodenet/1.disable_ipv6=1"])
        try await waitFor("the address error in status", limit: .seconds(5)) {
            running.actor.status.errors.contains { $0.contains("address fd00:10:244:1::/128: cannot add") }
        }
        // And once it can be added again, it is, and the error clears.
        try Shell.check(["ip", "netns", "exec", ns.name, "sysctl", "-qw", "net.ipv6.conf.nodenet/1.disable_ipv6=0"])
        try await waitFor("the IPv6 address back and the error gone", limit: .seconds(10)) {
            try addresses().contains(v6) && running.actor.status.errors.isEmpty
        }
    }
}
