import Foundation

/// A cluster on one machine, as testing.md draws it: a fabric namespace with a bridge (the
/// nodes' L2 network, 192.168.1.0/24, the fabric itself at .1), node namespaces on it each
/// running the built agent, and pods attached through the CNI path. Everything is deleted by
/// `close()` (and by deinit).
public final class TestCluster: @unchecked Sendable {
    // @unchecked: built and mutated by the one test that owns it.
    public let fabric: TestNamespace
    public let dir = TempDirectory()
    public private(set) var nodes: [Node] = []
    public private(set) var pods: [Pod] = []
    private var background: [pid_t] = []

    public struct Node: Sendable {
        public var name: String
        public var ip: String
        public var podCIDR: String
        public var ns: TestNamespace
        public var agent: AgentProcess
        public var cni: CNIInvoker
    }

    public struct Pod: Sendable {
        public var name: String
        public var namespace: String
        public var node: Int
        public var ns: TestNamespace
        public var ip: String
    }

    /// - Parameter agentArgs: extra flags per node index (0-based).
    public init(nodes count: Int, agentArgs: (Int) -> [String] = { _ in [] }) throws {
        fabric = try TestNamespace("fabric")
        try fabric.check(["ip", "link", "add", "br0", "type", "bridge"])
        try fabric.check(["ip", "addr", "add", "192.168.1.1/24", "dev", "br0"])
        try fabric.check(["ip", "link", "set", "br0", "up"])
        for i in 0..<count {
            let name = "node\(i + 1)"
            let ip = "192.168.1.\(11 + i)"
            let ns = try TestNamespace(name)
            let hostSide = "\(TestNamespace.runPrefix.suffix(6))f\(fabric.name.suffix(2))n\(i)"
            try Shell.check(["ip", "link", "add", hostSide, "netns", fabric.name, "type", "veth", "peer", "name", "eth0", "netns", ns.name])
            try fabric.check(["ip", "link", "set", hostSide, "master", "br0", "up"])
            try ns.check(["ip", "addr", "add", "\(ip)/24", "dev", "eth0"])
            try ns.check(["ip", "link", "set", "eth0", "up"])
            let podCIDR = "10.244.\(i + 1).0/24"
            let agent = AgentProcess(namespace: ns, directory: dir,
                                     args: ["--node-name", name, "--node-ip", ip, "--dns-upstreams", "192.168.1.1:53"] + agentArgs(i))
            nodes.append(Node(name: name, ip: ip, podCIDR: podCIDR, ns: ns, agent: agent, cni: CNIInvoker(node: ns, socket: agent.socket)))
        }
    }

    /// The Node objects of every node (name, podCIDRs, InternalIP) as one manifest.
    public var nodeManifest: String {
        nodes.map { n in
            "apiVersion: v1\nkind: Node\nmetadata: {name: \(n.name)}\nspec: {podCIDRs: [\(n.podCIDR)]}\n"
                + "status: {addresses: [{type: InternalIP, address: \(n.ip)}]}\n"
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
        guard r.ok, let ip = CNIInvoker.address(r) else { throw Shell.Failure(command: "CNI ADD \(name)", result: r) }
        // The runtime writes the pod's resolv.conf from the result (ip netns exec shows it).
        let dns = CNIInvoker.json(r)["dns"] as? [String: Any]
        let search = (dns?["search"] as? [String] ?? []).joined(separator: " ")
        let servers = (dns?["nameservers"] as? [String] ?? []).map { "nameserver \($0)" }.joined(separator: "\n")
        try FileManager.default.createDirectory(atPath: "/etc/netns/\(ns.name)", withIntermediateDirectories: true)
        FileManager.default.createFile(atPath: "/etc/netns/\(ns.name)/resolv.conf",
                                       contents: Data("search \(search)\n\(servers)\noptions ndots:5\n".utf8))
        let pod = Pod(name: name, namespace: namespace, node: node, ns: ns, ip: ip)
        pods.append(pod)
        return pod
    }

    /// A manifest that gives pods their labels and addresses on every node (what a control
    /// plane does; the embedded source has none).
    public func podManifest(_ pods: [Pod], labels: [String: String]) -> String {
        let l = labels.map { "\($0.key): \($0.value)" }.joined(separator: ", ")
        return pods.map { p in
            "apiVersion: v1\nkind: Pod\nmetadata: {name: \(p.name), namespace: \(p.namespace), labels: {\(l)}}\n"
                + "spec: {nodeName: \(nodes[p.node].name)}\nstatus: {podIPs: [{ip: \(p.ip)}]}\n"
        }.joined(separator: "---\n")
    }

    /// Starts a long-running process inside a namespace, killed by close(). posix_spawn, not
    /// Foundation's Process: the latter's child monitoring stalls later Process calls while a
    /// long-lived child it started is still running.
    public func spawn(in ns: TestNamespace, _ argv: [String]) throws {
        background.append(try Shell.spawn(["/usr/bin/nsenter", "--net=\(ns.path)"] + argv))
    }

    /// An HTTP-ish TCP server in a pod that answers every connection with the client's address.
    public func echoPeerServer(in pod: Pod, port: Int = 8080) throws {
        try spawn(in: pod.ns, ["socat", "TCP-LISTEN:\(port),fork,reuseaddr", "SYSTEM:echo from-\(pod.name)-peer-$SOCAT_PEERADDR"])
    }

    /// A stub upstream DNS server on the fabric address (never the machine's resolver).
    public func dnsStub() throws {
        try spawn(in: fabric, ["dnsmasq", "--no-daemon", "--no-resolv", "--no-hosts", "--bind-interfaces",
                               "--listen-address=192.168.1.1", "--port=53", "--address=/example.test/192.0.2.10"])
    }

    /// One TCP request (socat), the first line of the answer.
    public func request(from ns: TestNamespace, _ host: String, _ port: Int, timeout: Int = 3) throws -> Shell.Result {
        try ns.run(["socat", "-T\(timeout)", "-", "TCP:\(host):\(port),connect-timeout=\(timeout)"], stdin: "", timeout: Double(timeout + 5))
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
