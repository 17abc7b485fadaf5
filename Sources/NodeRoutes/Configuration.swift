// What the agent tells NodeRoutes about this node, and the naming rules every node applies
// the same way (vxlan device name, VTEP MAC) so peers agree without a control plane.
import IPAddressing
import Netlink

/// How traffic to other nodes' pod subnets travels.
public enum RoutingMode: String, Sendable, Codable, CaseIterable {
    /// A route per peer subnet via the peer's node address: needs every peer on-link.
    case hostGW = "host-gw"
    /// An overlay: per peer a neighbour entry, an FDB entry and an onlink route on nodenet's vxlan device.
    case vxlan
    /// host-gw for peers on the underlay's own subnet, vxlan for the others, per peer.
    case auto
}

public struct NodeRoutesConfiguration: Sendable {
    public var nodeName: String
    /// The underlay address: the interface holding it carries host-gw routes and vxlan packets.
    public var nodeIP: IPAddress
    /// This node's own pod subnets (at most one per family).
    public var podCIDRs: [IPPrefix]
    /// The whole pod network (the routes treat addresses in it as pods'; the masquerade
    /// reconciler, run beside the routes, masquerades what leaves it).
    public var clusterCIDRs: [IPPrefix]
    public var mode: RoutingMode
    public var vxlanVNI: UInt32
    public var vxlanPort: UInt16
    /// The safety-net full reconcile (kernel dump and diff) on top of event-driven repair.
    public var resyncInterval: Duration
    /// Where the dataplane lives; nil for the agent's own namespace (tests and benchmarks
    /// pass a node namespace so the actor never touches the machine's own).
    public var namespace: NetworkNamespace?

    public init(nodeName: String, nodeIP: IPAddress, podCIDRs: [IPPrefix], clusterCIDRs: [IPPrefix], mode: RoutingMode,
                vxlanVNI: UInt32 = 1, vxlanPort: UInt16 = 8472, resyncInterval: Duration = .seconds(60),
                namespace: NetworkNamespace? = nil) {
        self.nodeName = nodeName
        self.nodeIP = nodeIP
        self.podCIDRs = podCIDRs
        self.clusterCIDRs = clusterCIDRs
        self.mode = mode
        self.vxlanVNI = vxlanVNI
        self.vxlanPort = vxlanPort
        self.resyncInterval = resyncInterval
        self.namespace = namespace
    }

    /// `nodenet.<VNI>`, like flannel's `flannel.<VNI>`; VNIs too long for the 15-byte
    /// interface name limit get the shorter `nnvx<VNI>`.
    public var vxlanDeviceName: String {
        let name = "nodenet.\(vxlanVNI)"
        return name.utf8.count <= InterfaceName.maxLength ? name : "nnvx\(vxlanVNI)"
    }
}

/// The VTEP MAC of a node, derived from its underlay address alone so every node computes
/// every peer's MAC from the Node object (there is no control plane to publish it), and it
/// survives restarts and reboots: `0e:6e` (locally administered, unicast; 0x6e is "n") then
/// the last four bytes of the address (the whole IPv4 address: 192.168.1.12 gives
/// 0e:6e:c0:a8:01:0c). Two nodes share a MAC only if their addresses end alike, which within
/// one IPv4 underlay cannot happen.
public enum VTEPAddress {
    public static func mac(for nodeIP: IPAddress) -> MACAddress {
        MACAddress(bytes: [0x0e, 0x6e] + nodeIP.bytes.suffix(4))!
    }

    /// The vxlan overhead: outer Ethernet 14, IPv4 20, UDP 8, vxlan 8 = 50 (flannel's rule;
    /// an IPv6 underlay needs 20 more).
    public static func overlayMTU(underlayMTU: UInt32, underlayFamily: IPFamily) -> UInt32 {
        underlayMTU - (underlayFamily == .v4 ? 50 : 70)
    }

    /// The pods' MTU: the underlay's, or the overlay's wherever a packet may take the vxlan
    /// device (`vxlan`, and `auto`, whose off-link peers go through it). One computation for
    /// the device and the pods, so the two never disagree.
    public static func podMTU(underlayMTU: UInt32, underlayFamily: IPFamily, routing: RoutingMode) -> UInt32 {
        routing == .hostGW ? underlayMTU : overlayMTU(underlayMTU: underlayMTU, underlayFamily: underlayFamily)
    }
}
