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
}
