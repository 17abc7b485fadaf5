import Foundation
import NodenetTestSupport
import Testing

/// A real container runtime: Debian's podman (CNI backend) runs busybox containers on a nodenet
/// conflist inside a node namespace, calling the plugin as any runtime does (libcni: ADD, DEL,
/// cached results).
@Suite(.serialized, .enabled(if: isPrivileged && (try? Shell.which("podman")) != nil && FileManager.default.fileExists(atPath: "/bin/busybox"),
                             "needs root, podman and busybox-static"))
struct PodmanTests {
    @Test func containersGetAddressesReachEachOtherAndReleaseOnRemoval() throws {
        let node = try TestNamespace("podman")
        let dir = TempDirectory()
        // DNS upstream: a dead local port, so nothing is ever forwarded to the machine's resolver.
        let agent = AgentProcess(namespace: node, directory: dir, args: ["--node-name", "node1", "--pod-cidrs", "10.244.1.0/24",
                                                                        "--dns-upstreams", "127.0.0.1:5999"])
        try agent.start()
        defer { agent.stop(); node.delete() }

        // A busybox root file system and podman configured for CNI with only our plugin.
        let root = dir.file("root")
        try FileManager.default.createDirectory(atPath: root + "/bin", withIntermediateDirectories: true)
        try FileManager.default.copyItem(atPath: "/bin/busybox", toPath: root + "/bin/busybox")
        for tool in ["sh", "ip", "ping", "sleep", "cat", "nslookup", "httpd"] { try FileManager.default.createSymbolicLink(atPath: "\(root)/bin/\(tool)", withDestinationPath: "busybox") }
        let bin = dir.file("cni-bin"), netd = dir.file("net.d")
        try FileManager.default.createDirectory(atPath: bin, withIntermediateDirectories: true)
        try FileManager.default.createDirectory(atPath: netd, withIntermediateDirectories: true)
        try FileManager.default.createSymbolicLink(atPath: bin + "/nodenet", withDestinationPath: AgentProcess.cniBinary)
        _ = dir.write("net.d/10-nodenet.conflist", """
            {"cniVersion":"1.0.0","name":"nodenet","plugins":[{"type":"nodenet","socket":"\(agent.socket)","capabilities":{"portMappings":true}}]}
            """)
        let conf = dir.write("containers.conf", """
            [network]
            network_backend = "cni"
            cni_plugin_dirs = ["\(bin)"]
            network_config_dir = "\(netd)"
            [engine]
            cgroup_manager = "cgroupfs"
            events_logger = "file"
            runtime = "runc"
            """)
        let name = "nnt\(getpid())a"
        func podman(_ args: [String]) throws -> Shell.Result {
            var env = ProcessInfo.processInfo.environment
            env["CONTAINERS_CONF"] = conf
            return try Shell.run(["/usr/bin/nsenter", "--net=\(node.path)", "podman"] + args, environment: env, timeout: 90)
        }
        let runFlags = ["--network", "nodenet", "--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024", "--rootfs", root]
        defer { _ = try? podman(["rm", "-f", "-t", "0", name]) }

        let shown = try podman(["run", "--rm"] + runFlags + ["/bin/sh", "-c", "ip -4 addr show eth0; ip route"])
        #expect(shown.ok, "\(shown.stderr)")
        #expect(shown.stdout.contains("inet 10.244.1."), "the container has its address: \(shown.stdout)")
        #expect(shown.stdout.contains("default via 10.244.1.1"))

        // Detached: conmon inherits the descriptors podman had and lives as long as the container,
        // so podman gets a file, not a pipe, and system(3) waits for podman alone.
        let log = dir.file("podman-d.log")
        let command = (["CONTAINERS_CONF=\(conf)", "/usr/bin/nsenter", "--net=\(node.path)", "podman", "run", "-d", "--name", name]
            + runFlags + ["/bin/sleep", "60"]).joined(separator: " ") + " </dev/null >\(log) 2>&1"
        #expect(system(command) == 0, "\((try? String(contentsOfFile: log, encoding: .utf8)) ?? "")")
        let ip = try podman(["inspect", name, "--format", "{{.NetworkSettings.Networks.nodenet.IPAddress}}"]).stdout
            .trimmingCharacters(in: .whitespacesAndNewlines)
        #expect(ip.hasPrefix("10.244.1."))
        let ping = try podman(["run", "--rm"] + runFlags + ["/bin/ping", "-c", "1", "-W", "2", ip])
        #expect(ping.ok, "a container reaches another: \(ping.stdout)\(ping.stderr)")
        #expect(try agent.cli(["status", "--json"]).stdout.contains("\"\(ip)/24\""))

        // The container resolves a service by its short name through the search path the CNI
        // result gave podman (no namespace from podman: "default"). podman also appends the
        // machine's resolver, which the node namespace has no route to, so nothing leaves.
        #expect(try agent.apply("apiVersion: v1\nkind: Service\nmetadata: {name: web-svc, namespace: default}\nspec: {clusterIP: 10.96.5.5, ports: [{port: 80}]}\n").ok)
        let lookup = try podman(["run", "--rm"] + runFlags + ["/bin/sh", "-c", "cat /etc/resolv.conf; nslookup web-svc"])
        #expect(lookup.stdout.contains("search default.svc.cluster.local"), "\(lookup.stdout)")
        #expect(lookup.stdout.contains("10.96.5.5"), "short name resolved in the container: \(lookup.stdout)\(lookup.stderr)")

        // `-p 8080:80`: podman passes the mapping as the portMappings capability; the node reaches
        // busybox httpd through its own address (the bridge gateway) and port 8080.
        try FileManager.default.createDirectory(atPath: root + "/www", withIntermediateDirectories: true)
        FileManager.default.createFile(atPath: root + "/www/index.html", contents: Data("hello from a host port\n".utf8))
        let web = name + "w"
        defer { _ = try? podman(["rm", "-f", "-t", "0", web]) }
        let webLog = dir.file("podman-w.log")
        let webCommand = (["CONTAINERS_CONF=\(conf)", "/usr/bin/nsenter", "--net=\(node.path)", "podman", "run", "-d", "--name", web, "-p", "8080:80"]
            + runFlags + ["/bin/httpd", "-f", "-p", "80", "-h", "/www"]).joined(separator: " ") + " </dev/null >\(webLog) 2>&1"
        #expect(system(webCommand) == 0, "\((try? String(contentsOfFile: webLog, encoding: .utf8)) ?? "")")
        var page = ""
        // (This busybox's wget crashes with -q or -T; Shell's timeout bounds it instead.)
        func get() throws -> String { try node.run(["/bin/busybox", "wget", "-O", "-", "http://10.244.1.1:8080/"], timeout: 5).stdout }
        for _ in 0..<20 where page.isEmpty {
            page = try get()
            if page.isEmpty { usleep(200_000) }
        }
        #expect(page == "hello from a host port\n", "podman -p through nodenet's host ports")
        #expect(try podman(["rm", "-f", "-t", "0", web]).ok)
        #expect(try get().isEmpty, "gone with the container")

        #expect(try podman(["rm", "-f", "-t", "0", name]).ok)
        let after = try agent.cli(["status", "--json"]).stdout
        #expect(!after.contains("\"\(ip)/24\""), "podman's DEL on removal freed the address")
    }
}
