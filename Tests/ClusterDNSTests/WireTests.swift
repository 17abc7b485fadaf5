import IPAddressing
import Testing
@testable import ClusterDNS

@Suite struct WireTests {
    func query(_ name: String, _ type: RRType, id: UInt16 = 0x1234, edns: UInt16? = nil) -> DNSMessage {
        var h = DNSHeader()
        h.id = id
        h.recursionDesired = true
        return DNSMessage(header: h, questions: [DNSQuestion(name: DNSName(name)!, type: type)], edns: edns.map { EDNS(udpSize: $0) })
    }

    @Test func nameTextForms() {
        #expect(DNSName("a.b.")?.wire == [1, 97, 1, 98, 0])
        #expect(DNSName("a.b") == DNSName("A.B."))
        #expect(DNSName(".")?.wire == [0])
        #expect(DNSName("") == nil)
        #expect(DNSName("a..b") == nil)
        #expect(DNSName(String(repeating: "x", count: 64)) == nil)
        #expect(DNSName(Array(repeating: String(repeating: "x", count: 63), count: 4).joined(separator: ".")) == nil) // 257 bytes
        #expect(DNSName("Svc.Cluster.Local")!.isSubdomain(of: DNSName("cluster.local")!))
        #expect(!DNSName("xcluster.local")!.isSubdomain(of: DNSName("cluster.local")!))
    }

    @Test func roundTripEveryRecordType() throws {
        let n = DNSName("svc1.testns.svc.cluster.local")!
        var m = query("svc1.testns.svc.cluster.local", .a, edns: 4096)
        m.header.isResponse = true
        m.header.authoritative = true
        m.answers = [
            DNSRecord(name: n, type: .a, ttl: 5, data: .a(IPv4Address(10, 0, 0, 1))),
            DNSRecord(name: n, type: .aaaa, ttl: 5, data: .aaaa(IPv6Address("fd00::1")!)),
            DNSRecord(name: n, type: .cname, ttl: 5, data: .cname(DNSName("other.example")!)),
            DNSRecord(name: n, type: .srv, ttl: 5, data: .srv(priority: 0, weight: 100, port: 80, target: n)),
            DNSRecord(name: n, type: .txt, ttl: 5, data: .txt([Array("1.1.0".utf8), []])),
            DNSRecord(name: n, type: .ptr, ttl: 5, data: .ptr(n)),
            DNSRecord(name: n, type: .hinfo, ttl: 5, data: .hinfo(cpu: Array("RFC8482".utf8), os: [])),
            DNSRecord(name: n, type: RRType(15), ttl: 5, data: .mx(preference: 10, exchange: n)),
            DNSRecord(name: n, type: RRType(99), ttl: 5, data: .raw([1, 2, 3])),
        ]
        m.authority = [DNSRecord(name: DNSName("cluster.local")!, type: .soa, ttl: 5,
                                 data: .soa(mname: DNSName("ns.dns.cluster.local")!, rname: DNSName("hostmaster.cluster.local")!,
                                            serial: 7, refresh: 7200, retry: 1800, expire: 86400, minimum: 5))]
        m.additional = [DNSRecord(name: n, type: .ns, ttl: 5, data: .ns(n))]
        let bytes = m.encode()
        var back = try DNSMessage(parsing: bytes)
        #expect((back.header.qdCount, back.header.anCount, back.header.nsCount, back.header.arCount) == (1, 9, 1, 2))
        (back.header.qdCount, back.header.anCount, back.header.nsCount, back.header.arCount) = (0, 0, 0, 0)
        #expect(back == m)
        #expect(back.edns?.udpSize == 4096)
        // Compression: the owner names point at the question (0xC00C).
        #expect(bytes.count < 360)
        #expect(bytes[12 + n.wire.count + 4] == 0xC0 && bytes[12 + n.wire.count + 5] == 0x0C)
    }

    @Test func compressionKeepsQuestionCase() throws {
        var m = query("SvC1.TeStNs.svc.cluster.local", .a)
        m.answers = [DNSRecord(name: DNSName("svc1.testns.svc.cluster.local")!, type: .a, ttl: 5, data: .a(IPv4Address(1, 2, 3, 4)))]
        let back = try DNSMessage(parsing: m.encode())
        #expect(back.answers[0].name.wire == DNSName("SvC1.TeStNs.svc.cluster.local")!.wire)
    }

    @Test func truncationKeepsWholeRecordsSetsTCAndKeepsOPT() throws {
        var m = query("big.example", .a, edns: 512)
        m.answers = (0..<100).map { DNSRecord(name: DNSName("big.example")!, type: .a, ttl: 5, data: .a(IPv4Address(UInt32($0)))) }
        let bytes = m.encode(maxSize: 512)
        let small = try DNSMessage(parsing: bytes)
        #expect(small.header.truncated)
        #expect(bytes.count <= 512)
        // Header 12, question 17, OPT 11; each answer 16 bytes (compressed owner): 29 fit.
        #expect(small.answers.count == (512 - 12 - 17 - 11) / 16)
        #expect(small.answers == Array(m.answers.prefix(small.answers.count)), "the first records, whole and in order")
        #expect(small.edns != nil)
        // Without EDNS the OPT's 11 bytes go to the answers: one record more.
        var plain = m
        plain.edns = nil
        let noOpt = try DNSMessage(parsing: plain.encode(maxSize: 512))
        #expect(noOpt.header.truncated && noOpt.answers.count == (512 - 12 - 17) / 16)
        let full = try DNSMessage(parsing: m.encode(maxSize: 4096))
        #expect(!full.header.truncated)
        #expect(full.answers.count == 100)
    }

    @Test func malformedInputs() {
        let good = query("a.example", .a).encode()
        // Truncated anywhere.
        for n in 0..<good.count { #expect(throws: DNSParseError.self) { try DNSMessage(parsing: Array(good.prefix(n))) } }
        // A pointer to itself, and a two-pointer loop.
        var selfLoop = Array(good.prefix(12)); selfLoop += [0xC0, 12, 0, 1, 0, 1]
        #expect(throws: DNSParseError.pointerLoop(at: 12)) { try DNSMessage(parsing: selfLoop) }
        var forward = Array(good.prefix(12)); forward += [0xC0, 14, 0xC0, 12, 0, 1, 0, 1]
        #expect(throws: DNSParseError.self) { try DNSMessage(parsing: forward) }
        // Reserved label types.
        var reserved = Array(good.prefix(12)); reserved += [0x80, 0, 0, 1, 0, 1]
        #expect(throws: DNSParseError.badLabel(at: 12)) { try DNSMessage(parsing: reserved) }
        // Oversized name: 5 labels of 63 through the wire.
        var long = Array(good.prefix(12))
        for _ in 0..<5 { long.append(63); long += Array(repeating: 120, count: 63) }
        long += [0, 0, 1, 0, 1]
        #expect(throws: DNSParseError.self) { try DNSMessage(parsing: long) }
        // Bogus counts.
        var counts = good; counts[6] = 0xFF; counts[7] = 0xFF
        #expect(throws: DNSParseError.self) { try DNSMessage(parsing: counts) }
        // Wrong A rdata length.
        var m = query("a.example", .a)
        m.answers = [DNSRecord(name: DNSName("a.example")!, type: .a, ttl: 1, data: .raw([1, 2, 3]))]
        #expect(throws: DNSParseError.badRData(type: 1, at: 12 + 11 + 4 + 12)) { try DNSMessage(parsing: m.encode()) }
    }

    /// Thousands of random and mutated packets: the processor must answer FORMERR (or a
    /// well-formed response) or drop, and never trap.
    @Test func fuzzProcessorNeverCrashes() async {
        let zone = await Fixture.zone()
        let p = QueryProcessor(zone: zone, forwarder: nil, counters: DNSCounters(), configuration: DNSConfiguration())
        var rng = SplitMix64(seed: 0x5eed)
        let seeds = [
            query("svc1.testns.svc.cluster.local", .a).encode(),
            query("_http._tcp.hdls1.testns.svc.cluster.local", .srv, edns: 1232).encode(),
            query("1.0.0.10.in-addr.arpa", .ptr).encode(),
            query("external.testns.svc.cluster.local", .any).encode(),
        ]
        var replies = 0, drops = 0
        for i in 0..<20_000 {
            var packet: [UInt8]
            if i % 4 == 0 {
                packet = (0..<Int(rng.next() % 80)).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
            } else {
                packet = seeds[Int(rng.next() % UInt64(seeds.count))]
                for _ in 0..<(1 + rng.next() % 6) {
                    let at = Int(rng.next() % UInt64(packet.count))
                    switch rng.next() % 3 {
                    case 0: packet[at] = UInt8(truncatingIfNeeded: rng.next())
                    case 1: packet.removeSubrange(at...)
                    default: packet.insert(UInt8(truncatingIfNeeded: rng.next()), at: at)
                    }
                    if packet.isEmpty { break }
                }
            }
            packet = packet.count > 2 ? packet : packet + [0, 0]
            if packet.count > 2 { packet[2] &= 0x7F }  // mostly queries, to reach the parser
            switch p.handle(packet, overTCP: i % 2 == 0) {
            case .drop: drops += 1
            case .reply(let bytes):
                replies += 1
                let r = try? DNSMessage(parsing: bytes)
                #expect(r != nil, "reply must parse")
                #expect(r?.header.isResponse == true)
                if packet.count >= 2 { #expect(bytes[0] == packet[0] && bytes[1] == packet[1]) }
            case .forward: replies += 1  // a mutated name outside the zone: fine
            }
        }
        #expect(replies > 10_000)
        #expect(drops > 0)
    }

    @Test func processorErrorsAndANY() async throws {
        let zone = await Fixture.zone()
        let p = QueryProcessor(zone: zone, forwarder: nil, counters: DNSCounters(), configuration: DNSConfiguration())
        func ask(_ m: DNSMessage, tcp: Bool = false) throws -> DNSMessage {
            guard case .reply(let b) = p.handle(m.encode(), overTCP: tcp) else { throw DNSParseError.duplicateOPT }
            return try DNSMessage(parsing: b)
        }
        let any = try ask(query("svc1.testns.svc.cluster.local", .any))
        #expect(any.answers.count == 1 && any.answers[0].type == .hinfo)
        #expect(try ask(query("cluster.local", .axfr)).rcode == RCode.refused.rawValue)
        var chaos = query("version.bind", .txt); chaos.questions[0].qclass = 3
        #expect(try ask(chaos).rcode == RCode.refused.rawValue)
        var notify = query("cluster.local", .soa); notify.header.opcode = 4
        #expect(try ask(notify).rcode == RCode.notImp.rawValue)
        var two = query("a.example", .a); two.questions.append(two.questions[0])
        #expect(try ask(two).rcode == RCode.formErr.rawValue)
        var v1 = query("svc1.testns.svc.cluster.local", .a, edns: 1232); v1.edns?.version = 1
        #expect(try ask(v1).rcode == RCode.badVers.rawValue)
        let ok = try ask(query("svc1.testns.svc.cluster.local", .a, edns: 1232))
        #expect(ok.header.authoritative && ok.header.recursionDesired && ok.answers.count == 1)
        #expect(ok.edns?.udpSize == DNSWire.advertisedUDPSize)
        // A response arriving as a query is dropped.
        var resp = query("a.example", .a); resp.header.isResponse = true
        if case .drop = p.handle(resp.encode(), overTCP: false) {} else { Issue.record("response not dropped") }
        if case .drop = p.handle([1, 2, 3], overTCP: false) {} else { Issue.record("runt not dropped") }
    }

    /// The byte-level fast path must answer exactly as the general path does.
    @Test func fastPathMatchesGeneralPath() async throws {
        let zone = await Fixture.zone()
        let p = QueryProcessor(zone: zone, forwarder: nil, counters: DNSCounters(), configuration: DNSConfiguration())
        var dnssec = query("svc1.testns.svc.cluster.local", .a, edns: 1232)
        dnssec.edns?.dnssecOK = true
        dnssec.header.checkingDisabled = true
        let cases = [
            query("svc1.testns.svc.cluster.local", .a), query("SvC1.TeStNs.svc.cluster.local", .a, edns: 4096),
            query("svc-dual-stack.testns.svc.cluster.local", .aaaa, edns: 1232), query("hdls1.testns.svc.cluster.local", .a),
            query("dup-name.hdls1.testns.svc.cluster.local", .a), query("10-240-0-1.podns.pod.cluster.local", .a), dnssec,
            // Negative answers carry the SOA (owner compressed into the question's apex suffix).
            query("svc0.testns.svc.cluster.local", .a), query("SVC0.TestNS.svc.Cluster.Local", .a, edns: 1232),
            query("svc1.testns.svc.cluster.local", .txt), query("testns.svc.cluster.local", .a), query("cluster.local", .a),
            query("nothing.cluster.local", .aaaa),
        ]
        for m in cases {
            let bytes = m.encode()
            let fast = try #require(p.fastZoneReply(bytes, overTCP: false), "\(m.questions[0].name)")
            guard case .reply(let general) = p.handle(bytes, overTCP: false, allowFastPath: false) else { Issue.record("no reply"); continue }
            #expect(try DNSMessage(parsing: fast) == DNSMessage(parsing: general), "\(m.questions[0].name)")
            #expect(fast.count == general.count)
        }
        // Service names' A/AAAA come from the precomputed wire answers (checked equal above);
        // everything else from the resolver.
        for (i, m) in cases.enumerated() {
            #expect((p.wireReply(m.encode(), overTCP: false) != nil) == [0, 1, 2, 3, 6].contains(i), "\(m.questions[0].name)")
        }
        // A service change replaces its wire answer (every replica).
        let store = await Fixture.store()
        let z2 = ClusterZone(configuration: DNSConfiguration(), replicas: 2)
        z2.rebuild(from: await store.snapshot())
        let changes = await store.apply([.upsert(.service(Fixture.service("svc1", ips: ["10.0.0.9"], ports: Fixture.http)))])
        z2.apply(changes, from: await store.snapshot())
        for replica in 0..<2 {
            let p2 = QueryProcessor(zone: z2, forwarder: nil, counters: DNSCounters(), configuration: DNSConfiguration(), replica: replica)
            let reply = try #require(p2.wireReply(query("svc1.testns.svc.cluster.local", .a).encode(), overTCP: false))
            #expect(try DNSMessage(parsing: reply).answers.map(\.text) == ["A 10.0.0.9"])
        }
        // Not for the fast path: ANY, SRV (additional section), ExternalName, forwarded names.
        for m in [query("svc1.testns.svc.cluster.local", .any), query("svc1.testns.svc.cluster.local", .srv),
                  query("external-to-service.testns.svc.cluster.local", .a), query("www.example.test", .a)] {
            #expect(p.fastZoneReply(m.encode(), overTCP: false) == nil)
        }
    }

    @Test func podDNSBlock() {
        let b = PodDNSConfig.forPod(namespace: "apps", nameservers: [IPAddress("169.254.20.10")!])
        #expect(b.nameservers == ["169.254.20.10"])
        #expect(b.search == ["apps.svc.cluster.local", "svc.cluster.local", "cluster.local"])
        #expect(b.options == ["ndots:5"])
    }

    @Test func upstreamParsing() {
        let list = ResolvConf.parse("# c\nsearch x\nnameserver 127.0.0.53\nnameserver ::1\nnameserver fe80::1%eth0\nnameserver 127.0.0.53\n")
        #expect(list.map(\.description) == ["127.0.0.53:53", "[::1]:53", "[fe80::1]:53"])
        #expect(UpstreamServer(parsing: "127.0.0.1:5353")?.port == 5353)
        #expect(UpstreamServer(parsing: "[::1]:5353")?.description == "[::1]:5353")
        #expect(UpstreamServer(parsing: "nonsense") == nil)
    }
}

/// Deterministic generator so the fuzz test is reproducible.
struct SplitMix64 {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E3779B97F4A7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58476D1CE4E5B9
        z = (z ^ (z >> 27)) &* 0x94D049BB133111EB
        return z ^ (z >> 31)
    }
}
