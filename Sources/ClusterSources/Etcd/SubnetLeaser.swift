import ClusterState
import Foundation
import IPAddressing
import Logging
import Synchronization

public struct SubnetLeaseError: Error, CustomStringConvertible, Sendable {
    public var message: String
    public var description: String { message }
}

/// What a subnet key holds: one key per subnet, so a dual-stack node has one key per family
/// and a lease taken before dual-stack (one IPv4 key) is read as it is.
struct SubnetRecord: Codable, Equatable {
    var node: String
    var cidr: String
}

/// What the node remembers in `stateDir`: `cidr` is the first subnet (the only field of files
/// written before dual-stack, still read), `cidrs` all of them in clusterCIDR order.
struct RememberedSubnets: Codable, Equatable {
    var node: String
    var cidr: String
    var cidrs: [String]?
}

/// Takes this node's pod subnets in etcd, one per `clusterCIDR` family (a dual-stack node gets
/// an IPv4 and an IPv6 subnet, in clusterCIDR order), and holds them with one etcd lease.
///
/// - No two nodes get one subnet: each subnet is claimed by a transaction that creates its key
///   only if it does not exist (create revision 0).
/// - A node keeps its subnets across restarts: it first looks for subnet keys naming itself
///   (still there while the old lease lives), then for the subnets it remembered in `stateDir`.
///   A node that holds a subnet of one family only (leased before its cluster became
///   dual-stack) keeps it and gains one of the other family.
/// - The node's Node object (InternalIP addresses, podCIDRs) is written once every subnet key
///   is on the lease, in a transaction that checks they still are, and attached to the same
///   lease, so a node that stops renewing vanishes from every store, and from every other
///   node's routes, within the TTL (all its subnets with it).
public final class SubnetLeaser: Sendable {
    public let client: EtcdClient
    public let keys: EtcdKeys
    public let nodeName: String
    public let ttl: Int64
    private let stateFile: String?
    private let logger: Logger

    private struct Held {
        var lease: Int64
        var subnets: [IPPrefix]
        var nodeIPs: [IPAddress]
    }
    private let held = Mutex<Held?>(nil)

    /// - Parameters:
    ///   - ttl: seconds a lease lives without renewal.
    ///   - stateDir: where to remember the subnets across restarts that outlive the lease.
    public init(client: EtcdClient, prefix: String = "/nodenet", nodeName: String, ttl: Int64 = 30,
                stateDir: String? = nil, logger: Logger = Logger(label: "nodenet.subnets")) {
        self.client = client
        keys = EtcdKeys(prefix: prefix)
        self.nodeName = nodeName
        self.ttl = ttl
        stateFile = stateDir.map { $0 + "/etcd-subnet.json" }
        self.logger = logger
    }

    /// The lease id held now, if any.
    public var lease: Int64? { held.withLock { $0?.lease } }
    /// The first (primary family's) subnet held now.
    public var subnet: IPPrefix? { held.withLock { $0?.subnets.first } }
    /// Every subnet held now, in clusterCIDR order.
    public var subnets: [IPPrefix] { held.withLock { $0?.subnets ?? [] } }

    /// Takes (or takes back) a subnet of `maskSize` from `clusterCIDR` and publishes the Node.
    public func acquire(clusterCIDR: IPPrefix, maskSize: Int, nodeIP: [IPAddress]) async throws -> [IPPrefix] {
        try await acquire(ranges: [PodSubnetRange(clusterCIDR: clusterCIDR, maskSize: maskSize)], nodeIP: nodeIP)
    }

    /// Takes (or takes back) one subnet per range, in range order, and publishes the Node.
    public func acquire(ranges: [PodSubnetRange], nodeIP: [IPAddress]) async throws -> [IPPrefix] {
        guard !ranges.isEmpty else { throw SubnetLeaseError(message: "no clusterCIDR to lease a pod subnet from") }
        for range in ranges { if let misfit = range.misfit { throw SubnetLeaseError(message: misfit) } }
        let lease = try await client.grantLease(ttl: ttl)
        do {
            return try await claimAll(ranges, lease: lease, nodeIP: nodeIP)
        } catch {
            // Whatever was claimed on the new lease goes with it (the keys are free again).
            try? await client.revokeLease(lease)
            throw error
        }
    }

    private func claimAll(_ ranges: [PodSubnetRange], lease: Int64, nodeIP: [IPAddress]) async throws -> [IPPrefix] {
        let (subnetKVs, _) = try await client.range(prefix: keys.subnets)
        var taken: [IPPrefix] = []
        var mine: [Int: (IPPrefix, EtcdKeyValue)] = [:]
        for kv in subnetKVs {
            guard let record = try? JSONDecoder().decode(SubnetRecord.self, from: kv.value), let cidr = IPPrefix(record.cidr) else {
                logger.warning("etcd: ignoring \(kv.key): not a subnet record")
                continue
            }
            // A subnet this node holds inside a range is kept whatever its size: pods have
            // addresses in it.
            if record.node == nodeName, let i = ranges.firstIndex(where: { $0.clusterCIDR.contains(cidr) }), mine[i] == nil {
                mine[i] = (cidr, kv)
            } else {
                taken.append(cidr)
            }
        }
        // Node objects applied by hand also occupy their subnets.
        let (nodeKVs, _) = try await client.range(prefix: keys.objects + "Node/")
        for kv in nodeKVs {
            if case .node(let n)? = try? ManifestDecoder.decode(json: kv.value), n.name != nodeName { taken += n.podCIDRs }
        }
        let remembered = rememberedSubnets()

        var subnets: [IPPrefix] = []
        var oldLeases = Set<Int64>()
        for (i, range) in ranges.enumerated() {
            // 1. Our own key, left by a previous run whose lease still lives: move it to the new lease.
            if let (cidr, kv) = mine[i],
               try await claimSubnet(cidr, lease: lease, condition: .modRevision(kv.key, equals: kv.modRevision)) {
                if kv.lease != 0, kv.lease != lease { oldLeases.insert(kv.lease) }
                subnets.append(cidr)
                continue
            }
            // 2. The subnet remembered on disk, then 3. the first free one. The transaction, not
            // this scan, decides: a racing node makes it fail and we move on.
            var candidates = remembered.filter(range.holds)
            let count = min(range.clusterCIDR.subnetCount(length: range.maskSize), 1 << 16)
            var claimed: IPPrefix?
            var tried = Set<IPPrefix>()
            var index: UInt64 = 0
            while claimed == nil {
                let cidr: IPPrefix
                if !candidates.isEmpty {
                    cidr = candidates.removeFirst()
                } else if index < count, let c = range.clusterCIDR.subnet(length: range.maskSize, index: index) {
                    cidr = c
                    index += 1
                } else {
                    break
                }
                guard !tried.contains(cidr), !taken.contains(where: { $0.overlaps(cidr) }) else { continue }
                tried.insert(cidr)
                if try await claimSubnet(cidr, lease: lease, condition: .absent(keys.subnetKey(cidr))) { claimed = cidr }
            }
            guard let claimed else {
                let inFamily = taken.filter { $0.family == range.family }.count
                throw SubnetLeaseError(message: "no free /\(range.maskSize) left in clusterCIDR \(range.clusterCIDR) (\(inFamily) subnets taken)")
            }
            subnets.append(claimed)
        }
        guard try await publish(subnets, lease: lease, nodeIP: nodeIP) else {
            throw SubnetLeaseError(message: "the subnet keys of node \(nodeName) changed while it took them; trying again")
        }
        held.withLock { $0 = Held(lease: lease, subnets: subnets, nodeIPs: nodeIP) }
        remember(subnets)
        // The Node object and every kept key are on the new lease now: the old one holds
        // nothing of ours that is still wanted.
        for old in oldLeases { try? await client.revokeLease(old) }
        logger.info("etcd: node \(nodeName) holds pod subnets \(subnets.map(\.description)) with lease \(lease) (TTL \(ttl)s)")
        return subnets
    }

    /// One transaction: if `condition` holds, write the subnet key on `lease`.
    private func claimSubnet(_ cidr: IPPrefix, lease: Int64, condition: EtcdCompare) async throws -> Bool {
        let record = try JSONEncoder().encode(SubnetRecord(node: nodeName, cidr: cidr.description))
        return try await client.txn(if: [condition], then: [.put(keys.subnetKey(cidr), record, lease: lease)]).succeeded
    }

    /// The subnet key on `lease` again: created if absent, rewritten if it still names this node.
    private func claimAgain(_ cidr: IPPrefix, lease: Int64) async throws -> Bool {
        let key = keys.subnetKey(cidr)
        if try await claimSubnet(cidr, lease: lease, condition: .absent(key)) { return true }
        guard let kv = try await client.get(key), let record = try? JSONDecoder().decode(SubnetRecord.self, from: kv.value),
              record.node == nodeName else { return false }
        return try await claimSubnet(cidr, lease: lease, condition: .modRevision(key, equals: kv.modRevision))
    }

    /// Writes the Node object (podCIDRs: `subnets`) on `lease`, if every subnet key is on it.
    private func publish(_ subnets: [IPPrefix], lease: Int64, nodeIP: [IPAddress]) async throws -> Bool {
        let node = Node(metadata: ObjectMeta(name: nodeName), podCIDRs: subnets,
                        addresses: nodeIP.map { NodeAddress(type: "InternalIP", address: $0.description) })
        let nodeJSON = try ObjectCoding.encode(.node(node))
        return try await client.txn(if: subnets.map { .lease(keys.subnetKey($0), equals: lease) },
                                    then: [.put(keys.key(for: ObjectKey(.node, name: nodeName)), nodeJSON, lease: lease)]).succeeded
    }

    /// Keeps the lease alive until cancelled (renewing every third of the TTL).
    ///
    /// A failed renewal is retried with a bounded backoff (first retry within 200 ms, never more
    /// than a sixth of the TTL apart, at most 2 s) so that once etcd answers again the lease is
    /// renewed long before it can expire: etcd restores leases with a fresh TTL when it
    /// restarts, so a node that renews promptly keeps its subnet key and Node object through an
    /// outage of any length. Each renewal also checks the records themselves and puts back
    /// what is gone. If the lease was lost (etcd unreachable from this node for
    /// longer than the TTL while it ran), a new one is taken and the same subnet claimed again
    /// in one transaction (free, or still naming this node).
    public func run() async throws {
        let bound = Duration.milliseconds(min(2000, max(100, ttl * 1000 / 6)))
        var backoff = Backoff(initial: min(.milliseconds(200), bound), maximum: bound)
        // Logged once when renewals start failing and once when they work again, not per retry.
        var failures = 0
        while !Task.isCancelled {
            guard let current = held.withLock({ $0 }) else {
                try await Task.sleep(for: .seconds(1))
                continue
            }
            do {
                let remaining = try await client.keepAlive(lease: current.lease)
                if remaining > 0 { renewed.withLock { $0 = .now } }
                if failures > 0 {
                    logger.info("etcd: the lease of node \(nodeName) is renewed again after \(failures) failed attempts")
                    failures = 0
                }
                if remaining <= 0 {
                    logger.warning("etcd: lease \(current.lease) of node \(nodeName) expired; claiming \(current.subnets.map(\.description)) again")
                    try await reclaim(current)
                } else {
                    try await ensureRecords(current)
                }
                backoff.reset()
                try await Task.sleep(for: .milliseconds(max(300, ttl * 1000 / 3)))
            } catch is CancellationError {
                return
            } catch let e as SubnetLeaseError {
                throw e
            } catch {
                let delay = backoff.next()
                failures += 1
                if failures == 1 {
                    logger.warning("etcd: renewing the lease of node \(nodeName) failed: \(error); retrying every \(bound) at most")
                } else {
                    logger.debug("etcd: renewing the lease of node \(nodeName) failed: \(error); retrying in \(delay)")
                }
                try await Task.sleep(for: delay)
            }
        }
    }

    /// When the lease was last renewed (nil: not since `run` started).
    public var lastRenewal: ContinuousClock.Instant? { renewed.withLock { $0 } }
    private let renewed = Mutex<ContinuousClock.Instant?>(nil)

    /// The lease is gone: a new lease, each subnet claimed on it again if its key is absent or
    /// still names this node (conditional on the revision read), then the Node object. Anything
    /// else means another node took a subnet.
    private func reclaim(_ current: Held) async throws {
        let lease = try await client.grantLease(ttl: ttl)
        do {
            for cidr in current.subnets {
                guard try await claimAgain(cidr, lease: lease) else {
                    throw SubnetLeaseError(message: "subnet \(cidr) was taken by another node after node \(nodeName)'s lease expired")
                }
            }
            guard try await publish(current.subnets, lease: lease, nodeIP: current.nodeIPs) else {
                throw SubnetLeaseError(message: "the subnet keys of node \(nodeName) changed while it claimed them again")
            }
        } catch {
            try? await client.revokeLease(lease)
            throw error
        }
        held.withLock { $0 = Held(lease: lease, subnets: current.subnets, nodeIPs: current.nodeIPs) }
        logger.info("etcd: node \(nodeName) holds pod subnets \(current.subnets.map(\.description)) again with lease \(lease)")
    }

    /// The lease lives: check (one transaction that only compares) that every subnet key and
    /// the Node object are still on it, and put back what is missing, conditional on each
    /// subnet key being absent or still naming this node. Someone may have deleted any of them
    /// (`nodenet delete` of the Node, an operator's etcdctl): while the node lives its records
    /// come back within a third of the TTL.
    private func ensureRecords(_ current: Held) async throws {
        let nodeKey = keys.key(for: ObjectKey(.node, name: nodeName))
        let compares = current.subnets.map { EtcdCompare.lease(keys.subnetKey($0), equals: current.lease) } + [.lease(nodeKey, equals: current.lease)]
        if try await client.txn(if: compares, then: []).succeeded { return }
        logger.warning("etcd: the records of node \(nodeName) were not on its lease \(current.lease); writing them again")
        for cidr in current.subnets {
            guard try await claimAgain(cidr, lease: current.lease) else {
                throw SubnetLeaseError(message: "subnet \(cidr) of node \(nodeName) now names another node")
            }
        }
        guard try await publish(current.subnets, lease: current.lease, nodeIP: current.nodeIPs) else {
            throw SubnetLeaseError(message: "the subnet keys of node \(nodeName) changed while it wrote them again")
        }
    }

    /// Gives the subnets back now (deletes every subnet key and the Node object).
    public func release() async throws {
        guard let lease = held.withLock({ h -> Int64? in defer { h = nil }; return h?.lease }) else { return }
        try await client.revokeLease(lease)
    }

    private func rememberedSubnets() -> [IPPrefix] {
        guard let stateFile, let data = FileManager.default.contents(atPath: stateFile),
              let record = try? JSONDecoder().decode(RememberedSubnets.self, from: data), record.node == nodeName else { return [] }
        return (record.cidrs ?? [record.cidr]).compactMap { IPPrefix($0) }
    }

    private func remember(_ cidrs: [IPPrefix]) {
        guard let stateFile, let first = cidrs.first,
              let data = try? JSONEncoder().encode(RememberedSubnets(node: nodeName, cidr: first.description, cidrs: cidrs.map(\.description)))
        else { return }
        do {
            try data.write(to: URL(fileURLWithPath: stateFile), options: .atomic)
        } catch {
            logger.warning("etcd: cannot remember subnets \(cidrs.map(\.description)) in \(stateFile): \(error)")
        }
    }
}
