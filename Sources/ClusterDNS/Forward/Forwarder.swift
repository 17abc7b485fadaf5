import Logging
import NIOCore
import Synchronization

/// Resolves names outside the cluster zone through the upstreams: cache first, identical
/// concurrent questions coalesced into one upstream exchange, failover between servers,
/// TCP when the UDP answer is truncated, and a loop probe. Names under a `dns.zones` entry go
/// to that zone's servers (longest match), with the same cache, failover and health.
/// When no upstream answers, expired entries are served for `serveStaleSeconds` (TTL 30);
/// popular entries are refreshed before they expire (prefetch).
final class Forwarder: Sendable {
    let cache: DNSCache
    /// The default upstreams (zone "."), then one group per configured zone.
    let health: UpstreamHealth
    let zones: [(key: [UInt8], name: String, health: UpstreamHealth)]
    let transport: UpstreamTransport
    let counters: DNSCounters
    let timeoutMilliseconds: Int64
    let logger: Logger
    private let inflight = Mutex<[CacheKey: [CheckedContinuation<DNSMessage?, Never>]]>([:])
    /// Client queries waiting on the forwarder, bounded by `maxConcurrent`.
    private let admitted = Atomic<Int>(0)
    let maxConcurrent: Int
    /// Questions to refresh before their entries expire, consumed by `prefetchLoop`.
    private let prefetchQueue: AsyncStream<DNSQuestion>.Continuation
    private let prefetchStream: AsyncStream<DNSQuestion>

    /// A random name that only a forwarding loop could bring back to us (CoreDNS `loop`).
    let probeName: DNSName

    init(upstreams: [UpstreamServer], zones: [ZoneForward] = [], configuration c: DNSConfiguration, transport: UpstreamTransport,
         counters: DNSCounters, logger: Logger) {
        cache = DNSCache(capacity: c.cacheCapacity, maxTTL: c.cacheMaxTTL, maxNegativeTTL: c.cacheMaxNegativeTTL,
                         staleSeconds: c.serveStaleSeconds, prefetchHits: c.prefetchHits)
        health = UpstreamHealth(upstreams)
        self.zones = zones.compactMap { z in
            DNSName(z.zone).map { (key: $0.key, name: $0.description, health: UpstreamHealth(z.servers)) }
        }.sorted { $0.key.count > $1.key.count }  // longest zone first
        self.transport = transport
        self.counters = counters
        timeoutMilliseconds = c.upstreamTimeoutMilliseconds
        maxConcurrent = max(1, c.maxConcurrentForwards)
        self.logger = logger
        probeName = DNSName("\(UInt64.random(in: 1 ... .max)).\(UInt32.random(in: 1 ... .max)).nodenet-loop-probe.")!
        let stream = AsyncStream.makeStream(of: DNSQuestion.self, bufferingPolicy: .bufferingNewest(1000))
        prefetchStream = stream.stream
        prefetchQueue = stream.continuation
    }

    /// The upstream group for a name: the longest configured zone it falls under, else the default.
    func upstreams(for name: DNSName) -> UpstreamHealth {
        let key = name.key
        for z in zones where DNSName.suffixOffset(key, z.key) != nil { return z.health }
        return health
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
        if hit.message.answers.isEmpty { counters.bump(counters.cacheDenialHits) }
        if hit.prefetch { prefetchQueue.yield(q) }
        return hit.message
    }

    /// A fresh cached answer in wire form (the event loop's fast path): records aged, rcode,
    /// AD and counts; counted as a cache hit.
    func cachedWire(_ key: CacheKey, question: @autoclosure () -> DNSQuestion) -> (entry: WireCacheEntry, records: [UInt8])? {
        guard !loopDetected, let hit = cache.wireLookup(key, now: monotonicMilliseconds()) else { return nil }
        counters.bump(counters.cacheHits)
        if hit.denial { counters.bump(counters.cacheDenialHits) }
        if hit.prefetch { prefetchQueue.yield(question()) }
        return (hit.entry, hit.entry.aged(by: hit.age))
    }

    /// Refreshes popular entries queued by `cached` until cancelled.
    func prefetchLoop() async {
        await withTaskCancellationHandler {
            for await q in prefetchStream {
                counters.bump(counters.prefetches)
                if let answer = await exchange(q) { cache.store(CacheKey(q), answer, now: monotonicMilliseconds()) }
            }
        } onCancel: { prefetchQueue.finish() }
    }

    /// The upstream's answer (from cache when fresh); nil when every upstream failed and
    /// nothing stale is left to serve.
    func resolve(_ q: DNSQuestion) async -> DNSMessage? {
        let group = upstreams(for: q.name)
        guard !loopDetected, !group.servers.isEmpty else { return nil }
        let key = CacheKey(q)
        if let hit = cached(q) { return hit }
        counters.bump(counters.cacheMisses)
        // Every upstream known down: a stale answer now rather than after their timeouts.
        if group.allDown(now: monotonicMilliseconds()), let stale = cache.stale(key, now: monotonicMilliseconds()) {
            counters.bump(counters.staleAnswers)
            return stale
        }
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
                if !joined { c.resume(returning: cache.lookup(key, now: monotonicMilliseconds())?.message) }
            }
        }
        var answer = await exchange(q)
        if let a = answer { cache.store(key, a, now: monotonicMilliseconds()) }
        if answer == nil || answer?.rcode == RCode.servFail.rawValue, let stale = cache.stale(key, now: monotonicMilliseconds()) {
            counters.bump(counters.staleAnswers)
            answer = stale
        }
        let waiters = inflight.withLock { $0.removeValue(forKey: key) } ?? []
        for w in waiters { w.resume(returning: answer) }
        return answer
    }

    /// One question to its upstreams in health order, each tried once. An answer that does not
    /// parse or does not answer the question takes its server out of service at once (a
    /// server answering garbage is not trusted); timeouts count towards `maxFails`.
    func exchange(_ q: DNSQuestion) async -> DNSMessage? {
        let group = upstreams(for: q.name)
        var h = DNSHeader()
        h.recursionDesired = true
        let query = DNSMessage(header: h, questions: [q], edns: EDNS(udpSize: DNSWire.advertisedUDPSize)).encode()
        for i in group.order(now: monotonicMilliseconds()) {
            let server = group.servers[i]
            let start = NIODeadline.now()
            var garbage = false
            do {
                counters.bump(counters.upstreamQueries)
                group.sent(i)
                var bytes = try await transport.udp(query, to: server, timeoutMilliseconds: timeoutMilliseconds)
                garbage = true
                var reply = try DNSMessage(parsing: bytes)
                if reply.header.truncated {
                    counters.bump(counters.upstreamTCPFallbacks)
                    garbage = false
                    bytes = try await transport.tcp(query, to: server, timeoutMilliseconds: timeoutMilliseconds)
                    garbage = true
                    reply = try DNSMessage(parsing: bytes)
                }
                guard reply.header.isResponse, reply.questions.first?.name == q.name, reply.questions.first?.type == q.type else {
                    throw DNSParseError.badRData(type: 0, at: 0)
                }
                let micros = Int((NIODeadline.now() - start).nanoseconds / 1000)
                counters.bump(counters.upstreamLatencyMicrosTotal, by: micros)
                counters.bump(counters.upstreamLatencyCount)
                group.succeeded(i)
                return reply
            } catch {
                counters.bump(counters.upstreamFailures)
                group.failed(i, now: monotonicMilliseconds(), immediately: garbage)
                if garbage {
                    logger.warning("upstream answered garbage; out of service for a while",
                                   metadata: ["upstream": "\(server)", "name": "\(q.name)", "error": "\(error)"])
                } else {
                    logger.debug("upstream failed", metadata: ["upstream": "\(server)", "name": "\(q.name)", "error": "\(error)"])
                }
            }
        }
        return nil
    }

    /// Per upstream, every group: what the metrics show.
    var upstreamStats: [UpstreamStats] {
        ([health] + zones.map(\.health)).flatMap { $0.stats(now: monotonicMilliseconds()) }
    }
}

/// One upstream's counters (CoreDNS `forward` metrics).
public struct UpstreamStats: Sendable, Hashable {
    public var server: String
    public var requests: Int
    public var failures: Int
    public var healthy: Bool
}
