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
    public var nodeCIDRMaskSize: Int = 24
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
    public var vxlan = Vxlan()
    public var logLevel: String = "info"

    public struct DNS: Sendable, Equatable {
        public var listen: [IPAddress] = [IPAddress("169.254.20.10")!, IPAddress("10.96.0.10")!]
        public var port: UInt16 = 53
        /// A resolv.conf path, or a list of ip[:port].
        public var upstreams: [String] = ["/etc/resolv.conf"]
        public var pods: PodRecordMode = .insecure
        public var ttl: UInt32 = 5
        public var enabled: Bool = true
    }

    public struct Etcd: Sendable, Equatable {
        public var endpoints: [String] = ["http://127.0.0.1:2379"]
        public var prefix: String = "/nodenet"
    }

    public struct Kubernetes: Sendable, Equatable {
        public var kubeconfig: String? = "/etc/nodenet/kubeconfig"
    }

    public struct Vxlan: Sendable, Equatable {
        public var vni: UInt32 = 1
        /// 8472: the Linux and flannel default (IANA's is 4789).
        public var port: UInt16 = 8472
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
