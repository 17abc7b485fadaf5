// Privileged: routes in batches, neighbours and FDB, events, dump retry, nfnetlink
// transactions, each inside a namespace the test creates and deletes.
import Glibc
import Synchronization
import IPAddressing
import Testing
@testable import Netlink

/// A namespace with a veth pair u0/u1 up, 192.168.0.2/16 on u0: next hops 192.168.x.y are on-link.
func withRoutedNamespace<T>(_ tag: String, _ body: (NetworkNamespace, String, RouteClient, Link) throws -> T) throws -> T {
    try withTestNamespace(tag) { ns, name in
        let client = try RouteClient(namespace: ns)
        let u0 = try client.createVeth(name: "u0", peerName: "u1")
        try client.setLink(named: "u1", LinkChange(up: true))
        try client.setLink(index: u0.index, LinkChange(up: true))
        try client.addAddress(InterfaceAddress(index: u0.index, prefix: IPPrefix("192.168.0.2/16")!))
        return try body(ns, name, client, u0)
    }
}

func peerRoutes(_ count: Int, via link: Link, table: UInt32 = Route.mainTable) -> [Route] {
    (0..<count).map { i -> Route in
        let dst = IPv4Address(10, UInt8(100 + i / 256), UInt8(i % 256), 0)
        let gw = IPv4Address(192, 168, UInt8(1 + i / 250), UInt8(1 + i % 250))
        return Route(destination: IPPrefix(address: .v4(dst), length: 24), gateway: .v4(gw), outputIndex: link.index, table: table)
    }
}

@Suite("routes, neighbours, events (root)", .enabled(if: isRoot))
struct PrivilegedRouteTests {
    @Test(arguments: [true, false])
    func thousandRoutesInOneBatchReadBackReplaceDelete(nexthopObjects: Bool) throws {
        try withRoutedNamespace("rt") { ns, name, _, u0 in
            let client = try RouteClient(namespace: ns, useNexthopObjects: nexthopObjects)
            let routes = peerRoutes(1000, via: u0)
            let added = try client.apply(routes.map(RouteChange.add))
            #expect(added.succeeded, "\(added.failures.values.first.map(String.init(describing:)) ?? "")")
            let read = try client.routes(protocol: RouteProtocol.nodenet)
            #expect(read.count == 1000)
            #expect(Set(read) == Set(routes))
            #expect(shell("ip -n \(name) route show proto 78 | wc -l").output.hasPrefix("1000"))
            // Through nexthop objects: one per gateway, owned by nodenet.
            #expect(try client.nexthops().filter { $0.protocol == RouteProtocol.nodenet }.count == (nexthopObjects ? 1000 : 0))
            #expect(shell("ip -n \(name) route show 10.100.0.0/24").output.contains("nhid") == nexthopObjects)
            // Other protocols are not returned: the kernel's own connected route is proto kernel.
            #expect(try client.routes(protocol: RouteProtocol.kernel).map(\.destination) == [IPPrefix("192.168.0.0/16")!])

            // Replace with unchanged content succeeds; replace with a new gateway changes it.
            #expect(try client.apply(routes.map(RouteChange.replace)).succeeded)
            var moved = routes[0]
            moved.gateway = IPAddress("192.168.200.200")
            try client.replaceRoute(moved)
            #expect(try client.routes(protocol: RouteProtocol.nodenet).first { $0.destination == moved.destination }?.gateway == moved.gateway)

            // Errors map back to the change that caused them; the rest still applies.
            var changes = routes[1..<5].map(RouteChange.delete)
            changes.insert(.add(routes[10]), at: 2)  // exists: EEXIST
            changes.append(.delete(Route(destination: IPPrefix("10.250.0.0/24")!)))  // missing: ESRCH
            let result = try client.apply(changes)
            #expect(Set(result.failures.keys) == [2, 5])
            #expect(result.failures[2]?.errnoName == "EEXIST")
            #expect(result.failures[2]?.description.contains(routes[10].destination.description) == true)
            #expect(result.failures[5]?.errnoName == "ESRCH")
            #expect(try client.routes(protocol: RouteProtocol.nodenet).count == 996)

            #expect(try client.apply(([moved] + routes.dropFirst()).map(RouteChange.delete)).failures.count == 4)  // four already gone
            #expect(try client.routes(protocol: RouteProtocol.nodenet).isEmpty)
            #expect(try client.nexthops().isEmpty, "unused nexthop objects are pruned")
        }
    }

    /// The client remembers its nexthop objects between applies; when one is deleted behind its
    /// back (as the kernel does with its device, or an operator with `ip nexthop del`), the next
    /// route through that gateway still lands: the batch fails, the memory is dropped and the
    /// route is applied again over a fresh nexthop.
    @Test func aNexthopDeletedBehindTheClientIsRecreated() throws {
        try withRoutedNamespace("nh") { ns, name, _, u0 in
            let client = try RouteClient(namespace: ns)
            let routes = peerRoutes(3, via: u0)
            #expect(try client.apply([.add(routes[0])]).succeeded)
            let id = try #require(try client.nexthops().first { $0.gateway == routes[0].gateway }?.id)
            #expect(shell("ip -n \(name) nexthop del id \(id)").status == 0)  // takes routes[0] with it
            var again = routes[1]
            again.gateway = routes[0].gateway
            let r = try client.apply([.add(again), .add(routes[0])])
            #expect(r.succeeded, "\(r.failures)")
            #expect(Set(try client.routes(protocol: RouteProtocol.nodenet)) == Set([again, routes[0]]))
        }
    }

    /// Installs the protocol name where iproute2 looks and checks `ip route` shows it. The
    /// file is removed afterwards unless it existed before the test.
    @Test func routeProtocolNameIsShownByIproute2() throws {
        let path = RouteProtocol.defaultDirectory + "/nodenet.conf"
        let existed = access(path, F_OK) == 0
        let directoryExisted = access(RouteProtocol.defaultDirectory, F_OK) == 0
        defer {
            if !existed { unlink(path) }
            if !directoryExisted { rmdir(RouteProtocol.defaultDirectory) }
        }
        #expect(try RouteProtocol.installName() == !existed)
        try withRoutedNamespace("proto") { _, name, client, u0 in
            try client.addRoute(Route(destination: IPPrefix("10.7.0.0/24")!, gateway: IPAddress("192.168.1.1"), outputIndex: u0.index))
            #expect(shell("ip -n \(name) route show 10.7.0.0/24").output.contains("proto nodenet"))
        }
    }

    @Test func routesInOtherTablesAndOnlinkAndIPv6() throws {
        try withRoutedNamespace("tbl") { _, name, client, u0 in
            let big = Route(destination: IPPrefix("10.1.0.0/24")!, gateway: IPAddress("192.168.1.1"), outputIndex: u0.index, table: 1000)
            let onlink = Route(destination: IPPrefix("10.2.0.0/24")!, gateway: IPAddress("10.2.0.0"), outputIndex: u0.index, onlink: true)
            let direct = Route(destination: IPPrefix("10.3.0.0/24")!, outputIndex: u0.index)
            let v6 = Route(destination: IPPrefix("fd00:1::/64")!, outputIndex: u0.index)
            #expect(try client.apply([.add(big), .add(onlink), .add(direct), .add(v6)]).succeeded)
            #expect(try client.routes(table: 1000) == [big])
            #expect(try client.routes(table: 77).isEmpty)  // a table that does not exist
            let main = try client.routes(protocol: RouteProtocol.nodenet)
            #expect(Set(main) == [onlink, direct])
            #expect(main.first { $0.onlink }?.destination == onlink.destination)
            #expect(shell("ip -n \(name) route show 10.2.0.0/24").output.contains("onlink"))
            // IPv6 routes read back equal (the kernel's default metric 1024 reads as unset).
            #expect(try client.routes(family: .v6, protocol: RouteProtocol.nodenet) == [v6])
            let gw6 = Route(destination: IPPrefix("fd00:2::/64")!, gateway: IPAddress("fd00:1::1"), outputIndex: u0.index, priority: 10)
            #expect(try client.apply([.replace(gw6)]).succeeded)
            #expect(try client.routes(family: .v6, protocol: RouteProtocol.nodenet).contains(gw6))
        }
    }

    @Test func neighbourAndFDBEntriesOnVxlan() throws {
        try withRoutedNamespace("vx") { _, name, client, u0 in
            let vx = try client.createVxlan(name: "nodenet.1", settings: VxlanSettings(vni: 1, local: IPAddress("192.168.0.2"), underlayIndex: u0.index))
            try client.setLink(index: vx.index, LinkChange(up: true))
            let mac = MACAddress("0a:58:0a:f4:02:00")!
            let arp = Neighbour(index: vx.index, address: IPAddress("10.244.2.0")!, mac: mac)
            let fdb = FDBEntry(index: vx.index, mac: mac, destination: IPAddress("192.168.1.12"))
            #expect(try client.apply(neighbours: [arp], fdb: [fdb]).succeeded)
            try client.setNeighbour(arp)  // replace is idempotent
            #expect(try client.neighbours(index: vx.index) == [arp])
            #expect(try client.fdbEntries(index: vx.index).contains(fdb))
            #expect(shell("bridge -n \(name) fdb show dev nodenet.1").output.contains("0a:58:0a:f4:02:00 dst 192.168.1.12 self permanent"))
            #expect(shell("ip -n \(name) neigh show dev nodenet.1").output.contains("10.244.2.0 lladdr 0a:58:0a:f4:02:00 PERMANENT"))
            try client.deleteFDB(fdb)
            try client.deleteNeighbour(arp)
            #expect(try client.neighbours(index: vx.index).isEmpty)
            #expect(!(try client.fdbEntries(index: vx.index).contains(fdb)))
        }
    }

    @Test func routeDeletedBehindOurBackIsSeenAsAnEvent() async throws {
        try await withTestNamespace("ev") { ns, name in
            let client = try RouteClient(namespace: ns)
            let br = try client.createBridge(name: "br0")
            try client.setLink(index: br.index, LinkChange(up: true))
            let route = Route(destination: IPPrefix("10.244.7.0/24")!, outputIndex: br.index)
            let monitor = try NetlinkMonitor(namespace: ns)
            try client.addRoute(route)
            #expect(shell("ip -n \(name) route del 10.244.7.0/24").status == 0)
            // Bounded in events (at most 50) and in time (10 s: a CI run once hung here waiting
            // for an event that never came; now that is a failure naming what was seen).
            let events = monitor.events
            let outcome = await withTaskGroup(of: (add: Bool, delete: Bool, seen: [String])?.self) { group in
                group.addTask {
                    var sawAdd = false, sawDelete = false, seen: [String] = []
                    for await event in events {
                        seen.append("\(event)")
                        if case .route(let r, let removed) = event, r.destination == route.destination {
                            if removed { sawDelete = true } else { sawAdd = true }
                        }
                        if sawDelete || seen.count > 50 { break }
                    }
                    return (sawAdd, sawDelete, seen)
                }
                group.addTask {
                    try? await Task.sleep(for: .seconds(10))
                    return nil
                }
                let first = await group.next() ?? nil
                group.cancelAll()
                return first
            }
            withExtendedLifetime(monitor) {}
            #expect(outcome != nil, "no route events within 10 s")
            #expect(outcome?.add == true, "\(outcome?.seen ?? [])")
            #expect(outcome?.delete == true, "\(outcome?.seen ?? [])")
        }
    }

    @Test func lostEventsAreReportedAsOverrun() async throws {
        try await withTestNamespace("ovr") { ns, _ in
            let client = try RouteClient(namespace: ns)
            let br = try client.createBridge(name: "br0")
            try client.setLink(index: br.index, LinkChange(up: true))
            // A subscribed socket with a tiny receive buffer that nobody reads during a burst of
            // 2,000 route events: the kernel drops events and flags ENOBUFS. The monitor starts
            // reading afterwards, so the overflow happens whatever the scheduling.
            let socket = try ns.performSync {
                try NetlinkSocket(protocol: Netlink.route, groups: NetlinkMonitor.groupNumbers(.routes), timeoutSeconds: 0, receiveBuffer: 1)
            }
            let routes = (0..<2000).map { i in
                Route(destination: IPPrefix(address: .v4(IPv4Address(10, 50 + UInt8(i / 256), UInt8(i % 256), 0)), length: 24), outputIndex: br.index)
            }
            #expect(try client.apply(routes.map(RouteChange.add)).succeeded)
            let monitor = try NetlinkMonitor(socket: socket)
            var overrun = false
            var seen = 0
            for await event in monitor.events {
                seen += 1
                if event == .overrun { overrun = true; break }
                if seen >= 2000 { break }
            }
            #expect(overrun, "saw \(seen) events without an overrun")
            monitor.stop()
        }
    }

    /// Issue 14 item 16: a subscriber that falls behind holds at most `queueLimit` events; the
    /// rest become one `.overrun` after them (then newer events flow again). Without the bound
    /// all 500 events were queued (memory grew with the event rate) and no overrun was seen.
    @Test func aSlowSubscriberGetsABoundedQueueAndAnOverrun() async throws {
        try await withTestNamespace("bq") { ns, _ in
            let client = try RouteClient(namespace: ns)
            let br = try client.createBridge(name: "br0")
            try client.setLink(index: br.index, LinkChange(up: true))
            let monitor = try NetlinkMonitor(namespace: ns, groups: .routes, queueLimit: 64)
            let routes = (0..<500).map { i in
                Route(destination: IPPrefix(address: .v4(IPv4Address(10, 60 + UInt8(i / 256), UInt8(i % 256), 0)), length: 24), outputIndex: br.index)
            }
            #expect(try client.apply(routes.map(RouteChange.add)).succeeded)
            // Nobody reads until the reader thread has seen the whole burst: 64 queued, the rest dropped.
            let deadline = ContinuousClock.now + .seconds(10)
            while monitor.droppedEvents < 500 - 64, ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(20)) }
            #expect(monitor.droppedEvents == 500 - 64)
            // Read what was queued, up to the overrun; only then add a route, whose event must
            // follow (added earlier, it could meet the still full queue and be dropped as well:
            // the test raced and once hung). Bounded in time: a missing event fails, never hangs.
            var before = 0, overruns = 0, after: [NetlinkEvent] = []
            for await event in monitor.events {
                if event == .overrun { overruns += 1; break }
                before += 1
            }
            try client.addRoute(Route(destination: IPPrefix("10.99.0.0/24")!, outputIndex: br.index))
            let events = monitor.events
            let next = await withTaskGroup(of: NetlinkEvent?.self) { group in
                group.addTask {
                    for await event in events { return event }
                    return nil
                }
                group.addTask { try? await Task.sleep(for: .seconds(10)); return nil }
                let first = await group.next() ?? nil
                group.cancelAll()
                return first
            }
            if let next { after.append(next) }
            if case .route(let r, false)? = after.first { #expect(r.destination == IPPrefix("10.99.0.0/24")!) }
            #expect(before <= 64, "\(before) events queued for a subscriber with a limit of 64")
            #expect(overruns == 1)
            #expect(after.count == 1, "after the overrun only what followed it: \(after.count) events")
            monitor.stop()
        }
    }

    @Test func dumpsStayConsistentUnderConcurrentChanges() throws {
        try withRoutedNamespace("intr") { ns, _, client, u0 in
            // Another client churns addresses and links while this one dumps: every dump must
            // succeed (interrupted ones are retried) and see lo, u0, u1 at least.
            let churn = try RouteClient(namespace: ns)
            let deadline = monotonicSeconds() + 2
            let churnDone = Atomic<Bool>(false)
            defer { while !churnDone.load(ordering: .acquiring) && monotonicSeconds() < deadline + 1 { usleep(1000) } }
            try ThreadRunner.runDetached {
                defer { churnDone.store(true, ordering: .releasing) }
                for i in 0..<400 where monotonicSeconds() < deadline {
                    let a = InterfaceAddress(index: u0.index, prefix: IPPrefix(address: .v4(IPv4Address(172, 16, UInt8(i % 200), 1)), length: 32))
                    try? churn.addAddress(a)
                    _ = try? churn.createBridge(name: "c\(i % 4)")
                    _ = try? churn.deleteLink(named: "c\((i + 2) % 4)")
                    try? churn.deleteAddress(a)
                }
            }
            for _ in 0..<100 where monotonicSeconds() < deadline {
                let names = Set(try client.links().map(\.name))
                #expect(names.isSuperset(of: ["lo", "u0", "u1"]))
                #expect(try client.addresses(family: .v4).contains(InterfaceAddress(index: u0.index, prefix: IPPrefix("192.168.0.2/16")!)))
            }
        }
    }

    @Test func interruptedLinkDumpIsRetried() throws {
        try withTestNamespace("retry") { ns, _ in
            let helper = try RouteClient(namespace: ns)
            // Enough links that a dump needs several datagrams (about 25 links fit in one).
            for i in 0..<80 { try helper.createBridge(name: "b\(i)") }
            // A transport over a real socket that creates a link once, right after the first
            // datagram of the dump: the kernel then flags the rest NLM_F_DUMP_INTR.
            let socket = try ns.performSync { try NetlinkSocket(protocol: Netlink.route) }
            let fired = Atomic<Bool>(false)
            let hooked = HookTransport(inner: socket) {
                if !fired.exchange(true, ordering: .relaxed) { _ = try? helper.createBridge(name: "late") }
            }
            let client = RouteClient(session: NetlinkSession(transport: hooked))
            let names = try client.links().map(\.name)
            #expect(client.session.dumpRetries == 1)
            #expect(names.contains("late"))
            #expect(names.count == 82)
        }
    }

    @Test func nfnetlinkTransactionMapsErrorsToMessages() throws {
        try withTestNamespace("nft") { ns, name in
            let session = try NetlinkSession(protocol: Netlink.netfilter, namespace: ns)
            func table(_ type: UInt16, _ tableName: String, flags: UInt16 = 0) -> NetlinkRequest {
                var b = NfnetlinkMessages.builder(message: type, family: Netlink.afInet, flags: flags)
                b.attribute(1 /* NFTA_TABLE_NAME */, string: tableName)
                return NetlinkRequest(bytes: b.finish(), operation: "table", object: tableName)
            }
            let ok = try session.transaction([table(0 /* NFT_MSG_NEWTABLE */, "nodenet", flags: Netlink.fCreate)])
            #expect(ok.succeeded)
            #expect(shell("nft -j list tables").output.contains("nodenet") == false, "must not appear in the root namespace")
            #expect(shell("ip netns exec \(name) nft list tables").output.contains("table ip nodenet"))
            // The second message fails (no such table): the whole transaction is aborted.
            let bad = try session.transaction([table(0, "second", flags: Netlink.fCreate), table(2 /* NFT_MSG_DELTABLE */, "missing")])
            #expect(Set(bad.failures.keys) == [1])
            #expect(bad.failures[1]?.errnoName == "ENOENT")
            #expect(!shell("ip netns exec \(name) nft list tables").output.contains("second"))
            // A large transaction: 5,000 chains in one datagram, every ACK collected.
            let chains = (0..<5000).map { i -> NetlinkRequest in
                var b = NfnetlinkMessages.builder(message: 3 /* NFT_MSG_NEWCHAIN */, family: Netlink.afInet, flags: Netlink.fCreate)
                b.attribute(1 /* NFTA_CHAIN_TABLE */, string: "nodenet")
                b.attribute(3 /* NFTA_CHAIN_NAME */, string: "c\(i)")
                return NetlinkRequest(bytes: b.finish(), operation: "add chain", object: "c\(i)")
            }
            #expect(try session.transaction(chains).succeeded)
            #expect(shell("ip netns exec \(name) nft list table ip nodenet | grep -c chain").output.hasPrefix("5000"))
        }
    }
}

func monotonicSeconds() -> Double {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
}

/// Wraps a transport and runs `afterReceive` after each received datagram.
final class HookTransport: NetlinkTransport {
    let inner: any NetlinkTransport
    let afterReceive: @Sendable () -> Void
    init(inner: any NetlinkTransport, afterReceive: @escaping @Sendable () -> Void) {
        self.inner = inner
        self.afterReceive = afterReceive
    }
    func send(_ bytes: [UInt8]) throws(NetlinkError) { try inner.send(bytes) }
    func receive() throws(NetlinkError) -> [UInt8] {
        let d = try inner.receive()
        afterReceive()
        return d
    }
}
