import IPAddressing

/// One CNI attachment on this node: (container id, ifname) with the pod it belongs to and its addresses.
/// Recorded by PodNetwork the moment ADD succeeds, so DNS and endpoints follow with no API round trip.
public struct PodAttachment: Hashable, Sendable, Codable {
    public var containerID: String
    public var ifname: String
    public var netns: String
    /// From CNI_ARGS K8S_POD_NAMESPACE / K8S_POD_NAME / K8S_POD_UID; nil when the runtime gave none.
    public var podNamespace: String?
    public var podName: String?
    public var podUID: String?
    /// Addresses with their subnet's prefix length (10.244.1.5/24).
    public var ips: [IPPrefix]
    public var hostInterface: String
    public var mac: String?
    public var network: String

    public init(containerID: String, ifname: String, netns: String, podNamespace: String? = nil, podName: String? = nil,
                podUID: String? = nil, ips: [IPPrefix], hostInterface: String, mac: String? = nil, network: String = "nodenet") {
        self.containerID = containerID
        self.ifname = ifname
        self.netns = netns
        self.podNamespace = podNamespace
        self.podName = podName
        self.podUID = podUID
        self.ips = ips
        self.hostInterface = hostInterface
        self.mac = mac
        self.network = network
    }

    /// The store key name: container id and ifname, which the CNI spec makes unique.
    public var keyName: String { "\(containerID)/\(ifname)" }
    public var pod: NamespacedName? {
        guard let podNamespace, let podName else { return nil }
        return NamespacedName(podNamespace, podName)
    }
}

/// A node's pod subnet(s), leased from clusterCIDR when no one assigned them.
public struct SubnetLease: Hashable, Sendable, Codable {
    public var nodeName: String
    public var cidrs: [IPPrefix]

    public init(nodeName: String, cidrs: [IPPrefix]) {
        self.nodeName = nodeName
        self.cidrs = cidrs
    }
}
