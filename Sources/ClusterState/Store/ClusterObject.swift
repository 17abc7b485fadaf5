/// Any object the store holds.
public enum ClusterObject: Hashable, Sendable {
    case node(Node)
    case service(Service)
    case endpointSlice(EndpointSlice)
    case pod(Pod)
    case namespace(Namespace)
    case networkPolicy(NetworkPolicy)
    case clusterNetworkPolicy(ClusterNetworkPolicy)
    case attachment(PodAttachment)
    case lease(SubnetLease)

    public var kind: ObjectKind {
        switch self {
        case .node: .node
        case .service: .service
        case .endpointSlice: .endpointSlice
        case .pod: .pod
        case .namespace: .namespace
        case .networkPolicy: .networkPolicy
        case .clusterNetworkPolicy: .clusterNetworkPolicy
        case .attachment: .attachment
        case .lease: .lease
        }
    }

    public var key: ObjectKey {
        switch self {
        case .node(let o): ObjectKey(.node, name: o.metadata.name)
        case .service(let o): ObjectKey(.service, namespace: o.namespace, name: o.name)
        case .endpointSlice(let o): ObjectKey(.endpointSlice, namespace: o.namespace, name: o.metadata.name)
        case .pod(let o): ObjectKey(.pod, namespace: o.namespace, name: o.name)
        case .namespace(let o): ObjectKey(.namespace, name: o.metadata.name)
        case .networkPolicy(let o): ObjectKey(.networkPolicy, namespace: o.namespace, name: o.name)
        case .clusterNetworkPolicy(let o): ObjectKey(.clusterNetworkPolicy, name: o.name)
        case .attachment(let o): ObjectKey(.attachment, name: o.keyName)
        case .lease(let o): ObjectKey(.lease, name: o.nodeName)
        }
    }
}

/// One requested change to the store.
public enum StoreChange: Hashable, Sendable {
    case upsert(ClusterObject)
    case delete(ObjectKey)

    public var key: ObjectKey {
        switch self {
        case .upsert(let o): o.key
        case .delete(let k): k
        }
    }
}

/// One change the store made: the object before and after (nil for created / deleted).
public struct ObjectChange: Hashable, Sendable {
    public var key: ObjectKey
    public var old: ClusterObject?
    public var new: ClusterObject?

    public init(key: ObjectKey, old: ClusterObject?, new: ClusterObject?) {
        self.key = key
        self.old = old
        self.new = new
    }
}

/// What a subscriber receives.
public enum StoreEvent: Sendable {
    /// Changes applied atomically at `version`.
    case changed(version: UInt64, changes: [ObjectChange])
    /// The subscriber fell behind and events were dropped: rebuild from `store.snapshot()`.
    case resync(version: UInt64)
    /// The source finished its first full sync (names under the cluster zone may now be answered).
    case synced(version: UInt64)
}
