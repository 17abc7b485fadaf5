import Foundation

/// A cluster on one machine, as testing.md draws it: a fabric namespace with a bridge (the
/// nodes' L2 network, 192.168.1.0/24 and/or fd00:1::/64, the fabric itself at .1/::1), node
/// namespaces on it each running the built agent, and pods attached through the CNI path.
/// Everything is deleted by `close()` (and by deinit).
///
/// `families` picks the address families of the underlay, the pod subnets and the service
/// range, so one end-to-end test runs on an IPv4, a dual-stack and an IPv6-only cluster.
/// `routed` puts the last node on a second subnet (192.168.2.0/24, fd00:2::/64) that the fabric
/// namespace routes to, so host-gw cannot reach it and vxlan (or auto) must.
public final class TestCluster: @unchecked Sendable {
    // @unchecked: built and mutated by the one test that owns it.
    public let fabric: TestNamespace
    public let dir = TempDirectory()
    public let families: Families
    public private(set) var nodes: [Node] = []
    public private(set) var pods: [Pod] = []
    private var background: [pid_t] = []

    /// The address families of a test cluster.
    public enum Families: String, Sendable, CaseIterable, CustomStringConvertible {
        case ipv4, dualStack, ipv6
        public var hasV4: Bool { self != .ipv6 }
        public var hasV6: Bool { self != .ipv4 }
        /// The cluster's pod network and service range, as the agent's flags take them (IPv4 first).
        public var clusterCIDRs: [String] { (hasV4 ? ["10.244.0.0/16"] : []) + (hasV6 ? ["fd00:10:244::/56"] : []) }
        public var serviceCIDRs: [String] { (hasV4 ? ["10.96.0.0/12"] : []) + (hasV6 ? ["fd00:10:96::/112"] : []) }
        /// The fabric's own addresses (the stub DNS upstream, the NodePort client).
        public var fabricIPs: [String] { (hasV4 ? ["192.168.1.1"] : []) + (hasV6 ? ["fd00:1::1"] : []) }
        public var description: String { rawValue }
    }

    public struct Node: Sendable {
        public var name: String
        /// The node IP (`--node-ip`): IPv4 unless the cluster is IPv6-only or the test asked for an IPv6 primary.
        public var ip: String
        /// Every underlay address of the node (InternalIPs), IPv4 first.
        public var ips: [String]
        /// The first pod subnet (IPv4 unless IPv6-only).
        public var podCIDR: String
        public var podCIDRs: [String]
        public var ns: TestNamespace
        public var agent: AgentProcess
        public var cni: CNIInvoker
    }

    public struct Pod: Sendable {
        public var name: String
        public var namespace: String
        public var node: Int
        public var ns: TestNamespace
        /// The pod's first address (IPv4 unless IPv6-only).
        public var ip: String
        /// Every address of the pod, IPv4 first.
        public var ips: [String]
        /// The pod's address of one family (nil when it has none).
        public func ip(_ v6: Bool) -> String? { ips.first { $0.contains(":") == v6 } }
    }

    /// - Parameters:
    ///   - families: address families of the underlay, pod subnets and service range.
    ///   - routed: the last node on a second subnet routed by the fabric (see the type's comment).
    ///   - ipv6Primary: in a dual-stack cluster, the nodes' IPv6 address is the node IP (the
    ///     underlay vxlan uses, an IPv6-primary node).
    ///   - agentArgs: extra flags per node index (0-based).
    ///   - config: a config file's text every agent starts with (`--config`), instead of the
    ///     families' range flags; the flags above (node name and IP, upstream) still win.
    public init(nodes count: Int, families: Families = .ipv4, routed: Bool = false, ipv6Primary: Bool = false,
                config: String? = nil, agentArgs: (Int) -> [String] = { _ in [] }) throws {
        self.families = families
        fabric = try TestNamespace("fabric")
        let bridges = routed ? ["br0", "br1"] : ["br0"]
        for (b, bridge) in bridges.enumerated() {
            try fabric.check(["ip", "link", "add", bridge, "type", "bridge"])
            // IPv6 addresses without duplicate address detection, so they serve at once.
            if families.hasV4 { try fabric.check(["ip", "addr", "add", "192.168.\(b + 1).1/24", "dev", bridge]) }
            if families.hasV6 { try fabric.check(["ip", "addr", "add", "fd00:\(b + 1)::1/64", "dev", bridge, "nodad"]) }
            try fabric.check(["ip", "link", "set", bridge, "up"])
        }
        if routed {
            try fabric.check(["sysctl", "-qw", "net.ipv4.ip_forward=1"])
            try fabric.check(["sysctl", "-qw", "net.ipv6.conf.all.forwarding=1"])
        }
        for i in 0..<count {
            let name = "node\(i + 1)"
            // The last node of a routed cluster sits on the second subnet.
            let subnet = routed && i == count - 1 ? 2 : 1
            var ips: [String] = []
            if families.hasV4 { ips.append("192.168.\(subnet).\(11 + i)") }
            if families.hasV6 { ips.append("fd00:\(subnet)::\(11 + i)") }
            let ns = try TestNamespace(name)
            let hostSide = "\(TestNamespace.runPrefix.suffix(6))f\(fabric.name.suffix(2))n\(i)"
            try Shell.check(["ip", "link", "add", hostSide, "netns", fabric.name, "type", "veth", "peer", "name", "eth0", "netns", ns.name])
            try fabric.check(["ip", "link", "set", hostSide, "master", bridges[subnet - 1], "up"])
            for a in ips { try ns.check(["ip", "addr", "add", a + (a.contains(":") ? "/64" : "/24"), "dev", "eth0"] + (a.contains(":") ? ["nodad"] : [])) }
            try ns.check(["ip", "link", "set", "eth0", "up"])
            if routed {
                if families.hasV4 { try ns.check(["ip", "route", "add", "default", "via", "192.168.\(subnet).1"]) }
                if families.hasV6 { try ns.check(["ip", "-6", "route", "add", "default", "via", "fd00:\(subnet)::1"]) }
            }
            var podCIDRs: [String] = []
            if families.hasV4 { podCIDRs.append("10.244.\(i + 1).0/24") }
            if families.hasV6 { podCIDRs.append("fd00:10:244:\(i + 1)::/64") }
            let ip = families == .ipv6 || ipv6Primary ? ips.last! : ips[0]
            let upstream = families.hasV4 ? "192.168.1.1:53" : "[fd00:1::1]:53"
            var args = ["--node-name", name, "--node-ip", ip, "--dns-upstreams", upstream]
            if let config {
                args += ["--config", dir.write("config.yaml", config)]
            } else if families != .ipv4 {
                args += ["--cluster-cidr", families.clusterCIDRs.joined(separator: ","), "--service-cidr", families.serviceCIDRs.joined(separator: ",")]
            }
            let agent = AgentProcess(namespace: ns, directory: dir, args: args + agentArgs(i))
            nodes.append(Node(name: name, ip: ip, ips: ips, podCIDR: podCIDRs[0], podCIDRs: podCIDRs, ns: ns, agent: agent,
                              cni: CNIInvoker(node: ns, socket: agent.socket)))
        }
    }

    /// The first fenced code block after `<!-- example: <name> -->` in the repository's
    /// README.md (tests run from the package root), so the documented example is the tested one.
    public static func readmeExample(_ name: String) throws -> String {
        let text = try String(contentsOfFile: "README.md", encoding: .utf8)
        guard let marker = text.range(of: "<!-- example: \(name) -->"),
              let open = text.range(of: "```", range: marker.upperBound..<text.endIndex),
              let lineEnd = text.range(of: "\n", range: open.upperBound..<text.endIndex),
              let close = text.range(of: "\n```", range: lineEnd.upperBound..<text.endIndex) else {
            throw Shell.Failure(command: "README.md example \(name)", result: .init(status: 1, stdout: "", stderr: "no such example block"))
        }
        return String(text[lineEnd.upperBound..<close.lowerBound]) + "\n"
    }

    /// The Node objects of every node (name, podCIDRs, InternalIPs) as one manifest.
    public var nodeManifest: String {
        nodes.map { n in
            "apiVersion: v1\nkind: Node\nmetadata: {name: \(n.name)}\nspec: {podCIDRs: [\(n.podCIDRs.map { "\"\($0)\"" }.joined(separator: ", "))]}\n"
                + "status: {addresses: [\(n.ips.map { "{type: InternalIP, address: \"\($0)\"}" }.joined(separator: ", "))]}\n"
        }.joined(separator: "---\n")
    }

    public func startAgents() throws {
        for n in nodes { try n.agent.start() }
    }

    /// Applies a manifest on every node (the embedded source's static cluster).
    public func applyEverywhere(_ manifest: String) throws {
        for n in nodes {
            let r = try n.agent.apply(manifest)
            guard r.ok else { throw Shell.Failure(command: "apply on \(n.name)", result: r) }
        }
    }

    /// Deletes the objects a manifest names on every node.
    public func deleteEverywhere(_ manifest: String) throws {
        for n in nodes {
            let r = try n.agent.cli(["delete", "-f", "-"], stdin: manifest)
            guard r.ok else { throw Shell.Failure(command: "delete on \(n.name)", result: r) }
        }
    }

    /// A pod namespace attached through the CNI plugin on `node`, named as Kubernetes would.
    /// `netns`: a namespace the caller made beforehand (to have something running in it the
    /// moment ADD returns); `containerID`: what the runtime passes (default `<name>-<node>`).
    @discardableResult
    public func addPod(_ name: String, namespace: String = "apps", on node: Int, netns: TestNamespace? = nil,
                       containerID: String? = nil) throws -> Pod {
        let ns = try netns ?? TestNamespace("pod")
        let r = try nodes[node].cni.run("ADD", containerID: containerID ?? "\(name)-\(node)", netns: ns.path,
                                        args: "K8S_POD_NAMESPACE=\(namespace);K8S_POD_NAME=\(name)")
        let ips = CNIInvoker.addresses(r)
        guard r.ok, let ip = ips.first else { throw Shell.Failure(command: "CNI ADD \(name)", result: r) }
        // The runtime writes the pod's resolv.conf from the result (ip netns exec shows it).
        let dns = CNIInvoker.json(r)["dns"] as? [String: Any]
        let search = (dns?["search"] as? [String] ?? []).joined(separator: " ")
        let servers = (dns?["nameservers"] as? [String] ?? []).map { "nameserver \($0)" }.joined(separator: "\n")
        try FileManager.default.createDirectory(atPath: "/etc/netns/\(ns.name)", withIntermediateDirectories: true)
        FileManager.default.createFile(atPath: "/etc/netns/\(ns.name)/resolv.conf",
                                       contents: Data("search \(search)\n\(servers)\noptions ndots:5\n".utf8))
        let pod = Pod(name: name, namespace: namespace, node: node, ns: ns, ip: ip, ips: ips)
        pods.append(pod)
        return pod
    }

    /// A manifest that gives pods their labels and addresses on every node (what a control
    /// plane does; the embedded source has none).
    public func podManifest(_ pods: [Pod], labels: [String: String]) -> String {
        let l = labels.map { "\($0.key): \($0.value)" }.joined(separator: ", ")
        return pods.map { p in
            "apiVersion: v1\nkind: Pod\nmetadata: {name: \(p.name), namespace: \(p.namespace), labels: {\(l)}}\n"
                + "spec: {nodeName: \(nodes[p.node].name)}\nstatus: {podIPs: [\(p.ips.map { "{ip: \"\($0)\"}" }.joined(separator: ", "))]}\n"
        }.joined(separator: "---\n")
    }

    /// Starts a long-running process inside a namespace, killed by close(). posix_spawn, not
    /// Foundation's Process: the latter's child monitoring stalls later Process calls while a
    /// long-lived child it started is still running.
    public func spawn(in ns: TestNamespace, _ argv: [String]) throws {
        background.append(try Shell.spawn(["/usr/bin/nsenter", "--net=\(ns.path)"] + argv))
    }

    /// An HTTP-ish TCP server in a pod that answers every connection with the client's address,
    /// on each of the pod's families (one listener per family, so an IPv4 client is seen as
    /// itself, not as an IPv4-mapped IPv6 address).
    public func echoPeerServer(in pod: Pod, port: Int = 8080) throws {
        let answer = "SYSTEM:echo from-\(pod.name)-peer-$SOCAT_PEERADDR"
        if pod.ip(false) != nil { try spawn(in: pod.ns, ["socat", "TCP4-LISTEN:\(port),fork,reuseaddr", answer]) }
        if pod.ip(true) != nil { try spawn(in: pod.ns, ["socat", "TCP6-LISTEN:\(port),fork,reuseaddr,ipv6only=1", answer]) }
    }

    /// The same over UDP: one datagram per socat, in a bounded loop (with `fork` the parent
    /// waits for SIGCHLD, which the test process's spawn leaves blocked).
    public func udpEchoPeerServer(in pod: Pod, port: Int = 8081) throws {
        for (v6, address) in [(false, "UDP4-RECVFROM"), (true, "UDP6-RECVFROM")] where pod.ip(v6) != nil {
            try spawn(in: pod.ns, ["sh", "-c", "for i in $(seq 300); do socat -T1 \(address):\(port)\(v6 ? ",ipv6only=1" : "") 'SYSTEM:echo from-\(pod.name)-peer-$SOCAT_PEERADDR'; done"])
        }
    }

    /// A stub upstream DNS server on the fabric's addresses (never the machine's resolver).
    public func dnsStub() throws {
        try spawn(in: fabric, ["dnsmasq", "--no-daemon", "--no-resolv", "--no-hosts", "--bind-interfaces"]
                  + families.fabricIPs.map { "--listen-address=\($0)" }
                  + ["--port=53", "--address=/example.test/192.0.2.10", "--address=/example.test/2001:db8::10"])
    }

    /// `host:port` for socat, an IPv6 host in brackets.
    public static func socatAddress(_ host: String, _ port: Int) -> String {
        host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)"
    }

    /// One TCP request (socat), the first line of the answer.
    public func request(from ns: TestNamespace, _ host: String, _ port: Int, timeout: Int = 3) throws -> Shell.Result {
        try ns.run(["socat", "-T\(timeout)", "-", "TCP:\(Self.socatAddress(host, port)),connect-timeout=\(timeout)"], stdin: "", timeout: Double(timeout + 5))
    }

    /// One UDP exchange (a datagram out, the answer back), bounded by `timeout`.
    public func udpRequest(from ns: TestNamespace, _ host: String, _ port: Int, timeout: Int = 2) throws -> Shell.Result {
        try ns.run(["socat", "-t\(timeout)", "-T\(timeout)", "-", "UDP:\(Self.socatAddress(host, port))"], stdin: "ping\n", timeout: Double(timeout + 6))
    }

    /// The client address an echo server reported ("from-<pod>-peer-<address>"), in canonical
    /// text: socat prints IPv6 peers expanded and in brackets.
    public static func peer(_ answer: String) -> String? {
        guard let r = answer.range(of: "-peer-") else { return nil }
        var text = String(answer[r.upperBound...].prefix { !$0.isWhitespace })
        if text.hasPrefix("["), text.hasSuffix("]") { text = String(text.dropFirst().dropLast()) }
        return canonical(text)
    }

    /// An address in its canonical (RFC 5952) text, or the input when it is not one.
    public static func canonical(_ address: String) -> String {
        let family = address.contains(":") ? AF_INET6 : AF_INET
        var raw = [UInt8](repeating: 0, count: 16)
        guard inet_pton(family, address, &raw) == 1 else { return address }
        var out = [CChar](repeating: 0, count: Int(INET6_ADDRSTRLEN))
        guard inet_ntop(family, raw, &out, socklen_t(out.count)) != nil else { return address }
        return String(cString: out)
    }

    public func ping(from ns: TestNamespace, _ ip: String) throws -> Bool {
        try ns.run(["ping", "-c", "1", "-W", "2", ip]).ok
    }

    public func close() {
        for pid in background {
            kill(pid, SIGKILL)
            var status: Int32 = 0
            waitpid(pid, &status, 0)
        }
        background = []
        for n in nodes { n.agent.terminate() }
        for n in nodes { n.agent.stop(timeout: 8) }
        for p in pods {
            try? FileManager.default.removeItem(atPath: "/etc/netns/\(p.ns.name)")
            p.ns.delete()
        }
        for n in nodes { n.ns.delete() }
        fabric.delete()
    }

    deinit { close() }
}
