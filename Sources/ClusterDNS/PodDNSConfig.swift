import IPAddressing

/// The `dns` block a CNI result gives a pod (what kubelet writes for ClusterFirst).
public struct PodDNSConfig: Sendable, Hashable, Codable {
    public var nameservers: [String]
    public var search: [String]
    public var options: [String]

    public init(nameservers: [String], search: [String], options: [String]) {
        self.nameservers = nameservers
        self.search = search
        self.options = options
    }

    /// Nameservers are the node-local DNS addresses; search `<ns>.svc.<zone> svc.<zone> <zone>`; `ndots:5`.
    public static func forPod(namespace: String, clusterDomain: String = "cluster.local", nameservers: [IPAddress]) -> PodDNSConfig {
        let zone = clusterDomain.hasSuffix(".") ? String(clusterDomain.dropLast()) : clusterDomain
        return PodDNSConfig(nameservers: nameservers.map(\.description),
                            search: ["\(namespace).svc.\(zone)", "svc.\(zone)", zone],
                            options: ["ndots:5"])
    }
}
