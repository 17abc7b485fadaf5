import Foundation
import NodenetTestSupport

/// containerd as a Kubernetes node runs it, inside a node namespace, driven through its CRI API
/// the way the kubelet drives it. Everything it writes is under its own temporary directory
/// (root, state, sockets, runc's root, the CNI conf_dir and bin_dir), except what containerd
/// 1.6 puts where its config cannot move it: shim sockets under /run/containerd/s/ and
/// libcni's result cache under /var/lib/cni/results/. `close()` removes those by sandbox id and
/// path, and kills what is left by pid, never by name.
///
/// Nothing is pulled: the sandbox image is a static pause program compiled here and imported
/// from an OCI layout tarball; the CRI client is Python generated from Fixtures/cri/runtime.proto.
final class ContainerdNode: @unchecked Sendable {
    // @unchecked: owned and used by one test at a time.
    static let venv = "/opt/nodenet-test/venv"
    static let fixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures/cri").path
    /// The conflist the package installs as /etc/cni/net.d/10-nodenet.conflist.
    static let packagedConflist = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("etc/cni/net.d/10-nodenet.conflist").path
    static let pauseImage = "localhost/nodenet-test/pause:3.9"
    /// containerd 1.6 runs the loopback plugin from its bin_dir for every sandbox itself.
    static let loopbackPlugin = "/usr/lib/cni/loopback"

    /// Where containerd, ctr and containerd-shim-runc-v2 come from: PATH (Debian's package), or
    /// NODENET_CONTAINERD_DIR to try another release's binaries (e.g. a newer Debian package
    /// unpacked with `dpkg -x`, never installed).
    static let binaryDirectory = ProcessInfo.processInfo.environment["NODENET_CONTAINERD_DIR"].flatMap { $0.isEmpty ? nil : $0 }
    static func tool(_ name: String) -> String? {
        if let d = binaryDirectory { return FileManager.default.isExecutableFile(atPath: "\(d)/\(name)") ? "\(d)/\(name)" : nil }
        return try? Shell.which(name)
    }

    /// Why containerd cannot run here at all, or nil when it can (the suite's skip condition).
    static let unavailable: String? = {
        guard getuid() == 0 else { return "needs root" }
        for name in ["containerd", "ctr", "containerd-shim-runc-v2"] where tool(name) == nil {
            return "needs \(name) (Debian's containerd: scripts/setup.sh)"
        }
        for tool in ["runc"] where (try? Shell.which(tool)) == nil {
            return "needs \(tool) (Debian's containerd and runc: scripts/setup.sh)"
        }
        guard FileManager.default.isExecutableFile(atPath: venv + "/bin/python"),
              (try? Shell.run([venv + "/bin/python", "-c", "import grpc, grpc_tools, google.protobuf"], timeout: 30))?.ok == true
        else { return "needs the CRI client's Python venv with grpcio, grpcio-tools and protobuf at \(venv) (scripts/setup.sh)" }
        return nil
    }()

    let node: TestNamespace
    let dir: String
    let socket: String
    let logPath: String
    /// This run's cgroup subtree (cgroupfs driver, as the kubelet's /kubepods/...): removed by path.
    let cgroupRoot: String
    let privateMountNamespace: Bool
    private(set) var pid: pid_t = 0
    /// Every sandbox id containerd gave us, to clean up after by id.
    private(set) var sandboxes: [String] = []
    private var children: [pid_t] = []
    private var reaped: Set<pid_t> = []
    private let tmp = TempDirectory()
    private static let counter = Counter()

    /// Writes the configuration, starts containerd in `node` (in a mount namespace of its own
    /// when `privateMountNamespace`) and imports the pause image. The CNI configuration is the
    /// packaged conflist with only its socket changed to `agentSocket`.
    init(node: TestNamespace, agentSocket: String, privateMountNamespace: Bool = false) throws {
        self.node = node
        self.privateMountNamespace = privateMountNamespace
        dir = tmp.path
        socket = dir + "/containerd.sock"
        logPath = dir + "/containerd.log"
        _ = Self.leftoversRemoved
        cgroupRoot = "nodenet-test-\(TestNamespace.runPrefix)-\(Self.counter.next())"
        let fm = FileManager.default
        for sub in ["cni-bin", "net.d", "gen", "pause", "logs"] { try fm.createDirectory(atPath: "\(dir)/\(sub)", withIntermediateDirectories: true) }

        let packaged = try String(contentsOfFile: Self.packagedConflist, encoding: .utf8)
        let conflist = packaged.replacingOccurrences(of: "\"/run/nodenet/nodenet.sock\"", with: "\"\(agentSocket)\"")
        guard conflist != packaged else { throw ContainerdFailure("no socket key to change in \(Self.packagedConflist)") }
        try conflist.write(toFile: dir + "/net.d/10-nodenet.conflist", atomically: true, encoding: .utf8)
        // As the package installs it: the plugin symlinked; it finds `nodenet` beside its real path.
        try fm.createSymbolicLink(atPath: dir + "/cni-bin/nodenet", withDestinationPath: AgentProcess.cniBinary)
        try fm.createSymbolicLink(atPath: dir + "/cni-bin/loopback", withDestinationPath: Self.loopbackPlugin)

        try Shell.check(["cc", "-static", "-O2", "-o", dir + "/pause/pause", Self.fixtures + "/pause.c"])
        try Shell.check([Self.venv + "/bin/python", Self.fixtures + "/oci_image.py", dir + "/pause/pause", Self.pauseImage, dir + "/pause.tar"])
        try Shell.check([Self.venv + "/bin/python", "-m", "grpc_tools.protoc", "-I", Self.fixtures, "--python_out=\(dir)/gen",
                         "--grpc_python_out=\(dir)/gen", Self.fixtures + "/runtime.proto"])
        try config().write(toFile: dir + "/config.toml", atomically: true, encoding: .utf8)

        var argv = ["/usr/bin/nsenter", "--net=\(node.path)", Self.tool("containerd")!, "--config", dir + "/config.toml"]
        if privateMountNamespace { argv = ["/usr/bin/unshare", "--mount", "--propagation", "private"] + argv }
        // containerd finds its shim on PATH.
        var environment = ProcessInfo.processInfo.environment
        if let d = Self.binaryDirectory { environment["PATH"] = d + ":" + (environment["PATH"] ?? "/usr/sbin:/usr/bin:/sbin:/bin") }
        pid = try spawn(argv, log: logPath, environment: environment)
        var answered = false
        for _ in 0..<100 where !answered {
            guard !exited(pid) else { break }
            if fm.fileExists(atPath: socket) { answered = try cri(["version"], timeout: 5).ok }
            if !answered { usleep(100_000) }
        }
        guard answered else { throw ContainerdFailure("containerd gave no CRI answer:\n\(log(tail: 20))") }
        try Shell.check([Self.tool("ctr")!, "--address", socket, "-n", "k8s.io", "images", "import", "--snapshotter", "native", dir + "/pause.tar"])
    }

    /// containerd 1.6's config (version 2) for a node of its own under `dir`.
    private func config() -> String {
        """
        version = 2
        root = "\(dir)/root"
        state = "\(dir)/state"
        disabled_plugins = ["io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.aufs",
                            "io.containerd.snapshotter.v1.devmapper", "io.containerd.tracing.processor.v1.otlp",
                            "io.containerd.internal.v1.tracing"]
        [grpc]
          address = "\(socket)"
        [ttrpc]
          address = "\(socket).ttrpc"
        [debug]
          address = ""
          level = "debug"
        [metrics]
          address = ""
        [plugins."io.containerd.internal.v1.opt"]
          path = "\(dir)/opt"
        # containerd 2.x unpacks imports through its transfer service (1.6 has none and ignores this).
        [[plugins."io.containerd.transfer.v1.local".unpack_config]]
          platform = "linux/amd64"
          snapshotter = "native"
        [plugins."io.containerd.grpc.v1.cri"]
          sandbox_image = "\(Self.pauseImage)"
          # The sandbox network namespaces under the state dir, not /var/run/netns.
          netns_mounts_under_state_dir = true
          # This machine withholds CAP_SYS_RESOURCE: runc cannot set a negative oom_score_adj.
          restrict_oom_score_adj = true
          stream_server_address = "127.0.0.1"
          stream_server_port = "0"
          [plugins."io.containerd.grpc.v1.cri".containerd]
            snapshotter = "native"
            default_runtime_name = "runc"
            [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
              runtime_type = "io.containerd.runc.v2"
              [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
                SystemdCgroup = false
                Root = "\(dir)/runc"
          [plugins."io.containerd.grpc.v1.cri".cni]
            bin_dir = "\(dir)/cni-bin"
            conf_dir = "\(dir)/net.d"
            max_conf_num = 1
        """
    }

    // MARK: The CRI calls

    /// One call of the Python CRI client (Fixtures/cri/cri_client.py).
    func cri(_ args: [String], stdin: String? = nil, timeout: Double = 60) throws -> Shell.Result {
        try Shell.run([Self.venv + "/bin/python", Self.fixtures + "/cri_client.py", "--socket", socket, "--generated", dir + "/gen",
                       "--timeout", "\(Int(timeout) - 2)"] + args, stdin: stdin, timeout: timeout)
    }

    /// RunPodSandbox: the sandbox id containerd made, or the call's result when it failed.
    func run(_ pod: PodSandboxConfig) throws -> Result<String, ContainerdFailure> {
        let r = try cri(["run"], stdin: pod.json(logRoot: dir + "/logs", cgroupRoot: cgroupRoot))
        guard r.ok, let id = Self.object(r.stdout)["id"] as? String else { return .failure(.init("RunPodSandbox \(pod.name): \(r.stderr)\(r.stdout)")) }
        sandboxes.append(id)
        return .success(id)
    }

    func stop(_ id: String) throws -> Shell.Result { try cri(["stop", id]) }
    func remove(_ id: String) throws -> Shell.Result { try cri(["remove", id]) }

    /// PodSandboxStatus (verbose) as JSON: status fields plus containerd's `info` document.
    func status(_ id: String) throws -> [String: Any] {
        let r = try cri(["status", id])
        guard r.ok else { throw ContainerdFailure("PodSandboxStatus \(id): \(r.stderr)") }
        return Self.object(r.stdout)
    }

    /// The sandbox's pause process and network namespace path, from its verbose status.
    func sandbox(_ id: String) throws -> (pid: Int, netns: String, ip: String) {
        let s = try status(id)
        let info = (s["info"] as? [String: Any])?["info"] as? [String: Any] ?? [:]
        let namespaces = ((info["runtimeSpec"] as? [String: Any])?["linux"] as? [String: Any])?["namespaces"] as? [[String: Any]] ?? []
        let netns = namespaces.first { $0["type"] as? String == "network" }?["path"] as? String ?? ""
        let ip = (s["network"] as? [String: Any])?["ip"] as? String ?? ""
        return (info["pid"] as? Int ?? 0, netns, ip)
    }

    /// libcni's cache of the ADD (what containerd sent and what the plugin answered), if any.
    func cachedResult(_ id: String, network: String = "nodenet") -> [String: Any]? {
        guard let data = FileManager.default.contents(atPath: "/var/lib/cni/results/\(network)-\(id)-eth0") else { return nil }
        return Self.object(String(decoding: data, as: UTF8.self))
    }

    /// Runs a command in the network namespace of a sandbox's pause process (reachable from
    /// any mount namespace, unlike containerd's netns mount).
    func inPod(_ pausePID: Int, _ argv: [String], timeout: Double = 10) throws -> Shell.Result {
        try Shell.run(["/usr/bin/nsenter", "--net=/proc/\(pausePID)/ns/net"] + argv, timeout: timeout)
    }

    /// A long-running server in a sandbox's network namespace, killed by close().
    func serve(inPod pausePID: Int, _ argv: [String]) throws {
        _ = try spawn(["/usr/bin/nsenter", "--net=/proc/\(pausePID)/ns/net"] + argv, log: dir + "/server-\(pausePID).log")
    }

    func log(tail lines: Int = 40) -> String {
        let text = (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? ""
        return text.split(separator: "\n").suffix(lines).joined(separator: "\n")
    }

    /// The mount points of `pid`'s mount namespace (field 5 of mountinfo).
    static func mountPoints(of pid: String = "self") -> [String] {
        let text = (try? String(contentsOfFile: "/proc/\(pid)/mountinfo", encoding: .utf8)) ?? ""
        return text.split(separator: "\n").compactMap { line in
            let fields = line.split(separator: " ")
            return fields.count > 4 ? String(fields[4]) : nil
        }
    }

    static func object(_ text: String) -> [String: Any] {
        (try? JSONSerialization.jsonObject(with: Data(text.utf8))) as? [String: Any] ?? [:]
    }

    // MARK: Processes and clean-up

    /// A background child (Shell.spawn), remembered for clean-up.
    private func spawn(_ argv: [String], log: String, environment: [String: String]? = nil) throws -> pid_t {
        let child: pid_t
        do {
            child = try Shell.spawn(argv, log: log, environment: environment)
        } catch {
            throw ContainerdFailure("\(error)")
        }
        children.append(child)
        return child
    }

    /// True once `child` has exited (reaped here, so remembered).
    private func exited(_ child: pid_t) -> Bool {
        if reaped.contains(child) { return true }
        var status: Int32 = 0
        let done = waitpid(child, &status, WNOHANG) == child
        if done { reaped.insert(child) }
        return done
    }

    /// Stops and removes every sandbox (as the kubelet would), stops containerd, then removes
    /// whatever is left by pid and path: shims (found by our socket in their arguments), pause
    /// processes (init.pid in their bundles), mounts under `dir`, the cgroup subtree, shim
    /// sockets and libcni's cache entries of our sandboxes.
    func close() {
        if pid > 0, !exited(pid) {
            for id in sandboxes {
                _ = try? cri(["stop", id], timeout: 20)
                _ = try? cri(["remove", id], timeout: 20)
            }
        }
        for child in children.reversed() where child != pid && !exited(child) { kill(child, SIGKILL); var s: Int32 = 0; waitpid(child, &s, 0) }
        if pid > 0, !exited(pid) {
            kill(pid, SIGTERM)
            for _ in 0..<100 where !exited(pid) { usleep(50_000) }
            if !exited(pid) { kill(pid, SIGKILL); var s: Int32 = 0; waitpid(pid, &s, 0) }
        }
        pid = 0
        children = []
        let fm = FileManager.default
        // Shims: containerd-shim-runc-v2 -namespace k8s.io -id <id> -address <our socket>.
        for entry in (try? fm.contentsOfDirectory(atPath: "/proc")) ?? [] {
            guard let p = Int32(entry), let data = fm.contents(atPath: "/proc/\(entry)/cmdline") else { continue }
            let args = data.split(separator: 0).map { String(decoding: $0, as: UTF8.self) }
            if let i = args.firstIndex(of: "-address"), i + 1 < args.count, args[i + 1] == socket { kill(p, SIGKILL) }
        }
        let bundles = dir + "/state/io.containerd.runtime.v2.task/k8s.io"
        for id in (try? fm.contentsOfDirectory(atPath: bundles)) ?? [] {
            if let text = try? String(contentsOfFile: "\(bundles)/\(id)/init.pid", encoding: .utf8), let p = Int32(text.trimmingCharacters(in: .whitespacesAndNewlines)), p > 1 { kill(p, SIGKILL) }
            if let address = try? String(contentsOfFile: "\(bundles)/\(id)/address", encoding: .utf8), address.hasPrefix("unix:///run/containerd/s/") {
                try? fm.removeItem(atPath: String(address.dropFirst("unix://".count)).trimmingCharacters(in: .whitespacesAndNewlines))
            }
            if !sandboxes.contains(id) { sandboxes.append(id) }
        }
        for mount in Self.mountPoints().filter({ $0.hasPrefix(dir + "/") }).reversed() { umount2(mount, Int32(MNT_DETACH)) }
        Self.removeCgroups { $0 == cgroupRoot }
        for id in sandboxes {
            for name in (try? fm.contentsOfDirectory(atPath: "/var/lib/cni/results")) ?? [] where name.hasSuffix("-\(id)-eth0") || name.hasSuffix("-\(id)-lo") {
                try? fm.removeItem(atPath: "/var/lib/cni/results/\(name)")
            }
        }
    }

    /// Removes the cgroup subtrees named `matching` in every hierarchy, depth first (rmdir only
    /// takes an empty cgroup: one still in use stays).
    static func removeCgroups(matching: (String) -> Bool) {
        let fm = FileManager.default
        for hierarchy in (try? fm.contentsOfDirectory(atPath: "/sys/fs/cgroup")) ?? [] {
            for top in ((try? fm.contentsOfDirectory(atPath: "/sys/fs/cgroup/\(hierarchy)")) ?? []).filter(matching) {
                let root = "/sys/fs/cgroup/\(hierarchy)/\(top)"
                let subdirs = ((fm.subpaths(atPath: root) ?? []).map { "\(root)/\($0)" }.filter { path in
                    var isDir: ObjCBool = false
                    return fm.fileExists(atPath: path, isDirectory: &isDir) && isDir.boolValue
                }).sorted { $0.count > $1.count }
                for d in subdirs + [root] { rmdir(d) }
            }
        }
    }

    /// Empty cgroup subtrees of crashed earlier runs (this suite's prefix only).
    private static let leftoversRemoved: Void = removeCgroups { $0.hasPrefix("nodenet-test-nnt") }

    deinit { close() }

    final class Counter: @unchecked Sendable {
        // @unchecked: guarded by the lock.
        private let lock = NSLock()
        private var value = 0
        func next() -> Int { lock.lock(); defer { lock.unlock() }; value += 1; return value }
    }
}

struct ContainerdFailure: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

/// What the kubelet sends in RunPodSandbox for a pod with a pod network (kubelet's
/// generatePodSandboxConfig): metadata, hostname, log directory, DNS, host ports, labels,
/// annotations, the pod's cgroup parent and a pod-level network namespace.
struct PodSandboxConfig {
    var name: String
    var namespace: String
    var uid: String
    var hostPorts: [(host: Int, container: Int)] = []
    var dnsServers = ["10.96.0.10"]
    var dnsSearches: [String] { ["\(namespace).svc.cluster.local", "svc.cluster.local", "cluster.local", "corp.example.com"] }
    var dnsOptions = ["ndots:5", "edns0", "timeout:2"]

    func json(logRoot: String, cgroupRoot: String) -> String {
        let config: [String: Any] = [
            "metadata": ["name": name, "uid": uid, "namespace": namespace, "attempt": 0],
            "hostname": name,
            "log_directory": "\(logRoot)/\(namespace)_\(name)_\(uid)",
            "dns_config": ["servers": dnsServers, "searches": dnsSearches, "options": dnsOptions],
            "port_mappings": hostPorts.map { ["protocol": "TCP", "container_port": $0.container, "host_port": $0.host] },
            "labels": ["app": String(name.split(separator: "-").first ?? ""), "pod-template-hash": "7d9f8c6b5d",
                       "io.kubernetes.pod.name": name, "io.kubernetes.pod.namespace": namespace, "io.kubernetes.pod.uid": uid],
            "annotations": ["kubernetes.io/config.seen": "2026-12-07T06:49:00.000000000Z", "kubernetes.io/config.source": "api"],
            "linux": [
                "cgroup_parent": "/\(cgroupRoot)/kubepods/besteffort/pod\(uid)",
                "security_context": ["namespace_options": ["network": "POD", "pid": "CONTAINER", "ipc": "POD"]],
            ],
        ]
        return String(decoding: try! JSONSerialization.data(withJSONObject: config, options: [.sortedKeys]), as: UTF8.self)
    }
}
