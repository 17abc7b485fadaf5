import ClusterState
import Foundation
import IPAddressing
import Logging
import Testing
@testable import ClusterDNS

/// The running server's defences (issue #14 items 5 and 6) and its forwarding features
/// (per-zone upstreams, serve-stale), over loopback with real clients.
@Suite(.serialized, .enabled(if: toolsPresent, "needs dig and dnsmasq"))
struct ServerLimitsTests {
    static func start(_ configure: (inout DNSConfiguration) -> Void) async throws -> (ClusterDNSServer, Task<Void, any Error>, Int) {
        var c = DNSConfiguration(listenAddresses: [IPAddress("127.0.0.1")!], port: 0, upstreams: .servers([]),
                                 lameDuckMilliseconds: 0, udpSocketsPerAddress: 1)
        configure(&c)
        let dns = ClusterDNSServer(configuration: c, store: await Fixture.store(), logger: Logger(label: "dns-test"))
        let running = Task { try await dns.run() }
        try await waitUntil { dns.isReady }
        return (dns, running, try #require(dns.boundPort))
    }

    /// A TCP connection to 127.0.0.1:port from `source` (another loopback address = another client).
    static func connect(from source: String, port: Int) -> Int32 {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var local = sockaddr_in()
        local.sin_family = sa_family_t(AF_INET)
        local.sin_addr.s_addr = IPv4Address(source)!.value.bigEndian
        _ = withUnsafePointer(to: &local) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
        var sa = sockaddr_in()
        sa.sin_family = sa_family_t(AF_INET)
        sa.sin_port = in_port_t(UInt16(port).bigEndian)
        sa.sin_addr.s_addr = UInt32(0x7F00_0001).bigEndian
        let r = withUnsafePointer(to: &sa) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
        return r == 0 ? fd : -1
    }

    /// Whether the server closed the connection within `ms` (EOF or reset).
    static func closed(_ fd: Int32, within ms: Int32) -> Bool {
        var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        guard poll(&p, 1, ms) == 1 else { return false }
        var b = [UInt8](repeating: 0, count: 512)
        return recv(fd, &b, b.count, Int32(MSG_DONTWAIT)) <= 0
    }

    /// One query over TCP on `fd`; the reply's rcode and answer count, or nil.
    static func ask(_ fd: Int32, _ name: String) throws -> DNSMessage? {
        let q = ClientPolicyTests.query(name)
        let frame = [UInt8(q.count >> 8), UInt8(q.count & 0xFF)] + q
        guard write(fd, frame, frame.count) == frame.count else { return nil }
        var tv = timeval(tv_sec: 2, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        var got: [UInt8] = []
        var buf = [UInt8](repeating: 0, count: 4096)
        while got.count < 2 || got.count < 2 + (Int(got[0]) << 8 | Int(got[1])) {
            let n = read(fd, &buf, buf.count)
            guard n > 0 else { return nil }
            got += buf[0..<n]
        }
        return try DNSMessage(parsing: Array(got[2...]))
    }

    @Test func slowTCPClientsCannotDenyService() async throws {
        let (dns, running, port) = try await Self.start {
            $0.maxTCPConnections = 6
            $0.maxTCPConnectionsPerClient = 3
            $0.tcpMessageTimeoutMilliseconds = 600
            $0.tcpIdleTimeoutMilliseconds = 5000
        }
        defer { running.cancel() }
        // One client opens five: three are kept, two closed at once.
        let greedy = (0..<5).map { _ in Self.connect(from: "127.0.0.2", port: port) }
        defer { greedy.forEach { if $0 >= 0 { close($0) } } }
        #expect(greedy.allSatisfy { $0 >= 0 })
        try await waitUntil { dns.stats.tcpConnectionsRejected == 2 }
        #expect(greedy.filter { Self.closed($0, within: 500) }.count == 2, "per-client limit")

        // A message trickled a byte every 150 ms never completes: closed by the whole-message
        // deadline (600 ms), although bytes keep arriving (a per-read idle timer would not fire).
        let slow = Self.connect(from: "127.0.0.5", port: port)
        defer { close(slow) }
        let q = ClientPolicyTests.query("svc1.testns.svc.cluster.local")
        let frame = [UInt8(q.count >> 8), UInt8(q.count & 0xFF)] + q
        var sent = 0
        var shut = false
        let began = Date()
        while sent < frame.count - 1, Date().timeIntervalSince(began) < 4 {
            guard write(slow, [frame[sent]], 1) == 1 else { shut = true; break }
            sent += 1
            if Self.closed(slow, within: 150) { shut = true; break }
        }
        #expect(shut, "trickling client closed")
        #expect(Date().timeIntervalSince(began) < 2, "within the message deadline, not the idle timeout")

        // Others are still served over TCP while the greedy client holds its three.
        let other = Self.connect(from: "127.0.0.3", port: port)
        defer { close(other) }
        #expect(try Self.ask(other, "svc1.testns.svc.cluster.local")?.answers.count == 1)
    }

    @Test func atTheGlobalCapTheOldestIdleConnectionIsShed() async throws {
        let (dns, running, port) = try await Self.start {
            $0.maxTCPConnections = 4
            $0.maxTCPConnectionsPerClient = 4
            $0.tcpIdleTimeoutMilliseconds = 10_000
        }
        defer { running.cancel() }
        let idle = ["127.0.0.2", "127.0.0.3", "127.0.0.4"].map { Self.connect(from: $0, port: port) }
        defer { idle.forEach { close($0) } }
        let busy = Self.connect(from: "127.0.0.6", port: port)
        defer { close(busy) }
        #expect(try Self.ask(busy, "svc1.testns.svc.cluster.local")?.answers.count == 1)
        // The cap is full (4). A new client is served; the connection idle longest goes.
        let newcomer = Self.connect(from: "127.0.0.7", port: port)
        defer { close(newcomer) }
        #expect(try Self.ask(newcomer, "svc1.testns.svc.cluster.local")?.answers.count == 1)
        // The three idle ones were accepted within the same few milliseconds: any may go, one must.
        try await waitUntil { dns.stats.tcpConnectionsRejected == 1 }
        #expect(idle.filter { Self.closed($0, within: 300) }.count == 1, "one connection idle since accept was shed")
        #expect(!Self.closed(busy, within: 100), "a connection that completed a query recently stays")
        #expect(dns.stats.tcpConnectionsRejected == 1)
    }

    @Test func onlyAllowedClientsAreAnswered() async throws {
        let (dns, running, port) = try await Self.start { $0.allowedClients = [IPPrefix("127.0.0.2/32")!] }
        defer { running.cancel() }
        let refused = try Helper.run(digPath, ["@127.0.0.1", "-p", "\(port)", "+time=2", "+tries=1", "svc1.testns.svc.cluster.local"])
        #expect(refused.contains("status: REFUSED"), "\(refused)")
        let tcpRefused = try Helper.run(digPath, ["@127.0.0.1", "-p", "\(port)", "+tcp", "+time=2", "+tries=1", "svc1.testns.svc.cluster.local"])
        #expect(tcpRefused.contains("status: REFUSED"), "\(tcpRefused)")
        let served = try Helper.run(digPath, ["@127.0.0.1", "-p", "\(port)", "-b", "127.0.0.2", "+short", "+time=2", "+tries=1",
                                              "svc1.testns.svc.cluster.local"])
        #expect(served == "10.0.0.1\n", "\(served)")
        // The pod subnets changed: the new list applies to running sockets.
        dns.setAllowedClients([IPPrefix("127.0.0.0/8")!])
        #expect(try Helper.run(digPath, ["@127.0.0.1", "-p", "\(port)", "+short", "+time=2", "+tries=1", "svc1.testns.svc.cluster.local"]) == "10.0.0.1\n")
    }

    @Test func perZoneForwardingAndServeStale() async throws {
        let port = UInt16.random(in: 20000...60000)
        // Two stub servers: the default upstream, and the one for corp.example (short TTLs).
        let def = try Helper(dnsmasqPath, ["--no-daemon", "--no-resolv", "--no-hosts", "--port=\(port)", "--listen-address=127.0.0.91",
                                           "--bind-interfaces", "--address=/#/192.0.2.1", "--local-ttl=60"])
        let corp = try Helper(dnsmasqPath, ["--no-daemon", "--no-resolv", "--no-hosts", "--port=\(port)", "--listen-address=127.0.0.92",
                                            "--bind-interfaces", "--address=/corp.example/10.0.0.53", "--local-ttl=1"])
        defer { def.kill() }
        var corpRunning = true
        defer { if corpRunning { corp.kill() } }
        let (dns, running, dnsPort) = try await Self.start {
            $0.upstreams = .servers([UpstreamServer(address: IPAddress("127.0.0.91")!, port: port)])
            $0.zones = [ZoneForward(zone: "corp.example", servers: [UpstreamServer(address: IPAddress("127.0.0.92")!, port: port)])]
            $0.serveStaleSeconds = 60
            $0.upstreamTimeoutMilliseconds = 300
        }
        defer { running.cancel() }
        func dig(_ name: String) throws -> String {
            try Helper.run(digPath, ["@127.0.0.1", "-p", "\(dnsPort)", "+time=2", "+tries=1", "+noall", "+answer", "+comments", name])
        }
        var out = ""
        for _ in 0..<50 {  // until both stubs answer (bounded)
            out = try dig("www.corp.example") + dig("www.example.test")
            if out.contains("10.0.0.53") && out.contains("192.0.2.1") { break }
            try await Task.sleep(for: .milliseconds(100))
        }
        #expect(try dig("www.corp.example").contains("10.0.0.53"), "corp.example goes to its own upstream")
        #expect(try dig("www.example.test").contains("192.0.2.1"), "everything else to the default")
        // The zone's upstream goes away; once the 1 s answer expired, the stale one is served (TTL <= 30).
        corp.kill(); corpRunning = false
        try await waitUntil { dns.stats.staleAnswers > 0 || ((try? dig("www.corp.example")) ?? "").contains("SERVFAIL") }
        var stale = ""
        for _ in 0..<20 {
            stale = try dig("www.corp.example")
            if dns.stats.staleAnswers > 0 { break }
        }
        #expect(stale.contains("10.0.0.53") && !stale.contains("SERVFAIL"), "\(stale)")
        #expect(dns.stats.staleAnswers > 0)
    }
}
