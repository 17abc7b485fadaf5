import ClusterState
import Foundation
import IPAddressing
import Logging
import Testing
@testable import ClusterDNS

/// The UDP fast path below NIO (`udpBatchIO`: recvmmsg/sendmmsg on threads of its own) gives
/// exactly the replies, and counts exactly what, NIO's path does: the same burst of mixed
/// queries (fast-path zone answers, general-path answers, truncation, errors, junk that is
/// dropped, forwarded names cold and then cached, a client outside the allow list, answers
/// over the rate limit) over IPv4 and IPv6 to two servers on the same store, one per path.
@Suite(.serialized, .enabled(if: toolsPresent, "needs dig and dnsmasq"))
struct BatchUDPTests {
    static let externalIDs: Set<UInt16> = [13, 14]

    static func query(_ id: UInt16, _ name: String, _ type: RRType = .a, edns: EDNS? = nil) -> [UInt8] {
        var h = DNSHeader(); h.id = id; h.recursionDesired = true
        return DNSMessage(header: h, questions: [DNSQuestion(name: DNSName(name)!, type: type)], edns: edns).encode()
    }

    /// The burst, each query with its own id; `dropped`: the ids that get no reply.
    /// `tag` names the exchange: the answer sent over the rate limit is its own per exchange, so
    /// the limiter's one-second window never spans two exchanges (which run a moment apart on
    /// the two servers). Every other answer repeats at most 6 times per client network.
    static func burst(_ tag: String) -> (queries: [[UInt8]], dropped: Set<UInt16>) {
        let zone = "testns.svc.cluster.local"
        var badVersion = EDNS(udpSize: 1232); badVersion.version = 1
        var malformed = query(10, "svc1.\(zone)")
        malformed.removeLast(6)                              // the question cut short: FORMERR
        var response = query(12, "svc1.\(zone)")
        response[2] |= 0x80                                  // a response: dropped
        let queries: [[UInt8]] = [
            query(1, "svc1.\(zone)"),                        // wire answer
            query(2, "SvC1.TeStNs.svc.cluster.local"),       // the client's case kept
            query(3, "svc-dual-stack.\(zone)", .aaaa, edns: EDNS(udpSize: 1232)),
            query(4, "svc0.\(zone)"),                        // NXDOMAIN with the SOA
            query(5, "hdls1.\(zone)"),                       // headless
            query(6, "many.\(zone)"),                        // 100 A records without EDNS: TC
            query(7, "_http._tcp.svc1.\(zone)", .srv),       // general path with additional records
            query(8, "svc1.\(zone)", .any),                  // RFC 8482
            query(9, "svc1.\(zone)", .axfr),                 // REFUSED
            malformed,
            [0, 11, 1, 0, 0],                                // too short: dropped
            response,
            query(13, "www.example.test"),                   // forwarded, then from the cache
            query(14, "ext.\(zone)"),                        // ExternalName: CNAME + forwarded
            query(15, "1.0.0.10.in-addr.arpa", .ptr),
            query(16, "svc1.\(zone)", edns: badVersion),     // BADVERS
        ] + (17...24).map { query(UInt16($0), "rl-\(tag).\(zone)") }   // the same answer 8 times: 2 over the rate limit
        return (queries, [11, 12])
    }

    static func start(batch: Bool, store: ClusterStore, upstream: UpstreamServer) async throws -> (ClusterDNSServer, Task<Void, any Error>, Int) {
        var c = DNSConfiguration(listenAddresses: [IPAddress("127.0.0.1")!, IPAddress("::1")!], port: 0, upstreams: .servers([upstream]),
                                 lameDuckMilliseconds: 0, udpSocketsPerAddress: 2)
        c.udpBatchIO = batch
        c.responseRateLimit = 6
        c.allowedClients = [IPPrefix("127.0.0.1/32")!, IPPrefix("::1/128")!]
        let dns = ClusterDNSServer(configuration: c, store: store, logger: Logger(label: "dns-test"))
        let running = Task { try await dns.run() }
        try await waitUntil { dns.isReady && dns.listenersSettled }
        #expect(dns.failedListeners.isEmpty)
        return (dns, running, try #require(dns.boundPort))
    }

    /// Sends every query back to back from one socket (so the server reads them in batches) and
    /// collects replies by id until `expected` arrived (bounded: 5 s).
    static func exchange(_ queries: [[UInt8]], to server: String, port: Int, from source: String? = nil, expected: Int) throws -> [UInt16: [UInt8]] {
        let v6 = server.contains(":")
        let fd = socket(v6 ? AF_INET6 : AF_INET, Int32(SOCK_DGRAM.rawValue), 0)
        #expect(fd >= 0)
        defer { close(fd) }
        var storage = sockaddr_storage()
        let length = withUnsafeMutableBytes(of: &storage) { raw -> Int in
            if v6 {
                var sa = sockaddr_in6(); sa.sin6_family = sa_family_t(AF_INET6); sa.sin6_port = UInt16(port).bigEndian
                sa.sin6_addr = in6addr_loopback
                raw.storeBytes(of: sa, as: sockaddr_in6.self); return MemoryLayout<sockaddr_in6>.size
            }
            var sa = sockaddr_in(); sa.sin_family = sa_family_t(AF_INET); sa.sin_port = UInt16(port).bigEndian
            sa.sin_addr.s_addr = IPv4Address(server)!.value.bigEndian
            raw.storeBytes(of: sa, as: sockaddr_in.self); return MemoryLayout<sockaddr_in>.size
        }
        if let source {
            var local = sockaddr_in(); local.sin_family = sa_family_t(AF_INET); local.sin_addr.s_addr = IPv4Address(source)!.value.bigEndian
            let rc = withUnsafePointer(to: &local) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
            #expect(rc == 0)
        }
        for q in queries {
            let sent = withUnsafePointer(to: &storage) { (ss: UnsafePointer<sockaddr_storage>) -> Int in
                ss.withMemoryRebound(to: sockaddr.self, capacity: 1) { (sa: UnsafePointer<sockaddr>) -> Int in
                    q.withUnsafeBytes { (raw: UnsafeRawBufferPointer) -> Int in sendto(fd, raw.baseAddress, raw.count, 0, sa, socklen_t(length)) }
                }
            }
            #expect(sent == q.count)
        }
        var replies: [UInt16: [UInt8]] = [:]
        var buffer = [UInt8](repeating: 0, count: 65536)
        let deadline = ContinuousClock.now + .seconds(5)
        while replies.count < expected, ContinuousClock.now < deadline {
            var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            guard poll(&p, 1, 100) > 0 else { continue }
            let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            guard n >= 2 else { continue }
            let id = UInt16(buffer[0]) << 8 | UInt16(buffer[1])
            // Rate-limited duplicates share nothing but their id: keep each id's reply.
            replies[id] = Array(buffer[0..<n])
        }
        return replies
    }

    /// Forwarded answers carry the upstream's TTL aged by the cache: the two servers' caches
    /// were filled a moment apart, so their TTLs are compared as zero.
    static func comparable(_ id: UInt16, _ bytes: [UInt8]) -> [UInt8] {
        guard externalIDs.contains(id), var m = try? DNSMessage(parsing: bytes) else { return bytes }
        for k in m.answers.indices { m.answers[k].ttl = 0 }
        for k in m.authority.indices { m.authority[k].ttl = 0 }
        return m.encode()
    }

    @Test func batchPathAnswersExactlyAsNIOPath() async throws {
        let (upstream, stub) = try await ServerIntegrationTests.startStubUpstream()
        defer { upstream.kill() }
        let store = await Fixture.store()
        await store.apply(ServerIntegrationTests.headless(100).map(StoreChange.upsert))
        let (fast, fastTask, fastPort) = try await Self.start(batch: true, store: store, upstream: stub)
        defer { fastTask.cancel() }
        let (nio, nioTask, nioPort) = try await Self.start(batch: false, store: store, upstream: stub)
        defer { nioTask.cancel() }
        // The fast server really serves below NIO: a thread per socket (2 per address).
        #expect(Self.threadNames().filter { $0.hasPrefix("dns-udp-") }.count == 4)

        // Cold (external names forwarded), then warm (from the cache), over both families.
        for round in ["cold", "warm"] {
            for server in ["127.0.0.1", "::1"] {
                let (queries, dropped) = Self.burst("\(round)-\(server == "::1" ? "v6" : "v4")")
                let ids = Set(queries.compactMap { $0.count >= 2 ? UInt16($0[0]) << 8 | UInt16($0[1]) : nil })
                let expected = ids.count - dropped.count
                let a = try Self.exchange(queries, to: server, port: fastPort, expected: expected)
                let b = try Self.exchange(queries, to: server, port: nioPort, expected: expected)
                #expect(a.count == expected, "\(round) \(server): batch path answered \(a.keys.sorted())")
                #expect(Set(a.keys) == Set(b.keys), "\(round) \(server)")
                #expect(Set(a.keys).isDisjoint(with: dropped))
                for id in a.keys.sorted() {
                    #expect(Self.comparable(id, a[id]!) == Self.comparable(id, b[id] ?? []), "\(round) \(server) id \(id)")
                }
                // The replies say what they should (the comparison alone would pass two equal wrong paths).
                #expect(a[6].map { $0[2] & 0x02 != 0 } == true, "TC without EDNS")
                #expect(a[4].map { $0[3] & 0x0F } == 3, "NXDOMAIN")
                #expect(a[10].map { $0[3] & 0x0F } == 1, "FORMERR")
                #expect(a[13].map { $0[3] & 0x0F } == 0 && a[13]!.count > 40, "forwarded answer")
                #expect(a[24].map { $0[2] & 0x02 != 0 && $0[3] & 0x0F == 3 } == true, "over the rate limit: slipped")
            }
        }
        // A client outside the allow list: REFUSED on both paths.
        let refusedQuery = [Self.query(30, "svc1.testns.svc.cluster.local")]
        let ra = try Self.exchange(refusedQuery, to: "127.0.0.1", port: fastPort, from: "127.0.0.2", expected: 1)
        let rb = try Self.exchange(refusedQuery, to: "127.0.0.1", port: nioPort, from: "127.0.0.2", expected: 1)
        #expect(ra[30].map { $0[3] & 0x0F } == 5 && ra == rb)

        let (s, t) = (fast.stats, nio.stats)
        #expect(s.queries == t.queries && s.udpQueries == t.udpQueries && s.queries > 0)
        #expect(s.dropped == t.dropped && s.dropped == 2 * 4)
        #expect(s.noError == t.noError && s.nxDomain == t.nxDomain && s.formErr == t.formErr && s.refused == t.refused)
        #expect(s.truncated == t.truncated && s.zoneAnswers == t.zoneAnswers && s.refusedClients == t.refusedClients)
        // Cache hits against misses depend on timing in the cold round (whether the ExternalName
        // query comes before or after the upstream answered the same name), not on the path.
        #expect(s.cacheHits > 0 && t.cacheHits > 0 && s.cacheMisses > 0 && t.cacheMisses > 0)
        #expect(s.rateLimited == t.rateLimited && s.rateLimited >= 2)
        #expect(s.requestsByType == t.requestsByType)
        #expect(s.durationBuckets.reduce(0, +) == t.durationBuckets.reduce(0, +))

        // Stopped: the batch sockets are closed (the port binds again without SO_REUSEPORT).
        #expect(!Self.udpPortFree(fastPort))
        fastTask.cancel()
        try await fastTask.value
        #expect(Self.udpPortFree(fastPort))
    }

    static func threadNames() -> [String] {
        let tasks = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/task")) ?? []
        return tasks.compactMap { try? String(contentsOfFile: "/proc/self/task/\($0)/comm", encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines) }
    }

    static func udpPortFree(_ port: Int) -> Bool {
        let fd = socket(AF_INET, Int32(SOCK_DGRAM.rawValue), 0)
        defer { close(fd) }
        var sa = sockaddr_in(); sa.sin_family = sa_family_t(AF_INET); sa.sin_port = UInt16(port).bigEndian
        sa.sin_addr.s_addr = IPv4Address("127.0.0.1")!.value.bigEndian
        return withUnsafePointer(to: &sa) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } } == 0
    }
}
