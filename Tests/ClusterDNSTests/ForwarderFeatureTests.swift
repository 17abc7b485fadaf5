import ClusterState
import Foundation
import IPAddressing
import Logging
import NIOPosix
import Synchronization
import Testing
@testable import ClusterDNS

/// A loopback UDP upstream that answers every query with `answer(query)` (nil: silence),
/// counting queries. Serves for at most 10 s.
final class FakeUpstream: Sendable {
    let fd: Int32
    let port: UInt16
    let received = Atomic<Int>(0)
    let stopped = Atomic<Bool>(false)

    init(_ answer: @escaping @Sendable ([UInt8]) -> [UInt8]?) {
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
        Thread.detachNewThread { [self] in
            for _ in 0..<50 {
                var buf = [UInt8](repeating: 0, count: 1500)
                var from = sockaddr_in()
                var flen = socklen_t(MemoryLayout<sockaddr_in>.size)
                let n = withUnsafeMutablePointer(to: &from) { p in
                    p.withMemoryRebound(to: sockaddr.self, capacity: 1) { recvfrom(fd, &buf, 1500, 0, $0, &flen) }
                }
                // Stopped: the descriptor may already belong to another test's socket.
                if stopped.load(ordering: .acquiring) { return }
                if n < 12 { continue }
                received.wrappingAdd(1, ordering: .relaxed)
                guard let out = answer(Array(buf[0..<n])) else { continue }
                _ = withUnsafePointer(to: &from) { p in
                    p.withMemoryRebound(to: sockaddr.self, capacity: 1) { sendto(fd, out, out.count, 0, $0, flen) }
                }
            }
        }
    }

    var server: UpstreamServer { UpstreamServer(address: IPAddress("127.0.0.1")!, port: port) }
    func stop() {
        guard !stopped.exchange(true, ordering: .acquiringAndReleasing) else { return }
        shutdown(fd, Int32(SHUT_RDWR)); close(fd)
    }

    /// An A record answer with `address` and `ttl`.
    static func answering(_ address: IPv4Address, ttl: UInt32 = 30) -> FakeUpstream {
        FakeUpstream { bytes in
            guard let q = try? DNSMessage(parsing: bytes) else { return nil }
            var r = DNSMessage.response(to: q, rcode: .noError)
            r.answers = [DNSRecord(name: q.questions[0].name, type: .a, ttl: ttl, data: .a(address))]
            return r.encode()
        }
    }
}

/// Shuts an event loop group down off the test's task (a `defer` cannot await).
func shutdownLater(_ group: MultiThreadedEventLoopGroup) {
    group.shutdownGracefully { _ in }
}

@Suite(.serialized) struct ForwarderFeatureTests {
    static func forwarder(_ upstreams: [UpstreamServer], zones: [ZoneForward] = [], _ group: MultiThreadedEventLoopGroup,
                          configure: (inout DNSConfiguration) -> Void = { _ in }) -> (Forwarder, DNSCounters) {
        var c = DNSConfiguration(upstreamTimeoutMilliseconds: 300)
        configure(&c)
        let counters = DNSCounters()
        return (Forwarder(upstreams: upstreams, zones: zones, configuration: c, transport: UpstreamTransport(group: group),
                          counters: counters, logger: Logger(label: "t")), counters)
    }

    static func a(_ m: DNSMessage?) -> String? {
        if case .a(let v)? = m?.answers.last?.data { return "\(v)" }
        return nil
    }

    @Test func perZoneUpstreamSelection() async throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        defer { shutdownLater(group) }
        let def = FakeUpstream.answering(IPv4Address(192, 0, 2, 1))
        let corp = FakeUpstream.answering(IPv4Address(10, 0, 0, 53))
        let lab = FakeUpstream.answering(IPv4Address(10, 1, 0, 53))
        defer { def.stop(); corp.stop(); lab.stop() }
        let (f, _) = Self.forwarder([def.server], zones: [ZoneForward(zone: "corp.example", servers: [corp.server]),
                                                          ZoneForward(zone: "lab.corp.example", servers: [lab.server])], group)
        #expect(f.upstreams(for: DNSName("www.corp.example")!).servers == [corp.server])
        #expect(f.upstreams(for: DNSName("CORP.EXAMPLE")!).servers == [corp.server], "the apex, any case")
        #expect(f.upstreams(for: DNSName("x.lab.corp.example")!).servers == [lab.server], "longest zone wins")
        #expect(f.upstreams(for: DNSName("notcorp.example")!).servers == [def.server], "label boundaries")
        #expect(Self.a(await f.resolve(DNSQuestion(name: DNSName("www.corp.example")!, type: .a))) == "10.0.0.53")
        #expect(Self.a(await f.resolve(DNSQuestion(name: DNSName("x.lab.corp.example")!, type: .a))) == "10.1.0.53")
        #expect(Self.a(await f.resolve(DNSQuestion(name: DNSName("www.example.test")!, type: .a))) == "192.0.2.1")
        #expect(def.received.load(ordering: .relaxed) == 1 && corp.received.load(ordering: .relaxed) == 1 && lab.received.load(ordering: .relaxed) == 1)
        // Same cache: asked again, no upstream sees it.
        _ = await f.resolve(DNSQuestion(name: DNSName("www.corp.example")!, type: .a))
        #expect(corp.received.load(ordering: .relaxed) == 1)
    }

    @Test func upstreamAnsweringGarbageIsMarkedUnhealthy() async throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        defer { shutdownLater(group) }
        // The query's id, QR set, then junk: matches the pending query, does not parse.
        let garbage = FakeUpstream { q in [q[0], q[1], 0x81, 0x80, 0, 1, 0, 9, 0xde, 0xad, 0xbe, 0xef, 0xff, 0xff, 0xff] }
        let good = FakeUpstream.answering(IPv4Address(192, 0, 2, 7))
        defer { garbage.stop(); good.stop() }
        let (f, counters) = Self.forwarder([garbage.server, good.server], group)
        #expect(Self.a(await f.resolve(DNSQuestion(name: DNSName("a.example.test")!, type: .a))) == "192.0.2.7", "not trusted: the next one answers")
        #expect(!f.health.isHealthy(0, now: monotonicMilliseconds()), "one garbage answer takes it out of service")
        #expect(f.health.isHealthy(1, now: monotonicMilliseconds()))
        _ = await f.resolve(DNSQuestion(name: DNSName("b.example.test")!, type: .a))
        #expect(garbage.received.load(ordering: .relaxed) == 1, "skipped while out of service")
        #expect(counters.snapshot().upstreamFailures == 1)
        #expect(f.upstreamStats.first { $0.server == garbage.server.description }?.failures == 1)
    }

    @Test func serveStaleWhileEveryUpstreamIsDown() async throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        defer { shutdownLater(group) }
        let up = FakeUpstream.answering(IPv4Address(192, 0, 2, 8), ttl: 1)
        let (f, counters) = Self.forwarder([up.server], group) { $0.serveStaleSeconds = 2 }
        let q = DNSQuestion(name: DNSName("stale.example.test")!, type: .a)
        #expect(Self.a(await f.resolve(q)) == "192.0.2.8")
        up.stop()
        // Expired (TTL 1) and the upstream gone: the stale answer, TTL at most 30, not SERVFAIL.
        try await waitUntil { f.cache.lookup(CacheKey(q), now: monotonicMilliseconds()) == nil }
        let stale = await f.resolve(q)
        #expect(Self.a(stale) == "192.0.2.8")
        #expect((stale?.answers.first?.ttl ?? 99) <= 30)
        #expect(counters.snapshot().staleAnswers == 1)
        // Past the stale window: nothing (SERVFAIL for the client).
        try await waitUntil { f.cache.stale(CacheKey(q), now: monotonicMilliseconds()) == nil }
        #expect(await f.resolve(q) == nil)
    }

    @Test func staleWindowAndPrefetchInTheCache() {
        let cache = DNSCache(capacity: 10, maxTTL: 60, maxNegativeTTL: 3, staleSeconds: 60, prefetchHits: 2)
        let q = DNSQuestion(name: DNSName("a.example")!, type: .a)
        var m = DNSMessage.response(to: DNSMessage(questions: [q]), rcode: .noError)
        m.answers = [DNSRecord(name: q.name, type: .a, ttl: 10, data: .a(IPv4Address(1, 2, 3, 4)))]
        cache.store(CacheKey(q), m, now: 0)
        #expect(cache.stale(CacheKey(q), now: 5000) == nil, "fresh entries are not stale")
        #expect(cache.lookup(CacheKey(q), now: 1000)?.prefetch == false, "one hit, early: no prefetch")
        #expect(cache.lookup(CacheKey(q), now: 9500)?.prefetch == true, "popular and in its last tenth")
        #expect(cache.lookup(CacheKey(q), now: 9600)?.prefetch == false, "once per entry")
        #expect(cache.lookup(CacheKey(q), now: 10_000) == nil)
        #expect(cache.stale(CacheKey(q), now: 10_000)?.answers.first?.ttl == 10, "stale: TTL capped at 30 (here 10)")
        #expect(cache.stale(CacheKey(q), now: 69_999) != nil)
        #expect(cache.stale(CacheKey(q), now: 70_000) == nil, "past the window")
        #expect(cache.lookup(CacheKey(q), now: 70_000) == nil && cache.count == 0, "and dropped")
    }

    @Test func prefetchRefreshesAPopularEntryBeforeItExpires() async throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        defer { shutdownLater(group) }
        let up = FakeUpstream.answering(IPv4Address(192, 0, 2, 9), ttl: 2)
        defer { up.stop() }
        let (f, counters) = Self.forwarder([up.server], group) { $0.prefetchHits = 2 }
        let loop = Task { await f.prefetchLoop() }
        defer { loop.cancel() }
        let q = DNSQuestion(name: DNSName("hot.example.test")!, type: .a)
        let t0 = monotonicMilliseconds()
        _ = await f.resolve(q)
        #expect(f.cached(q) != nil)
        // In the last tenth of its 2 s life a hit queues the refresh.
        try await waitUntil { _ = f.cached(q); return counters.snapshot().prefetches == 1 }
        try await waitUntil { up.received.load(ordering: .relaxed) == 2 }
        // Refreshed: the entry lives past the first answer's expiry (t0 + 2 s).
        try await waitUntil { f.cache.lookup(CacheKey(q), now: t0 + 2500) != nil }
    }

    @Test func coreDNSMetricNames() async throws {
        var s = DNSStats()
        s.requestsByType[DNSStats.requestSlot(tcp: false, v6: false, type: 0)] = 3
        s.noError = 3
        s.cacheHits = 2; s.cacheDenialHits = 1; s.cacheMisses = 4
        s.durationBuckets[0] = 3
        let text = CoreDNSMetrics.render(s, upstreams: [UpstreamStats(server: "10.0.0.53:53", requests: 4, failures: 1, healthy: true)],
                                         cacheEntries: (5, 1), port: 53)
        for line in [
            #"coredns_dns_requests_total{family="1",proto="udp",server="dns://:53",view="",zone=".",type="A"} 3"#,
            #"coredns_dns_responses_total{plugin="",rcode="NOERROR",server="dns://:53",view="",zone="."} 3"#,
            #"coredns_dns_request_duration_seconds_bucket{server="dns://:53",view="",zone=".",type="A",le="0.00025"} 3"#,
            #"coredns_dns_request_duration_seconds_count{server="dns://:53",view="",zone=".",type="A"} 3"#,
            #"coredns_cache_hits_total{server="dns://:53",type="success",view="",zones="."} 1"#,
            #"coredns_cache_hits_total{server="dns://:53",type="denial",view="",zones="."} 1"#,
            #"coredns_cache_misses_total{server="dns://:53",view="",zones="."} 4"#,
            #"coredns_cache_entries{server="dns://:53",type="success",view="",zones="."} 5"#,
            #"coredns_forward_requests_total{to="10.0.0.53:53"} 4"#,
            #"coredns_forward_healthcheck_failures_total{to="10.0.0.53:53"} 1"#,
            "# HELP coredns_dns_requests_total ", "# TYPE coredns_dns_request_duration_seconds histogram",
        ] {
            #expect(text.contains(line), "\(line)\n--- in ---\n\(text)")
        }
    }
}

/// Cache hits answered from the entry's wire form equal the general path's answer.
@Suite struct WireCacheTests {
    @Test func cacheHitsFromTheWireFormMatchTheGeneralPath() async throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        defer { shutdownLater(group) }
        let f = Forwarder(upstreams: [UpstreamServer(address: IPAddress("127.0.0.1")!, port: 9)], configuration: DNSConfiguration(),
                          transport: UpstreamTransport(group: group), counters: DNSCounters(), logger: Logger(label: "t"))
        let now = monotonicMilliseconds()
        let www = DNSName("www.example.test")!, cdn = DNSName("edge.cdn.example.test")!
        var up = DNSMessage.response(to: DNSMessage(questions: [DNSQuestion(name: www, type: .a)]), rcode: .noError)
        up.header.authenticData = true
        up.answers = [DNSRecord(name: www, type: .cname, ttl: 300, data: .cname(cdn))]
            + (1...3).map { DNSRecord(name: cdn, type: .a, ttl: 60, data: .a(IPv4Address(192, 0, 2, UInt8($0)))) }
        f.cache.store(CacheKey(DNSQuestion(name: www, type: .a)), up, now: now - 2000)   // two seconds old
        let nope = DNSName("nope.example.test")!
        var nx = DNSMessage.response(to: DNSMessage(questions: [DNSQuestion(name: nope, type: .aaaa)]), rcode: .nxDomain)
        nx.authority = [DNSRecord(name: DNSName("example.test")!, type: .soa, ttl: 60,
                                  data: .soa(mname: DNSName("ns.example.test")!, rname: DNSName("h.example.test")!, serial: 7,
                                             refresh: 1, retry: 1, expire: 1, minimum: 60))]
        f.cache.store(CacheKey(DNSQuestion(name: nope, type: .aaaa)), nx, now: now)
        let p = QueryProcessor(zone: await Fixture.zone(), forwarder: f, counters: DNSCounters(), configuration: DNSConfiguration())
        func query(_ name: String, _ type: RRType, edns: UInt16?, cd: Bool = false) -> [UInt8] {
            var h = DNSHeader(); h.id = 77; h.recursionDesired = true; h.checkingDisabled = cd
            return DNSMessage(header: h, questions: [DNSQuestion(name: DNSName(name)!, type: type)], edns: edns.map { EDNS(udpSize: $0) }).encode()
        }
        for q in [query("www.example.test", .a, edns: nil), query("WWW.Example.TEST", .a, edns: 1232, cd: true),
                  query("nope.example.test", .aaaa, edns: 4096)] {
            let fast = try #require(p.fastZoneReply(q, overTCP: false))
            guard case .reply(let general) = p.handle(q, overTCP: false, allowFastPath: false) else { Issue.record("no reply"); continue }
            let a = try DNSMessage(parsing: fast), b = try DNSMessage(parsing: general)
            #expect(a == b)
            #expect(fast.count == general.count)
        }
        let m = try DNSMessage(parsing: try #require(p.fastZoneReply(query("www.example.test", .a, edns: nil), overTCP: false)))
        #expect(m.answers.map(\.ttl) == [298, 58, 58, 58], "TTLs aged by the entry's age")
        #expect(m.header.authenticData && m.questions.first?.name.wire == DNSName("www.example.test")!.wire)
        // Not from the cache: zone names, reverse names, uncached names.
        #expect(p.fastZoneReply(query("other.example.test", .a, edns: nil), overTCP: false) == nil)
        #expect(p.wireReply(query("1.2.0.192.in-addr.arpa", .ptr, edns: nil), overTCP: false) == nil)
    }
}
