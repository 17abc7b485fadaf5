import IPAddressing

/// A consistent, immutable view of the whole store at one version. Value semantics:
/// copying it is cheap (copy-on-write dictionaries) and it never changes under the reader.
public struct ClusterSnapshot: Sendable {
    public internal(set) var version: UInt64 = 0
    /// True once the source completed its first sync.
    public internal(set) var synced: Bool = false
    public internal(set) var nodes: [String: Node] = [:]
    public internal(set) var namespaces: [String: Namespace] = [:]
    public internal(set) var services: [NamespacedName: Service] = [:]
    public internal(set) var endpointSlices: [NamespacedName: EndpointSlice] = [:]
    public internal(set) var pods: [NamespacedName: Pod] = [:]
    public internal(set) var networkPolicies: [NamespacedName: NetworkPolicy] = [:]
    /// Cluster-scoped: keyed by name.
    public internal(set) var clusterNetworkPolicies: [String: ClusterNetworkPolicy] = [:]
    /// Keyed by "containerID/ifname".
    public internal(set) var attachments: [String: PodAttachment] = [:]
    public internal(set) var leases: [String: SubnetLease] = [:]
    /// Secondary index: service -> names of its slices.
    public internal(set) var slicesByService: [NamespacedName: Set<String>] = [:]
    /// Secondary index: node name -> names of the pods whose `spec.nodeName` is that node, so
    /// a Node event finds its pods without walking every Pod (150,000 Pods copied per Node
    /// added were most of a Node event's CPU at 5,000 nodes).
    public internal(set) var podsByNode: [String: Set<NamespacedName>] = [:]

    public init() {}

    public subscript(key: ObjectKey) -> ClusterObject? {
        switch key.kind {
        case .node: nodes[key.name].map(ClusterObject.node)
        case .namespace: namespaces[key.name].map(ClusterObject.namespace)
        case .service: services[NamespacedName(key.namespace, key.name)].map(ClusterObject.service)
        case .endpointSlice: endpointSlices[NamespacedName(key.namespace, key.name)].map(ClusterObject.endpointSlice)
        case .pod: pods[NamespacedName(key.namespace, key.name)].map(ClusterObject.pod)
        case .networkPolicy: networkPolicies[NamespacedName(key.namespace, key.name)].map(ClusterObject.networkPolicy)
        case .clusterNetworkPolicy: clusterNetworkPolicies[key.name].map(ClusterObject.clusterNetworkPolicy)
        case .attachment: attachments[key.name].map(ClusterObject.attachment)
        case .lease: leases[key.name].map(ClusterObject.lease)
        }
    }

    /// Sets or removes one object, keeping the indexes right. Returns the previous object.
    @discardableResult
    mutating func set(_ key: ObjectKey, _ object: ClusterObject?) -> ClusterObject? {
        let old = self[key]
        let nn = NamespacedName(key.namespace, key.name)
        switch (key.kind, object) {
        case (.node, .node(let o)): nodes[key.name] = o
        case (.node, _): nodes[key.name] = nil
        case (.namespace, .namespace(let o)): namespaces[key.name] = o
        case (.namespace, _): namespaces[key.name] = nil
        case (.service, .service(let o)): services[nn] = o
        case (.service, _): services[nn] = nil
        case (.pod, let new):
            let newPod: Pod? = if case .pod(let o)? = new { o } else { nil }
            if case .pod(let prev)? = old, let n = prev.nodeName, n != newPod?.nodeName {
                podsByNode[n]?.remove(nn)
                if podsByNode[n]?.isEmpty == true { podsByNode[n] = nil }
            }
            pods[nn] = newPod
            if let n = newPod?.nodeName { podsByNode[n, default: []].insert(nn) }
        case (.networkPolicy, .networkPolicy(let o)): networkPolicies[nn] = o
        case (.networkPolicy, _): networkPolicies[nn] = nil
        case (.clusterNetworkPolicy, .clusterNetworkPolicy(let o)): clusterNetworkPolicies[key.name] = o
        case (.clusterNetworkPolicy, _): clusterNetworkPolicies[key.name] = nil
        case (.attachment, .attachment(let o)): attachments[key.name] = o
        case (.attachment, _): attachments[key.name] = nil
        case (.lease, .lease(let o)): leases[key.name] = o
        case (.lease, _): leases[key.name] = nil
        case (.endpointSlice, let new):
            if case .endpointSlice(let prev)? = old, let svc = prev.service {
                slicesByService[svc]?.remove(key.name)
                if slicesByService[svc]?.isEmpty == true { slicesByService[svc] = nil }
            }
            if case .endpointSlice(let o)? = new {
                endpointSlices[nn] = o
                if let svc = o.service { slicesByService[svc, default: []].insert(key.name) }
            } else {
                endpointSlices[nn] = nil
            }
        }
        return old
    }

    /// The pods whose `spec.nodeName` is `node`, in no particular order: O(its pods).
    public func pods(on node: String) -> [Pod] {
        (podsByNode[node] ?? []).compactMap { pods[$0] }
    }

    /// All slices that belong to a service.
    public func endpointSlices(for service: NamespacedName) -> [EndpointSlice] {
        (slicesByService[service] ?? []).sorted().compactMap { endpointSlices[NamespacedName(service.namespace, $0)] }
    }

    public var objectCount: Int {
        nodes.count + namespaces.count + services.count + endpointSlices.count + pods.count + networkPolicies.count + clusterNetworkPolicies.count + attachments.count + leases.count
    }

    public func count(of kind: ObjectKind) -> Int {
        switch kind {
        case .node: nodes.count
        case .namespace: namespaces.count
        case .service: services.count
        case .endpointSlice: endpointSlices.count
        case .pod: pods.count
        case .networkPolicy: networkPolicies.count
        case .clusterNetworkPolicy: clusterNetworkPolicies.count
        case .attachment: attachments.count
        case .lease: leases.count
        }
    }

    /// Calls `body` with every object of one kind, in no particular order, without building
    /// an array of them.
    public func forEachObject(of kind: ObjectKind, _ body: (ClusterObject) throws -> Void) rethrows {
        switch kind {
        case .node: for o in nodes.values { try body(.node(o)) }
        case .namespace: for o in namespaces.values { try body(.namespace(o)) }
        case .service: for o in services.values { try body(.service(o)) }
        case .endpointSlice: for o in endpointSlices.values { try body(.endpointSlice(o)) }
        case .pod: for o in pods.values { try body(.pod(o)) }
        case .networkPolicy: for o in networkPolicies.values { try body(.networkPolicy(o)) }
        case .clusterNetworkPolicy: for o in clusterNetworkPolicies.values { try body(.clusterNetworkPolicy(o)) }
        case .attachment: for o in attachments.values { try body(.attachment(o)) }
        case .lease: for o in leases.values { try body(.lease(o)) }
        }
    }

    /// Every object, sorted by key (for listing and persistence).
    public var allObjects: [ClusterObject] {
        var out: [ClusterObject] = []
        out += namespaces.values.map(ClusterObject.namespace)
        out += nodes.values.map(ClusterObject.node)
        out += services.values.map(ClusterObject.service)
        out += endpointSlices.values.map(ClusterObject.endpointSlice)
        out += pods.values.map(ClusterObject.pod)
        out += networkPolicies.values.map(ClusterObject.networkPolicy)
        out += clusterNetworkPolicies.values.map(ClusterObject.clusterNetworkPolicy)
        out += attachments.values.map(ClusterObject.attachment)
        out += leases.values.map(ClusterObject.lease)
        return out.sorted { $0.key < $1.key }
    }

    /// A pod's addresses: its status when the source reported them, else those of its
    /// attachments on this node (embedded mode: the CNI path is where IPs come from).
    public func addresses(of pod: NamespacedName) -> [IPAddress] {
        if let p = pods[pod], !p.podIPs.isEmpty { return p.podIPs }
        return attachments.values.filter { $0.pod == pod }.sorted { $0.keyName < $1.keyName }
            .flatMap { $0.ips.map(\.address) }
    }
}
