import Foundation
import NodenetTestSupport
import Testing

/// What PackageSystemdTests needs, outside the suite (its trait reads it).
enum PackageUnderTest {
    static let required = ProcessInfo.processInfo.environment["NODENET_REQUIRE_SYSTEMD_TEST"] == "1"

    /// The package to test: $NODENET_DEB, else the newest dist/nodenet_*.deb.
    static let deb: String? = {
        if let d = ProcessInfo.processInfo.environment["NODENET_DEB"] { return d }
        let dist = FileManager.default.currentDirectoryPath + "/dist"
        let debs = ((try? FileManager.default.contentsOfDirectory(atPath: dist)) ?? [])
            .filter { $0.hasPrefix("nodenet_") && $0.hasSuffix(".deb") }
            .map { "\(dist)/\($0)" }
        func mtime(_ p: String) -> Date { ((try? FileManager.default.attributesOfItem(atPath: p))?[.modificationDate] as? Date) ?? .distantPast }
        return debs.max { mtime($0) < mtime($1) }
    }()

    /// Why the test cannot run here, or nil.
    static let missing: String? = {
        if getuid() != 0 { return "needs root" }
        for tool in ["systemd-nspawn", "debootstrap", "nsenter"] where (try? Shell.which(tool)) == nil {
            return "\(tool) is missing (scripts/setup.sh installs it)"
        }
        guard let deb, FileManager.default.fileExists(atPath: deb) else { return "no dist/nodenet_*.deb: run packaging/build-deb.sh first" }
        return nil
    }()
}

/// The built .deb on a node with a real systemd: a Debian 12 root filesystem booted with
/// systemd-nspawn (testing.md, "A real systemd"). `apt-get install` of the package, then
/// `systemctl enable --now nodenet` on a fresh node (no /run/netns: no runtime has made a pod
/// namespace yet) must reach active (running), which for Type=notify means READY=1; after a
/// reboot the unit must come up again by itself; `apt-get purge` must leave nothing of nodenet.
///
/// Needs root, systemd-nspawn and debootstrap (scripts/setup.sh), and the package built first
/// (packaging/build-deb.sh; .ci/run does it before the tests). The root filesystem is built once
/// and cached (packaging/test/rootfs.sh). Without these it is skipped, unless
/// NODENET_REQUIRE_SYSTEMD_TEST=1 (CI) makes a missing prerequisite a failure.
@Suite(.serialized, .enabled(if: PackageUnderTest.missing == nil || PackageUnderTest.required,
                             "needs root, systemd-nspawn, debootstrap and dist/nodenet_*.deb (packaging/build-deb.sh)"))
struct PackageSystemdTests {
    /// A uplink for the node inside the container's own network namespace (the kernel here has
    /// no dummy driver: a veth pair), configured at boot as a node's network would be, so the
    /// agent finds its node IP on the default-route interface after every reboot.
    static let uplinkUnit = """
        [Unit]
        Description=test node uplink (veth inside the container's own network namespace)
        DefaultDependencies=no
        Before=network-online.target
        [Service]
        Type=oneshot
        RemainAfterExit=yes
        ExecStart=/sbin/ip link add eth0 type veth peer name uplink0
        ExecStart=/sbin/ip link set uplink0 up
        ExecStart=/sbin/ip addr add 192.168.1.11/24 dev eth0
        ExecStart=/sbin/ip link set eth0 up
        ExecStart=/sbin/ip route add default via 192.168.1.1 dev eth0 onlink
        [Install]
        WantedBy=network-online.target multi-user.target

        """

    @Test(.timeLimit(.minutes(10)))
    func freshNodeStartsTheUnitAndAgainAfterReboot() throws {
        if let missing = PackageUnderTest.missing { Issue.record("PackageSystemdTests cannot run: \(missing)"); return }
        let deb = PackageUnderTest.deb!
        // A stale package would test an old unit: the .deb must carry the unit in this tree.
        let shipped = try Shell.check(["sh", "-c", "dpkg-deb --fsys-tarfile \"$0\" | tar -xO ./lib/systemd/system/nodenet.service", deb]).stdout
        let unit = try String(contentsOfFile: "packaging/nodenet.service", encoding: .utf8)
        try #require(shipped == unit, "\(deb) is older than packaging/nodenet.service: rebuild it with packaging/build-deb.sh")

        let tarball = try Shell.check(["packaging/test/rootfs.sh", deb], timeout: 900).stdout
            .trimmingCharacters(in: .whitespacesAndNewlines)
        let work = "/var/tmp/nodenet-systemd-\(getpid())"
        _ = try? Shell.run(["rm", "-rf", work])
        defer { _ = try? Shell.run(["rm", "-rf", "--one-file-system", work]) }
        let root = work + "/root"
        try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
        try Shell.check(["tar", "-C", root, "-xf", tarball], timeout: 300)
        chmod(root, 0o755)  // the container's "/": non-root daemons (dbus) must traverse it
        try Shell.check(["cp", deb, root + "/root/nodenet.deb"])
        let unitDir = root + "/etc/systemd/system"
        FileManager.default.createFile(atPath: unitDir + "/test-uplink.service", contents: Data(Self.uplinkUnit.utf8))
        for target in ["network-online.target", "multi-user.target"] {
            try FileManager.default.createDirectory(atPath: "\(unitDir)/\(target).wants", withIntermediateDirectories: true)
            try FileManager.default.createSymbolicLink(atPath: "\(unitDir)/\(target).wants/test-uplink.service",
                                                       withDestinationPath: "/etc/systemd/system/test-uplink.service")
        }

        let node = BootedContainer(root: root, logPath: work + "/console.log")
        defer { node.kill() }
        try node.boot()
        try node.check(["ip", "route", "show", "default"])
        #expect(try !node.run(["test", "-e", "/run/netns"]).ok, "a fresh node has no /run/netns")

        // As an operator: install the package (dependencies from the apt cache: no network), point
        // DNS at a dead local port (never the machine's resolver), enable and start.
        let install = try node.run(["apt-get", "install", "-y", "-q", "/root/nodenet.deb"], timeout: 300)
        try #require(install.ok, "apt-get install: \(install.stderr)\(install.stdout)")
        try node.check(["sed", "-i", "s|^  upstreams: .*|  upstreams: [127.0.0.1:1053]|", "/etc/nodenet/config.yaml"])
        try #require(try node.run(["grep", "-q", "upstreams: \\[127.0.0.1:1053\\]", "/etc/nodenet/config.yaml"]).ok)
        #expect(try !node.run(["test", "-e", "/etc/cni/net.d/10-nodenet.conflist"]).ok,
                "the package made the runtime's conflist active before the agent runs")
        let enable = try node.run(["systemctl", "enable", "--now", "nodenet"], timeout: 120)
        #expect(enable.ok, "systemctl enable --now nodenet: \(enable.stderr)\(diagnostics(node))")
        try expectRunningAndReady(node, boot: "first start")
        try expectServesUnderTheSandbox(node)

        // Reboot: the unit must come up by itself, again without /run/netns.
        try node.shutdown(reboot: true)
        try node.boot()
        #expect(try !node.run(["test", "-e", "/run/netns"]).ok, "/run is fresh after a reboot")
        try expectRunningAndReady(node, boot: "after reboot")

        // Purge: the unit stopped and disabled, everything nodenet made gone from the node.
        let owned: [(what: String, argv: [String])] = [
            ("the node bridge", ["ip", "link", "show", "nodenet0"]),
            ("the DNS device", ["ip", "link", "show", "nodenet-dns"]),
            ("table ip nodenet", ["nft", "list", "table", "ip", "nodenet"]),
            ("the state directory", ["test", "-d", "/var/lib/nodenet"]),
            ("the run directory", ["test", "-d", "/run/nodenet"]),
            ("the CNI conflist the agent wrote when ready", ["grep", "-q", "\"type\": \"nodenet\"", "/etc/cni/net.d/10-nodenet.conflist"]),
        ]
        for thing in owned { #expect(try node.run(thing.argv).ok, "before purge: no \(thing.what)") }
        let purge = try node.run(["apt-get", "purge", "-y", "-q", "nodenet"], timeout: 120)
        #expect(purge.ok, "apt-get purge: \(purge.stderr)\(purge.stdout)")
        #expect(try node.run(["systemctl", "is-active", "-q", "nodenet"]).status != 0, "nodenet still runs after purge")
        #expect(try !node.run(["test", "-e", "/etc/systemd/system/multi-user.target.wants/nodenet.service"]).ok, "still enabled")
        for thing in owned { #expect(try !node.run(thing.argv).ok, "after purge: \(thing.what) is still there") }
        try node.shutdown()
    }

    /// What the unit's sandbox must leave working (packaging/nodenet.service, Hardening): the
    /// exposure score systemd computes, the runtime's conflist written by the agent when ready,
    /// a pod attached through the installed plugin (netlink and setns under the sandbox), DNS
    /// answered on the node-local address (port 53), and a reload.
    func expectServesUnderTheSandbox(_ node: BootedContainer) throws {
        let security = try node.run(["systemd-analyze", "security", "--no-pager", "nodenet.service"], timeout: 60)
        let score = PackagingTests.exposureScore(security.stdout)
        #expect(score != nil && score! <= 5.2, "systemd-analyze security: \(security.stdout.suffix(600))\(security.stderr)")

        let conflist = try node.run(["cat", "/etc/cni/net.d/10-nodenet.conflist"])
        #expect(conflist.ok && conflist.stdout.contains("\"socket\": \"/run/nodenet/nodenet.sock\""), "conflist: \(conflist.stdout)\(conflist.stderr)")

        // A pod the way a runtime makes one: a namespace, then the plugin from /usr/lib/cni.
        try node.check(["ip", "netns", "add", "pod1"])
        let id = String(repeating: "5e1f", count: 16)
        let env = ["CNI_CONTAINERID=\(id)", "CNI_NETNS=/run/netns/pod1", "CNI_IFNAME=eth0", "CNI_PATH=/usr/lib/cni",
                   "CNI_ARGS=K8S_POD_NAMESPACE=apps;K8S_POD_NAME=web-1"]
        let config = #"{"cniVersion":"1.0.0","name":"nodenet","type":"nodenet","socket":"/run/nodenet/nodenet.sock"}"#
        let add = try node.run(["env", "CNI_COMMAND=ADD"] + env + ["/usr/lib/cni/nodenet"], stdin: config, timeout: 30)
        #expect(add.ok && add.stdout.contains("\"ips\""), "CNI ADD under the sandbox: \(add.stdout)\(add.stderr)\n\(diagnostics(node))")
        #expect(try node.run(["ip", "netns", "exec", "pod1", "ip", "-4", "addr", "show", "eth0"]).stdout.contains("10.244."))
        // DNS on the node-local address, port 53 (CAP_NET_BIND_SERVICE), from the pod: an
        // authoritative NXDOMAIN for a name in the cluster zone proves the server answers.
        let dig = try #require(try? Shell.which("dig"), "dig is missing (scripts/setup.sh installs dnsutils)")
        // The host's dig in the pod's network namespace, reached through the container's root.
        let answer = try Shell.run(["nsenter", "--net=/proc/\(node.leader)/root/run/netns/pod1", dig, "+time=2", "+tries=2",
                                    "@169.254.20.10", "nothing.default.svc.cluster.local", "A"], timeout: 20)
        #expect(answer.stdout.contains("status: NXDOMAIN") && answer.stdout.contains(" aa"), "dig: \(answer.stdout)\(answer.stderr)")
        let del = try node.run(["env", "CNI_COMMAND=DEL"] + env + ["/usr/lib/cni/nodenet"], stdin: config, timeout: 30)
        #expect(del.ok, "CNI DEL: \(del.stdout)\(del.stderr)")
        try node.check(["ip", "netns", "del", "pod1"])

        // Reload (ExecReload: /bin/kill -HUP) keeps the agent running, without a restart.
        let reload = try node.run(["systemctl", "reload", "nodenet"], timeout: 60)
        #expect(reload.ok, "systemctl reload: \(reload.stderr)")
        try expectRunningAndReady(node, boot: "after reload")
    }

    /// Active (running) with no restart (a Type=notify unit is active only after READY=1), and
    /// the agent itself says ready.
    func expectRunningAndReady(_ node: BootedContainer, boot: String) throws {
        let deadline = Date().addingTimeInterval(60)
        var props: [String: String] = [:]
        repeat {
            let r = try node.run(["systemctl", "show", "nodenet", "-p", "ActiveState,SubState,NRestarts,Result,StatusText"])
            props = Dictionary(r.stdout.split(separator: "\n").compactMap { line in
                line.firstIndex(of: "=").map { (String(line[..<$0]), String(line[line.index(after: $0)...])) }
            }, uniquingKeysWith: { a, _ in a })
            if props["ActiveState"] == "active" || props["ActiveState"] == "failed" { break }
            usleep(200_000)
        } while Date() < deadline
        #expect(props["ActiveState"] == "active" && props["SubState"] == "running",
                "\(boot): nodenet is \(props)\n\(diagnostics(node))")
        #expect(props["NRestarts"] == "0", "\(boot): nodenet restarted \(props["NRestarts"] ?? "?") times\n\(diagnostics(node))")
        let status = try node.run(["nodenet", "status", "--json"], timeout: 20)
        #expect(status.ok && status.stdout.contains("\"ready\" : true"), "\(boot): nodenet status: \(status.stdout)\(status.stderr)")
    }

    func diagnostics(_ node: BootedContainer) -> String {
        let journal = (try? node.run(["journalctl", "-u", "nodenet", "-b", "--no-pager", "-n", "40"], timeout: 20))?.stdout ?? ""
        return "journal:\n\(journal)\nconsole:\n\(node.log(tail: 20))"
    }
}
