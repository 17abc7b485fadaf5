// What `nodenet status` shows for routes: one row per peer, plus the node-level facts.
// A Sendable value the actor publishes after each change, readable without awaiting.
import ClusterState
import IPAddressing
import Netlink

public struct PeerRouteStatus: Sendable, Hashable, Codable {
    public enum State: String, Sendable, Codable {
        case inSync = "in-sync"
        case error
        case refused
    }

    public var name: String
    public var nodeIP: String?
    public var podCIDRs: [String]
    /// "host-gw" or "vxlan"; nil when refused.
    public var mode: String?
    /// The next hop of the peer's routes (its node IP, or subnet.0 via the vxlan device).
    public var nextHop: String?
    public var state: State
    /// Why the peer is refused or what failed.
    public var message: String?
    /// Every InternalIP of the peer (both families on a dual-stack cluster).
    public var nodeIPs: [String] = []
    /// One row per pod subnet of the peer: its next hop and state, so a dual-stack peer shows
    /// each family (an IPv6 subnet of a peer with no usable IPv6 path is refused on its own).
    public var routes: [Route] = []

    public struct Route: Sendable, Hashable, Codable {
        public var subnet: String
        public var nextHop: String?
        public var state: State
    }
}

extension PeerRouteStatus {
    /// One row per other Node, by name: programmed (in sync or its error) or refused and why.
    static func rows(nodes: some Collection<Node>, configuration c: NodeRoutesConfiguration, desired: DesiredState,
                     errors: [String: String]) -> [PeerRouteStatus] {
        nodes.sorted { $0.name < $1.name }.filter { $0.name != c.nodeName }.map { node in
            var row = PeerRouteStatus(name: node.name, nodeIP: node.internalIP(c.nodeIP.family)?.description,
                                      podCIDRs: node.podCIDRs.map(\.description), mode: nil, nextHop: nil, state: .refused)
            row.nodeIPs = node.internalIPs.map(\.description)
            guard let plan = desired.peers[node.name] else {
                row.message = desired.refused[node.name] ?? "not programmed"
                return row
            }
            row.mode = plan.mode.rawValue
            func hop(_ a: IPAddress) -> String { plan.mode == .vxlan ? "\(a) dev \(c.vxlanDeviceName) onlink" : "\(a)" }
            row.nextHop = plan.nextHops.first.map(hop)
            row.state = errors[node.name] == nil ? .inSync : .error
            row.routes = node.podCIDRs.map { subnet in
                guard let i = plan.subnets.firstIndex(of: subnet), i < plan.nextHops.count else {
                    return Route(subnet: subnet.description, nextHop: nil, state: .refused)
                }
                return Route(subnet: subnet.description, nextHop: hop(plan.nextHops[i]), state: row.state)
            }
            // A partly programmed peer (a subnet of a family it has no address for) says so.
            row.message = errors[node.name] ?? desired.refused[node.name]
            return row
        }
    }
}

/// What the per-peer rows are built from: published on each change in O(1) (copy-on-write
/// dictionaries), turned into rows only when the status is read.
struct PeerRowInputs: Sendable {
    var configuration: NodeRoutesConfiguration
    var nodes: [String: Node] = [:]
    var desired = DesiredState()
    var errors: [String: String] = [:]

    func rows() -> [PeerRouteStatus] {
        PeerRouteStatus.rows(nodes: nodes.values, configuration: configuration, desired: desired, errors: errors)
    }

    /// Peers (other Nodes) and those not in sync (refused, or a programmed one with an error),
    /// without building the rows: O(errors), not O(peers). `rows()` gives the same figures.
    var counts: (peers: Int, failing: Int) {
        let peers = nodes.count - (nodes[configuration.nodeName] == nil ? 0 : 1)
        // `desired` is computed from `nodes` without this node: its peers are all other Nodes.
        let programmedWithError = errors.keys.filter { desired.peers[$0] != nil }.count
        return (peers, peers - desired.peers.count + programmedWithError)
    }
}

public struct NodeRoutesStatus: Sendable, Hashable, Codable {
    public var mode: String
    public var underlay: String?
    public var vxlanDevice: String?
    public var podCIDRs: [String]
    /// One row per peer; filled by `NodeRoutesActor.status` (not by `summaryStatus`).
    public var peers: [PeerRouteStatus] = []
    /// Other Nodes, and those of them not in sync: maintained on each change, equal to
    /// `peers.count` and the rows not in sync.
    public var peerCount = 0
    public var failingPeers = 0
    /// The store version whose desired routes the kernel holds (0 before the first reconcile):
    /// the routes are in sync with the store when it is the store's version.
    public var appliedVersion: UInt64 = 0
    /// Node-level problems (own subnet missing, underlay not found, forwarding failed).
    public var errors: [String] = []
    /// True after the first full reconcile.
    public var reconciled = false
    public var fullReconciles = 0
    /// Kernel entries restored or removed because something changed them behind our back.
    public var repairs = 0
    /// The number of nodenet routes the last reconcile left in the kernel.
    public var routes = 0
    /// The node-level kernel objects (the vxlan device and its addresses, forwarding), one status each after the last full reconcile.
    public var objects: [KernelObjectStatus] = []

    public var summary: String {
        return "routes: \(mode), \(peerCount - failingPeers)/\(peerCount) peers in sync, \(repairs) repairs" + (errors.isEmpty ? "" : ", \(errors.count) errors")
    }
}
