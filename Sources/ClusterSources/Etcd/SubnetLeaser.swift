import ClusterState
import Foundation
import IPAddressing
import Logging
import Synchronization

public struct SubnetLeaseError: Error, CustomStringConvertible, Sendable {
    public var message: String
    public var description: String { message }
}

/// What a subnet key holds.
struct SubnetRecord: Codable, Equatable {
    var node: String
    var cidr: String
}

/// Takes this node's pod subnet from `clusterCIDR` in etcd and holds it with an etcd lease.
///
/// - No two nodes get one subnet: a subnet is claimed by a transaction that creates its key
///   only if it does not exist (create revision 0).
/// - A node keeps its subnet across restarts: it first looks for a subnet key naming itself
///   (still there while the old lease lives), then for the subnet it remembered in `stateDir`.
/// - The node's Node object (InternalIP addresses, podCIDRs) is written in the same
///   transaction and attached to the same lease, so a node that stops renewing vanishes from
///   every store, and from every other node's routes, within the TTL.
public final class SubnetLeaser: Sendable {
    public let client: EtcdClient
    public let keys: EtcdKeys
    public let nodeName: String
    public let ttl: Int64
    private let stateFile: String?
    private let logger: Logger

    private struct Held {
        var lease: Int64
        var subnet: IPPrefix
        var nodeIPs: [IPAddress]
    }
    private let held = Mutex<Held?>(nil)

    /// - Parameters:
    ///   - ttl: seconds a lease lives without renewal.
    ///   - stateDir: where to remember the subnet across restarts that outlive the lease.
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
    public var subnet: IPPrefix? { held.withLock { $0?.subnet } }

    /// Takes (or takes back) a subnet of `maskSize` from `clusterCIDR` and publishes the Node.
    public func acquire(clusterCIDR: IPPrefix, maskSize: Int, nodeIP: [IPAddress]) async throws -> [IPPrefix] {
        guard maskSize >= clusterCIDR.length, maskSize <= clusterCIDR.family.bitWidth else {
            throw SubnetLeaseError(message: "nodeCIDRMaskSize \(maskSize) does not fit in clusterCIDR \(clusterCIDR)")
        }
        let lease = try await client.grantLease(ttl: ttl)
        let (subnetKVs, _) = try await client.range(prefix: keys.subnets)
        var taken: [IPPrefix] = []
        var mine: (IPPrefix, EtcdKeyValue)?
        for kv in subnetKVs {
            guard let record = try? JSONDecoder().decode(SubnetRecord.self, from: kv.value), let cidr = IPPrefix(record.cidr) else {
                logger.warning("etcd: ignoring \(kv.key): not a subnet record")
                continue
            }
            if record.node == nodeName, clusterCIDR.contains(cidr), cidr.length == maskSize { mine = (cidr, kv) } else { taken.append(cidr) }
        }
        // Node objects applied by hand also occupy their subnets.
        let (nodeKVs, _) = try await client.range(prefix: keys.objects + "Node/")
        for kv in nodeKVs {
            if case .node(let n)? = try? ManifestDecoder.decode(json: kv.value), n.name != nodeName { taken += n.podCIDRs }
        }

        // 1. Our own key, left by a previous run whose lease still lives: move it to the new lease.
        if let (cidr, kv) = mine {
            if try await claim(cidr, lease: lease, nodeIP: nodeIP, condition: .modRevision(kv.key, equals: kv.modRevision)) {
                if kv.lease != 0, kv.lease != lease { try? await client.revokeLease(kv.lease) }
                return [cidr]
            }
        }
        // 2. The subnet remembered on disk, then 3. the first free one. The transaction, not
        // this scan, decides: a racing node makes it fail and we move on.
        var candidates: [IPPrefix] = []
        if let remembered = rememberedSubnet(), clusterCIDR.contains(remembered), remembered.length == maskSize { candidates.append(remembered) }
        let count = min(clusterCIDR.subnetCount(length: maskSize), 1 << 16)
        for i in 0..<count {
            guard let c = clusterCIDR.subnet(length: maskSize, index: i) else { break }
            candidates.append(c)
        }
        var tried = Set<IPPrefix>()
        for cidr in candidates where !tried.contains(cidr) && !taken.contains(where: { $0.overlaps(cidr) }) {
            tried.insert(cidr)
            if try await claim(cidr, lease: lease, nodeIP: nodeIP, condition: .absent(keys.subnetKey(cidr))) { return [cidr] }
        }
        try? await client.revokeLease(lease)
        throw SubnetLeaseError(message: "no free /\(maskSize) left in clusterCIDR \(clusterCIDR) (\(taken.count) subnets taken)")
    }

    /// One transaction: if `condition` holds, write the subnet key and the Node, both on `lease`.
    private func claim(_ cidr: IPPrefix, lease: Int64, nodeIP: [IPAddress], condition: EtcdCompare) async throws -> Bool {
        let record = try JSONEncoder().encode(SubnetRecord(node: nodeName, cidr: cidr.description))
        let node = Node(metadata: ObjectMeta(name: nodeName), podCIDRs: [cidr],
                        addresses: nodeIP.map { NodeAddress(type: "InternalIP", address: $0.description) })
        let nodeJSON = try ObjectCoding.encode(.node(node))
        let result = try await client.txn(if: [condition], then: [
            .put(keys.subnetKey(cidr), record, lease: lease),
            .put(keys.key(for: ObjectKey(.node, name: nodeName)), nodeJSON, lease: lease),
        ])
        guard result.succeeded else { return false }
        held.withLock { $0 = Held(lease: lease, subnet: cidr, nodeIPs: nodeIP) }
        remember(cidr)
        logger.info("etcd: node \(nodeName) holds pod subnet \(cidr) with lease \(lease) (TTL \(ttl)s)")
        return true
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
                    logger.warning("etcd: lease \(current.lease) of node \(nodeName) expired; claiming \(current.subnet) again")
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

    /// The lease is gone: a new lease, and the same subnet claimed on it in one transaction if
    /// its key is absent, or (a second transaction, conditional on the revision read) if it
    /// still names this node. Anything else means another node took it.
    private func reclaim(_ current: Held) async throws {
        let lease = try await client.grantLease(ttl: ttl)
        let key = keys.subnetKey(current.subnet)
        var ok = try await claim(current.subnet, lease: lease, nodeIP: current.nodeIPs, condition: .absent(key))
        if !ok, let kv = try await client.get(key), let record = try? JSONDecoder().decode(SubnetRecord.self, from: kv.value),
           record.node == nodeName {
            ok = try await claim(current.subnet, lease: lease, nodeIP: current.nodeIPs, condition: .modRevision(key, equals: kv.modRevision))
        }
        if !ok {
            try? await client.revokeLease(lease)
            throw SubnetLeaseError(message: "subnet \(current.subnet) was taken by another node after node \(nodeName)'s lease expired")
        }
    }

    /// The lease lives: check (one transaction that only compares) that the subnet key and the
    /// Node object are still on it, and put back what is missing, conditional on the subnet key
    /// being absent or still naming this node. Someone may have deleted either (`nodenet
    /// delete` of the Node, an operator's etcdctl): while the node lives its records come back
    /// within a third of the TTL.
    private func ensureRecords(_ current: Held) async throws {
        let subnetKey = keys.subnetKey(current.subnet)
        let nodeKey = keys.key(for: ObjectKey(.node, name: nodeName))
        let intact = try await client.txn(if: [.lease(subnetKey, equals: current.lease), .lease(nodeKey, equals: current.lease)], then: [])
        if intact.succeeded { return }
        logger.warning("etcd: the records of node \(nodeName) were not on its lease \(current.lease); writing them again")
        if try await claim(current.subnet, lease: current.lease, nodeIP: current.nodeIPs, condition: .absent(subnetKey)) { return }
        if let kv = try await client.get(subnetKey), let record = try? JSONDecoder().decode(SubnetRecord.self, from: kv.value),
           record.node == nodeName,
           try await claim(current.subnet, lease: current.lease, nodeIP: current.nodeIPs, condition: .modRevision(subnetKey, equals: kv.modRevision)) {
            return
        }
        throw SubnetLeaseError(message: "subnet \(current.subnet) of node \(nodeName) now names another node")
    }

    /// Gives the subnet back now (deletes the subnet key and the Node object).
    public func release() async throws {
        guard let lease = held.withLock({ h -> Int64? in defer { h = nil }; return h?.lease }) else { return }
        try await client.revokeLease(lease)
    }

    private func rememberedSubnet() -> IPPrefix? {
        guard let stateFile, let data = FileManager.default.contents(atPath: stateFile),
              let record = try? JSONDecoder().decode(SubnetRecord.self, from: data), record.node == nodeName else { return nil }
        return IPPrefix(record.cidr)
    }

    private func remember(_ cidr: IPPrefix) {
        guard let stateFile, let data = try? JSONEncoder().encode(SubnetRecord(node: nodeName, cidr: cidr.description)) else { return }
        do {
            try data.write(to: URL(fileURLWithPath: stateFile), options: .atomic)
        } catch {
            logger.warning("etcd: cannot remember subnet \(cidr) in \(stateFile): \(error)")
        }
    }
}
