import ClusterState
import Foundation
import IPAddressing
import Logging
import NIOPosix
import Synchronization
import Testing
@testable import ClusterDNS

/// A slow fake upstream on a loopback UDP socket: counts queries, answers each after `delay`.
final class SlowUpstream: Sendable {
    let fd: Int32
    let port: UInt16
    let received = Atomic<Int>(0)

    init(delayMilliseconds: UInt32) throws {
        let fd = socket(AF_INET, Int32(SOCK_DGRAM.rawValue), 0)
        self.fd = fd
        var sa = sockaddr_in()
        sa.sin_family = sa_family_t(AF_INET)
        sa.sin_addr.s_addr = UInt32(0x7F00_0001).bigEndian
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &sa) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, len) } }
        _ = withUnsafeMutablePointer(to: &sa) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &len) } }
        port = UInt16(bigEndian: sa.sin_port)
        var tv = timeval(tv_sec: 0, tv_usec: 200_000)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        start(delayMilliseconds)
    }

    private func start(_ delayMilliseconds: UInt32) {
        Thread.detachNewThread { [self] in
            // Bounded: at most 10 s of serving.
            for _ in 0..<50 {
                var buf = [UInt8](repeating: 0, count: 1500)
                var from = sockaddr_in()
                var flen = socklen_t(MemoryLayout<sockaddr_in>.size)
                let n = withUnsafeMutablePointer(to: &from) { p in
                    p.withMemoryRebound(to: sockaddr.self, capacity: 1) { recvfrom(fd, &buf, 1500, 0, $0, &flen) }
                }
                if n < 0 { if errno == EBADF { return }; continue }
                received.wrappingAdd(1, ordering: .relaxed)
                guard let q = try? DNSMessage(parsing: Array(buf[0..<n])) else { continue }
                usleep(delayMilliseconds * 1000)
                var r = DNSMessage.response(to: q, rcode: .noError)
                r.answers = [DNSRecord(name: q.questions[0].name, type: .a, ttl: 30, data: .a(IPv4Address(192, 0, 2, 1)))]
                let out = r.encode()
                _ = withUnsafePointer(to: &from) { p in
                    p.withMemoryRebound(to: sockaddr.self, capacity: 1) { sendto(fd, out, out.count, 0, $0, flen) }
                }
            }
        }
    }

    var server: UpstreamServer { UpstreamServer(address: IPAddress("127.0.0.1")!, port: port) }
    func stop() { shutdown(fd, Int32(SHUT_RDWR)); close(fd) }
}

@Suite(.serialized) struct ForwarderTests {
    @Test func cacheExpiryAndNegativeTTL() {
        let cache = DNSCache(capacity: 10, maxTTL: 60, maxNegativeTTL: 3)
        let q = DNSQuestion(name: DNSName("a.example")!, type: .a)
        var m = DNSMessage.response(to: DNSMessage(questions: [q]), rcode: .noError)
        m.answers = [DNSRecord(name: q.name, type: .a, ttl: 10, data: .a(IPv4Address(1, 2, 3, 4)))]
        cache.store(CacheKey(q), m, now: 0)
        #expect(cache.lookup(CacheKey(q), now: 4000)?.message.answers.first?.ttl == 6)   // TTL counts down
        #expect(cache.lookup(CacheKey(DNSQuestion(name: DNSName("A.EXAMPLE")!, type: .a)), now: 0) != nil)  // case-insensitive
        #expect(cache.lookup(CacheKey(q), now: 10_000) == nil)                  // expired
        var nx = DNSMessage.response(to: DNSMessage(questions: [q]), rcode: .nxDomain)
        nx.authority = [DNSRecord(name: DNSName("example")!, type: .soa, ttl: 900,
                                  data: .soa(mname: .root, rname: .root, serial: 1, refresh: 1, retry: 1, expire: 1, minimum: 600))]
        #expect(cache.cacheTTL(nx) == 3)                                         // negative cap
        #expect(cache.cacheTTL(DNSMessage.response(to: DNSMessage(questions: [q]), rcode: .servFail)) == nil)
        for i in 0..<30 {
            let k = DNSQuestion(name: DNSName("n\(i).example")!, type: .a)
            var r = m; r.questions = [k]; r.answers[0].name = k.name
            cache.store(CacheKey(k), r, now: 0)
        }
        #expect(cache.count <= 10)
    }

    @Test func coalescesIdenticalQueriesAndFailsOver() async throws {
        let upstream = try SlowUpstream(delayMilliseconds: 300)
        defer { upstream.stop() }
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let transport = UpstreamTransport(group: group)
        let counters = DNSCounters()
        // First upstream: nothing listens there; the forwarder must fail over to the second.
        let dead = UpstreamServer(address: IPAddress("127.0.0.1")!, port: 9)
        let f = Forwarder(upstreams: [dead, upstream.server],
                          configuration: DNSConfiguration(upstreamTimeoutMilliseconds: 1000), transport: transport,
                          counters: counters, logger: Logger(label: "t"))
        let q = DNSQuestion(name: DNSName("same.example")!, type: .a)
        let answers = await withTaskGroup(of: DNSMessage?.self) { g in
            for _ in 0..<10 { g.addTask { await f.resolve(q) } }
            return await g.reduce(into: [DNSMessage?]()) { $0.append($1) }
        }
        #expect(answers.allSatisfy { $0?.answers.first?.data == .a(IPv4Address(192, 0, 2, 1)) })
        #expect(upstream.received.load(ordering: .relaxed) == 1)
        #expect(counters.snapshot().coalesced == 9)
        #expect(counters.snapshot().upstreamFailures >= 1)
        // Now cached.
        _ = await f.resolve(q)
        #expect(counters.snapshot().cacheHits == 1)
        #expect(upstream.received.load(ordering: .relaxed) == 1)
        await transport.close()
        try await group.shutdownGracefully()
    }

    @Test func boundsConcurrentForwards() async throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let transport = UpstreamTransport(group: group)
        let f = Forwarder(upstreams: [], configuration: DNSConfiguration(maxConcurrentForwards: 2), transport: transport,
                          counters: DNSCounters(), logger: Logger(label: "t"))
        #expect(f.admit() && f.admit())
        #expect(!f.admit())
        f.release()
        #expect(f.admit())
        // Through the processor: the third concurrent forwarded query is REFUSED at once.
        let p = QueryProcessor(zone: await Fixture.zone(), forwarder: f, counters: DNSCounters(), configuration: DNSConfiguration())
        var h = DNSHeader(); h.id = 7
        let q = DNSMessage(header: h, questions: [DNSQuestion(name: DNSName("x.example")!, type: .a)]).encode()
        guard case .reply(let bytes) = p.handle(q, overTCP: false) else { Issue.record("not refused"); return }
        #expect(try DNSMessage(parsing: bytes).rcode == RCode.refused.rawValue)
        try await group.shutdownGracefully()
    }

    @Test func detectsForwardingLoop() async throws {
        // The server's own address as its upstream: the loop probe comes straight back.
        var dns: ClusterDNSServer?
        var running: Task<Void, any Error>?
        for _ in 0..<5 where dns == nil {
            let port = UInt16.random(in: 20000...60000)
            let c = DNSConfiguration(listenAddresses: [IPAddress("127.0.0.1")!], port: port,
                                     upstreams: .servers([UpstreamServer(address: IPAddress("127.0.0.1")!, port: port)]),
                                     upstreamTimeoutMilliseconds: 300, lameDuckMilliseconds: 0, udpSocketsPerAddress: 1)
            let s = ClusterDNSServer(configuration: c, store: await Fixture.store(), logger: Logger(label: "t"))
            let t = Task { try await s.run() }
            try await waitUntil { s.isReady || t.isCancelled }
            if s.isReady { dns = s; running = t } else { t.cancel() }
        }
        let server = try #require(dns)
        defer { running?.cancel() }
        try await waitUntil { server.stats.loopDetected }
        #expect(server.stats.loopDetected)
    }
}
