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
        for (name, ns) in snapshot.namespaces {
            var l = ns.metadata.labels ?? [:]
            l[Self.namespaceNameLabel] = name
            namespaces[name] = l
        }
        var pods: [NamespacedName: PodInfo] = [:]
        var attached: [NamespacedName: [IPAddress]] = [:]
        for a in snapshot.attachments.values {
            // A container that is no Kubernetes pod (podman without pod arguments): a pod of no
            // namespace, which no policy selects, so that its address is known.
            let id = a.pod ?? NamespacedName("", a.keyName)
            attached[id, default: []] += a.ips.map(\.address)
        }
        for (id, pod) in snapshot.pods where !pod.hostNetwork && !pod.isFinished {
            let local = pod.nodeName == nodeName || attached[id] != nil
            var ips = pod.podIPs
            for ip in attached[id] ?? [] where !ips.contains(ip) { ips.append(ip) }
            pods[id] = PodInfo(id: id, labels: pod.metadata.labels ?? [:], ips: ips, ports: pod.ports, local: local)
            if namespaces[id.namespace] == nil { namespaces[id.namespace] = [Self.namespaceNameLabel: id.namespace] }
        }
        // A local attachment whose pod the store does not know (yet): a pod with no labels, so
        // only policies selecting every pod of its namespace apply to it until the pod arrives.
        for (id, ips) in attached where pods[id] == nil {
            pods[id] = PodInfo(id: id, labels: [:], ips: ips, local: true)
            if !id.namespace.isEmpty, namespaces[id.namespace] == nil { namespaces[id.namespace] = [Self.namespaceNameLabel: id.namespace] }
        }
        self.init(namespaces: namespaces, pods: pods, policies: policies, dnsAddresses: dnsAddresses)
    }
}
