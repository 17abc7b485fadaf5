import Foundation
import NodenetTestSupport
import Testing

/// `nodenet reset` (what the package runs on removal) in a node namespace: everything the agent
/// made goes, everything else stays, and it refuses while the agent runs.
@Suite(.serialized, .enabled(if: isPrivileged, "needs root and iproute2"))
struct ResetTests {
    /// An agent that is not ready (its etcd never answers) writes no conflist: the runtime must
    /// not send pods to a plugin that cannot serve them.
    @Test func noConflistBeforeReady() throws {
        let ns = try TestNamespace("noconf")
        defer { ns.delete() }
        let dir = TempDirectory()
        let conflist = dir.file("net.d/10-nodenet.conflist")
        let agent = AgentProcess(namespace: ns, directory: dir, args: ["--node-name", "node1", "--source", "etcd",
                                 "--etcd-endpoints", "http://127.0.0.1:1", "--cni-conflist", conflist])
        try agent.start(waitReady: false)
        defer { agent.stop() }
        var status = try agent.cli(["status"])
        let deadline = Date().addingTimeInterval(15)
        while status.status == 1, Date() < deadline { usleep(50_000); status = try agent.cli(["status"]) }
        #expect(status.status == 3, "not ready: \(status.stdout)\(status.stderr)")
        #expect(!FileManager.default.fileExists(atPath: conflist), "a conflist before the agent is ready")
    }

    @Test func resetRemovesWhatTheAgentMadeAndNothingElse() throws {
        let ns = try TestNamespace("reset")
        defer { ns.delete() }
        let dir = TempDirectory()
        // An uplink with a route of someone else's, and a peer subnet route of nodenet's protocol.
        try ns.check(["ip", "link", "add", "eth0", "type", "veth", "peer", "name", "peer0"])
        try ns.check(["ip", "addr", "add", "192.168.1.11/24", "dev", "eth0"])
        try ns.check(["ip", "link", "set", "eth0", "up"])
        try ns.check(["ip", "link", "set", "peer0", "up"])
        try ns.check(["ip", "route", "add", "default", "via", "192.168.1.1", "dev", "eth0", "onlink"])
        let conflist = dir.file("net.d/10-nodenet.conflist")
        let agent = AgentProcess(namespace: ns, directory: dir, args: ["--node-name", "node1", "--cni-conflist", conflist])
        try agent.start()
        // Written once ready (start() waited for that), naming this agent's socket.
        var written = try? String(contentsOfFile: conflist, encoding: .utf8)
        let deadline = Date().addingTimeInterval(5)
        while written == nil, Date() < deadline { usleep(20_000); written = try? String(contentsOfFile: conflist, encoding: .utf8) }
        #expect(written?.contains("\"socket\": \"\(agent.socket)\"") == true, "conflist: \(written ?? "none")")
        let config = dir.write("config.yaml", "stateDir: \(agent.stateDir)\nrunDir: \(agent.runDir)\ncni:\n  conflist: \(conflist)\n")
        func reset(_ extra: [String] = []) throws -> Shell.Result {
            try ns.run([AgentProcess.binary, "reset", "--config", config] + extra, timeout: 30)
        }
        let refused = try reset()
        #expect(!refused.ok && refused.stderr.contains("stop it first"), "\(refused.stdout)\(refused.stderr)")
        agent.stop()
        try ns.check(["ip", "route", "add", "10.244.9.0/24", "via", "192.168.1.12", "dev", "eth0", "proto", "78"])
        try ns.check(["ip", "route", "add", "10.244.10.0/24", "via", "192.168.1.13", "dev", "eth0", "proto", "78", "table", "100"])
        for thing in [["ip", "link", "show", "nodenet0"], ["ip", "link", "show", "nodenet-dns"], ["nft", "list", "table", "ip", "nodenet"],
                      ["nft", "list", "table", "ip6", "nodenet-policy"]] {
            #expect(try ns.run(thing).ok, "the agent made no \(thing.last!)")
        }

        let r = try reset()
        #expect(r.ok, "\(r.stdout)\(r.stderr)")
        #expect(try !ns.run(["ip", "link", "show", "nodenet0"]).ok)
        #expect(try !ns.run(["ip", "link", "show", "nodenet-dns"]).ok)
        #expect(try !ns.run(["nft", "list", "table", "ip", "nodenet"]).ok)
        #expect(try !ns.run(["nft", "list", "table", "ip6", "nodenet"]).ok)
        #expect(try !ns.run(["nft", "list", "table", "ip", "nodenet-policy"]).ok)
        #expect(try !ns.run(["nft", "list", "table", "ip6", "nodenet-policy"]).ok)
        #expect(try ns.check(["ip", "route", "show", "table", "all", "proto", "78"]).stdout.isEmpty)
        #expect(!FileManager.default.fileExists(atPath: agent.stateDir))
        #expect(!FileManager.default.fileExists(atPath: agent.runDir))
        #expect(!FileManager.default.fileExists(atPath: conflist), "the runtime's conflist outlived the reset")
        // Not nodenet's: kept.
        #expect(try ns.check(["ip", "route", "show", "default"]).stdout.contains("via 192.168.1.1"))
        #expect(try ns.run(["ip", "link", "show", "peer0"]).ok)
        // Again: nothing left, still a success.
        let again = try reset()
        #expect(again.ok && again.stdout.contains("nothing of nodenet's was left"), "\(again.stdout)\(again.stderr)")
    }
}
