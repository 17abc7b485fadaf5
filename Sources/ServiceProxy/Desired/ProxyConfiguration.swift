import IPAddressing
import Netlink

/// What the proxy needs from the agent's configuration.
public struct ProxyConfiguration: Hashable, Sendable {
    /// This node's name: endpoints with this nodeName are local (traffic policy Local).
    public var nodeName: String
    /// This node's zone (its Node's `topology.kubernetes.io/zone` label): topology-aware
    /// services use the endpoints hinted for it. nil: no zone, hints are not followed.
    public var nodeZone: String?
    /// The node's own addresses: NodePorts answer on these. Empty for a family: any local
    /// address (`fib daddr type local`), loopback excluded.
    public var nodeAddresses: [IPAddress]
    public var nodePortRange: ClosedRange<UInt16>
    /// Pod networks: sources inside are pods (no masquerade to a ClusterIP; eTP=Local short-circuit).
    public var clusterCIDRs: [IPPrefix]
    /// Service networks: unallocated ClusterIPs are dropped, not routed out.
    public var serviceCIDRs: [IPPrefix]
    /// The packet mark bit that asks postrouting to masquerade (kube-proxy's default bit 14).
    public var masqueradeMark: UInt32
    /// The table name, the same in both families.
    public var tableName: String
    /// How often the actor re-reads the kernel and repairs drift.
    public var fullSyncInterval: Duration
    /// How long the planner waits after an event for more before it syncs (coalescing bursts).
    public var coalesceDelay: Duration
    /// Chains and sets in the shared tables that belong to other actors (NodeRoutes'
    /// `pod-egress`, the DNS notrack chains, PodNetwork's host port chains): read back from
    /// the kernel but never compared, flushed or deleted.
    public var foreignObjects: Set<String> = NodenetTables.notServiceProxy

    public init(nodeName: String, nodeAddresses: [IPAddress] = [], nodePortRange: ClosedRange<UInt16> = 30000...32767,
                clusterCIDRs: [IPPrefix] = [], serviceCIDRs: [IPPrefix] = [], masqueradeMark: UInt32 = NodenetTables.masqueradeMark,
                tableName: String = NodenetTables.name, fullSyncInterval: Duration = .seconds(300),
                coalesceDelay: Duration = .zero, nodeZone: String? = nil) {
        self.nodeName = nodeName
        self.nodeZone = nodeZone
        self.nodeAddresses = nodeAddresses
        self.nodePortRange = nodePortRange
        self.clusterCIDRs = clusterCIDRs
        self.serviceCIDRs = serviceCIDRs
        self.masqueradeMark = masqueradeMark
        self.tableName = tableName
        self.fullSyncInterval = fullSyncInterval
        self.coalesceDelay = coalesceDelay
    }

    func clusterCIDRs(_ f: TableFamily) -> [IPPrefix] { clusterCIDRs.filter { $0.family == f.ipFamily } }
    func nodeAddresses(_ f: TableFamily) -> [IPAddress] { nodeAddresses.filter { $0.family == f.ipFamily } }
    func serviceCIDRs(_ f: TableFamily) -> [IPPrefix] { serviceCIDRs.filter { $0.family == f.ipFamily } }
}
