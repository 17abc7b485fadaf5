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

    /// The first subnet of `clusterCIDR` of `maskSize` that no Node and no lease uses.
    public static func nextLease(node: String, clusterCIDR: IPPrefix, maskSize: Int,
                                 in snapshot: ClusterSnapshot) throws(PodSubnetError) -> SubnetLease {
        guard maskSize >= clusterCIDR.length, maskSize <= clusterCIDR.family.bitWidth else {
            throw PodSubnetError(message: "nodeCIDRMaskSize \(maskSize) does not fit in clusterCIDR \(clusterCIDR)")
        }
        var used: [IPPrefix] = snapshot.nodes.values.flatMap(\.podCIDRs)
        used += snapshot.leases.values.filter { $0.nodeName != node }.flatMap(\.cidrs)
        let count = min(clusterCIDR.subnetCount(length: maskSize), 1 << 20)
        for i in 0..<count {
            guard let candidate = clusterCIDR.subnet(length: maskSize, index: i) else { break }
            if !used.contains(where: { $0.overlaps(candidate) }) {
                return SubnetLease(nodeName: node, cidrs: [candidate])
            }
        }
        throw PodSubnetError(message: "no free /\(maskSize) left in clusterCIDR \(clusterCIDR) (\(used.count) subnets in use)")
    }
}
