import ClusterState
import Foundation
import IPAddressing
import NodenetTestSupport
import Testing
@testable import ClusterSources

// Subnet leases against a real etcd (see EtcdServer).

@Suite(.serialized, .enabled(if: EtcdServer.available, "etcd is not installed"))
struct SubnetLeaserTests {
    let cluster = IPPrefix("10.244.0.0/16")!

    @Test func racingLeasersGetDifferentSubnets() async throws {
        let etcd = try EtcdServer()
        defer { etcd.stop() }
        let observer = try RunningSource([etcd.endpoint], node: "observer")
        defer { observer.stop() }
        let cluster = self.cluster
        let results = try await withThrowingTaskGroup(of: (String, [IPPrefix]).self) { group in
            for i in 0..<8 {
                group.addTask {
                    let leaser = SubnetLeaser(client: try EtcdClient(endpoints: [etcd.endpoint]), nodeName: "node-\(i)")
                    return ("node-\(i)", try await leaser.acquire(clusterCIDR: cluster, maskSize: 24, nodeIP: [IPAddress("192.168.0.\(i + 1)")!]))
                }
            }
            var out: [String: [IPPrefix]] = [:]
            for try await (node, cidrs) in group { out[node] = cidrs }
            return out
        }
        let subnets = results.values.flatMap { $0 }
        #expect(subnets.count == 8)
        #expect(Set(subnets).count == 8)
        #expect(subnets.allSatisfy { cluster.contains($0) && $0.length == 24 })
        // Every node's Node object reaches another node's store with its subnet and address.
        #expect(await eventually { await observer.store.snapshot().nodes.count == 8 })
        let node3 = await observer.store.snapshot().nodes["node-3"]
        #expect(node3?.podCIDRs == results["node-3"])
        #expect(node3?.internalIP(.v4) == IPAddress("192.168.0.4"))
    }

    @Test func restartKeepsTheSubnet() async throws {
        let etcd = try EtcdServer()
        defer { etcd.stop() }
        let stateA = TempDirectory(), stateB = TempDirectory()
        func leaser(_ node: String, _ dir: TempDirectory) -> SubnetLeaser {
            SubnetLeaser(client: etcd.client(), nodeName: node, ttl: 30, stateDir: dir.path)
        }
        let first = try await leaser("a", stateA).acquire(clusterCIDR: cluster, maskSize: 24, nodeIP: [IPAddress("192.168.0.1")!])
        let b = leaser("b", stateB)
        let second = try await b.acquire(clusterCIDR: cluster, maskSize: 24, nodeIP: [IPAddress("192.168.0.2")!])
        #expect(first != second)

        // Restart while the old lease lives: the agent finds its own key and moves it to a new lease.
        let a2 = leaser("a", stateA)
        #expect(try await a2.acquire(clusterCIDR: cluster, maskSize: 24, nodeIP: [IPAddress("192.168.0.1")!]) == first)
        #expect(try await etcd.client().range(prefix: "/nodenet/subnets/").kvs.count == 2)

        // Restart after the lease is gone: the subnet remembered in stateDir is taken again even
        // though a lower one (a's) is free.
        try await a2.release()
        try await b.release()
        #expect(try await etcd.client().range(prefix: "/nodenet/subnets/").kvs.isEmpty)
        #expect(try await leaser("b", stateB).acquire(clusterCIDR: cluster, maskSize: 24, nodeIP: [IPAddress("192.168.0.2")!]) == second)
    }

    @Test func expiredLeaseRemovesTheNodeFromOtherStores() async throws {
        let etcd = try EtcdServer()
        defer { etcd.stop() }
        let observer = try RunningSource([etcd.endpoint], node: "observer")
        defer { observer.stop() }
        #expect(await observer.source.waitForFirstSync(timeout: .seconds(10)))

        let kept = SubnetLeaser(client: etcd.client(), nodeName: "kept", ttl: 2)
        let lapsed = SubnetLeaser(client: etcd.client(), nodeName: "lapsed", ttl: 2)
        _ = try await kept.acquire(clusterCIDR: cluster, maskSize: 24, nodeIP: [IPAddress("192.168.0.1")!])
        _ = try await lapsed.acquire(clusterCIDR: cluster, maskSize: 24, nodeIP: [IPAddress("192.168.0.2")!])
        let keepalive = Task { try? await kept.run() }
        defer { keepalive.cancel() }
        #expect(await eventually { await observer.store.snapshot().nodes.count == 2 })

        // "lapsed" never renews: after its TTL its Node object (and subnet key) are gone.
        #expect(await eventually(timeout: .seconds(12)) { await observer.store.snapshot().nodes["lapsed"] == nil })
        #expect(await observer.store.snapshot().nodes["kept"] != nil)
        let subnets = try await etcd.client().range(prefix: "/nodenet/subnets/").kvs
        #expect(subnets.count == 1)
    }

    @Test func aLostLeaseIsReplacedAndTheSameSubnetClaimedAgain() async throws {
        let etcd = try EtcdServer()
        defer { etcd.stop() }
        let observer = try RunningSource([etcd.endpoint], node: "observer")
        defer { observer.stop() }
        let leaser = SubnetLeaser(client: etcd.client(), nodeName: "a", ttl: 3)
        let subnet = try await leaser.acquire(clusterCIDR: cluster, maskSize: 24, nodeIP: [IPAddress("192.168.0.1")!])
        let firstLease = try #require(leaser.lease)
        #expect(await eventually { await observer.store.snapshot().nodes["a"] != nil })

        // The lease vanishes behind the agent's back (as after a long etcd outage).
        try await etcd.client().revokeLease(firstLease)
        #expect(await eventually { await observer.store.snapshot().nodes["a"] == nil })
        let keepalive = Task { try await leaser.run() }
        defer { keepalive.cancel() }
        #expect(await eventually { await observer.store.snapshot().nodes["a"]?.podCIDRs == subnet })
        #expect(leaser.lease != firstLease)
        #expect(leaser.subnet == subnet.first)
    }

    /// Issue 14 item 3: etcd stopped for much longer than the lease, then restarted. etcd gives
    /// every lease a fresh TTL when it starts, so a node that renews promptly never loses its
    /// records: the subnet key and the Node object keep their create revision and lease, and
    /// another node's store never sees the Node go. Without the fix (the HTTP pool's own
    /// connection backoff, grown past the TTL over the outage, plus a renewal backoff of a third
    /// of the TTL) the first renewal came seconds after etcd was back and the lease expired.
    @Test func aLongOutageNeitherLapsesTheLeaseNorTheRecords() async throws {
        let etcd = try EtcdServer()
        defer { etcd.stop() }
        let observer = try RunningSource([etcd.endpoint], node: "observer")
        defer { observer.stop() }
        #expect(await observer.source.waitForFirstSync(timeout: .seconds(10)))
        let ttl: Int64 = 4
        let leaser = SubnetLeaser(client: etcd.client(), nodeName: "steady", ttl: ttl)
        let subnet = try await leaser.acquire(clusterCIDR: cluster, maskSize: 24, nodeIP: [IPAddress("192.168.0.7")!])
        let lease = try #require(leaser.lease)
        let keepalive = Task { try await leaser.run() }
        defer { keepalive.cancel() }
        let subnetKey = EtcdKeys(prefix: "/nodenet").subnetKey(subnet[0])
        let nodeKey = "/nodenet/objects/Node/steady"
        let before = try #require(try await etcd.client().get(subnetKey))
        let nodeBefore = try #require(try await etcd.client().get(nodeKey))
        #expect(await eventually { await observer.store.snapshot().nodes["steady"] != nil })
        let events = await observer.store.subscribe()

        // Six lease lifetimes without etcd, with the leaser trying all along.
        etcd.stop()
        try await Task.sleep(for: .seconds(ttl * 6))
        try etcd.start()
        let back = ContinuousClock.now
        #expect(await eventually(timeout: .seconds(Int(ttl))) { (leaser.lastRenewal ?? back) > back },
                "renewed within the TTL of etcd's return")
        if let renewed = leaser.lastRenewal { #expect(renewed - back < .seconds(2), "first renewal \(renewed - back) after etcd was back") }

        // Two lease lifetimes later the records are the very same keys on the very same lease.
        try await Task.sleep(for: .seconds(ttl * 2))
        let after = try #require(try await etcd.client().get(subnetKey), "the subnet key lapsed")
        let nodeAfter = try #require(try await etcd.client().get(nodeKey), "the Node object lapsed")
        #expect(after.createRevision == before.createRevision && after.lease == lease)
        #expect(nodeAfter.createRevision == nodeBefore.createRevision && nodeAfter.lease == lease)
        #expect(leaser.lease == lease)
        #expect(await observer.store.snapshot().nodes["steady"]?.podCIDRs == subnet)
        #expect(!deleted(ObjectKey(.node, name: "steady"), in: await drain(events)), "another node saw the Node object go")
    }

    /// The lease lives but its Node object is deleted behind the node's back (`nodenet delete`,
    /// etcdctl): while the node lives, its records come back on its lease within a third of the
    /// TTL. Without the fix the Node object stayed gone until the lease was lost.
    @Test func aDeletedRecordOfALiveNodeIsWrittenAgain() async throws {
        let etcd = try EtcdServer()
        defer { etcd.stop() }
        let leaser = SubnetLeaser(client: etcd.client(), nodeName: "steady", ttl: 3)
        _ = try await leaser.acquire(clusterCIDR: cluster, maskSize: 24, nodeIP: [IPAddress("192.168.0.7")!])
        let lease = try #require(leaser.lease)
        let keepalive = Task { try await leaser.run() }
        defer { keepalive.cancel() }
        let nodeKey = "/nodenet/objects/Node/steady"
        try await etcd.client().delete(nodeKey)
        #expect(try await etcd.client().get(nodeKey) == nil)
        #expect(await eventually(timeout: .seconds(5)) { (try? await etcd.client().get(nodeKey))??.lease == lease })
    }

    @Test func refusesAMaskThatDoesNotFitAndReportsAFullRange() async throws {
        let etcd = try EtcdServer()
        defer { etcd.stop() }
        let small = IPPrefix("10.9.0.0/23")!
        await #expect(throws: SubnetLeaseError.self) {
            _ = try await SubnetLeaser(client: etcd.client(), nodeName: "x").acquire(clusterCIDR: small, maskSize: 16, nodeIP: [])
        }
        _ = try await SubnetLeaser(client: etcd.client(), nodeName: "x").acquire(clusterCIDR: small, maskSize: 24, nodeIP: [])
        _ = try await SubnetLeaser(client: etcd.client(), nodeName: "y").acquire(clusterCIDR: small, maskSize: 24, nodeIP: [])
        let error = await #expect(throws: SubnetLeaseError.self) {
            _ = try await SubnetLeaser(client: etcd.client(), nodeName: "z").acquire(clusterCIDR: small, maskSize: 24, nodeIP: [])
        }
        #expect(error?.message.contains("no free /24") == true)
    }

    // Issue 22: a dual-stack node leases a subnet of each clusterCIDR family.

    static let dual = [PodSubnetRange(clusterCIDR: IPPrefix("10.244.0.0/16")!, maskSize: 24),
                       PodSubnetRange(clusterCIDR: IPPrefix("fd00:10:244::/56")!, maskSize: 64)]
    static func ips(_ i: Int) -> [IPAddress] { [IPAddress("192.168.1.\(11 + i)")!, IPAddress("fd00:1::\(11 + i)")!] }

    @Test func racingDualStackLeasersGetDistinctSubnetsOfEachFamily() async throws {
        let etcd = try EtcdServer()
        defer { etcd.stop() }
        let observer = try RunningSource([etcd.endpoint], node: "observer")
        defer { observer.stop() }
        let results = try await withThrowingTaskGroup(of: (String, [IPPrefix]).self) { group in
            for i in 0..<4 {
                group.addTask {
                    let leaser = SubnetLeaser(client: try EtcdClient(endpoints: [etcd.endpoint]), nodeName: "node-\(i)")
                    return ("node-\(i)", try await leaser.acquire(ranges: Self.dual, nodeIP: Self.ips(i)))
                }
            }
            var out: [String: [IPPrefix]] = [:]
            for try await (node, cidrs) in group { out[node] = cidrs }
            return out
        }
        #expect(results.values.allSatisfy { $0.count == 2 && Self.dual[0].holds($0[0]) && Self.dual[1].holds($0[1]) },
                "one subnet of each family, IPv4 first: \(results)")
        #expect(Set(results.values.map { $0[0] }).count == 4 && Set(results.values.map { $0[1] }).count == 4)
        #expect(try await etcd.client().range(prefix: "/nodenet/subnets/").kvs.count == 8)
        // Another node's store gets every Node with both podCIDRs and an InternalIP of each family.
        #expect(await eventually { await observer.store.snapshot().nodes.count == 4 })
        let node2 = await observer.store.snapshot().nodes["node-2"]
        #expect(node2?.podCIDRs == results["node-2"])
        #expect(node2?.internalIP(.v4) == IPAddress("192.168.1.13") && node2?.internalIP(.v6) == IPAddress("fd00:1::13"))
    }

    /// A node that leased an IPv4 subnet before its cluster became dual-stack keeps it and gains
    /// an IPv6 one: while its old lease lives (its key), and after it is gone (the file in
    /// stateDir, in the format written before dual-stack).
    @Test func anOldSingleFamilyLeaseKeepsItsSubnetAndGainsTheOtherFamily() async throws {
        let etcd = try EtcdServer()
        defer { etcd.stop() }
        let observer = try RunningSource([etcd.endpoint], node: "observer")
        defer { observer.stop() }
        let state = TempDirectory()
        _ = try await SubnetLeaser(client: etcd.client(), nodeName: "other", ttl: 30).acquire(ranges: Self.dual, nodeIP: Self.ips(9))
        let old = SubnetLeaser(client: etcd.client(), nodeName: "a", ttl: 30, stateDir: state.path)
        let v4 = try await old.acquire(clusterCIDR: Self.dual[0].clusterCIDR, maskSize: 24, nodeIP: [Self.ips(0)[0]])
        let oldLease = try #require(old.lease)

        // Restart with the dual-stack configuration while the old lease lives.
        let upgraded = SubnetLeaser(client: etcd.client(), nodeName: "a", ttl: 30, stateDir: state.path)
        let both = try await upgraded.acquire(ranges: Self.dual, nodeIP: Self.ips(0))
        #expect(both.first == v4.first && both.count == 2 && Self.dual[1].holds(both[1]), "\(both)")
        #expect(both[1] != IPPrefix("fd00:10:244::/64"), "the other node's IPv6 subnet is taken")
        let lease = try #require(upgraded.lease)
        #expect(lease != oldLease)
        for cidr in both {
            #expect(try await etcd.client().get(EtcdKeys().subnetKey(cidr))?.lease == lease, "\(cidr) on the new lease")
        }
        #expect(await eventually { await observer.store.snapshot().nodes["a"]?.podCIDRs == both })

        // Released (both keys gone), then a restart that finds only a pre-dual-stack state file.
        try await upgraded.release()
        #expect(try await etcd.client().range(prefix: "/nodenet/subnets/").kvs.count == 2, "only the other node's keys are left")
        let remembered = IPPrefix("10.244.7.0/24")!
        _ = state.write("etcd-subnet.json", #"{"node":"a","cidr":"10.244.7.0/24"}"#)
        let again = try await SubnetLeaser(client: etcd.client(), nodeName: "a", ttl: 30, stateDir: state.path).acquire(ranges: Self.dual, nodeIP: Self.ips(0))
        #expect(again.first == remembered && again.count == 2 && Self.dual[1].holds(again[1]), "\(again)")
        // And the file now remembers both, so the next restart takes the same pair.
        let file = try String(contentsOfFile: state.path + "/etcd-subnet.json", encoding: .utf8)
        #expect(file.contains("10.244.7.0") && file.contains(again[1].address.description), "\(file)")
    }

    /// Renewal keeps both subnet keys and the Node; without renewal the lease expires and takes
    /// both keys and the Node object with it; a lost lease gets both subnets back.
    @Test func renewalExpiryAndReclaimCoverBothFamilies() async throws {
        let etcd = try EtcdServer()
        defer { etcd.stop() }
        let observer = try RunningSource([etcd.endpoint], node: "observer")
        defer { observer.stop() }
        #expect(await observer.source.waitForFirstSync(timeout: .seconds(10)))
        let kept = SubnetLeaser(client: etcd.client(), nodeName: "kept", ttl: 2)
        let lapsed = SubnetLeaser(client: etcd.client(), nodeName: "lapsed", ttl: 2)
        let keptSubnets = try await kept.acquire(ranges: Self.dual, nodeIP: Self.ips(0))
        let lapsedSubnets = try await lapsed.acquire(ranges: Self.dual, nodeIP: Self.ips(1))
        let keepalive = Task { try? await kept.run() }
        defer { keepalive.cancel() }
        #expect(await eventually { await observer.store.snapshot().nodes.count == 2 })

        #expect(await eventually(timeout: .seconds(12)) { await observer.store.snapshot().nodes["lapsed"] == nil })
        let keys = try await etcd.client().range(prefix: "/nodenet/subnets/").kvs.map(\.key)
        #expect(Set(keys) == Set(keptSubnets.map { EtcdKeys().subnetKey($0) }), "both of lapsed's keys went, both of kept's stayed: \(keys)")
        #expect(await observer.store.snapshot().nodes["kept"]?.podCIDRs == keptSubnets)

        // kept's lease revoked behind its back: it takes a new one and both subnets again.
        let before = try #require(kept.lease)
        try await etcd.client().revokeLease(before)
        #expect(await eventually(timeout: .seconds(8)) {
            guard kept.lease != before, let kvs = try? await etcd.client().range(prefix: "/nodenet/subnets/").kvs else { return false }
            return kvs.count == 2
        })
        #expect(await eventually { await observer.store.snapshot().nodes["kept"]?.podCIDRs == keptSubnets })
        #expect(kept.subnets == keptSubnets)
        // The lapsed node's subnets are free again: a new node gets them.
        let newcomer = try await SubnetLeaser(client: etcd.client(), nodeName: "new").acquire(ranges: Self.dual, nodeIP: Self.ips(2))
        #expect(newcomer == lapsedSubnets)
    }

    @Test func refusesAnIPv6MaskThatDoesNotFitNamingTheKey() async throws {
        let etcd = try EtcdServer()
        defer { etcd.stop() }
        let error = await #expect(throws: SubnetLeaseError.self) {
            _ = try await SubnetLeaser(client: etcd.client(), nodeName: "x")
                .acquire(ranges: [Self.dual[0], PodSubnetRange(clusterCIDR: IPPrefix("fd00:10:244::/56")!, maskSize: 48)], nodeIP: [])
        }
        #expect(error?.message.contains("nodeCIDRMaskSizeIPv6 48 does not fit") == true)
        #expect(try await etcd.client().range(prefix: "/nodenet/subnets/").kvs.isEmpty, "nothing taken")
    }
}
