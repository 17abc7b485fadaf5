import Foundation
import IPAddressing
import Testing
@testable import ClusterState

/// Issue 22: a node that leases its pod subnets itself (embedded store, no podCIDRs, no Node
/// podCIDRs) gets one per clusterCIDR family, in clusterCIDR order, as kube-controller-manager
/// gives a dual-stack Node.
@Suite struct PodSubnetsTests {
    static let v4 = PodSubnetRange(clusterCIDR: IPPrefix("10.244.0.0/16")!, maskSize: 24)
    static let v6 = PodSubnetRange(clusterCIDR: IPPrefix("fd00:10:244::/56")!, maskSize: 64)

    func snapshot(_ objects: [ClusterObject]) async -> ClusterSnapshot {
        let store = ClusterStore()
        await store.apply(objects.map { .upsert($0) })
        return await store.snapshot()
    }

    func dualNode(_ name: String, _ cidrs: [String]) -> ClusterObject {
        .node(Node(metadata: ObjectMeta(name: name), podCIDRs: cidrs.map { IPPrefix($0)! },
                   addresses: [NodeAddress(type: "InternalIP", address: "192.168.1.11"), NodeAddress(type: "InternalIP", address: "fd00:1::11")]))
    }

    @Test func aDualStackNodeLeasesOneSubnetOfEachFamilyInClusterCIDROrder() async throws {
        let empty = await snapshot([])
        let lease = try PodSubnets.nextLease(node: "node1", ranges: [Self.v4, Self.v6], in: empty)
        #expect(lease.cidrs == [IPPrefix("10.244.0.0/24")!, IPPrefix("fd00:10:244::/64")!])
        // IPv6 primary: the IPv6 subnet first.
        let v6First = try PodSubnets.nextLease(node: "node1", ranges: [Self.v6, Self.v4], in: empty)
        #expect(v6First.cidrs == [IPPrefix("fd00:10:244::/64")!, IPPrefix("10.244.0.0/24")!])
        #expect(PodSubnets.covers(lease, [Self.v4, Self.v6]))
        #expect(!PodSubnets.covers(SubnetLease(nodeName: "node1", cidrs: [IPPrefix("10.244.0.0/24")!]), [Self.v4, Self.v6]))
    }

    @Test func subnetsAreDistinctAcrossNodesInEachFamily() async throws {
        // node1 has Node podCIDRs of both families, node2 a lease of both: node3 gets the next free pair.
        var objects: [ClusterObject] = [dualNode("node1", ["10.244.0.0/24", "fd00:10:244::/64"])]
        objects.append(.lease(SubnetLease(nodeName: "node2", cidrs: [IPPrefix("10.244.1.0/24")!, IPPrefix("fd00:10:244:1::/64")!])))
        var snap = await snapshot(objects)
        let third = try PodSubnets.nextLease(node: "node3", ranges: [Self.v4, Self.v6], in: snap)
        #expect(third.cidrs == [IPPrefix("10.244.2.0/24")!, IPPrefix("fd00:10:244:2::/64")!])
        // Ten more nodes: every subnet distinct within its family.
        var all = [third]
        objects.append(.lease(third))
        for i in 4...13 {
            snap = await snapshot(objects)
            let lease = try PodSubnets.nextLease(node: "node\(i)", ranges: [Self.v4, Self.v6], in: snap)
            objects.append(.lease(lease))
            all.append(lease)
        }
        let v4s = all.map { $0.cidrs[0] }, v6s = all.map { $0.cidrs[1] }
        #expect(Set(v4s).count == all.count && Set(v6s).count == all.count)
        #expect(v4s.allSatisfy(Self.v4.holds) && v6s.allSatisfy(Self.v6.holds))
    }

    @Test func aSingleFamilyLeaseKeepsItsSubnetAndGainsTheOtherFamily() async throws {
        // Leased before the cluster became dual-stack: 10.244.5.0/24 only.
        let old = SubnetLease(nodeName: "node1", cidrs: [IPPrefix("10.244.5.0/24")!])
        let snap = await snapshot([.lease(old), dualNode("node2", ["10.244.0.0/24", "fd00:10:244::/64"])])
        let lease = try PodSubnets.nextLease(node: "node1", ranges: [Self.v4, Self.v6], in: snap)
        #expect(lease.cidrs == [IPPrefix("10.244.5.0/24")!, IPPrefix("fd00:10:244:1::/64")!])
    }

    @Test func anExhaustedRangeIsAClearErrorNamingTheRange() async throws {
        let small6 = PodSubnetRange(clusterCIDR: IPPrefix("fd00:10:244::/63")!, maskSize: 64)
        let snap = await snapshot([dualNode("a", ["10.244.0.0/24", "fd00:10:244::/64"]), dualNode("b", ["10.244.1.0/24", "fd00:10:244:1::/64"])])
        let error = #expect(throws: PodSubnetError.self) {
            try PodSubnets.nextLease(node: "c", ranges: [Self.v4, small6], in: snap)
        }
        #expect(error?.message.contains("no free /64 left in clusterCIDR fd00:10:244::/63") == true, "\(error?.message ?? "")")
        let misfit = #expect(throws: PodSubnetError.self) {
            try PodSubnets.nextLease(node: "c", ranges: [Self.v4, PodSubnetRange(clusterCIDR: IPPrefix("fd00:10:244::/56")!, maskSize: 48)], in: snap)
        }
        #expect(misfit?.message.contains("nodeCIDRMaskSizeIPv6 48") == true, "\(misfit?.message ?? "")")
    }

    /// The lease lives in the state database: after a restart (the database opened again) the
    /// node resolves the same subnets of both families and leasing again changes nothing.
    @Test func aRestartKeepsBothSubnets() async throws {
        let dir = tempDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        var first: SubnetLease
        do {
            let store = ClusterStore(persistence: try StateDatabase(directory: dir))
            try await store.commit([.upsert(dualNode("node2", ["10.244.0.0/24", "fd00:10:244::/64"]))])
            first = try PodSubnets.nextLease(node: "node1", ranges: [Self.v4, Self.v6], in: await store.snapshot())
            try await store.commit([.upsert(.lease(first))])
        }
        let (snap, _) = try StateDatabase(directory: dir).loadSnapshot()
        let resolved = PodSubnets.resolve(node: "node1", configured: [], in: snap)
        #expect(resolved?.0 == first.cidrs && resolved?.1 == .lease)
        #expect(PodSubnets.covers(snap.leases["node1"], [Self.v4, Self.v6]))
        #expect(try PodSubnets.nextLease(node: "node1", ranges: [Self.v4, Self.v6], in: snap) == first)
    }
}
