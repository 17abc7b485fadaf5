import Agent
import ArgumentParser
import Foundation
import Logging

/// `nodenet agent`: every config key also has a flag of the same name in kebab case.
/// Flags override the file; both go through the same validation (ConfigLoader).
struct AgentCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "agent", abstract: "Run the node agent (under systemd: Type=notify).")

    @Option(name: .long, help: "Configuration file (default /etc/nodenet/config.yaml; missing default file is fine).")
    var config: String?

    @Option(name: .long) var nodeName: String?
    @Option(name: .long, help: "embedded | etcd | kubernetes") var source: String?
    @Option(name: .long) var stateDir: String?
    @Option(name: .long) var runDir: String?
    @Option(name: .customLong("cluster-cidr"), help: "Pod network; IPv4 and IPv6 comma-separated for dual-stack.") var clusterCIDR: String?
    @Option(name: .customLong("node-cidr-mask-size"), help: "Alias of --node-cidr-mask-size-ipv4 (of -ipv6 on an IPv6-only cluster).")
    var nodeCIDRMaskSize: String?
    @Option(name: .customLong("node-cidr-mask-size-ipv4"), help: "Size of the IPv4 subnet a node leases (default 24).")
    var nodeCIDRMaskSizeIPv4: String?
    @Option(name: .customLong("node-cidr-mask-size-ipv6"), help: "Size of the IPv6 subnet a node leases (default 64).")
    var nodeCIDRMaskSizeIPv6: String?
    @Option(name: .customLong("pod-cidrs"), help: "This node's pod subnets, comma-separated.") var podCIDRs: String?
    @Option(name: .customLong("service-cidr")) var serviceCIDR: String?
    @Option(name: .long) var clusterDomain: String?
    @Option(name: .customLong("node-ip")) var nodeIP: String?
    @Option(name: .long, help: "host-gw | vxlan | auto") var routing: String?
    @Option(name: .long) var nodePortRange: String?
    @Option(name: .long) var logLevel: String?
    @Option(name: .customLong("dns-listen")) var dnsListen: String?
    @Option(name: .customLong("dns-listen-ipv6"), help: "The IPv6 node-local DNS address for nodes with IPv6 pods; none to disable.")
    var dnsListenIPv6: String?
    @Option(name: .customLong("dns-port")) var dnsPort: String?
    @Option(name: .customLong("dns-upstreams"), help: "A resolv.conf path, or ip[:port] list.") var dnsUpstreams: String?
    @Option(name: .customLong("dns-pods"), help: "disabled | insecure | verified") var dnsPods: String?
    @Option(name: .customLong("dns-ttl")) var dnsTTL: String?
    @Option(name: .customLong("dns-enabled")) var dnsEnabled: String?
    @Option(name: .customLong("dns-lame-duck"), help: "How long DNS keeps answering after SIGTERM (e.g. 5s, 500ms, 0).")
    var dnsLameDuck: String?
    @Option(name: .customLong("dns-allowed-clients"), help: "CIDRs allowed besides the node and its pod subnets.") var dnsAllowedClients: String?
    @Option(name: .customLong("dns-rate-limit"), help: "UDP responses/s per client network and identical answer; 0 off.") var dnsRateLimit: String?
    @Option(name: .customLong("dns-autopath"), help: "true | false: server-side search path.") var dnsAutopath: String?
    @Option(name: .customLong("dns-zones"), help: "Per-zone upstreams: zone=ip[:port] ip..., comma-separated.") var dnsZones: String?
    @Option(name: .customLong("dns-serve-stale"), help: "How long expired cache entries serve while upstreams are down (e.g. 1h, 0).")
    var dnsServeStale: String?
    @Option(name: .customLong("dns-udp-batch-io"), help: "true | false: UDP served by threads of its own in batches (recvmmsg/sendmmsg) instead of the event loops.")
    var dnsUDPBatchIO: String?
    @Option(name: .customLong("etcd-endpoints")) var etcdEndpoints: String?
    @Option(name: .customLong("etcd-prefix")) var etcdPrefix: String?
    @Option(name: .customLong("etcd-lease-seconds")) var etcdLeaseSeconds: String?
    @Option(name: .customLong("kubernetes-kubeconfig")) var kubeconfig: String?
    @Option(name: .customLong("metrics-listen"), help: "HOST:PORT, or empty to disable.") var metricsListen: String?
    @Option(name: .customLong("cni-conflist"), help: "Where to write the runtime's CNI conflist once ready; empty: none.") var cniConflist: String?
    @Option(name: .customLong("vxlan-vni")) var vxlanVNI: String?
    @Option(name: .customLong("vxlan-port")) var vxlanPort: String?
    @Option(name: .customLong("proxy-health-listen"), help: "HOST:PORT of /healthz and /livez (kube-proxy's 10256), or empty to disable.")
    var proxyHealthListen: String?
    @Option(name: .customLong("proxy-health-grace"), help: "Seconds past the sync interval before /healthz says 503.")
    var proxyHealthGrace: String?
    @Option(name: .customLong("policy-enabled"), help: "Enforce NetworkPolicy (true | false).") var policyEnabled: String?
    @Option(name: .customLong("policy-add-timeout"), help: "Seconds a CNI ADD waits for its pod's policy state in the kernel.")
    var policyAddTimeout: String?

    var overrides: [String: String] {
        let pairs: [(String, String?)] = [
            ("nodeName", nodeName), ("source", source), ("stateDir", stateDir), ("runDir", runDir),
            ("clusterCIDR", clusterCIDR), ("nodeCIDRMaskSize", nodeCIDRMaskSize),
            ("nodeCIDRMaskSizeIPv4", nodeCIDRMaskSizeIPv4), ("nodeCIDRMaskSizeIPv6", nodeCIDRMaskSizeIPv6), ("podCIDRs", podCIDRs),
            ("serviceCIDR", serviceCIDR), ("clusterDomain", clusterDomain), ("nodeIP", nodeIP), ("routing", routing),
            ("nodePortRange", nodePortRange), ("logLevel", logLevel),
            ("dns.listen", dnsListen), ("dns.listenIPv6", dnsListenIPv6), ("dns.port", dnsPort), ("dns.upstreams", dnsUpstreams), ("dns.pods", dnsPods),
            ("dns.ttl", dnsTTL), ("dns.enabled", dnsEnabled), ("dns.lameDuck", dnsLameDuck), ("dns.allowedClients", dnsAllowedClients),
            ("dns.rateLimit", dnsRateLimit), ("dns.autopath", dnsAutopath), ("dns.zones", dnsZones), ("dns.serveStale", dnsServeStale), ("dns.udpBatchIO", dnsUDPBatchIO),
            ("etcd.endpoints", etcdEndpoints), ("etcd.prefix", etcdPrefix), ("etcd.leaseSeconds", etcdLeaseSeconds), ("kubernetes.kubeconfig", kubeconfig),
            ("metrics.listen", metricsListen), ("cni.conflist", cniConflist), ("vxlan.vni", vxlanVNI), ("vxlan.port", vxlanPort),
            ("proxyHealth.listen", proxyHealthListen), ("proxyHealth.grace", proxyHealthGrace),
            ("policy.enabled", policyEnabled), ("policy.addTimeout", policyAddTimeout),
        ]
        var out: [String: String] = [:]
        for (k, v) in pairs { if let v { out[k] = v } }
        return out
    }

    mutating func run() async throws {
        let path = config ?? AgentConfiguration.defaultPath
        let cfg: AgentConfiguration
        do {
            cfg = try ConfigLoader.load(path: path, required: config != nil, overrides: overrides, defaultNodeName: hostname())
        } catch {
            throw CLIError(error.description)
        }
        let level = Logger.Level(rawValue: cfg.logLevel) ?? .info
        LoggingSystem.bootstrap { label in LogfmtHandler(label: label, level: level) }
        AgentMetrics.bootstrap()
        let logger = Logger(label: "nodenet")
        let agent: NodeAgent
        do {
            agent = try NodeAgent(config: cfg, configPath: FileManager.default.fileExists(atPath: path) ? path : nil,
                                  overrides: overrides, logger: logger)
        } catch {
            logger.critical("agent cannot start", metadata: ["error": "\(error)"])
            throw CLIError("\(error)")
        }
        try await agent.run()
    }

    private func hostname() -> String {
        var buf = [CChar](repeating: 0, count: 256)
        gethostname(&buf, buf.count)
        return String(cString: buf)
    }
}
