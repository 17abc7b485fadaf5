import Foundation
import NodenetTestSupport
import Testing

/// The built nodenet-cni installed as a plain file, the way a DaemonSet's init container
/// installs plugins, run with the agent down: the plugin must hand the call to the full binary
/// when there is one and answer a CNI error when there is none, and end either way (before the
/// search compared inodes, a copy at /opt/cni/bin/nodenet executed itself until killed).
@Suite(.serialized, .enabled(if: isPrivileged, "needs root (namespaces, chroot)"))
struct PluginCopyTests {
    /// Well above a plugin's few milliseconds; a plugin that loops is killed here and fails.
    static let bound = 10.0

    static func installCopy(_ source: String, at path: String) throws {
        try Shell.check(["install", "-D", "-m", "0755", source, path])
    }

    static func json(_ r: Shell.Result) -> [String: Any] {
        (try? JSONSerialization.jsonObject(with: Data(r.stdout.utf8))) as? [String: Any] ?? [:]
    }

    /// A root filesystem holding nothing but the plugin copied into a plugin directory: no
    /// /usr/bin/nodenet, no agent. The plugin is static, so it runs there as it is.
    @Test(arguments: ["/opt/cni/bin", "/usr/lib/cni"], ["DEL", "ADD"])
    func copyWithoutFullBinaryAnswersTryAgainNamingWhatItSearched(pluginDir: String, command: String) throws {
        let dir = TempDirectory()
        let root = dir.file("root")
        try Self.installCopy(AgentProcess.cniBinary, at: root + pluginDir + "/nodenet")
        try FileManager.default.createDirectory(atPath: root + "/proc", withIntermediateDirectories: true)
        let config = #"{"cniVersion":"1.0.0","name":"nodenet","type":"nodenet","socket":"/run/nodenet/nodenet.sock"}"#
        let env = ["CNI_COMMAND": command, "CNI_CONTAINERID": "c0ffee", "CNI_NETNS": "/proc/1/ns/net", "CNI_IFNAME": "eth0",
                   "CNI_PATH": pluginDir, "PATH": "/usr/bin:/bin"]
        // Its own network, mount and pid namespaces (proc for /proc/self/exe), the root moved to `root`.
        let started = Date()
        let r = try Shell.run(["unshare", "--net", "--mount", "--pid", "--fork", "--kill-child", "--mount-proc", "--root", root,
                               pluginDir + "/nodenet"], stdin: config, environment: env, timeout: Self.bound)
        let elapsed = Date().timeIntervalSince(started)
        #expect(elapsed < Self.bound, "the plugin did not end within \(Self.bound)s")
        #expect(r.status != 0)
        let reply = Self.json(r)
        #expect(reply["code"] as? Int == 11, "stdout: \(r.stdout) stderr: \(r.stderr)")
        #expect(reply["cniVersion"] as? String == "1.0.0")
        let msg = reply["msg"] as? String ?? ""
        #expect(msg.contains("\(pluginDir)/nodenet (this plugin itself)"), "\(msg)")
        #expect(msg.contains("\(pluginDir)/nodenet-full (missing)"), "\(msg)")
        #expect(msg.contains("/usr/bin/nodenet (missing)"), "\(msg)")
        #expect(msg.contains("/usr/local/bin/nodenet (missing)"), "\(msg)")
    }

    /// The DaemonSet layout: the full binary beside the copy as nodenet-full. DEL with the agent
    /// down is the full plugin's: it succeeds and queues the release for the agent.
    @Test func copyHandsDelToTheFullBinaryBesideIt() throws {
        let dir = TempDirectory()
        let ns = try TestNamespace("cnicopy")
        defer { ns.delete() }
        let bin = dir.file("bin")
        try Self.installCopy(AgentProcess.cniBinary, at: bin + "/nodenet")
        try FileManager.default.createSymbolicLink(atPath: bin + "/nodenet-full", withDestinationPath: AgentProcess.binary)
        let runDir = dir.file("run")
        let cni = CNIInvoker(node: ns, socket: runDir + "/nodenet.sock", plugin: bin + "/nodenet")
        let r = try cni.run("DEL", containerID: "c0ffee", extraEnvironment: ["CNI_PATH": bin], timeout: Self.bound)
        #expect(r.ok, "stdout: \(r.stdout) stderr: \(r.stderr)")
        #expect(r.stdout.isEmpty, "a successful DEL prints nothing: \(r.stdout)")
        let queued = (try? FileManager.default.contentsOfDirectory(atPath: runDir + "/pending-deletes")) ?? []
        #expect(queued.filter { $0.hasSuffix(".json") }.count == 1, "queued: \(queued)")
    }

    /// A second copy of the plugin where the full binary should be: it is started once, sees the
    /// hand-over marker and refuses instead of handing the call on.
    @Test func copyBesideACopyIsRefusedNotLooped() throws {
        let dir = TempDirectory()
        let ns = try TestNamespace("cniloop")
        defer { ns.delete() }
        let bin = dir.file("bin")
        try Self.installCopy(AgentProcess.cniBinary, at: bin + "/nodenet")
        try Self.installCopy(AgentProcess.cniBinary, at: bin + "/nodenet-full")
        let cni = CNIInvoker(node: ns, socket: dir.file("run/nodenet.sock"), plugin: bin + "/nodenet")
        let r = try cni.run("DEL", containerID: "c0ffee", extraEnvironment: ["CNI_PATH": bin], timeout: Self.bound)
        #expect(!r.ok)
        let reply = Self.json(r)
        #expect(reply["code"] as? Int == 11, "stdout: \(r.stdout) stderr: \(r.stderr)")
        let msg = reply["msg"] as? String ?? ""
        #expect(msg.contains("\(bin)/nodenet-full is a copy of the nodenet CNI plugin"), "\(msg)")
        #expect(msg.contains("\(bin)/nodenet handed it"), "\(msg)")
    }
}
