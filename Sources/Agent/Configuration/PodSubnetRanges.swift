import ClusterState
import IPAddressing

extension AgentConfiguration {
    /// The ranges this node leases its pod subnets from when neither `podCIDRs` nor its Node
    /// object gives them: one per `clusterCIDR`, in that order (the primary family first),
    /// each with its family's `nodeCIDRMaskSizeIPv4`/`IPv6`.
    public var podSubnetRanges: [PodSubnetRange] {
        clusterCIDRs.map { PodSubnetRange(clusterCIDR: $0, maskSize: nodeCIDRMaskSize($0.family)) }
    }
}
