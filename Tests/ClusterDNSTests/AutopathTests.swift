import ClusterState
import IPAddressing
import Logging
import NIOCore
import NIOPosix
import Testing
@testable import ClusterDNS

/// Server-side search path: the first search-list query of a pod in namespace `apps`
/// (search `apps.svc.cluster.local svc.cluster.local cluster.local`) is answered with a CNAME
/// to the name its resolver would have ended with, for each search-list position.
@Suite struct AutopathTests {
    static let pod = "10.244.1.5"

    static func processor(autopath: Bool = true, forwarder: Forwarder? = nil) async -> QueryProcessor {
        var c = DNSConfiguration()
        c.autopath = autopath
        let store = ClusterStore()
        await store.apply((Fixture.objects + [
            .service(Fixture.service("web", ns: "apps", ips: ["10.107.37.188"], ports: Fixture.http)),
            .pod(Pod(metadata: ObjectMeta(name: "client", namespace: "apps"), podIPs: [Fixture.ip(pod), Fixture.ip("fd00:10:244:1::5")])),
        ]).map(StoreChange.upsert))
        await store.markSynced()
        let z = ClusterZone(configuration: c)
        z.rebuild(from: await store.snapshot())
        return QueryProcessor(zone: z, forwarder: forwarder, counters: DNSCounters(), configuration: c)
    }

    static func ask(_ p: QueryProcessor, _ name: String, _ type: RRType = .a, from: String = pod) throws -> DNSMessage {
        let q = ClientPolicyTests.query(name, type)
        guard case .reply(let bytes) = p.handle(q, overTCP: false, client: ClientPolicyTests.client(from)) else {
            throw DNSParseError.duplicateOPT
        }
        return try DNSMessage(parsing: bytes)
    }

    @Test func firstSearchDomainExistsAnswersNormally() async throws {
        let m = try Self.ask(await Self.processor(), "web.apps.svc.cluster.local")
        #expect(m.answers.map(\.text) == ["A 10.107.37.188"])
        #expect(m.questions.first?.name == DNSName("web.apps.svc.cluster.local"))
    }

    @Test func secondSearchDomain() async throws {
        // `svc1.testns` from a pod in apps: svc1.testns.apps.svc... NXDOMAIN, svc1.testns.svc... exists.
        let m = try Self.ask(await Self.processor(), "svc1.testns.apps.svc.cluster.local")
        #expect(m.rcode == RCode.noError.rawValue)
        #expect(m.answers.map(\.text) == ["CNAME svc1.testns.svc.cluster.local.", "A 10.0.0.1"])
        #expect(m.answers.first?.name == DNSName("svc1.testns.apps.svc.cluster.local"), "the CNAME's owner is the asked name")
        // Also over IPv6 from the same pod, and with the client's case kept.
        let v6 = try Self.ask(await Self.processor(), "Svc1.TestNS.apps.svc.cluster.local", from: "fd00:10:244:1::5")
        #expect(v6.answers.map(\.text) == ["CNAME Svc1.TestNS.svc.cluster.local.", "A 10.0.0.1"])
    }

    @Test func thirdSearchDomain() async throws {
        // `svc1.testns.svc`: the third candidate (svc1.testns.svc.cluster.local) is the one.
        let m = try Self.ask(await Self.processor(), "svc1.testns.svc.apps.svc.cluster.local")
        #expect(m.answers.map(\.text) == ["CNAME svc1.testns.svc.cluster.local.", "A 10.0.0.1"])
    }

    @Test func nodataStopsTheWalkLikeTheClient() async throws {
        // svc1 has no IPv6 address: AAAA of svc1.testns.svc.cluster.local is NODATA (the name exists).
        let m = try Self.ask(await Self.processor(), "svc1.testns.apps.svc.cluster.local", .aaaa)
        #expect(m.rcode == RCode.noError.rawValue)
        #expect(m.answers.map(\.text) == ["CNAME svc1.testns.svc.cluster.local."])
    }

    @Test func bareNameFromTheUpstreamCache() async throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        defer { shutdownLater(group) }
        let f = Forwarder(upstreams: [UpstreamServer(address: IPAddress("127.0.0.1")!, port: 9)], configuration: DNSConfiguration(),
                          transport: UpstreamTransport(group: group), counters: DNSCounters(), logger: Logger(label: "t"))
        let name = DNSName("www.example.test")!
        var up = DNSMessage.response(to: DNSMessage(questions: [DNSQuestion(name: name, type: .a)]), rcode: .noError)
        up.answers = [DNSRecord(name: name, type: .a, ttl: 60, data: .a(IPv4Address(192, 0, 2, 10)))]
        f.cache.store(CacheKey(DNSQuestion(name: name, type: .a)), up, now: monotonicMilliseconds())
        var nx = DNSMessage.response(to: DNSMessage(questions: [DNSQuestion(name: DNSName("nope.example.test")!, type: .a)]), rcode: .nxDomain)
        nx.authority = [DNSRecord(name: DNSName("example.test")!, type: .soa, ttl: 60,
                                  data: .soa(mname: .root, rname: .root, serial: 1, refresh: 1, retry: 1, expire: 1, minimum: 60))]
        f.cache.store(CacheKey(DNSQuestion(name: DNSName("nope.example.test")!, type: .a)), nx, now: monotonicMilliseconds())
        let p = await Self.processor(forwarder: f)

        let m = try Self.ask(p, "www.example.test.apps.svc.cluster.local")
        #expect(m.rcode == RCode.noError.rawValue)
        #expect(m.answers.map(\.text) == ["CNAME www.example.test.", "A 192.0.2.10"])
        // Every candidate and the bare name NXDOMAIN: the first answer, unchanged (the client walks on).
        let none = try Self.ask(p, "nope.example.test.apps.svc.cluster.local")
        #expect(none.rcode == RCode.nxDomain.rawValue && none.answers.isEmpty && none.authority.first?.type == .soa)
        #expect(p.counters.snapshot().autopathAnswers == 1)
        // Not from a known pod (the node itself, another pod's namespace's query): plain NXDOMAIN.
        let node = try Self.ask(p, "www.example.test.apps.svc.cluster.local", from: "169.254.20.10")
        #expect(node.rcode == RCode.nxDomain.rawValue && node.answers.isEmpty)
        // A query for another namespace's search domain is not this pod's first search query.
        let other = try Self.ask(p, "www.example.test.testns.svc.cluster.local")
        #expect(other.rcode == RCode.nxDomain.rawValue && other.answers.isEmpty)
        // Off: plain NXDOMAIN.
        let off = try Self.ask(await Self.processor(autopath: false, forwarder: f), "www.example.test.apps.svc.cluster.local")
        #expect(off.rcode == RCode.nxDomain.rawValue && off.answers.isEmpty)
    }

    @Test func bareNameNotCachedIsForwardedWithTheCNAMEAndAFallback() async throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        defer { shutdownLater(group) }
        let f = Forwarder(upstreams: [UpstreamServer(address: IPAddress("127.0.0.1")!, port: 9)], configuration: DNSConfiguration(),
                          transport: UpstreamTransport(group: group), counters: DNSCounters(), logger: Logger(label: "t"))
        let p = await Self.processor(forwarder: f)
        let q = ClientPolicyTests.query("api.example.test.apps.svc.cluster.local")
        guard case .forward(_, let question, let prefix, _, let fallback) = p.handle(q, overTCP: false, client: ClientPolicyTests.client(Self.pod)) else {
            Issue.record("not forwarded"); return
        }
        f.release()
        #expect(question.name == DNSName("api.example.test"))
        #expect(prefix?.answers.map(\.text) == ["CNAME api.example.test."])
        let fb = try DNSMessage(parsing: try #require(fallback))
        #expect(fb.rcode == RCode.nxDomain.rawValue, "upstream failure gives the first answer back")
    }
}
