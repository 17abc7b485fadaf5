import Foundation
import NodenetTestSupport
import Testing

/// `nodenet reset` (what the package runs on removal) in a node namespace: everything the agent
/// made goes, everything else stays, and it refuses while the agent runs.
@Suite(.serialized, .enabled(if: isPrivileged, "needs root and iproute2"))
struct ResetTests {
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
        let agent = AgentProcess(namespace: ns, directory: dir, args: ["--node-name", "node1"])
        try agent.start()
        let config = dir.write("config.yaml", "stateDir: \(agent.stateDir)\nrunDir: \(agent.runDir)\n")
        func reset(_ extra: [String] = []) throws -> Shell.Result {
            try ns.run([AgentProcess.binary, "reset", "--config", config] + extra, timeout: 30)
        }
        let refused = try reset()
        #expect(!refused.ok && refused.stderr.contains("stop it first"), "\(refused.stdout)\(refused.stderr)")
        agent.stop()
        try ns.check(["ip", "route", "add", "10.244.9.0/24", "via", "192.168.1.12", "dev", "eth0", "proto", "78"])
        try ns.check(["ip", "route", "add", "10.244.10.0/24", "via", "192.168.1.13", "dev", "eth0", "proto", "78", "table", "100"])
        for thing in [["ip", "link", "show", "nodenet0"], ["ip", "link", "show", "nodenet-dns"], ["nft", "list", "table", "ip", "nodenet"]] {
            #expect(try ns.run(thing).ok, "the agent made no \(thing.last!)")
        }

        let r = try reset()
        #expect(r.ok, "\(r.stdout)\(r.stderr)")
        #expect(try !ns.run(["ip", "link", "show", "nodenet0"]).ok)
        #expect(try !ns.run(["ip", "link", "show", "nodenet-dns"]).ok)
        #expect(try !ns.run(["nft", "list", "table", "ip", "nodenet"]).ok)
        #expect(try !ns.run(["nft", "list", "table", "ip6", "nodenet"]).ok)
        #expect(try ns.check(["ip", "route", "show", "table", "all", "proto", "78"]).stdout.isEmpty)
        #expect(!FileManager.default.fileExists(atPath: agent.stateDir))
        #expect(!FileManager.default.fileExists(atPath: agent.runDir))
        // Not nodenet's: kept.
        #expect(try ns.check(["ip", "route", "show", "default"]).stdout.contains("via 192.168.1.1"))
        #expect(try ns.run(["ip", "link", "show", "peer0"]).ok)
        // Again: nothing left, still a success.
        let again = try reset()
        #expect(again.ok && again.stdout.contains("nothing of nodenet's was left"), "\(again.stdout)\(again.stderr)")
    }
}
