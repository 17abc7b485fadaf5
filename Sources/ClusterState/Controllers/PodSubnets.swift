import IPAddressing

/// Where this node's pod subnets come from, in the design's order of precedence.
public enum PodSubnetSource: String, Sendable, Codable {
    case config
    case nodeObject
    case lease
}

public struct PodSubnetError: Error, CustomStringConvertible, Sendable {
    public var message: String
    public var description: String { message }
    public init(message: String) { self.message = message }
}

/// One family's range that node subnets are leased from: a `clusterCIDR` and the size of each
/// node's subnet in it (kube-controller-manager's `--node-cidr-mask-size-ipv4/-ipv6`).
public struct PodSubnetRange: Hashable, Sendable {
    public var clusterCIDR: IPPrefix
    public var maskSize: Int

    public init(clusterCIDR: IPPrefix, maskSize: Int) {
        self.clusterCIDR = clusterCIDR
        self.maskSize = maskSize
    }

    public var family: IPFamily { clusterCIDR.family }

    /// The config key that sets `maskSize` for this family (named in errors).
    public var maskKey: String { family == .v4 ? "nodeCIDRMaskSizeIPv4" : "nodeCIDRMaskSizeIPv6" }

    /// nil when the mask fits; else why not, naming the key.
    public var misfit: String? {
        maskSize >= clusterCIDR.length && maskSize <= family.bitWidth
            ? nil : "\(maskKey) \(maskSize) does not fit in clusterCIDR \(clusterCIDR)"
    }

    /// Whether `cidr` is a node subnet of this range (same family, inside, of the mask size).
    public func holds(_ cidr: IPPrefix) -> Bool { clusterCIDR.contains(cidr) && cidr.length == maskSize }
}

public enum PodSubnets {
    /// The node's pod subnets: `configured` (config key podCIDRs) if given, else its Node
    /// object's, else an existing lease, else nil (the caller leases one with `nextLease`).
    public static func resolve(node: String, configured: [IPPrefix], in snapshot: ClusterSnapshot) -> ([IPPrefix], PodSubnetSource)? {
        if !configured.isEmpty { return (configured, .config) }
        if let n = snapshot.nodes[node], !n.podCIDRs.isEmpty { return (n.podCIDRs, .nodeObject) }
        if let l = snapshot.leases[node], !l.cidrs.isEmpty { return (l.cidrs, .lease) }
        return nil
    }

    /// Whether `lease` already has one subnet inside each range (so there is nothing to lease).
    /// Cheap: the agent asks on every store change.
    public static func covers(_ lease: SubnetLease?, _ ranges: [PodSubnetRange]) -> Bool {
        guard let lease else { return ranges.isEmpty }
        return ranges.allSatisfy { r in lease.cidrs.contains { r.clusterCIDR.contains($0) } }
    }

    /// The node's lease with one subnet per range, in range order (the primary family first),
    /// as kube-controller-manager allocates a dual-stack Node's podCIDRs. A subnet the node
    /// already leases inside a range is kept whatever its size (pods hold addresses in it: an
    /// upgraded single-family node keeps its IPv4 subnet and gains an IPv6 one); for the others
    /// the first free subnet of the range's mask size that no Node and no other lease uses.
    public static func nextLease(node: String, ranges: [PodSubnetRange],
                                 in snapshot: ClusterSnapshot) throws(PodSubnetError) -> SubnetLease {
        let existing = snapshot.leases[node]?.cidrs ?? []
        var cidrs: [IPPrefix] = []
        for range in ranges {
            if let kept = existing.first(where: { range.clusterCIDR.contains($0) }) {
                cidrs.append(kept)
            } else {
                cidrs.append(try nextSubnet(node: node, range: range, in: snapshot))
            }
        }
        return SubnetLease(nodeName: node, cidrs: cidrs)
    }

    /// A lease of one subnet of `clusterCIDR` (the first free one of `maskSize`).
    public static func nextLease(node: String, clusterCIDR: IPPrefix, maskSize: Int,
                                 in snapshot: ClusterSnapshot) throws(PodSubnetError) -> SubnetLease {
        SubnetLease(nodeName: node, cidrs: [try nextSubnet(node: node, range: PodSubnetRange(clusterCIDR: clusterCIDR, maskSize: maskSize), in: snapshot)])
    }

    /// The first subnet of the range that no Node and no other node's lease uses.
    static func nextSubnet(node: String, range: PodSubnetRange, in snapshot: ClusterSnapshot) throws(PodSubnetError) -> IPPrefix {
        if let misfit = range.misfit { throw PodSubnetError(message: misfit) }
        let family = range.family
        var used: [IPPrefix] = snapshot.nodes.values.flatMap(\.podCIDRs)
        used += snapshot.leases.values.filter { $0.nodeName != node }.flatMap(\.cidrs)
        used = used.filter { $0.family == family }
        let count = min(range.clusterCIDR.subnetCount(length: range.maskSize), 1 << 20)
        for i in 0..<count {
            guard let candidate = range.clusterCIDR.subnet(length: range.maskSize, index: i) else { break }
            if !used.contains(where: { $0.overlaps(candidate) }) { return candidate }
        }
        throw PodSubnetError(message: "no free /\(range.maskSize) left in clusterCIDR \(range.clusterCIDR) (\(used.count) subnets of that family in use)")
    }
}
