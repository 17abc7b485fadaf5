import Foundation
import NodenetTestSupport
import Testing

/// The image (deploy/image/build.sh, built here without a registry) run the way
/// deploy/nodenet.yaml runs it, on a test node (a network namespace): the DaemonSet's install
/// step copies the plugin into the node's CNI directory, the agent runs from the image in the
/// node's network namespace with the DaemonSet's capabilities and host paths, writes the
/// runtime's conflist once ready, and the node's container runtime (podman, CNI backend, as in
/// PodmanTests) starts a pod through the installed plugin.
///
/// What differs from a cluster: the source is the embedded store (no API server here), and the
/// host paths are the test's directories; podman stands in for the kubelet's runtime. Images
/// go to a private podman storage under the test's directory, removed with it.
@Suite(.serialized, .enabled(if: isPrivileged && (try? Shell.which("podman")) != nil && FileManager.default.fileExists(atPath: "/bin/busybox"),
                             "needs root, podman and busybox-static"))
struct DaemonSetImageTests {
    /// The DaemonSet's install step: the init container's command, read from the manifest.
    static func installCommand() throws -> [String] {
        let manifest = try String(contentsOfFile: "deploy/nodenet.yaml", encoding: .utf8)
        let lines = manifest.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        let start = try #require(lines.firstIndex { $0.contains("- name: install-cni") }, "no install-cni init container")
        let line = try #require(lines[start...].first { $0.trimmingCharacters(in: .whitespaces).hasPrefix("command:") })
        let flow = line.split(separator: ":", maxSplits: 1)[1]
        return try #require(try JSONSerialization.jsonObject(with: Data(flow.utf8)) as? [String])
    }

    static func daemonSetCapabilities() throws -> [String] {
        let manifest = try String(contentsOfFile: "deploy/nodenet.yaml", encoding: .utf8)
        let line = try #require(manifest.split(separator: "\n").first { $0.contains("add: [") })
        return line.split(separator: "[")[1].split(separator: "]")[0].split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }
    }

    @Test(.timeLimit(.minutes(10)))
    func imageInstallsThePluginAndServesPodsOfTheNodesRuntime() throws {
        let dir = TempDirectory()
        let storage = dir.write("storage.conf", """
            [storage]
            driver = "vfs"
            runroot = "\(dir.file("storage-run"))"
            graphroot = "\(dir.file("storage"))"

            """)
        // The node's directories that the DaemonSet mounts as host paths.
        let cniBin = dir.file("opt-cni-bin"), netd = dir.file("etc-cni-net.d"), state = dir.file("var-lib-nodenet"),
            run = dir.file("run-nodenet"), etc = dir.file("etc-nodenet")
        for d in [cniBin, netd, state, run, etc] { try FileManager.default.createDirectory(atPath: d, withIntermediateDirectories: true) }
        let conf = dir.write("containers.conf", """
            [network]
            network_backend = "cni"
            cni_plugin_dirs = ["\(cniBin)"]
            network_config_dir = "\(netd)"
            [engine]
            cgroup_manager = "cgroupfs"
            events_logger = "file"
            runtime = "runc"

            """)
        var env = ProcessInfo.processInfo.environment
        env["CONTAINERS_CONF"] = conf
        env["CONTAINERS_STORAGE_CONF"] = storage
        let environment = env
        func podman(_ args: [String], in node: TestNamespace? = nil, timeout: Double = 120) throws -> Shell.Result {
            let prefix = node.map { ["/usr/bin/nsenter", "--net=\($0.path)"] } ?? []
            return try Shell.run(prefix + ["podman"] + args, environment: environment, timeout: timeout)
        }
        let limits = ["--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024"]

        // The image, from the binaries under test.
        let tag = "localhost/nodenet:test-\(getpid())"
        let built = try Shell.run(["deploy/image/build.sh", "--binary", AgentProcess.binary, "--tag", tag],
                                  environment: environment, timeout: 300)
        try #require(built.ok, "deploy/image/build.sh: \(built.stderr)")

        // The node: a namespace with an uplink and a default route (the agent's node IP).
        let node = try TestNamespace("dsnode")
        defer { node.delete() }
        try node.check(["ip", "link", "add", "eth0", "type", "veth", "peer", "name", "uplink0"])
        try node.check(["ip", "addr", "add", "192.168.1.11/24", "dev", "eth0"])
        try node.check(["ip", "link", "set", "eth0", "up"])
        try node.check(["ip", "link", "set", "uplink0", "up"])
        try node.check(["ip", "route", "add", "default", "via", "192.168.1.1", "dev", "eth0", "onlink"])

        // 1. The install step, as the init container runs it.
        let install = try podman(["run", "--rm", "--network", "none"] + limits
            + ["-v", "\(cniBin):/host/opt/cni/bin", "--entrypoint", ""] + [tag] + Self.installCommand())
        try #require(install.ok, "install step: \(install.stdout)\(install.stderr)")
        let plugin = cniBin + "/nodenet"
        let attributes = try FileManager.default.attributesOfItem(atPath: plugin)
        #expect(attributes[.type] as? FileAttributeType == .typeRegular, "a plain copy, as every peer's init container installs it")
        #expect(try FileManager.default.contentsOfDirectory(atPath: cniBin) == ["nodenet"], "no temporary left")
        #expect(!FileManager.default.fileExists(atPath: netd + "/10-nodenet.conflist"), "no conflist before the agent is ready")

        // 2. The agent from the image: the node's network namespace (hostNetwork), the
        // DaemonSet's capabilities, its host paths (the run directory at the same path on both
        // sides, so the socket the conflist names is the one the plugin reaches).
        _ = dir.write("etc-nodenet/config.yaml", """
            nodeName: node1
            source: embedded
            stateDir: /var/lib/nodenet
            runDir: \(run)
            podCIDRs: [10.244.1.0/24]
            dns:
              upstreams: [127.0.0.1:5999]
            cni:
              conflist: /host/etc/cni/net.d/10-nodenet.conflist
            metrics:
              listen: 127.0.0.1:9154

            """)
        let name = "nnt\(getpid())ds"
        let caps = try Self.daemonSetCapabilities()
        try #require(caps.contains("NET_ADMIN"))
        let agentArgs = ["run", "-d", "--name", name, "--network", "ns:\(node.path)", "--cap-drop", "ALL",
                         "--cap-add", caps.joined(separator: ","), "-v", "\(etc):/etc/nodenet:ro", "-v", "\(netd):/host/etc/cni/net.d",
                         "-v", "\(state):/var/lib/nodenet", "-v", "\(run):\(run)"] + limits
            + [tag, "agent", "--config", "/etc/nodenet/config.yaml", "--node-name", "node1"]
        // Detached: conmon keeps podman's descriptors, so podman gets a file (PodmanTests).
        let log = dir.file("podman-agent.log")
        let command = (["CONTAINERS_CONF=\(conf)", "CONTAINERS_STORAGE_CONF=\(storage)", "podman"] + agentArgs).joined(separator: " ")
            + " </dev/null >\(log) 2>&1"
        defer { _ = try? podman(["rm", "-f", "-t", "10", name]) }
        try #require(system(command) == 0, "\((try? String(contentsOfFile: log, encoding: .utf8)) ?? "")")
        func agentLog() -> String { ((try? podman(["logs", "--tail", "30", name]))?.stdout ?? "") }

        // Ready: the conflist appears (written by the agent, atomically) and /readyz says 200.
        let conflist = netd + "/10-nodenet.conflist"
        let deadline = Date().addingTimeInterval(60)
        while !FileManager.default.fileExists(atPath: conflist), Date() < deadline { usleep(100_000) }
        try #require(FileManager.default.fileExists(atPath: conflist), "no conflist: the agent is not ready\n\(agentLog())")
        let written = try String(contentsOfFile: conflist, encoding: .utf8)
        #expect(written.contains("\"socket\": \"\(run)/nodenet.sock\""), "\(written)")
        let readyz = try node.run(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "3", "http://127.0.0.1:9154/readyz"])
        #expect(readyz.stdout == "200", "readiness probe: \(readyz.stdout)")

        // 3. The node's runtime starts a pod through the installed plugin.
        let root = dir.file("pod-root")
        try FileManager.default.createDirectory(atPath: root + "/bin", withIntermediateDirectories: true)
        try FileManager.default.copyItem(atPath: "/bin/busybox", toPath: root + "/bin/busybox")
        for tool in ["sh", "ip"] { try FileManager.default.createSymbolicLink(atPath: "\(root)/bin/\(tool)", withDestinationPath: "busybox") }
        let pod = try podman(["run", "--rm", "--network", "nodenet"] + limits + ["--rootfs", root, "/bin/sh", "-c", "ip -4 addr show eth0; ip route"],
                             in: node)
        #expect(pod.ok, "the runtime's pod: \(pod.stderr)\n\(agentLog())")
        #expect(pod.stdout.contains("inet 10.244.1."), "the pod has its address from the agent in the image: \(pod.stdout)")
        #expect(pod.stdout.contains("default via 10.244.1.1"))

        // The agent stops on SIGTERM (the kubelet's stop) within the grace period.
        let stop = try podman(["stop", "-t", "30", name], timeout: 60)
        #expect(stop.ok, "\(stop.stderr)")
        _ = try? podman(["rmi", "-f", tag])
    }
}
