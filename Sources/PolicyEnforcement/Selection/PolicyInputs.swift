import ClusterState
import IPAddressing

/// What policy enforcement reads from the cluster: namespaces with their labels, every pod with
/// its labels, addresses and named ports (cluster-wide: peers live on other nodes), the
/// policies, and which pods run on this node. Built from the store's snapshot.
public struct PolicyInputs: Sendable, Equatable {
    public struct PodInfo: Sendable, Hashable {
        public var id: NamespacedName
        public var labels: [String: String]
        public var ips: [IPAddress]
        public var ports: [ContainerPort]
        /// Runs on this node: this node enforces its ingress and egress.
        public var local: Bool

        public init(id: NamespacedName, labels: [String: String] = [:], ips: [IPAddress], ports: [ContainerPort] = [], local: Bool) {
            self.id = id
            self.labels = labels
            self.ips = ips
            self.ports = ports
            self.local = local
        }
    }

    /// Namespace name -> labels, `kubernetes.io/metadata.name` always among them (the API
    /// server sets it; a namespace only known from its pods gets just that label).
    public var namespaces: [String: [String: String]]
    public var pods: [NamespacedName: PodInfo]
    public var policies: [NamespacedName: NetworkPolicy]
    /// The node's DNS responder addresses (169.254.20.10, the cluster DNS Service IP): traffic to
    /// them is judged as traffic to a kube-dns pod (`dnsPod`).
    public var dnsAddresses: [IPAddress]
    /// The cluster-wide tiers (ClusterNetworkPolicy, by name).
    public var clusterPolicies: [String: ClusterNetworkPolicy] = [:]

    public init(namespaces: [String: [String: String]] = [:], pods: [NamespacedName: PodInfo] = [:],
                policies: [NamespacedName: NetworkPolicy] = [:], dnsAddresses: [IPAddress] = []) {
        self.namespaces = namespaces
        self.pods = pods
        self.policies = policies
        self.dnsAddresses = dnsAddresses
    }

    public static let namespaceNameLabel = "kubernetes.io/metadata.name"

    /// The pod that stands for nodenet's DNS responder in selectors: `kube-system`, labelled
    /// `k8s-app: kube-dns` as CoreDNS's pods are, serving `dns` 53/UDP and `dns-tcp` 53/TCP.
    /// An egress rule allowing the kube-dns pods (by label, namespace or named port) or an
    /// ipBlock holding a responder address allows DNS; a default-deny egress blocks it.
    public static let dnsPodID = NamespacedName("kube-system", "nodenet-dns")
    public static let dnsPodLabels = ["k8s-app": "kube-dns"]
    public static let dnsPodPorts = [ContainerPort(name: "dns", containerPort: 53, protocol: .udp),
                                     ContainerPort(name: "dns-tcp", containerPort: 53, protocol: .tcp)]

    public func labels(ofNamespace name: String) -> [String: String] {
        var l = namespaces[name] ?? [:]
        l[Self.namespaceNameLabel] = name
        return l
    }

    /// Builds the inputs from a store snapshot: pods with their addresses (their status, else
    /// this node's attachments), host-network pods left out (they are the node, not pods, to
    /// NetworkPolicy), finished pods left out (their addresses may be reused).
    public init(snapshot: ClusterSnapshot, nodeName: String, policies: [NamespacedName: NetworkPolicy], dnsAddresses: [IPAddress]) {
        var namespaces: [String: [String: String]] = [:]
        for (name, ns) in snapshot.namespaces { namespaces[name] = Self.namespaceLabels(ns) }
        let attached = Self.attachedAddresses(snapshot)
        var pods: [NamespacedName: PodInfo] = [:]
        for id in Set(snapshot.pods.keys).union(attached.keys) {
            guard let info = Self.podInfo(id, snapshot: snapshot, nodeName: nodeName, attached: attached[id]) else { continue }
            pods[id] = info
            if !id.namespace.isEmpty, namespaces[id.namespace] == nil { namespaces[id.namespace] = [Self.namespaceNameLabel: id.namespace] }
        }
        self.init(namespaces: namespaces, pods: pods, policies: policies, dnsAddresses: dnsAddresses)
    }

    public static func namespaceLabels(_ ns: Namespace) -> [String: String] {
        var l = ns.metadata.labels ?? [:]
        l[namespaceNameLabel] = ns.metadata.name
        return l
    }

    /// This node's attachments' addresses by pod. A container that is no Kubernetes pod (podman
    /// without pod arguments) is a pod of no namespace, which no policy selects, so that its
    /// address is known.
    public static func attachedAddresses(_ snapshot: ClusterSnapshot) -> [NamespacedName: [IPAddress]] {
        var attached: [NamespacedName: [IPAddress]] = [:]
        for a in snapshot.attachments.values {
            attached[a.pod ?? NamespacedName("", a.keyName), default: []] += a.ips.map(\.address)
        }
        return attached
    }

    /// One pod as policy sees it, from the store (nil: none, host network, or finished). A local
    /// attachment whose pod the store does not know (yet) is a pod without labels, so only
    /// policies selecting every pod of its namespace apply to it until the pod arrives.
    public static func podInfo(_ id: NamespacedName, snapshot: ClusterSnapshot, nodeName: String, attached: [IPAddress]?) -> PodInfo? {
        if let pod = snapshot.pods[id] {
            guard !pod.hostNetwork, !pod.isFinished else { return nil }
            var ips = pod.podIPs
            for ip in attached ?? [] where !ips.contains(ip) { ips.append(ip) }
            return PodInfo(id: id, labels: pod.metadata.labels ?? [:], ips: ips, ports: pod.ports,
                           local: pod.nodeName == nodeName || attached != nil)
        }
        guard let attached else { return nil }
        return PodInfo(id: id, labels: [:], ips: attached, local: true)
    }
}
