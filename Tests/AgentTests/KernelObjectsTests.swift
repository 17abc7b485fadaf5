import Agent
import Foundation
import NodenetTestSupport
import Testing

/// Issue 14 item 15 and the one reconciler shape: the kernel objects the agent owns outside the
/// routes actor are watched and repaired, with one status per object in `nodenet status --json`.
@Suite(.serialized, .enabled(if: isPrivileged, "needs root and iproute2"))
struct KernelObjectsTests {

    func poll(_ what: String, timeout: Double = 10, _ condition: () throws -> Bool) throws {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            if try condition() { return }
            usleep(50_000)
        }
        #expect(try condition(), "\(what) within \(timeout) s")
    }

    /// The DNS device, its addresses and its notrack rules are put back when removed (the
    /// device's link and address events: well under the 10 s periodic pass; the rules: that
    /// pass), each is an object in status, and an address the kernel refuses is an error on
    /// its own object that clears once it can be added. Without the fix they were made once at
    /// start: a deleted address or rule stayed gone with status in sync.
    @Test func theDNSDeviceAddressesAndNotrackRulesAreRepairedAndReported() throws {
        let ns = try TestNamespace("dnsdev")
        defer { ns.delete() }
        let dir = TempDirectory()
        let agent = AgentProcess(namespace: ns, directory: dir, args: [
            "--node-name", "node1", "--pod-cidrs", "10.244.1.0/24", "--dns-upstreams", "127.0.0.1:1",
            "--dns-listen", "169.254.20.10,fd5f:8dcc:e9bf::a",
        ])
        try agent.start()
        defer { agent.stop() }
        func dnsObjects() throws -> [String: String?] {
            let row = try status(agent).actors.first { $0.name == "dns" }
            return Dictionary((row?.objects ?? []).map { ("\($0.kind) \($0.name)", $0.error) }, uniquingKeysWith: { a, _ in a })
        }
        func addresses() throws -> String { try ns.run(["ip", "addr", "show", "dev", "nodenet-dns"]).stdout }
        try poll("the DNS objects reported in sync") {
            let o = try dnsObjects()
            return o["device nodenet-dns"] == .some(nil) && o["address 169.254.20.10"] == .some(nil)
                && o["address fd5f:8dcc:e9bf::a"] == .some(nil) && o["chain ip nodenet dns-notrack"] == .some(nil)
                && o["chain ip6 nodenet dns-notrack-out"] == .some(nil)
        }

        // An address deleted: back at once (event-driven).
        try ns.check(["ip", "addr", "del", "169.254.20.10/32", "dev", "nodenet-dns"])
        try poll("the address restored", timeout: 3) { try addresses().contains("169.254.20.10/32") }
        // The device deleted: re-created with its addresses.
        try ns.check(["ip", "link", "del", "nodenet-dns"])
        try poll("the device re-created", timeout: 3) { try addresses().contains("169.254.20.10/32") }
        // A notrack rule deleted (no event): back by the periodic pass.
        try ns.check(["nft", "flush", "chain", "ip", "nodenet", "dns-notrack"])
        try poll("the notrack rules restored", timeout: 15) {
            try ns.run(["nft", "list", "chain", "ip", "nodenet", "dns-notrack"]).stdout.contains("notrack")
        }

        // IPv6 off on the device: its address cannot be added: an error on that object only.
        try ns.check(["sysctl", "-qw", "net.ipv6.conf.nodenet-dns.disable_ipv6=1"])
        try poll("the address error in status", timeout: 5) {
            let o = try dnsObjects()
            return (o["address fd5f:8dcc:e9bf::a"] ?? nil)?.contains("cannot add") == true && o["address 169.254.20.10"] == .some(nil)
        }
        #expect(try status(agent).actors.first { $0.name == "dns" }?.state == .error)
        #expect(try agent.cli(["status"]).stdout.contains("dns: address fd5f:8dcc:e9bf::a: cannot add"))
        try ns.check(["sysctl", "-qw", "net.ipv6.conf.nodenet-dns.disable_ipv6=0"])
        try poll("the address back and the row in sync", timeout: 15) {
            try addresses().contains("fd5f:8dcc:e9bf::a") && status(agent).actors.first { $0.name == "dns" }?.state == .inSync
        }
        // Logged once when it appeared and once when it cleared, not at every retry.
        let log = agent.log(tail: 400)
        let appeared = log.components(separatedBy: "dns: address fd5f:8dcc:e9bf::a: cannot add").count - 1
        #expect(appeared == 1, "the error was logged \(appeared) times")
    }
}
