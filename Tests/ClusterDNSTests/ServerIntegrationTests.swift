import ClusterState
import Foundation
import IPAddressing
import Logging
import Testing
@testable import ClusterDNS

/// A helper process (dig, dnsmasq) started with posix_spawn. Not Foundation's Process: its
/// monitor thread blocks in wait4 on a still-running sibling (dnsmasq) and hangs the test.
final class Helper: Sendable {
    let pid: pid_t
    let outputFD: Int32

    init(_ path: String, _ args: [String]) throws {
        var fds: [Int32] = [0, 0]
        guard pipe(&fds) == 0 else { throw POSIXError(.EMFILE) }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_adddup2(&actions, fds[1], 1)
        posix_spawn_file_actions_adddup2(&actions, fds[1], 2)
        posix_spawn_file_actions_addclose(&actions, fds[0])
        var attr = posix_spawnattr_t()
        posix_spawnattr_init(&attr)
        defer { posix_spawnattr_destroy(&attr) }
        // The test process blocks signals on some threads; give the child a clean mask so it can be stopped.
        var empty = sigset_t()
        sigemptyset(&empty)
        posix_spawnattr_setsigmask(&attr, &empty)
        posix_spawnattr_setflags(&attr, Int16(POSIX_SPAWN_SETSIGMASK))
        let argv: [UnsafeMutablePointer<CChar>?] = ([path] + args).map { strdup($0) } + [nil]
        defer { argv.forEach { free($0) } }
        var child: pid_t = 0
        let rc = posix_spawn(&child, path, &actions, &attr, argv, environ)
        close(fds[1])
        guard rc == 0 else { close(fds[0]); throw POSIXError(POSIXErrorCode(rawValue: rc) ?? .EINVAL) }
        pid = child
        outputFD = fds[0]
    }

    var isRunning: Bool { waitpid(pid, nil, WNOHANG) == 0 }

    func kill() {
        _ = Glibc.kill(pid, SIGKILL)
        _ = waitpid(pid, nil, 0)
        close(outputFD)
    }

    /// Runs to completion (bounded by dig's own +time/+tries) and returns stdout+stderr.
    static func run(_ path: String, _ args: [String]) throws -> String {
        let h = try Helper(path, args)
        var out: [UInt8] = []
        var buf = [UInt8](repeating: 0, count: 4096)
        while true {
            let n = buf.withUnsafeMutableBytes { read(h.outputFD, $0.baseAddress, 4096) }
            if n < 0, errno == EINTR { continue }
            if n <= 0 { break }
            out += buf[0..<n]
        }
        _ = waitpid(h.pid, nil, 0)
        close(h.outputFD)
        return String(decoding: out, as: UTF8.self)
    }
}

let digPath = "/usr/bin/dig"
let dnsmasqPath = "/usr/sbin/dnsmasq"
let toolsPresent = FileManager.default.isExecutableFile(atPath: digPath) && FileManager.default.isExecutableFile(atPath: dnsmasqPath)

@Suite(.serialized, .enabled(if: toolsPresent, "needs dig and dnsmasq"))
struct ServerIntegrationTests {
    /// A stub upstream on a loopback address of its own (never the machine's resolver).
    static func startStubUpstream() async throws -> (Helper, UpstreamServer) {
        for attempt in 0..<10 {
            let port = UInt16.random(in: 20000...60000)
            let addr = "127.0.0.\(77 + attempt)"
            let h = try Helper(dnsmasqPath, ["--no-daemon", "--no-resolv", "--no-hosts", "--port=\(port)", "--listen-address=\(addr)",
                                             "--bind-interfaces", "--address=/example.test/192.0.2.10", "--local-ttl=60"]
                               + (0..<8).map { "--txt-record=big.txt.test,\($0)" + String(repeating: "x", count: 200) })
            // Up once it answers (bounded); a port taken makes dnsmasq exit: try another.
            let deadline = ContinuousClock.now + .seconds(5)
            while h.isRunning, ContinuousClock.now < deadline {
                let answer = try? Helper.run(digPath, ["@\(addr)", "-p", "\(port)", "+time=1", "+tries=1", "+short", "www.example.test", "A"])
                if answer == "192.0.2.10\n" { return (h, UpstreamServer(address: IPAddress(addr)!, port: port)) }
                try await Task.sleep(for: .milliseconds(20))
            }
            h.kill()
        }
        throw CancellationError()
    }

    static func headless(_ n: Int) -> [ClusterObject] {
        let svc = Service(metadata: ObjectMeta(name: "many", namespace: "testns"), isHeadless: true)
        let slice = EndpointSlice(metadata: ObjectMeta(name: "many-a", namespace: "testns", labels: [EndpointSlice.serviceNameLabel: "many"]),
                                  addressType: .ipv4,
                                  endpoints: (0..<n).map { Endpoint(addresses: [.v4(IPv4Address(10, 9, UInt8($0 / 250), UInt8($0 % 250 + 1)))]) },
                                  ports: [])
        let ext = Service(metadata: ObjectMeta(name: "ext", namespace: "testns"), type: .externalName, externalName: "www.example.test")
        return [.service(svc), .endpointSlice(slice), .service(ext)]
    }

    func dig(_ port: Int, _ args: String...) throws -> String {
        try Helper.run(digPath, ["@127.0.0.1", "-p", "\(port)", "+time=2", "+tries=1"] + args)
    }

    @Test func servesZoneAndForwardsOverUDPAndTCP() async throws {
        let (upstream, server) = try await Self.startStubUpstream()
        defer { upstream.kill() }
        let store = await Fixture.store()
        await store.apply(Self.headless(100).map(StoreChange.upsert))
        let config = DNSConfiguration(listenAddresses: [IPAddress("127.0.0.1")!], port: 0, upstreams: .servers([server]),
                                      lameDuckMilliseconds: 300, udpSocketsPerAddress: 2, tcpIdleTimeoutMilliseconds: 500)
        let dns = ClusterDNSServer(configuration: config, store: store, logger: Logger(label: "dns-test"))
        let running = Task { try await dns.run() }
        defer { running.cancel() }
        try await waitUntil { dns.isReady }
        let port = try #require(dns.boundPort)

        #expect(try dig(port, "+short", "svc1.testns.svc.cluster.local", "A") == "10.0.0.1\n")
        #expect(try dig(port, "+short", "+tcp", "svc1.testns.svc.cluster.local", "A") == "10.0.0.1\n")
        #expect(try dig(port, "+short", "SRV", "_http._tcp.svc1.testns.svc.cluster.local") == "0 100 80 svc1.testns.svc.cluster.local.\n")
        let nx = try dig(port, "svc0.testns.svc.cluster.local", "A")
        #expect(nx.contains("status: NXDOMAIN") && nx.contains("SOA"))
        let mixed = try dig(port, "+noall", "+answer", "SvC1.TeStNs.svc.cluster.local", "A")
        #expect(mixed.split(whereSeparator: \.isWhitespace) == ["SvC1.TeStNs.svc.cluster.local.", "5", "IN", "A", "10.0.0.1"])

        // A new service resolves as soon as the store has it.
        await store.apply([.upsert(.service(Fixture.service("fresh", ips: ["10.0.7.7"])))])
        var fresh = ""
        for _ in 0..<20 where fresh != "10.0.7.7\n" {
            fresh = try dig(port, "+short", "fresh.testns.svc.cluster.local")
            if fresh != "10.0.7.7\n" { try await Task.sleep(for: .milliseconds(50)) }
        }
        #expect(fresh == "10.0.7.7\n")

        // Forwarding to the stub, then the cache.
        #expect(try dig(port, "+short", "www.example.test", "A") == "192.0.2.10\n")
        #expect(try dig(port, "+short", "+tcp", "www.example.test", "A") == "192.0.2.10\n")
        #expect(dns.stats.cacheHits >= 1)
        #expect(try dig(port, "+short", "ext.testns.svc.cluster.local", "A") == "www.example.test.\n192.0.2.10\n")

        // Truncation: 100 A records do not fit 512 bytes without EDNS, fit in 4096 with it, and over TCP.
        let udp = try dig(port, "+noedns", "+ignore", "many.testns.svc.cluster.local", "A")
        #expect(udp.contains(" tc"), "\(udp)")
        let edns = try dig(port, "+bufsize=4096", "+short", "many.testns.svc.cluster.local", "A")
        #expect(edns.split(separator: "\n").count == 100)
        let tcp = try dig(port, "+tcp", "+noedns", "+short", "many.testns.svc.cluster.local", "A")
        #expect(tcp.split(separator: "\n").count == 100)
        #expect(dns.stats.truncated >= 1)

        // An upstream answer too big for UDP: the forwarder retries over TCP and relays it all.
        let big = try dig(port, "+tcp", "+short", "big.txt.test", "TXT")
        #expect(big.split(separator: "\n").count == 8, "\(big)")
        #expect(dns.stats.upstreamTCPFallbacks >= 1)

        // ANY is answered minimally.
        #expect(try dig(port, "+short", "svc1.testns.svc.cluster.local", "ANY").contains("RFC8482"))

        // Lame duck: after cancellation, still answering for a moment while not ready.
        running.cancel()
        try await waitUntil { !dns.isReady }
        #expect(try dig(port, "+short", "svc1.testns.svc.cluster.local", "A") == "10.0.0.1\n")
        try await running.value
        #expect(try !dig(port, "+short", "svc1.testns.svc.cluster.local", "A").contains("10.0.0.1"))
    }

    /// The server announces what its readiness and listener outcomes depend on (a bind that
    /// succeeded or failed, the zone's sync) on `changes`, so the agent's DNS reconciler
    /// follows them instead of polling every 20 ms: waiting on the stream alone sees the server
    /// ready with every address tried, the one that cannot be bound among the failed.
    @Test func changesAnnounceReadinessAndListenerOutcomes() async throws {
        let store = await Fixture.store()
        let config = DNSConfiguration(listenAddresses: [IPAddress("127.0.0.1")!, IPAddress("192.0.2.77")!], port: 0, upstreams: .servers([]),
                                      lameDuckMilliseconds: 0, udpSocketsPerAddress: 1)
        let dns = ClusterDNSServer(configuration: config, store: store, logger: Logger(label: "dns-test"))
        let running = Task { try await dns.run() }
        defer { running.cancel() }
        let settled = await withTaskGroup(of: Bool.self) { group in
            group.addTask {
                for await _ in dns.changes where dns.isReady && dns.listenersSettled { return true }
                return false
            }
            group.addTask { try? await Task.sleep(for: .seconds(10)); return false }
            let first = await group.next() ?? false
            group.cancelAll()
            return first
        }
        #expect(settled, "ready with every address tried, seen from the change stream within 10 s")
        #expect(dns.failedListeners[IPAddress("192.0.2.77")!] != nil, "\(dns.failedListeners)")
    }

    @Test func idleTCPClientsAreClosed() async throws {
        let store = await Fixture.store()
        let config = DNSConfiguration(listenAddresses: [IPAddress("127.0.0.1")!], port: 0, upstreams: .servers([]),
                                      lameDuckMilliseconds: 0, udpSocketsPerAddress: 1, maxTCPConnections: 2, tcpIdleTimeoutMilliseconds: 300)
        let dns = ClusterDNSServer(configuration: config, store: store, logger: Logger(label: "dns-test"))
        let running = Task { try await dns.run() }
        defer { running.cancel() }
        try await waitUntil { dns.isReady }
        let port = try #require(dns.boundPort)
        // Three silent connections against a limit of two: one is refused, the rest closed when idle.
        let fds = (0..<3).map { _ in connectTCP(port: port) }
        defer { fds.forEach { if $0 >= 0 { close($0) } } }
        try await waitUntil { dns.stats.tcpConnectionsRejected == 1 }
        for fd in fds where fd >= 0 {
            var b = [UInt8](repeating: 0, count: 1)
            var tv = timeval(tv_sec: 3, tv_usec: 0)
            setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
            #expect(read(fd, &b, 1) == 0, "server closed the silent connection")
        }
        // Two pipelined queries on one connection: two answers (RFC 7766).
        let fd = connectTCP(port: port)
        #expect(fd >= 0)
        defer { close(fd) }
        var frames: [UInt8] = []
        for (id, name) in [(UInt16(1), "svc1.testns.svc.cluster.local"), (2, "svc6.testns.svc.cluster.local")] {
            var h = DNSHeader(); h.id = id
            let q = DNSMessage(header: h, questions: [DNSQuestion(name: DNSName(name)!, type: .a)]).encode()
            frames += [UInt8(q.count >> 8), UInt8(q.count & 0xFF)] + q
        }
        #expect(write(fd, frames, frames.count) == frames.count)
        var tv = timeval(tv_sec: 2, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        var got: [UInt8] = []
        var buf = [UInt8](repeating: 0, count: 4096)
        var replies: [DNSMessage] = []
        while replies.count < 2 {
            let n = read(fd, &buf, buf.count)
            guard n > 0 else { break }
            got += buf[0..<n]
            while got.count >= 2, got.count >= 2 + (Int(got[0]) << 8 | Int(got[1])) {
                let len = Int(got[0]) << 8 | Int(got[1])
                replies.append(try DNSMessage(parsing: Array(got[2..<(2 + len)])))
                got.removeFirst(2 + len)
            }
        }
        #expect(replies.map(\.header.id).sorted() == [1, 2])
        #expect(replies.first { $0.header.id == 2 }?.rcode == RCode.noError.rawValue)

        // Names outside the zone with no upstream: SERVFAIL, not a hang.
        #expect(try dig(port, "www.example.test").contains("SERVFAIL"))
    }

    func connectTCP(port: Int) -> Int32 {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var sa = sockaddr_in()
        sa.sin_family = sa_family_t(AF_INET)
        sa.sin_port = in_port_t(UInt16(port).bigEndian)
        sa.sin_addr.s_addr = UInt32(0x7F00_0001).bigEndian
        let r = withUnsafePointer(to: &sa) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
        return r == 0 ? fd : -1
    }
}
