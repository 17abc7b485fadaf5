import ClusterState
import IPAddressing
import NIOCore
import Testing
@testable import ClusterDNS

/// Issue #14 item 6: only allowed clients are served, refusals are never bigger than the
/// query, and identical answers are rate limited per client network.
@Suite struct ClientPolicyTests {
    static func query(_ name: String, _ type: RRType = .a, id: UInt16 = 9) -> [UInt8] {
        var h = DNSHeader(); h.id = id; h.recursionDesired = true
        return DNSMessage(header: h, questions: [DNSQuestion(name: DNSName(name)!, type: type)]).encode()
    }

    static func client(_ ip: String) -> SocketAddress { try! SocketAddress(ipAddress: ip, port: 40000) }

    @Test func clientsOutsideTheAllowListAreRefusedWithoutAmplification() async throws {
        var c = DNSConfiguration()
        c.allowedClients = [IPPrefix("10.244.1.0/24")!, IPPrefix("127.0.0.0/8")!, IPPrefix("fd00:10:244:1::/64")!]
        let p = QueryProcessor(zone: await Fixture.zone(), forwarder: nil, counters: DNSCounters(), configuration: c)
        let q = Self.query("svc1.testns.svc.cluster.local")
        for allowed in ["10.244.1.7", "127.0.0.1", "fd00:10:244:1::5", "::ffff:10.244.1.9"] {
            guard case .reply(let bytes) = p.handle(q, overTCP: false, client: Self.client(allowed)) else { Issue.record("no reply"); continue }
            let m = try DNSMessage(parsing: bytes)
            #expect(m.rcode == RCode.noError.rawValue && m.answers.count == 1, "\(allowed) is served")
        }
        // Outside: another node's pods, the fabric, the world; also for a name that would be forwarded.
        for outside in ["10.244.2.7", "192.168.1.1", "203.0.113.9", "fd00:10:244:2::5"] {
            for name in ["svc1.testns.svc.cluster.local", "www.example.test"] {
                let q = Self.query(name, .any)
                guard case .reply(let bytes) = p.handle(q, overTCP: false, client: Self.client(outside)) else { Issue.record("no reply"); continue }
                let m = try DNSMessage(parsing: bytes)
                #expect(m.rcode == RCode.refused.rawValue, "\(outside) refused")
                #expect(m.answers.isEmpty && m.authority.isEmpty && m.additional.isEmpty)
                #expect(m.questions.first?.name == DNSName(name), "the question is echoed")
                #expect(bytes.count <= q.count, "a refusal is never bigger than the query")
            }
        }
        #expect(p.counters.snapshot().refusedClients == 8)
        // The list follows the pod subnets: a new one is served at once.
        p.acl.update([IPPrefix("10.244.2.0/24")!])
        guard case .reply(let bytes) = p.handle(q, overTCP: false, client: Self.client("10.244.2.7")) else { Issue.record("no reply"); return }
        #expect(try DNSMessage(parsing: bytes).rcode == RCode.noError.rawValue)
    }

    @Test func identicalAnswersAreRateLimitedPerClientNetwork() throws {
        let rrl = ResponseRateLimiter(limit: 5)
        var h = DNSHeader(); h.id = 1
        var r = DNSMessage.response(to: DNSMessage(header: h, questions: [DNSQuestion(name: DNSName("www.example.test")!, type: .a)]), rcode: .noError)
        r.answers = (0..<20).map { DNSRecord(name: DNSName("www.example.test")!, type: .a, ttl: 30, data: .a(IPv4Address(192, 0, 2, UInt8($0)))) }
        let reply = r.encode()
        let victim = ClientPolicyTests.client("10.244.1.7")
        let admitted = (0..<50).filter { _ in rrl.admit(reply: reply, to: victim, now: 100) }.count
        #expect(admitted == 5, "5 identical answers per second, then truncated")
        // Same /24 counts together (BIND's default prefix); other networks and other names are separate.
        #expect(!rrl.admit(reply: reply, to: ClientPolicyTests.client("10.244.1.200"), now: 100))
        #expect(rrl.admit(reply: reply, to: ClientPolicyTests.client("10.244.2.7"), now: 100))
        var other = r; other.questions = [DNSQuestion(name: DNSName("api.example.test")!, type: .a)]
        #expect(rrl.admit(reply: other.encode(), to: victim, now: 100))
        // Case does not evade the limit (0x20 randomisation).
        var upper = r; upper.questions = [DNSQuestion(name: DNSName("WWW.example.TEST")!, type: .a)]
        #expect(!rrl.admit(reply: upper.encode(), to: victim, now: 100))
        // The next second starts a new window.
        #expect(rrl.admit(reply: reply, to: victim, now: 101))
        // What goes out over the limit: header and question with TC, smaller than the answer.
        let slipped = ResponseRateLimiter.slip(reply)
        let m = try DNSMessage(parsing: slipped)
        #expect(m.header.truncated && m.answers.isEmpty && m.questions.count == 1 && m.header.id == 1)
        #expect(slipped.count < 60 && reply.count > 300)
    }

    @Test func apexSOASerialIsTheNegativeAnswersSerial() async throws {
        let z = await Fixture.zone()
        let apex = try #require(z.ask("cluster.local", .soa))
        let negative = try #require(z.ask("nope.testns.svc.cluster.local", .a))
        guard case .soa(_, _, let s1, _, _, _, _)? = apex.answers.first?.data,
              case .soa(_, _, let s2, _, _, _, _)? = negative.authority.first?.data else { Issue.record("no SOA"); return }
        #expect(s1 == s2 && s1 != 0)
    }
}
