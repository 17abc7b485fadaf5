import Agent
import Foundation
import NodenetTestSupport
import Testing

/// The built binary, run as an operator runs it, inside a network namespace of the test's own.
@Suite(.serialized, .enabled(if: isPrivileged, "needs root and iproute2"))
struct AgentProcessTests {
    static let manifest = """
    apiVersion: v1
    kind: Node
    metadata: {name: node1}
    spec: {podCIDRs: [10.244.1.0/24]}
    status: {addresses: [{type: InternalIP, address: 192.168.1.11}]}
    ---
    apiVersion: v1
    kind: Node
    metadata: {name: node2}
    spec: {podCIDRs: [10.244.2.0/24]}
    status: {addresses: [{type: InternalIP, address: 192.168.1.12}]}
    ---
    apiVersion: v1
    kind: Service
    metadata: {name: web-service, namespace: apps}
    spec: {clusterIP: 10.107.37.188, selector: {app: web}, ports: [{name: http, port: 80, targetPort: 8080}]}
    ---
    apiVersion: v1
    kind: Pod
    metadata: {name: web-1, namespace: apps, labels: {app: web}}
    spec: {nodeName: node2}
    status: {podIPs: [{ip: 10.244.2.5}]}
    """


    @Test func applyThenStatusShowsTheObjects() throws {
        let ns = try TestNamespace("agent")
        defer { ns.delete() }
        let dir = TempDirectory()
        let agent = AgentProcess(namespace: ns, directory: dir, args: ["--node-name", "node1"])
        try agent.start()
        defer { agent.stop() }

        // Only root may drive the agent: the socket is 0600 in a 0700 directory.
        let socketMode = try FileManager.default.attributesOfItem(atPath: agent.socket)[.posixPermissions] as? Int
        let dirMode = try FileManager.default.attributesOfItem(atPath: agent.runDir)[.posixPermissions] as? Int
        #expect(socketMode == 0o600)
        #expect(dirMode == 0o700)

        let applied = try agent.apply(Self.manifest)
        #expect(applied.ok, "\(applied.stderr)")
        #expect(applied.stdout.contains("Service apps/web-service created"))
        let s = try status(agent)
        #expect(s.agent.ready)
        #expect(s.objects["Node"] == 2)
        #expect(s.objects["Service"] == 1)
        #expect(s.objects["EndpointSlice"] == 1, "the endpoints controller derived a slice")
        #expect(s.node.podCIDRs == ["10.244.1.0/24"], "pod subnet from the Node object")
        #expect(s.node.podCIDRSource == "nodeObject")
        #expect(s.node.nodeIP == "192.168.1.11")
        #expect(s.actors.contains { $0.name == "control" && $0.state == .inSync })

        let rules = try agent.cli(["status", "--rules"])
        #expect(rules.ok && rules.stdout.contains("table ip nodenet"), "status --rules: \(rules.stdout)\(rules.stderr)")
        #expect(rules.stdout.contains("10.107.37.188"))

        let table = try agent.cli(["status"])
        #expect(table.stdout.contains("Pod CIDRs:    10.244.1.0/24"))
        #expect(table.stdout.contains("Service=1"))

        // Re-applying changes nothing; deleting removes.
        #expect(try agent.apply(Self.manifest).stdout.contains("Service apps/web-service unchanged"))
        let deleted = try agent.cli(["delete", "-f", "-"], stdin: Self.manifest)
        #expect(deleted.stdout.contains("Pod apps/web-1 deleted"))
        #expect(try status(agent).objects["Service"] == nil)
    }

    @Test func invalidManifestChangesNothing() throws {
        let ns = try TestNamespace("agent")
        defer { ns.delete() }
        let dir = TempDirectory()
        let agent = AgentProcess(namespace: ns, directory: dir, args: ["--node-name", "node1", "--pod-cidrs", "10.244.1.0/24"])
        try agent.start()
        defer { agent.stop() }
        let bad = Self.manifest + "\n---\napiVersion: v1\nkind: Service\nmetadata: {name: broken, namespace: apps}\nspec: {ports: [{port: 70000}]}\n"
        let r = try agent.apply(bad)
        #expect(!r.ok)
        #expect(r.stderr.contains("document 5 (Service apps/broken): spec.ports[0].port: port 70000 is out of range"))
        #expect(try status(agent).objects.isEmpty, "the valid documents before it were not written either")
        // A YAML syntax error (an unclosed flow mapping) in the middle document: nothing is
        // written, not even the valid document before it, and the parser's error names it.
        let unclosed = "apiVersion: v1\nkind: Namespace\nmetadata: {name: apps}\n---\n"
            + "apiVersion: v1\nkind: Service\nmetadata: {name: web-service, namespace: apps\nspec: {ports: [{port: 80}]}\n---\n"
            + "apiVersion: v1\nkind: Node\nmetadata: {name: node1}\n"
        let syntax = try agent.apply(unclosed)
        #expect(!syntax.ok, "exit status: \(syntax.stdout)")
        #expect(!syntax.stdout.contains("created"), "\(syntax.stdout)")
        #expect(syntax.stderr.contains("document 2: not valid YAML or JSON"), "\(syntax.stderr)")
        #expect(try status(agent).objects.isEmpty, "no document of a file with a syntax error is written")
        // Kubernetes' limits: a 300 KiB annotation is refused by validation; a 20 MB one by the
        // control socket's body limit, before the agent reads it.
        let bigAnnotation = "apiVersion: v1\nkind: Namespace\nmetadata: {name: apps, annotations: {note: \(String(repeating: "x", count: 300 * 1024))}}\n"
        let annotated = try agent.apply(bigAnnotation)
        #expect(!annotated.ok && annotated.stderr.contains("metadata.annotations: 307204 bytes in all, over the 262144"), "\(annotated.stderr.prefix(300))")
        let huge = "apiVersion: v1\nkind: Namespace\nmetadata: {name: apps, annotations: {note: \(String(repeating: "x", count: 20 << 20))}}\n"
        let refused = try agent.apply(huge)
        #expect(!refused.ok && refused.stderr.contains("is over the 8388608 bytes the agent takes"), "\(refused.stderr.prefix(300))")
        #expect(try status(agent).objects.isEmpty)
        let unknown = try agent.apply("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n")
        #expect(unknown.stderr.contains("unsupported kind \"ConfigMap\""))
        let dry = try agent.cli(["apply", "-f", "-", "--dry-run"], stdin: Self.manifest)
        #expect(dry.stdout.contains("created (dry run)"))
        #expect(try status(agent).objects.isEmpty)
    }

    /// runDir and stateDir that exist before the agent (made by hand, a package, an older
    /// version) with a loose mode are made the agent's alone at start.
    @Test func preexistingDirectoriesAreMadePrivate() throws {
        let ns = try TestNamespace("agent")
        defer { ns.delete() }
        let dir = TempDirectory()
        let agent = AgentProcess(namespace: ns, directory: dir, args: ["--node-name", "node1", "--pod-cidrs", "10.244.1.0/24"])
        for path in [agent.runDir, agent.stateDir] {
            try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o755])
            chmod(path, 0o755)  // whatever the umask made of it
        }
        try agent.start()
        defer { agent.stop() }
        for path in [agent.runDir, agent.stateDir] {
            let mode = try FileManager.default.attributesOfItem(atPath: path)[.posixPermissions] as? Int
            #expect(mode == 0o700, "\(path) is \(String(mode ?? 0, radix: 8))")
        }
    }

    @Test func stateSurvivesRestartAndSecondAgentIsRefused() throws {
        let ns = try TestNamespace("agent")
        defer { ns.delete() }
        let dir = TempDirectory()
        let agent = AgentProcess(namespace: ns, directory: dir, args: ["--node-name", "node1"])
        try agent.start()
        #expect(try agent.apply(Self.manifest).ok)

        let second = AgentProcess(namespace: ns, directory: dir, args: ["--node-name", "node1"], logName: "second")
        try second.start(waitReady: false)
        let exit = second.waitForExit(timeout: 10)
        #expect(exit != nil && exit != 0, "a second agent on the same runDir must refuse to start")
        #expect(second.log().contains("another nodenet agent is running"))
        #expect(try agent.cli(["status"]).ok, "the first agent is unharmed")

        #expect(agent.stop() == 0, "SIGTERM is a clean exit")
        try agent.start()
        defer { agent.stop() }
        let s = try status(agent)
        #expect(s.objects["Node"] == 2 && s.objects["Pod"] == 1)
    }

    @Test func notifiesSystemd() throws {
        let ns = try TestNamespace("notify")
        defer { ns.delete() }
        let dir = TempDirectory()
        let notify = try NotifySocket(directory: dir)
        let agent = AgentProcess(namespace: ns, directory: dir, args: ["--node-name", "node1", "--pod-cidrs", "10.244.1.0/24"],
                                 environment: ["NOTIFY_SOCKET": notify.path, "WATCHDOG_USEC": "400000"])
        try agent.start()
        #expect(notify.wait(for: "READY=1"))
        #expect(notify.assignments.contains { $0.hasPrefix("STATUS=ready") })
        #expect(notify.wait(for: "WATCHDOG=1", timeout: 3))
        #expect(agent.stop() == 0)
        #expect(notify.wait(for: "STOPPING=1", timeout: 2))
        let readyIndex = notify.assignments.firstIndex(of: "READY=1")!
        let stoppingIndex = notify.assignments.firstIndex(of: "STOPPING=1")!
        #expect(readyIndex < stoppingIndex)
    }

    @Test func killDuringApplyLeavesAllOrNothing() throws {
        let ns = try TestNamespace("crash")
        defer { ns.delete() }
        let dir = TempDirectory()
        let agent = AgentProcess(namespace: ns, directory: dir, args: ["--node-name", "node1", "--pod-cidrs", "10.244.1.0/24"])
        try agent.start()
        #expect(try agent.apply(Self.manifest).ok)
        // A large apply, killed while it is in flight.
        let big = (0..<3000).map { i in
            "apiVersion: v1\nkind: Service\nmetadata: {name: s\(i), namespace: bulk}\nspec: {ports: [{port: 80}]}\n"
        }.joined(separator: "---\n")
        let path = dir.write("big.yaml", big)
        let client = try ChildProcess([AgentProcess.binary, "apply", "-f", path, "--socket", agent.socket])
        usleep(UInt32.random(in: 50_000...400_000))
        agent.crash()
        client.waitUntilExit()

        try agent.start()
        defer { agent.stop() }
        let s = try status(agent)
        let bulk = (s.objects["Service"] ?? 0) - 1
        #expect(bulk == 0 || bulk == 3000, "got \(bulk) of 3000: a half apply")
        #expect(s.objects["Node"] == 2, "what was applied before is intact")
    }

    /// A disabled actor must idle, not return: a ServiceGroup stops the agent when one does.
    @Test func agentWithDNSDisabledKeepsRunning() throws {
        let ns = try TestNamespace("nodns")
        defer { ns.delete() }
        let dir = TempDirectory()
        let agent = AgentProcess(namespace: ns, directory: dir, args: ["--node-name", "node1", "--pod-cidrs", "10.244.1.0/24", "--dns-enabled", "false"])
        try agent.start()
        defer { agent.stop() }
        // A returning actor stops the group at once: the agent would exit within this bound.
        #expect(agent.waitForExit(timeout: 1) == nil, "the agent exited: \(agent.log())")
        #expect(try agent.cli(["status"]).ok)
    }

    /// HTTP probes on the metrics listener (they cannot reach the control socket) and the
    /// exit status of `nodenet status` follow readiness: an etcd source that never answers holds
    /// READY back (up to 30 s), an embedded one does not.
    @Test func probesAndStatusExitCodeFollowReadiness() throws {
        let ns = try TestNamespace("probe")
        defer { ns.delete() }
        let dir = TempDirectory()
        func get(_ path: String) throws -> String {
            try ns.run(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "2", "http://127.0.0.1:9154\(path)"]).stdout
        }
        let waiting = AgentProcess(namespace: ns, directory: dir, args: ["--node-name", "node1", "--source", "etcd",
                                   "--etcd-endpoints", "http://127.0.0.1:1", "--metrics-listen", "127.0.0.1:9154"], logName: "waiting")
        try waiting.start(waitReady: false)
        var status = try waiting.cli(["status"])
        let deadline = Date().addingTimeInterval(15)
        while try status.status == 1 || get("/healthz") != "200", Date() < deadline {  // 1: not listening yet
            usleep(50_000)
            status = try waiting.cli(["status"])
        }
        #expect(status.status == 3, "status: \(status.status) \(status.stdout)\(status.stderr)\n\(waiting.log())")
        #expect(status.stdout.contains("not ready"))
        #expect(try waiting.cli(["status", "--json"]).status == 3)
        #expect(try get("/healthz") == "200")
        #expect(try get("/readyz") == "503")
        #expect(try get("/nothing") == "404")
        waiting.stop()

        let other = TempDirectory()
        let ready = AgentProcess(namespace: ns, directory: other, args: ["--node-name", "node1", "--metrics-listen", "127.0.0.1:9154"],
                                 logName: "ready")
        try ready.start()
        defer { ready.stop() }
        #expect(try ready.cli(["status"]).status == 0)
        var readyz = try get("/readyz")
        let until = Date().addingTimeInterval(10)
        while readyz == "000", Date() < until { usleep(50_000); readyz = try get("/readyz") }  // listener still binding
        #expect(readyz == "200")
        #expect(try get("/metrics") == "200")
    }

    /// SIGTERM starts DNS's lame-duck pause (`dns.lameDuck`): the agent reports not ready for
    /// all of it (it said ready for its 5 s), then exits cleanly; without a pause it stops at
    /// once (the time is printed, not asserted).
    @Test func notReadyDuringTheShutdownPauseAndNoPauseWhenItIsZero() throws {
        let ns = try TestNamespace("pause")
        defer { ns.delete() }
        let dir = TempDirectory()
        let paused = AgentProcess(namespace: ns, directory: dir, args: ["--node-name", "node1", "--dns-lame-duck", "3s",
                                                                        "--dns-upstreams", "127.0.0.1:53535"], logName: "paused")
        try paused.start()
        #expect(try paused.cli(["status"]).status == 0)
        let pid = try #require(paused.pid)
        kill(pid, SIGTERM)
        var seen: Int32 = -1
        let deadline = Date().addingTimeInterval(2.5)
        repeat {
            seen = try paused.cli(["status"]).status
            if seen == 3 { break }
            usleep(20_000)
        } while Date() < deadline
        #expect(seen == 3, "status during the lame-duck pause: exit \(seen) (3 is running, not ready)\n\(paused.log())")
        #expect(paused.waitForExit(timeout: 15) == 0, "\(paused.log())")

        let quickDir = TempDirectory()
        let quick = AgentProcess(namespace: ns, directory: quickDir, args: ["--node-name", "node1", "--dns-lame-duck", "0",
                                                                                   "--dns-upstreams", "127.0.0.1:53535"], logName: "quick")
        try quick.start()
        let started = Date()
        kill(try #require(quick.pid), SIGTERM)
        #expect(quick.waitForExit(timeout: 15) == 0, "\(quick.log())")
        print("stop without a lame-duck pause: \(String(format: "%.3f", Date().timeIntervalSince(started))) s")
    }

    @Test func statusWithoutAgentSaysSo() throws {
        let r = try Shell.run([AgentProcess.binary, "status", "--socket", "/nonexistent/nodenet.sock"])
        #expect(!r.ok)
        #expect(r.stderr.contains("the nodenet agent is not running"))
    }

    @Test func badConfigRefusesToStart() throws {
        let dir = TempDirectory()
        let path = dir.write("config.yaml", "nodeName: node1\nroutnig: vxlan\n")
        let r = try Shell.run([AgentProcess.binary, "agent", "--config", path], timeout: 10)
        #expect(!r.ok)
        #expect(r.stderr.contains("config key routnig: unknown key"))
    }

    @Test func everyConfigKeyHasAFlag() throws {
        let help = try Shell.check([AgentProcess.binary, "agent", "--help"]).stdout
        for key in ConfigLoader.allKeys {
            #expect(help.contains("--\(ConfigLoader.flagName(key)) "), "no flag for \(key)")
        }
    }

    @Test func sighupWithBrokenConfigKeepsRunning() throws {
        let ns = try TestNamespace("hup")
        defer { ns.delete() }
        let dir = TempDirectory()
        let config = dir.write("config.yaml", "nodeName: node1\npodCIDRs: [10.244.1.0/24]\n")
        let agent = AgentProcess(namespace: ns, directory: dir, args: ["--config", config])
        try agent.start()
        defer { agent.stop() }
        _ = dir.write("config.yaml", "nodeName: node1\nbroken: [\n")
        kill(agent.pid!, SIGHUP)
        let deadline = Date().addingTimeInterval(10)
        while !agent.log().contains("reload refused"), Date() < deadline { usleep(50_000) }
        #expect(agent.log().contains("reload refused"))
        #expect(try agent.cli(["status"]).ok)
    }
}
