// The identity every cluster object shares, cut down to what nodenet reads.

public enum ObjectKind: String, Sendable, Hashable, Codable, CaseIterable, Comparable {
    case node = "Node"
    case service = "Service"
    case endpointSlice = "EndpointSlice"
    case pod = "Pod"
    case namespace = "Namespace"
    /// networking.k8s.io/v1 NetworkPolicy.
    case networkPolicy = "NetworkPolicy"
    /// policy.networking.k8s.io/v1alpha2 ClusterNetworkPolicy (cluster-scoped, like Node).
    case clusterNetworkPolicy = "ClusterNetworkPolicy"
    /// Node-local: a CNI attachment (container id + ifname) and its addresses.
    case attachment = "PodAttachment"
    /// A node's pod subnet lease (embedded and etcd sources).
    case lease = "SubnetLease"

    /// Kinds a user may write with `nodenet apply`.
    public static let manifestKinds: [ObjectKind] = [.namespace, .node, .service, .endpointSlice, .pod, .networkPolicy, .clusterNetworkPolicy]

    public var isNamespaced: Bool {
        switch self {
        case .service, .endpointSlice, .pod, .networkPolicy: true
        case .node, .namespace, .clusterNetworkPolicy, .attachment, .lease: false
        }
    }

    /// The apiVersion nodenet writes and expects for this kind.
    public var apiVersion: String {
        switch self {
        case .endpointSlice: "discovery.k8s.io/v1"
        case .networkPolicy: "networking.k8s.io/v1"
        case .clusterNetworkPolicy: "policy.networking.k8s.io/v1alpha2"
        case .attachment, .lease: "nodenet.io/v1"
        default: "v1"
        }
    }

    public static func < (a: Self, b: Self) -> Bool {
        allCases.firstIndex(of: a)! < allCases.firstIndex(of: b)!
    }
}

/// Kind, namespace and name: the store's primary key.
public struct ObjectKey: Hashable, Sendable, Comparable, CustomStringConvertible, Codable {
    public var kind: ObjectKind
    public var namespace: String
    public var name: String

    public init(_ kind: ObjectKind, namespace: String = "", name: String) {
        self.kind = kind
        self.namespace = namespace
        self.name = name
    }

    public var description: String {
        namespace.isEmpty ? "\(kind.rawValue) \(name)" : "\(kind.rawValue) \(namespace)/\(name)"
    }

    public static func < (a: Self, b: Self) -> Bool {
        (a.kind, a.namespace, a.name) < (b.kind, b.namespace, b.name)
    }
}

/// namespace/name, for objects whose kind is known from context.
public struct NamespacedName: Hashable, Sendable, Comparable, CustomStringConvertible, Codable {
    public var namespace: String
    public var name: String

    public init(_ namespace: String, _ name: String) {
        self.namespace = namespace
        self.name = name
    }

    public var description: String { "\(namespace)/\(name)" }

    public static func < (a: Self, b: Self) -> Bool { (a.namespace, a.name) < (b.namespace, b.name) }
}

public struct ObjectMeta: Hashable, Sendable, Codable {
    public var name: String
    public var namespace: String?
    public var uid: String?
    public var resourceVersion: String?
    public var labels: [String: String]?
    public var annotations: [String: String]?
    public var deletionTimestamp: String?

    public init(name: String, namespace: String? = nil, uid: String? = nil, labels: [String: String]? = nil,
                annotations: [String: String]? = nil) {
        self.name = name
        self.namespace = namespace
        self.uid = uid
        self.labels = labels
        self.annotations = annotations
    }

    public func label(_ key: String) -> String? { labels?[key] }
}
