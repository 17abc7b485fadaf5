import Logging
import NIOCore
import Synchronization

/// Resolves names outside the cluster zone through the upstreams: cache first, identical
/// concurrent questions coalesced into one upstream exchange, failover between servers,
/// TCP when the UDP answer is truncated, and a loop probe.
final class Forwarder: Sendable {
    let cache: DNSCache
    let health: UpstreamHealth
    let transport: UpstreamTransport
    let counters: DNSCounters
    let timeoutMilliseconds: Int64
    let logger: Logger
    private let inflight = Mutex<[CacheKey: [CheckedContinuation<DNSMessage?, Never>]]>([:])
    /// Client queries waiting on the forwarder, bounded by `maxConcurrent`.
    private let admitted = Atomic<Int>(0)
    let maxConcurrent: Int

    /// A random name that only a forwarding loop could bring back to us (CoreDNS `loop`).
    let probeName: DNSName

    init(upstreams: [UpstreamServer], configuration c: DNSConfiguration, transport: UpstreamTransport,
         counters: DNSCounters, logger: Logger) {
        cache = DNSCache(capacity: c.cacheCapacity, maxTTL: c.cacheMaxTTL, maxNegativeTTL: c.cacheMaxNegativeTTL)
        health = UpstreamHealth(upstreams)
        self.transport = transport
        self.counters = counters
        timeoutMilliseconds = c.upstreamTimeoutMilliseconds
        maxConcurrent = max(1, c.maxConcurrentForwards)
        self.logger = logger
        probeName = DNSName("\(UInt64.random(in: 1 ... .max)).\(UInt32.random(in: 1 ... .max)).nodenet-loop-probe.")!
    }

    /// Takes a slot for one forwarded client query; false when too many are in flight
    /// (a slow or dead upstream must not turn into unbounded tasks and memory).
    func admit() -> Bool {
        if admitted.wrappingAdd(1, ordering: .relaxed).newValue > maxConcurrent {
            admitted.wrappingSubtract(1, ordering: .relaxed)
            return false
        }
        return true
    }

    func release() { admitted.wrappingSubtract(1, ordering: .relaxed) }

    var loopDetected: Bool { counters.loopDetected.load(ordering: .relaxed) }

    /// Called for every client query outside the zone: true means this is our own probe
    /// coming back, i.e. an upstream forwards to us. Forwarding stops from then on.
    func isLoopProbe(_ q: DNSQuestion) -> Bool {
        guard q.name == probeName else { return false }
        if !counters.loopDetected.exchange(true, ordering: .relaxed) {
            logger.error("dns forwarding loop detected: an upstream sends our queries back to us; forwarding disabled",
                         metadata: ["upstreams": "\(health.servers)"])
        }
        return true
    }

    /// Sends the probe once (at start). Its answer does not matter, only whether it comes back.
    func sendLoopProbe() async {
        _ = await exchange(DNSQuestion(name: probeName, type: .hinfo))
    }

    /// A fresh cached answer, without suspending (the event loop answers hits inline).
    func cached(_ q: DNSQuestion) -> DNSMessage? {
        guard !loopDetected, let hit = cache.lookup(CacheKey(q), now: monotonicMilliseconds()) else { return nil }
        counters.bump(counters.cacheHits)
        return hit
    }

    /// The upstream's answer (from cache when fresh); nil when every upstream failed.
    func resolve(_ q: DNSQuestion) async -> DNSMessage? {
        guard !loopDetected, !health.servers.isEmpty else { return nil }
        let key = CacheKey(q)
        if let hit = cached(q) { return hit }
        counters.bump(counters.cacheMisses)
        let leader: Bool = inflight.withLock { d in
            if d[key] != nil { return false }
            d[key] = []
            return true
        }
        if !leader {
            counters.bump(counters.coalesced)
            return await withCheckedContinuation { (c: CheckedContinuation<DNSMessage?, Never>) in
                let joined = inflight.withLock { d -> Bool in
                    guard d[key] != nil else { return false }
                    d[key]!.append(c)
                    return true
                }
                // The leader finished between our two looks: the cache has it now.
                if !joined { c.resume(returning: cache.lookup(key, now: monotonicMilliseconds())) }
            }
        }
        let answer = await exchange(q)
        if let answer { cache.store(key, answer, now: monotonicMilliseconds()) }
        let waiters = inflight.withLock { $0.removeValue(forKey: key) } ?? []
        for w in waiters { w.resume(returning: answer) }
        return answer
    }

    /// One question to the upstreams in health order, each tried once.
    func exchange(_ q: DNSQuestion) async -> DNSMessage? {
        var h = DNSHeader()
        h.recursionDesired = true
        let query = DNSMessage(header: h, questions: [q], edns: EDNS(udpSize: DNSWire.advertisedUDPSize)).encode()
        for i in health.order(now: monotonicMilliseconds()) {
            let server = health.servers[i]
            let start = NIODeadline.now()
            do {
                counters.bump(counters.upstreamQueries)
                var bytes = try await transport.udp(query, to: server, timeoutMilliseconds: timeoutMilliseconds)
                var reply = try DNSMessage(parsing: bytes)
                if reply.header.truncated {
                    counters.bump(counters.upstreamTCPFallbacks)
                    bytes = try await transport.tcp(query, to: server, timeoutMilliseconds: timeoutMilliseconds)
                    reply = try DNSMessage(parsing: bytes)
                }
                guard reply.header.isResponse, reply.questions.first?.name == q.name, reply.questions.first?.type == q.type else {
                    throw DNSParseError.badRData(type: 0, at: 0)
                }
                let micros = Int((NIODeadline.now() - start).nanoseconds / 1000)
                counters.bump(counters.upstreamLatencyMicrosTotal, by: micros)
                counters.bump(counters.upstreamLatencyCount)
                health.succeeded(i)
                return reply
            } catch {
                counters.bump(counters.upstreamFailures)
                health.failed(i, now: monotonicMilliseconds())
                logger.debug("upstream failed", metadata: ["upstream": "\(server)", "name": "\(q.name)", "error": "\(error)"])
            }
        }
        return nil
    }
}
