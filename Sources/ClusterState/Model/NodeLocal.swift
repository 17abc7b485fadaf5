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
    /// Host ports forwarded to this attachment (the CNI `portMappings` capability of its ADD).
    public var portMappings: [PortMapping]

    public init(containerID: String, ifname: String, netns: String, podNamespace: String? = nil, podName: String? = nil,
                podUID: String? = nil, ips: [IPPrefix], hostInterface: String, mac: String? = nil, network: String = "nodenet",
                portMappings: [PortMapping] = []) {
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
        self.portMappings = portMappings
    }

    /// One host port: traffic for `hostIP` (any of the node's addresses when nil) on `hostPort`
    /// goes to the attachment's address of the same family on `containerPort`.
    public struct PortMapping: Hashable, Sendable, Codable {
        public var hostPort: UInt16
        public var containerPort: UInt16
        public var `protocol`: L4Protocol
        public var hostIP: IPAddress?

        public init(hostPort: UInt16, containerPort: UInt16, protocol: L4Protocol = .tcp, hostIP: IPAddress? = nil) {
            self.hostPort = hostPort
            self.containerPort = containerPort
            self.protocol = `protocol`
            self.hostIP = hostIP
        }
    }

    enum CodingKeys: String, CodingKey {
        case containerID, ifname, netns, podNamespace, podName, podUID, ips, hostInterface, mac, network, portMappings
    }

    // Written by hand only so that attachments stored before `portMappings` existed still decode.
    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        containerID = try c.decode(String.self, forKey: .containerID)
        ifname = try c.decode(String.self, forKey: .ifname)
        netns = try c.decode(String.self, forKey: .netns)
        podNamespace = try c.decodeIfPresent(String.self, forKey: .podNamespace)
        podName = try c.decodeIfPresent(String.self, forKey: .podName)
        podUID = try c.decodeIfPresent(String.self, forKey: .podUID)
        ips = try c.decode([IPPrefix].self, forKey: .ips)
        hostInterface = try c.decode(String.self, forKey: .hostInterface)
        mac = try c.decodeIfPresent(String.self, forKey: .mac)
        network = try c.decode(String.self, forKey: .network)
        portMappings = try c.decodeIfPresent([PortMapping].self, forKey: .portMappings) ?? []
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
