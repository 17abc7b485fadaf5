import IPAddressing

public struct NodeAddress: Hashable, Sendable, Codable {
    public var type: String
    public var address: String

    public init(type: String, address: String) {
        self.type = type
        self.address = address
    }
}

/// A cluster node: its pod subnets and addresses (spec.podCIDRs, status.addresses).
public struct Node: Hashable, Sendable, Codable {
    public var metadata: ObjectMeta
    public var podCIDRs: [IPPrefix]
    public var addresses: [NodeAddress]

    public init(metadata: ObjectMeta, podCIDRs: [IPPrefix], addresses: [NodeAddress]) {
        self.metadata = metadata
        self.podCIDRs = podCIDRs
        self.addresses = addresses
    }

    public var name: String { metadata.name }

    /// The well-known label that names a node's zone (topology-aware routing).
    public static let zoneLabel = "topology.kubernetes.io/zone"

    /// The node's zone, from its `topology.kubernetes.io/zone` label; nil when unset or empty.
    public var zone: String? { metadata.label(Self.zoneLabel).flatMap { $0.isEmpty ? nil : $0 } }

    /// InternalIP addresses, IPv4 first: what routes to the node's pods point at.
    public var internalIPs: [IPAddress] {
        addresses.filter { $0.type == "InternalIP" }.compactMap { IPAddress($0.address) }.sorted()
    }

    public func internalIP(_ family: IPFamily) -> IPAddress? {
        internalIPs.first { $0.family == family }
    }

    private struct Spec: Codable {
        var podCIDR: String?
        var podCIDRs: [String]?
    }

    private struct Status: Codable {
        var addresses: [NodeAddress]?
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: AnyKey.self)
        try checkKind(c, decoder, .node)
        metadata = try decodeMeta(c, decoder, kind: .node)
        let spec = try c.decodeIfPresent(Spec.self, forKey: AnyKey("spec")) ?? Spec()
        let status = try c.decodeIfPresent(Status.self, forKey: AnyKey("status")) ?? Status()
        let texts = spec.podCIDRs ?? spec.podCIDR.map { [$0] } ?? []
        podCIDRs = try texts.map { text in
            guard let p = IPPrefix(text), p.isNetwork else {
                throw invalid(decoder, "spec.podCIDRs", "\"\(text)\" is not a network CIDR (e.g. 10.244.1.0/24)")
            }
            return p
        }
        guard Set(podCIDRs.map(\.family)).count == podCIDRs.count else {
            throw invalid(decoder, "spec.podCIDRs", "at most one CIDR per IP family")
        }
        addresses = status.addresses ?? []
        for a in addresses where a.type == "InternalIP" || a.type == "ExternalIP" {
            guard IPAddress(a.address) != nil else {
                throw invalid(decoder, "status.addresses", "\(a.type) \"\(a.address)\" is not an IP address")
            }
        }
    }

    public func encode(to encoder: any Encoder) throws {
        var c = try encodeHeader(encoder, .node, metadata)
        let cidrs = podCIDRs.map(\.description)
        try c.encode(Spec(podCIDR: cidrs.first, podCIDRs: cidrs.isEmpty ? nil : cidrs), forKey: AnyKey("spec"))
        try c.encode(Status(addresses: addresses), forKey: AnyKey("status"))
    }
}

/// A Namespace: only its name and labels matter to nodenet (namespaceSelector matches the labels).
public struct Namespace: Hashable, Sendable, Codable {
    public var metadata: ObjectMeta

    /// The label the API server puts on every namespace, set to its name (whatever the manifest
    /// said), so `namespaceSelector` can pick a namespace by name.
    public static let nameLabel = "kubernetes.io/metadata.name"

    /// Adds the `kubernetes.io/metadata.name` label as the API server does: the embedded and
    /// etcd sources have no API server, and older stored rows lack it.
    public init(metadata: ObjectMeta) {
        var metadata = metadata
        metadata.labels = (metadata.labels ?? [:]).merging([Self.nameLabel: metadata.name]) { _, name in name }
        self.metadata = metadata
    }

    public var name: String { metadata.name }
    public var labels: [String: String] { metadata.labels ?? [:] }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: AnyKey.self)
        try checkKind(c, decoder, .namespace)
        self.init(metadata: try decodeMeta(c, decoder, kind: .namespace))
    }

    public func encode(to encoder: any Encoder) throws {
        _ = try encodeHeader(encoder, .namespace, metadata)
    }
}
