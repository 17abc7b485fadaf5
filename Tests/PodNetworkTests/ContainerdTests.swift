import Foundation
import NodenetTestSupport
import Testing

/// A real Kubernetes runtime: Debian's containerd 1.6, driven through its CRI API as the kubelet
/// drives it (RunPodSandbox, PodSandboxStatus, StopPodSandbox, RemovePodSandbox), runs the
/// packaged conflist and the built plugin from its own conf_dir and bin_dir inside a node
/// namespace on a fabric bridge. Issue #19.
@Suite(.serialized, .enabled(if: ContainerdNode.unavailable == nil, "\(ContainerdNode.unavailable ?? "")"))
struct ContainerdTests {
    static let nodeIP = "192.168.1.11"
    static let gateway = "10.244.1.1"

    final class Fixture: @unchecked Sendable {
        // @unchecked: used by one test at a time.
        let cluster: TestCluster
        let containerd: ContainerdNode
        var node: TestCluster.Node { cluster.nodes[0] }

        init(privateMountNamespace: Bool = false) throws {
            // DNS upstream: a dead local port, so nothing is ever forwarded to the machine's resolver.
            cluster = try TestCluster(nodes: 1) { _ in ["--pod-cidrs", "10.244.1.0/24", "--dns-upstreams", "127.0.0.1:5999"] }
            try cluster.startAgents()
            containerd = try ContainerdNode(node: cluster.nodes[0].ns, agentSocket: cluster.nodes[0].agent.socket,
                                            privateMountNamespace: privateMountNamespace)
        }

        /// The agent's PodAttachment records (GET /v1/objects?kind=PodAttachment).
        func attachments() throws -> [[String: Any]] {
            let r = try Shell.run(["curl", "-sS", "--max-time", "5", "--unix-socket", node.agent.socket, "http://agent/v1/objects?kind=PodAttachment"])
            return ContainerdNode.object(r.stdout)["items"] as? [[String: Any]] ?? []
        }

        func attachment(_ sandbox: String) throws -> [String: Any]? {
            try attachments().first { $0["containerID"] as? String == sandbox }
        }

        func statusJSON() throws -> String { try node.agent.cli(["status", "--json"]).stdout }

        /// One TCP exchange from `ns` to the node's address: the server's answer, or "".
        func tcp(from ns: TestNamespace, port: Int) throws -> String {
            try cluster.request(from: ns, ContainerdTests.nodeIP, port, timeout: 2).stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        }

        /// Retries a probe until it answers, bounded (servers start asynchronously).
        func eventually(_ probe: () throws -> String) rethrows -> String {
            for _ in 0..<25 {
                let out = try probe()
                if !out.isEmpty { return out }
                usleep(200_000)
            }
            return ""
        }

        func until(_ condition: () throws -> Bool) rethrows -> Bool {
            for _ in 0..<50 {
                if try condition() { return true }
                usleep(100_000)
            }
            return false
        }

        func close() {
            containerd.close()
            cluster.close()
        }
    }

    /// A Deployment's pod: kubelet-shaped names and uids.
    static func pod(_ app: String, suffix: String, uid: String, hostPorts: [(host: Int, container: Int)] = []) -> PodSandboxConfig {
        PodSandboxConfig(name: "\(app)-7d9f8c6b5d-\(suffix)", namespace: "shop-frontend", uid: uid, hostPorts: hostPorts)
    }

    @Test func kubeletPodLifecycleAddressesHostPortDNSAndRelease() throws {
        let f = try Fixture()
        defer { f.close() }
        let web = Self.pod("storefront-web", suffix: "x2k4q", uid: "3f2a9c1e-8b7d-4e6f-9a1b-2c3d4e5f6a7b", hostPorts: [(8080, 80)])
        let client = Self.pod("checkout-api", suffix: "m8zpl", uid: "b71c04d2-5e3a-4f19-8c6d-0a9e2f4b7c18")

        let webRun = try f.containerd.run(web)
        let webID = try #require(try? webRun.get(), "RunPodSandbox: \(webRun)\n\(f.containerd.log(tail: 15))\n\(f.node.agent.log(tail: 15))")
        let clientRun = try f.containerd.run(client)
        let clientID = try #require(try? clientRun.get(), "RunPodSandbox: \(clientRun)")
        #expect(webID.count == 64 && webID.allSatisfy(\.isHexDigit), "containerd's own sandbox id: \(webID)")
        let a = try f.containerd.sandbox(webID), b = try f.containerd.sandbox(clientID)

        // Distinct addresses in the node's pod subnet, on eth0 with the default route via the bridge.
        #expect(a.ip.hasPrefix("10.244.1.") && b.ip.hasPrefix("10.244.1.") && a.ip != b.ip, "\(a.ip) \(b.ip)")
        for (pod, ip) in [(a.pid, a.ip), (b.pid, b.ip)] {
            let addr = try f.containerd.inPod(pod, ["ip", "-4", "-o", "addr", "show", "dev", "eth0"]).stdout
            #expect(addr.contains("inet \(ip)/24"), "eth0 in the sandbox: \(addr)")
            let route = try f.containerd.inPod(pod, ["ip", "route", "show", "default"]).stdout
            #expect(route.contains("default via \(Self.gateway) dev eth0"), "\(route)")
        }
        #expect(try f.containerd.inPod(a.pid, ["ping", "-c", "1", "-W", "2", b.ip]).ok, "one pod reaches the other")

        // The attachment record carries the pod's identity from containerd's CNI_ARGS.
        let records = try f.attachments()
        let record = try #require(records.first { $0["containerID"] as? String == webID }, "\(records)")
        #expect(record["podNamespace"] as? String == web.namespace)
        #expect(record["podName"] as? String == web.name)
        #expect(record["podUID"] as? String == web.uid)
        #expect(record["netns"] as? String == a.netns)

        // The dns capability: containerd passes the sandbox's dns_config as runtimeConfig.dns and
        // the result carries it (libcni caches exactly what the plugin answered).
        let cache = try #require(f.containerd.cachedResult(webID), "libcni's cache of the ADD")
        #expect((cache["capabilityArgs"] as? [String: Any])?["dns"] != nil, "containerd sent runtimeConfig.dns: \(cache)")
        let dns = (cache["result"] as? [String: Any])?["dns"] as? [String: Any] ?? [:]
        #expect(dns["nameservers"] as? [String] == web.dnsServers, "\(dns)")
        #expect(dns["search"] as? [String] == web.dnsSearches, "\(dns)")
        #expect(dns["options"] as? [String] == web.dnsOptions, "\(dns)")

        // hostPort 8080 -> 80: from another namespace on the fabric, through the node's address,
        // to a server in the sandbox's network namespace; the client's address is kept.
        #expect((cache["capabilityArgs"] as? [String: Any])?["portMappings"] != nil, "containerd sent runtimeConfig.portMappings")
        try f.containerd.serve(inPod: a.pid, ["socat", "TCP-LISTEN:80,fork,reuseaddr", "SYSTEM:echo storefront-peer-$SOCAT_PEERADDR"])
        #expect(try f.eventually { try f.tcp(from: f.cluster.fabric, port: 8080) } == "storefront-peer-192.168.1.1",
                "hostPort through the node's address: \(f.node.agent.log(tail: 10))")

        // StopPodSandbox releases the network (CNI DEL); the kubelet calls it more than once.
        #expect(try f.containerd.stop(webID).ok)
        #expect(try f.attachment(webID) == nil, "the record went with the stop")
        #expect(f.containerd.cachedResult(webID) == nil, "libcni dropped its cache after the DEL")
        #expect(try f.containerd.status(webID)["state"] as? String == "SANDBOX_NOTREADY")
        #expect(try f.tcp(from: f.cluster.fabric, port: 8080).isEmpty, "the host port went with the pod")
        let again = try f.containerd.stop(webID)
        #expect(again.ok, "a second stop is a no-op: \(again.stderr)")
        #expect(try f.containerd.remove(webID).ok)
        let removedTwice = try f.containerd.remove(webID)
        #expect(removedTwice.ok, "a second remove is a no-op: \(removedTwice.stderr)")
        #expect(try f.containerd.cri(["status", webID]).stderr.hasPrefix("NOT_FOUND"))
        #expect(try f.attachment(clientID)?["podName"] as? String == client.name, "the other pod is untouched")
        #expect(try f.containerd.stop(clientID).ok)
        #expect(try f.containerd.remove(clientID).ok)

        // Both addresses are free again: nothing holds them, and IPAM hands each out on request.
        #expect(try f.attachments().isEmpty)
        let status = try f.statusJSON()
        #expect(!status.contains("\"\(a.ip)/24\"") && !status.contains("\"\(b.ip)/24\""), "\(status)")
        for ip in [a.ip, b.ip] {
            let probe = try TestNamespace("probe")
            defer { probe.delete() }
            let config = String(f.node.cni.config.dropLast()) + ",\"runtimeConfig\":{\"ips\":[\"\(ip)/24\"]}}"
            let add = try f.node.cni.run("ADD", containerID: "ipam-probe-\(ip)", netns: probe.path, stdin: config)
            #expect(CNIInvoker.address(add) == ip, "\(ip) is free: \(add.stdout)")
            #expect(try f.node.cni.run("DEL", containerID: "ipam-probe-\(ip)", netns: probe.path).ok)
        }
    }

    /// The runtime in a mount namespace of its own (as under a private /run, or a containerized
    /// kubelet): its netns mounts live under its state dir and only it sees them, so the agent
    /// cannot open CNI_NETNS by path. The plugin, running in containerd's mount namespace, opens
    /// it and hands the descriptor over (SCM_RIGHTS).
    @Test func agentInAnotherMountNamespaceThanContainerd() throws {
        let f = try Fixture(privateMountNamespace: true)
        defer { f.close() }
        let pod = Self.pod("inventory-sync", suffix: "q4w7n", uid: "5c9e8a21-3d47-4b6f-a0e2-7f18c3d94b65")
        let run = try f.containerd.run(pod)
        let id = try #require(try? run.get(), "RunPodSandbox: \(run)\n\(f.containerd.log(tail: 15))\n\(f.node.agent.log(tail: 15))")
        let s = try f.containerd.sandbox(id)

        // The premise: the netns mount is containerd's alone.
        // Polled briefly and read from every containerd thread: one run under heavy load read
        // the main thread's mountinfo without the mount right after RunPodSandbox returned.
        var seen = false
        for _ in 0..<20 where !seen {
            let tasks = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(f.containerd.pid)/task")) ?? []
            seen = tasks.contains { ContainerdNode.mountPoints(of: "\(f.containerd.pid)/task/\($0)").contains(s.netns) }
            if !seen { usleep(100_000) }
        }
        let netnsMounts = ContainerdNode.mountPoints(of: "\(f.containerd.pid)").filter { $0.contains("netns") }
        #expect(!s.netns.isEmpty && seen, "containerd sees its netns mount \(s.netns); its netns mounts: \(netnsMounts)")
        #expect(!ContainerdNode.mountPoints().contains(s.netns), "the agent's mount namespace does not")

        #expect(s.ip.hasPrefix("10.244.1."), "\(s.ip)")
        let addr = try f.containerd.inPod(s.pid, ["ip", "-4", "-o", "addr", "show", "dev", "eth0"]).stdout
        #expect(addr.contains("inet \(s.ip)/24"), "\(addr)")
        #expect(try f.containerd.inPod(s.pid, ["ip", "route", "show", "default"]).stdout.contains("default via \(Self.gateway) dev eth0"))
        #expect(try f.cluster.ping(from: f.node.ns, s.ip), "the node reaches the pod")
        #expect(try f.attachment(id)?["podUID"] as? String == pod.uid)

        // DEL through the descriptor as well: the record goes, the host side of the veth too.
        // (The node's own uplink is a veth too: eth0.)
        let hostVeths = { try f.node.ns.run(["ip", "-o", "link", "show", "type", "veth"]).stdout.split(separator: "\n").filter { !$0.contains(" eth0@") } }
        #expect(try hostVeths().count == 1, "the pod's host-side veth")
        #expect(try f.containerd.stop(id).ok)
        #expect(try f.attachment(id) == nil)
        #expect(try f.until { try hostVeths().isEmpty }, "the pod's veth is gone")
        #expect(try f.containerd.remove(id).ok)
    }
}
