import ClusterState
import IPAddressing
import Logging
import NIOPosix
import Testing
@testable import ClusterDNS

/// Answers too big for the client's UDP size: whole records that fit, TC, OPT kept (CoreDNS's
/// `Msg.Truncate`), so stub resolvers without TCP fallback (musl) still get addresses.
@Suite struct TruncationTests {
    static let name = "many-endpoints-headless.production-apps.svc.cluster.local"

    /// A headless service with `n` ready IPv4 endpoints, beside the usual fixture.
    static func zone(endpoints n: Int) async -> ClusterZone {
        let store = await Fixture.store()
        let svc = Fixture.service("many-endpoints-headless", ns: "production-apps", headless: true)
        let slice = Fixture.slice("many-endpoints-headless-x7k2p", service: "many-endpoints-headless", ns: "production-apps",
                                  endpoints: (0..<n).map { ("10.244.\(1 + $0 / 200).\(2 + $0 % 200)", nil, true) })
        await store.apply([.upsert(.service(svc)), .upsert(.endpointSlice(slice))])
        let z = ClusterZone(configuration: DNSConfiguration())
        z.rebuild(from: await store.snapshot())
        return z
    }

    static func query(_ name: String, _ type: RRType = .a, edns: UInt16? = nil) -> [UInt8] {
        var h = DNSHeader(); h.id = 0xBEEF; h.recursionDesired = true
        return DNSMessage(header: h, questions: [DNSQuestion(name: DNSName(name)!, type: type)], edns: edns.map { EDNS(udpSize: $0) }).encode()
    }

    static func reply(_ p: QueryProcessor, _ q: [UInt8], overTCP: Bool = false) throws -> (DNSMessage, Int) {
        guard case .reply(let bytes) = p.handle(q, overTCP: overTCP, allowFastPath: true) else {
            Issue.record("no immediate reply"); throw CancellationError()
        }
        return (try DNSMessage(parsing: bytes), bytes.count)
    }

    @Test func authoritativeAnswerKeepsTheRecordsThatFit() async throws {
        let p = QueryProcessor(zone: await Self.zone(endpoints: 40), forwarder: nil, counters: DNSCounters(), configuration: DNSConfiguration())
        // No EDNS (musl, glibc): 512 bytes. Header 12, question 63, then 16 bytes per A record.
        let (udp, size) = try Self.reply(p, Self.query(Self.name))
        #expect(udp.header.truncated)
        #expect(size <= 512 && size + 16 > 512, "as many whole records as fit: \(size) bytes")
        #expect(udp.answers.count == (512 - 12 - (Self.name.utf8.count + 2 + 4)) / 16)
        #expect(udp.answers.allSatisfy { $0.type == .a && $0.name == DNSName(Self.name)! })
        #expect(Set(udp.answers.map(\.data)).count == udp.answers.count, "distinct endpoints")
        #expect(udp.rcode == RCode.noError.rawValue && udp.header.authoritative)
        // EDNS0 at 512: the OPT is kept, one record fewer.
        let (small, _) = try Self.reply(p, Self.query(Self.name, edns: 512))
        #expect(small.header.truncated && small.edns != nil && small.answers.count == udp.answers.count - 1)
        // A big enough EDNS0 size, and TCP: everything, no TC.
        let (edns, _) = try Self.reply(p, Self.query(Self.name, edns: 1232))
        #expect(!edns.header.truncated && edns.answers.count == 40)
        let (tcp, _) = try Self.reply(p, Self.query(Self.name), overTCP: true)
        #expect(!tcp.header.truncated && tcp.answers.count == 40)
        // What fits is never cut: 29 endpoints answer whole without TC.
        let (fits, _) = try Self.reply(QueryProcessor(zone: await Self.zone(endpoints: udp.answers.count), forwarder: nil,
                                                      counters: DNSCounters(), configuration: DNSConfiguration()), Self.query(Self.name))
        #expect(!fits.header.truncated && fits.answers.count == udp.answers.count)
    }

    /// Forwarded answers (from the cache here, which is where the processor composes them) are
    /// cut the same way; an ExternalName's CNAME comes first and stays.
    @Test func forwardedAnswersKeepTheRecordsThatFit() async throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let transport = UpstreamTransport(group: group)
        let f = Forwarder(upstreams: [UpstreamServer(address: IPAddress("127.0.0.1")!, port: 9)], configuration: DNSConfiguration(),
                          transport: transport, counters: DNSCounters(), logger: Logger(label: "t"))
        let target = DNSName("cdn-pool.example.test")!
        var upstream = DNSMessage.response(to: DNSMessage(header: DNSHeader(), questions: [DNSQuestion(name: target, type: .a)]), rcode: .noError)
        upstream.answers = (0..<60).map { DNSRecord(name: target, type: .a, ttl: 300, data: .a(IPv4Address(192, 0, 2, UInt8(1 + $0)))) }
        upstream.authority = [DNSRecord(name: DNSName("example.test")!, type: .ns, ttl: 300, data: .ns(DNSName("ns1.example.test")!))]
        upstream.additional = [DNSRecord(name: DNSName("ns1.example.test")!, type: .a, ttl: 300, data: .a(IPv4Address(192, 0, 2, 200)))]
        f.cache.store(CacheKey(DNSQuestion(name: target, type: .a)), upstream, now: monotonicMilliseconds())
        let store = await Fixture.store()
        await store.apply([.upsert(.service(Fixture.service("cdn", externalName: "cdn-pool.example.test")))])
        let zone = ClusterZone(configuration: DNSConfiguration())
        zone.rebuild(from: await store.snapshot())
        let p = QueryProcessor(zone: zone, forwarder: f, counters: DNSCounters(), configuration: DNSConfiguration())

        let (udp, size) = try Self.reply(p, Self.query("cdn-pool.example.test"))
        #expect(udp.header.truncated && size <= 512 && size + 16 > 512)
        #expect(udp.answers.count == (512 - 12 - 27) / 16)
        #expect(udp.answers == Array(upstream.answers.prefix(udp.answers.count)))
        #expect(udp.authority.isEmpty && udp.additional.isEmpty, "nothing follows a cut answer section")
        let (edns, _) = try Self.reply(p, Self.query("cdn-pool.example.test", edns: 1232))
        #expect(!edns.header.truncated && edns.answers.count == 60 && edns.authority.count == 1 && edns.edns != nil)

        // ExternalName to the same target: the zone's CNAME, then the upstream's records that fit.
        let (ext, _) = try Self.reply(p, Self.query("cdn.testns.svc.cluster.local", edns: 512))
        #expect(ext.header.truncated && ext.edns != nil)
        #expect(ext.answers.first?.type == .cname)
        #expect(ext.answers.count > 20 && ext.answers.dropFirst().allSatisfy { $0.type == .a })
        await transport.close()
        try await group.shutdownGracefully()
    }

    /// Optional data (RFC 2181 §9): an additional RRset that does not fit is left out whole and
    /// TC stays clear; a negative answer's SOA is required.
    @Test func optionalRRsetsGoWholeOrNot() throws {
        var h = DNSHeader(); h.isResponse = true; h.id = 1
        let owner = DNSName("_http._tcp.web.apps.svc.cluster.local")!
        var m = DNSMessage(header: h, questions: [DNSQuestion(name: owner, type: .srv)])
        let targets = (0..<6).map { DNSName("web-\($0)-5f7c9d8b6-x2x9q.web.apps.svc.cluster.local")! }
        m.answers = targets.map { DNSRecord(name: owner, type: .srv, ttl: 5, data: .srv(priority: 0, weight: 16, port: 80, target: $0)) }
        // Target 0 has a large RRset (12 A records), the others one A each.
        m.additional = (0..<12).map { DNSRecord(name: targets[0], type: .a, ttl: 5, data: .a(IPv4Address(10, 244, 1, UInt8(10 + $0)))) }
            + targets.dropFirst().map { DNSRecord(name: $0, type: .a, ttl: 5, data: .a(IPv4Address(10, 244, 2, 7))) }
        // 6 SRV answers (uncompressed targets) take 469 bytes; each single A 16 more, the big
        // RRset 192: within 600 the big one cannot go in, the five small ones can.
        let bytes = m.encode(maxSize: 600)
        let out = try DNSMessage(parsing: bytes)
        #expect(bytes.count <= 600)
        #expect(!out.header.truncated, "additional data is optional")
        #expect(out.answers.count == 6)
        let names = Set(out.additional.map(\.name))
        #expect(!names.contains(targets[0]), "the 12-record RRset does not fit and is left out whole")
        #expect(out.additional.count == 5 && names == Set(targets.dropFirst()), "the smaller RRsets after it still go in")

        // A negative answer whose SOA does not fit is cut with TC.
        var neg = DNSMessage(header: h, questions: [DNSQuestion(name: owner, type: .a)])
        neg.authority = [DNSRecord(name: DNSName("cluster.local")!, type: .soa, ttl: 5,
                                   data: .soa(mname: DNSName("ns.dns.cluster.local")!, rname: DNSName("hostmaster.cluster.local")!,
                                              serial: 1, refresh: 7200, retry: 1800, expire: 86400, minimum: 5))]
        let cut = try DNSMessage(parsing: neg.encode(maxSize: 60))
        #expect(cut.header.truncated && cut.authority.isEmpty)
    }
}
