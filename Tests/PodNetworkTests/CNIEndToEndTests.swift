import Foundation
import NodenetTestSupport
import Testing

/// The CNI plugin as a runtime uses it: the built binary exec'd with CNI_* variables from the
/// node's namespace, forwarding to the agent running in that namespace.
@Suite(.serialized, .enabled(if: isPrivileged, "needs root and iproute2"))
struct CNIEndToEndTests {
    /// @unchecked: a test fixture; its mutable `pods` is only appended to before concurrent use.
    final class Node: @unchecked Sendable {
        let ns: TestNamespace
        let dir = TempDirectory()
        let agent: AgentProcess
        let cni: CNIInvoker
        var pods: [TestNamespace] = []

        init(cidr: String = "10.244.1.0/24", version: String = "1.1.0") throws {
            ns = try TestNamespace("node")
            agent = AgentProcess(namespace: ns, directory: dir, args: ["--node-name", "node1", "--pod-cidrs", cidr])
            try agent.start()
            cni = CNIInvoker(node: ns, socket: agent.socket, version: version)
        }

        func pod() throws -> TestNamespace {
            let p = try TestNamespace("pod")
            pods.append(p)
            return p
        }

        func close() {
            agent.stop()
            pods.forEach { $0.delete() }
            ns.delete()
        }

        func hostLinks() throws -> [String] {
            try ns.check(["ip", "-o", "link", "show"]).stdout.split(separator: "\n").map { String($0.split(separator: ":")[1].trimmingCharacters(in: .whitespaces).split(separator: "@")[0]) }
        }
    }

    @Test(arguments: ["0.3.1", "0.4.0", "1.0.0", "1.1.0"])
    func addCheckDel(version: String) throws {
        let node = try Node(version: version)
        defer { node.close() }
        let p1 = try node.pod(), p2 = try node.pod()
        let add1 = try node.cni.run("ADD", containerID: "c1", netns: p1.path, args: "IgnoreUnknown=1;K8S_POD_NAMESPACE=apps;K8S_POD_NAME=web-1")
        #expect(add1.ok, "\(add1.stdout)\(add1.stderr)")
        let result = CNIInvoker.json(add1)
        #expect(result["cniVersion"] as? String == version)
        let interfaces = result["interfaces"] as? [[String: Any]] ?? []
        #expect(interfaces.map { $0["name"] as? String } == ["nodenet0", interfaces.count > 1 ? interfaces[1]["name"] as? String : nil, "eth0"])
        #expect(interfaces.last?["sandbox"] as? String == p1.path)
        #expect(interfaces.allSatisfy { ($0["mac"] as? String)?.count == 17 })
        let ip = try #require(CNIInvoker.address(add1))
        #expect(ip.hasPrefix("10.244.1."))
        if version.hasPrefix("0.") { #expect((result["ips"] as? [[String: Any]])?.first?["version"] as? String == "4") }
        let dns = result["dns"] as? [String: Any]
        #expect((dns?["search"] as? [String])?.first == "apps.svc.cluster.local")

        let add2 = try node.cni.run("ADD", containerID: "c2", netns: p2.path)
        let ip2 = try #require(CNIInvoker.address(add2))
        #expect(ip != ip2)
        #expect(try p1.run(["ping", "-c", "1", "-W", "2", ip2]).ok, "two pods on one node reach each other")

        if version != "0.3.1" {
            let check = try node.cni.run("CHECK", containerID: "c1", netns: p1.path, stdin: withPrevResult(node.cni.config, add1.stdout))
            #expect(check.ok, "\(check.stdout)")
        }
        // A second ADD of the same attachment is an error, as the spec requires.
        let again = try node.cni.run("ADD", containerID: "c1", netns: p1.path)
        #expect(!again.ok)
        #expect(CNIInvoker.json(again)["code"] as? Int == 102)

        let status = try node.agent.cli(["status", "--json"]).stdout
        #expect(status.contains("\"name\" : \"web-1\""), "the pod is in the store at once")

        #expect(try node.cni.run("DEL", containerID: "c1", netns: p1.path).ok)
        #expect(try node.cni.run("DEL", containerID: "c1", netns: p1.path).ok, "DEL twice is fine")
        // The interface goes in the background, right after the reply (LinkReaper).
        var gone = false
        for _ in 0..<100 where !gone {
            gone = try p1.run(["ip", "link", "show", "eth0"]).ok == false
            if !gone { usleep(20_000) }
        }
        #expect(gone, "DEL removes the pod's interface")
        // The released address is not handed out again at once (round-robin), but it is free.
        let add3 = try node.cni.run("ADD", containerID: "c3", netns: p1.path, args: "IP=\(ip)")
        #expect(CNIInvoker.address(add3) == ip, "a requested address is honoured once free")
    }

    /// /opt/cni/bin/nodenet is the lean nodenet-cni executable; the full nodenet binary takes
    /// the same path when exec'd with CNI_COMMAND set, and as `nodenet cni`.
    @Test func fullBinaryIsThePluginToo() throws {
        let node = try Node()
        defer { node.close() }
        let full = CNIInvoker(node: node.ns, socket: node.agent.socket, plugin: AgentProcess.binary)
        let version = try full.run("VERSION")
        #expect(version.ok && (CNIInvoker.json(version)["supportedVersions"] as? [String])?.contains("1.1.0") == true, "\(version.stdout)")
        let p1 = try node.pod()
        let add = try full.run("ADD", containerID: "full1", netns: p1.path)
        #expect(CNIInvoker.address(add) != nil, "ADD through the full binary: \(add.stdout)")
        // The explicit subcommand, with the same environment.
        let del = try Shell.run(["/usr/bin/nsenter", "--net=\(node.ns.path)", AgentProcess.binary, "cni"], stdin: full.config,
                                environment: ["CNI_COMMAND": "DEL", "CNI_CONTAINERID": "full1", "CNI_NETNS": p1.path, "CNI_IFNAME": "eth0",
                                              "CNI_PATH": "/opt/cni/bin"])
        #expect(del.ok, "nodenet cni DEL: \(del.stdout) \(del.stderr)")
        #expect(!(try node.agent.cli(["status", "--json"]).stdout.contains("full1")), "the attachment is gone")
    }

    /// The runtime's network namespace mounts are not visible to the agent (containerd with a
    /// private mount namespace, an agent in a DaemonSet without /run/netns propagation): the
    /// plugin opens CNI_NETNS itself and hands the descriptor over, so the pod gets its network.
    /// Through the control socket with the path alone (what a plugin that cannot pass it does)
    /// the agent answers code 4 naming what the deployment must share. A restart keeps the pod
    /// (its veth is there, though its path is not visible); once the namespace is gone, the
    /// next start releases it.
    @Test(arguments: [AgentProcess.cniBinary, AgentProcess.binary])
    func namespaceInvisibleToTheAgentIsHandedOver(plugin: String) throws {
        let node = try Node()
        defer { node.close() }
        let id = String(repeating: "7c3f9a01e5d2b84f", count: 4)
        let dir = node.dir.file("runtime-mounts")
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        let netns = dir + "/cni-4d1f0c2e-9b7a-4c55-a3e1-6f2b8d9e0a17"
        let envelope = #"{"environment":{"CNI_COMMAND":"ADD","CNI_CONTAINERID":"\#(id)","CNI_IFNAME":"eth1","CNI_NETNS":"\#(netns)","CNI_PATH":"/opt/cni/bin"},"stdin":"\#(node.cni.config.replacingOccurrences(of: "\"", with: "\\\""))"}"#
        let envelopeFile = node.dir.write("envelope.json", envelope)
        let config = node.dir.write("config.json", node.cni.config)
        let out = node.dir.file("out")
        // A private mount namespace, as a runtime with its own has: a tmpfs the agent never
        // sees, holding the pod's namespace mount. The script ends as a process inside the pod's
        // namespace, which keeps both alive until the test kills it.
        let script = """
            set -e
            mount -t tmpfs runtime-state \(dir)
            touch \(netns)
            unshare --net=\(netns) true
            curl -s --unix-socket \(node.agent.socket) --data-binary @\(envelopeFile) http://nodenet/v1/cni > \(out).path
            env CNI_COMMAND=ADD CNI_CONTAINERID=\(id) CNI_NETNS=\(netns) CNI_IFNAME=eth0 CNI_PATH=/opt/cni/bin \
                CNI_ARGS='K8S_POD_NAMESPACE=payments;K8S_POD_NAME=ledger-writer-7f9c6d5b8-x2kqp' \
                nsenter --net=\(node.ns.path) \(plugin) < \(config) > \(out).add
            nsenter --net=\(netns) ip -o -4 addr show eth0 > \(out).addr.tmp
            mv \(out).addr.tmp \(out).addr
            exec nsenter --net=\(netns) sleep 300
            """
        let holder = try Shell.spawn(["/usr/bin/unshare", "--mount", "--propagation", "private", "/bin/sh", "-c", script])
        var holderRunning = true
        defer { if holderRunning { kill(holder, SIGKILL); waitpid(holder, nil, 0) } }
        var done = false
        for _ in 0..<600 where !done {  // bounded: 60 s
            done = FileManager.default.fileExists(atPath: out + ".addr")
            if !done { usleep(100_000) }
        }
        #expect(done, "the runtime-side script finished")
        #expect(!FileManager.default.fileExists(atPath: netns), "the agent's side cannot see the runtime's mount")

        let byPath = (try? String(contentsOfFile: out + ".path", encoding: .utf8)) ?? ""
        #expect(byPath.contains(#""code":4"#) || byPath.contains(#"\"code\":4"#), "by path alone: code 4: \(byPath)")
        #expect(byPath.contains("mountPropagation"), "the error says what to share: \(byPath)")

        let add = (try? String(contentsOfFile: out + ".add", encoding: .utf8)) ?? ""
        #expect(add.contains(#""address":"10.244.1."#), "handed over: the pod is attached: \(add)\n\(node.agent.log())")
        let addr = (try? String(contentsOfFile: out + ".addr", encoding: .utf8)) ?? ""
        #expect(addr.contains("inet 10.244.1."), "eth0 has its address in the pod: \(addr)")

        // Restart: the path is invisible, the veth is there: the pod keeps its address.
        _ = node.agent.stop()
        try node.agent.start()
        #expect(try node.agent.cli(["status", "--json"]).stdout.contains("ledger-writer-7f9c6d5b8-x2kqp"), "kept across a restart")

        // The namespace goes (its last process ends, its veth with it): the next start releases it.
        kill(holder, SIGKILL)
        waitpid(holder, nil, 0)
        holderRunning = false
        _ = node.agent.stop()
        var vethGone = false
        for _ in 0..<100 where !vethGone {
            vethGone = !(try node.hostLinks()).contains { $0.hasPrefix("nn") }
            if !vethGone { usleep(50_000) }
        }
        #expect(vethGone, "the kernel removed the pod's veth with its namespace")
        try node.agent.start()
        #expect(try !node.agent.cli(["status", "--json"]).stdout.contains("ledger-writer-7f9c6d5b8-x2kqp"), "released at start")
    }

    @Test func delWithNamespaceGoneAndWithAgentDown() throws {
        let node = try Node()
        defer { node.close() }
        let p1 = try node.pod(), p2 = try node.pod()
        let ip1 = try #require(CNIInvoker.address(try node.cni.run("ADD", containerID: "gone", netns: p1.path)))
        _ = try #require(CNIInvoker.address(try node.cni.run("ADD", containerID: "down", netns: p2.path)))
        p1.delete()
        #expect(try node.cni.run("DEL", containerID: "gone", netns: p1.path).ok, "DEL with the namespace gone succeeds")

        node.agent.stop()
        let status = try node.cni.run("STATUS")
        #expect(!status.ok && CNIInvoker.json(status)["code"] as? Int == 50)
        let del = try node.cni.run("DEL", containerID: "down", netns: p2.path)
        #expect(del.ok, "DEL with the agent down succeeds: \(del.stdout)")
        #expect(try p2.run(["ip", "link", "show", "eth0"]).ok == false, "the shim tore the interface down itself")
        try node.agent.start()
        let s = try node.agent.cli(["status", "--json"]).stdout
        #expect(!s.contains("\"containerID\" : \"down\""), "the agent finished the queued release at start")
        #expect(try node.cni.run("STATUS").ok)
        // Both addresses are free again: a /29 has 5 usable addresses; take them all.
        _ = ip1
    }

    @Test func gcReleasesWhatIsNotListed() throws {
        let node = try Node()
        defer { node.close() }
        var ips: [String] = []
        for i in 0..<3 {
            let p = try node.pod()
            ips.append(try #require(CNIInvoker.address(try node.cni.run("ADD", containerID: "g\(i)", netns: p.path))))
        }
        let gcConfig = """
        {"cniVersion":"1.1.0","name":"nodenet","type":"nodenet","socket":"\(node.agent.socket)",
         "cni.dev/valid-attachments":[{"containerID":"g1","ifname":"eth0"}]}
        """
        let gc = try node.cni.run("GC", ifname: "", stdin: gcConfig)
        #expect(gc.ok, "\(gc.stdout)")
        let status = try node.agent.cli(["status", "--json"]).stdout
        #expect(status.contains("\"containerID\" : \"g1\""))
        #expect(!status.contains("\"containerID\" : \"g0\"") && !status.contains("\"containerID\" : \"g2\""))
        #expect(try node.pods[0].run(["ip", "link", "show", "eth0"]).ok == false)
    }

    @Test func badInputLeavesNothingBehind() throws {
        let node = try Node()
        defer { node.close() }
        let p = try node.pod()
        let before = try node.hostLinks()
        let cases: [(String, Int, () throws -> Shell.Result)] = [
            ("missing CNI_NETNS", 4, { try node.cni.run("ADD", containerID: "x") }),
            ("bad container id", 4, { try node.cni.run("ADD", containerID: "-bad id", netns: p.path) }),
            ("ifname too long", 4, { try node.cni.run("ADD", containerID: "x", netns: p.path, ifname: "averyveryverylongname") }),
            ("undecodable config", 6, { try node.cni.run("ADD", containerID: "x", netns: p.path, stdin: "{not json") }),
            ("foreign ipam", 7, { try node.cni.run("ADD", containerID: "x", netns: p.path,
                                                  stdin: "{\"cniVersion\":\"1.1.0\",\"name\":\"nodenet\",\"type\":\"nodenet\",\"ipam\":{\"type\":\"host-local\"}}") }),
            ("namespace missing", 4, { try node.cni.run("ADD", containerID: "x", netns: "/var/run/netns/nodenet-not-here") }),
            ("unsupported version", 1, { try node.cni.run("ADD", containerID: "x", netns: p.path,
                                                         stdin: "{\"cniVersion\":\"0.2.0\",\"name\":\"nodenet\",\"type\":\"nodenet\"}") }),
        ]
        for (what, code, call) in cases {
            let r = try call()
            #expect(!r.ok, "\(what) was accepted")
            #expect(CNIInvoker.json(r)["code"] as? Int == code, "\(what): \(r.stdout)")
            #expect(!((CNIInvoker.json(r)["msg"] as? String) ?? "").isEmpty)
        }
        #expect(try node.hostLinks() == before, "no half-made veth, no bridge change")
        #expect(!(try node.agent.cli(["status", "--json"]).stdout.contains("\"containerID\"")), "no leaked attachment")
        // The pool is intact: the first real ADD gets the first address.
        #expect(CNIInvoker.address(try node.cni.run("ADD", containerID: "ok", netns: p.path)) == "10.244.1.2")
    }

    @Test func versionWithoutAgent() throws {
        let ns = try TestNamespace("node")
        defer { ns.delete() }
        let cni = CNIInvoker(node: ns, socket: "/nonexistent/nodenet.sock")
        let r = try cni.run("VERSION", ifname: "", stdin: "{\"cniVersion\":\"1.0.0\"}")
        #expect(r.ok)
        #expect((CNIInvoker.json(r)["supportedVersions"] as? [String])?.contains("1.1.0") == true)
        #expect(CNIInvoker.json(r)["cniVersion"] as? String == "1.0.0")
    }

    @Test func hundredConcurrentAdds() throws {
        let node = try Node(cidr: "10.244.1.0/24")
        defer { node.close() }
        let count = 100
        let pods = try (0..<count).map { _ in try node.pod() }
        let results = ResultsBox(count)
        DispatchQueue.concurrentPerform(iterations: count) { i in
            results.set(i, try? node.cni.run("ADD", containerID: "p\(i)", netns: pods[i].path, timeout: 120))
        }
        let ips = results.all.compactMap { $0.flatMap(CNIInvoker.address) }
        #expect(ips.count == count, "every ADD succeeded: \(results.all.compactMap { $0 }.filter { !$0.ok }.prefix(2).map(\.stdout))")
        #expect(Set(ips).count == count, "all addresses distinct")
        // Every one works: each of a sample of pods reaches the gateway and a far pod.
        for i in stride(from: 0, to: count, by: 17) {
            #expect(try pods[i].run(["ping", "-c", "1", "-W", "2", ips[(i + 50) % count]]).ok, "pod \(i) cannot reach pod \((i + 50) % count)")
        }
    }

    @Test func killDuringConcurrentAddsThenRestart() throws {
        let node = try Node(cidr: "10.244.1.0/24")
        defer { node.close() }
        let count = 40
        let pods = try (0..<count).map { _ in try node.pod() }
        let results = ResultsBox(count)
        let group = DispatchGroup()
        DispatchQueue.global().async(group: group) {
            DispatchQueue.concurrentPerform(iterations: count) { i in
                results.set(i, try? node.cni.run("ADD", containerID: "k\(i)", netns: pods[i].path, timeout: 60))
            }
        }
        usleep(UInt32.random(in: 100_000...300_000))
        node.agent.crash()
        try node.agent.start()
        group.wait()
        // Runtimes clean up after failed ADDs with DEL; then GC with what succeeded.
        var succeeded: [(Int, String)] = []
        for i in 0..<count {
            if let r = results.all[i], r.ok, let ip = CNIInvoker.address(r) { succeeded.append((i, ip)) }
            else { _ = try node.cni.run("DEL", containerID: "k\(i)", netns: pods[i].path) }
        }
        #expect(Set(succeeded.map(\.1)).count == succeeded.count, "no address given twice")
        let valid = succeeded.map { "{\"containerID\":\"k\($0.0)\",\"ifname\":\"eth0\"}" }.joined(separator: ",")
        let gc = try node.cni.run("GC", ifname: "", stdin: """
            {"cniVersion":"1.1.0","name":"nodenet","type":"nodenet","socket":"\(node.agent.socket)","cni.dev/valid-attachments":[\(valid)]}
            """)
        #expect(gc.ok)
        let status = try node.agent.cli(["status", "--json"]).stdout
        let attached = status.components(separatedBy: "\"containerID\"").count - 1
        #expect(attached == succeeded.count, "no leaks after GC: \(attached) attachments for \(succeeded.count) pods")
        for (i, ip) in succeeded.prefix(5) {
            #expect(try pods[i].run(["ping", "-c", "1", "-W", "2", "10.244.1.1"]).ok, "pod \(i) (\(ip)) works after the restart")
        }
    }

    func withPrevResult(_ config: String, _ result: String) -> String {
        String(config.dropLast()) + ",\"prevResult\":" + result + "}"
    }
}

final class ResultsBox: @unchecked Sendable {
    // @unchecked: every access holds the lock.
    private let lock = NSLock()
    private var items: [Shell.Result?]
    init(_ n: Int) { items = Array(repeating: nil, count: n) }
    func set(_ i: Int, _ r: Shell.Result?) { lock.lock(); items[i] = r; lock.unlock() }
    var all: [Shell.Result?] { lock.lock(); defer { lock.unlock() }; return items }
}
