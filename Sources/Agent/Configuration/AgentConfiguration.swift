import IPAddressing
import NodeRoutes

public enum SourceKind: String, Sendable, Codable, CaseIterable {
    case embedded, etcd, kubernetes
}

/// The `routing` key: NodeRoutes' modes (one enum, so the agent and the routes never disagree).
public typealias RoutingMode = NodeRoutes.RoutingMode

public enum PodRecordMode: String, Sendable, Codable, CaseIterable {
    case disabled, insecure, verified
}

/// The agent's configuration: `/etc/nodenet/config.yaml` plus flags (see design.md for the keys).
/// Values are parsed and checked here, so the rest of the agent never sees a bad address.
public struct AgentConfiguration: Sendable, Equatable {
    public var nodeName: String
    public var source: SourceKind = .embedded
    public var stateDir: String = "/var/lib/nodenet"
    public var runDir: String = "/run/nodenet"
    /// One prefix per family (dual-stack: an IPv4 and an IPv6 prefix).
    public var clusterCIDRs: [IPPrefix] = [IPPrefix("10.244.0.0/16")!]
    /// Per-node subnet sizes when nodenet leases subnets itself, one per family (as
    /// kube-controller-manager's `--node-cidr-mask-size-ipv4` and `-ipv6`).
    public var nodeCIDRMaskSizeIPv4: Int = 24
    public var nodeCIDRMaskSizeIPv6: Int = 64
    public var podCIDRs: [IPPrefix] = []
    public var serviceCIDRs: [IPPrefix] = [IPPrefix("10.96.0.0/12")!]
    public var clusterDomain: String = "cluster.local"
    /// nil: the address of the default-route interface, found at start.
    public var nodeIP: IPAddress?
    public var routing: RoutingMode = .hostGW
    public var dns = DNS()
    public var nodePortRange: ClosedRange<UInt16> = 30000...32767
    public var etcd = Etcd()
    public var kubernetes = Kubernetes()
    public var metrics = Metrics()
    public var cni = CNI()
    public var vxlan = Vxlan()
    public var proxyHealth = ProxyHealthSettings()
    public var policy = Policy()
    public var logLevel: String = "info"

    /// The `nodeCIDRMaskSize` key: the IPv4 size (an alias kept for older configs).
    public var nodeCIDRMaskSize: Int {
        get { nodeCIDRMaskSizeIPv4 }
        set { nodeCIDRMaskSizeIPv4 = newValue }
    }

    /// The per-node subnet size of `family`.
    public func nodeCIDRMaskSize(_ family: IPFamily) -> Int { family == .v4 ? nodeCIDRMaskSizeIPv4 : nodeCIDRMaskSizeIPv6 }

    public struct DNS: Sendable, Equatable {
        /// Always served, whatever the node's pod subnets.
        public var listen: [IPAddress] = [IPAddress("169.254.20.10")!, IPAddress("10.96.0.10")!]
        /// The IPv6 node-local address: served (and given to IPv6 pods) once this node has an IPv6
        /// pod subnet, unless `listen` already holds an IPv6 address. nil: none.
        public var listenIPv6: IPAddress? = DNS.defaultListenIPv6
        public var port: UInt16 = 53
        /// A resolv.conf path, or a list of ip[:port].
        public var upstreams: [String] = ["/etc/resolv.conf"]
        public var pods: PodRecordMode = .insecure
        public var ttl: UInt32 = 5
        public var enabled: Bool = true
        /// After SIGTERM the responder keeps answering this long while the agent reports not
        /// ready, so clients and probes move away before it goes; the rest of a stop is quick.
        public var lameDuckMilliseconds: Int64 = 5000
        /// Clients allowed besides the node itself and its pod subnets (CIDRs); the rest get
        /// REFUSED. `0.0.0.0/0` and `::/0` open the server to everyone.
        public var allowedClients: [IPPrefix] = []
        /// UDP responses per second per client network and identical answer (over it: empty,
        /// truncated, so real clients retry over TCP); 0 disables.
        public var rateLimit: Int = 1000
        /// Server-side search path (answer a pod's first search-list query with its final name).
        public var autopath: Bool = false
        /// UDP answered below NIO, in batches (recvmmsg/sendmmsg) on threads of its own: faster
        /// than NIO's datagram path in every run of bench/dns/run.sh (bench/dns/RESULTS.md).
        public var udpBatchIO: Bool = true
        /// Per-zone upstreams: zone (lower case, no trailing dot) -> ip[:port] list.
        public var zones: [String: [String]] = [:]
        /// How long expired cache entries are answered while every upstream is down.
        public var serveStaleSeconds: UInt32 = 3600
    }

    public struct Etcd: Sendable, Equatable {
        public var endpoints: [String] = ["http://127.0.0.1:2379"]
        public var prefix: String = "/nodenet"
        /// TTL of this node's subnet lease (its subnet key and Node object live on it).
        public var leaseSeconds: Int = 30
    }

    public struct Kubernetes: Sendable, Equatable {
        public var kubeconfig: String? = "/etc/nodenet/kubeconfig"
    }

    public struct Vxlan: Sendable, Equatable {
        public var vni: UInt32 = 1
        /// 8472: the Linux and flannel default (IANA's is 4789).
        public var port: UInt16 = 8472
    }

    /// The service proxy's health endpoint, kube-proxy's `healthzBindAddress` (`/healthz`, `/livez`).
    public struct ProxyHealthSettings: Sendable, Equatable {
        /// host:port; empty to disable. kube-proxy's default, so load balancers and probes
        /// configured for kube-proxy work unchanged.
        public var listen: String = "0.0.0.0:10256"
        /// How much older than the full sync interval the last successful sync may be, and how
        /// long syncs may keep failing, before `/healthz` answers 503.
        public var grace: Duration = .seconds(60)
    }

    /// NetworkPolicy enforcement (the `nodenet-policy` nftables tables).
    public struct Policy: Sendable, Equatable {
        /// Off: no policy tables, NetworkPolicies are stored but not enforced.
        public var enabled: Bool = true
        /// How long a CNI ADD waits for its pod's policy state to reach the kernel before it
        /// fails (the runtime retries; a pod never starts unprogrammed).
        public var addTimeout: Duration = .seconds(10)
    }

    public struct CNI: Sendable, Equatable {
        /// Where the agent writes the runtime's network configuration once it is ready (the
        /// runtime then sends pods to the plugin; before, it keeps the node NotReady). nil: none
        /// written, the default, so an agent started by hand or by a test never changes the
        /// node's runtime configuration; the package's config.yaml and the DaemonSet set it.
        public var conflist: String?
    }

    public struct Metrics: Sendable, Equatable {
        /// host:port; empty to disable.
        public var listen: String = "127.0.0.1:9154"
    }

    public init(nodeName: String) {
        self.nodeName = nodeName
    }

    public var socketPath: String { runDir + "/nodenet.sock" }
    /// The CNI plugin's socket (requests with the pod's namespace as a descriptor), beside the
    /// control socket: the plugin finds it from the `socket` key of its network config.
    public var cniSocketPath: String { runDir + "/cni.sock" }
    public var lockPath: String { runDir + "/nodenet.lock" }
    public var pendingDeletesDir: String { runDir + "/pending-deletes" }

    public static let defaultPath = "/etc/nodenet/config.yaml"
}

extension AgentConfiguration.DNS {
    /// A unique local address (RFC 4193) whose 40-bit global ID is the start of
    /// SHA-1("nodenet node-local dns"), as §3.2.2 asks for a pseudo-random one: it cannot meet
    /// the fd00::/48 ranges clusters commonly pick for pods and services (kind's fd00:10:244::/56
    /// and fd00:10:96::/112) nor any IPv4 default. `::a` echoes 10.96.0.10. Not a link-local
    /// (fe80::) address: those need a zone index (`%eth0`) that a pod's resolv.conf cannot carry.
    public static let defaultListenIPv6 = IPAddress("fd5f:8dcc:e9bf::a")!

    /// Whether this node's pod subnets call for the IPv6 address.
    func servesIPv6(podCIDRs: [IPPrefix]) -> Bool {
        listenIPv6 != nil && !listen.contains { $0.family == .v6 } && podCIDRs.contains { $0.family == .v6 }
    }

    /// The addresses to serve on for a node with these pod subnets: `listen`, then the IPv6
    /// node-local address when the node has IPv6 pods.
    public func listenAddresses(podCIDRs: [IPPrefix]) -> [IPAddress] {
        listen + (servesIPv6(podCIDRs: podCIDRs) ? listenIPv6.map { [$0] } ?? [] : [])
    }

    /// The nameservers pods are offered, at most one per family: the first `listen` address of
    /// each family, the IPv6 one else `listenIPv6`. Each pod gets those of its own families; the
    /// IPv6 address is only ever given to IPv6 pods, whose node then serves it.
    public var podNameservers: [IPAddress] {
        var out: [IPAddress] = []
        for family in IPFamily.allCases {
            if let a = listen.first(where: { $0.family == family }) ?? (family == .v6 ? listenIPv6 : nil) { out.append(a) }
        }
        return out
    }
}
