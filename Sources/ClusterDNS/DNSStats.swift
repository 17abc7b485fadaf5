import Synchronization

/// Counters for `nodenet status` and metrics: a plain value taken from `DNSCounters`.
public struct DNSStats: Sendable, Hashable, Codable {
    public var queries = 0
    public var udpQueries = 0
    public var tcpQueries = 0
    public var dropped = 0
    public var noError = 0
    public var nxDomain = 0
    public var servFail = 0
    public var formErr = 0
    public var refused = 0
    public var notImp = 0
    public var otherRCode = 0
    public var truncated = 0
    public var zoneAnswers = 0
    public var cacheHits = 0
    public var cacheMisses = 0
    public var coalesced = 0
    public var upstreamQueries = 0
    public var upstreamFailures = 0
    public var upstreamTCPFallbacks = 0
    /// Sum and count of upstream round trips in microseconds (average = sum / count).
    public var upstreamLatencyMicrosTotal = 0
    public var upstreamLatencyCount = 0
    /// TCP connections closed by a limit: refused at accept (per client) or shed at the cap.
    public var tcpConnectionsRejected = 0
    /// Queries from clients outside the allow list (answered REFUSED).
    public var refusedClients = 0
    /// UDP responses over the rate limit (sent empty with TC).
    public var rateLimited = 0
    public var autopathAttempts = 0
    public var autopathAnswers = 0
    /// Expired cache entries answered while no upstream answered (serve-stale).
    public var staleAnswers = 0
    public var prefetches = 0
    /// Cache hits that were negative answers (CoreDNS `type="denial"`); the rest are "success".
    public var cacheDenialHits = 0
    /// Requests per (proto, family, type): index `DNSStats.requestSlot(tcp:v6:type:)`.
    public var requestsByType = Array(repeating: 0, count: 4 * DNSStats.typeNames.count)
    /// Request duration histogram per type: `type * (bounds + 1) + bucket` (the last bucket
    /// of each type is +Inf), and the sum in microseconds per type.
    public var durationBuckets = Array(repeating: 0, count: DNSStats.typeNames.count * (DNSStats.durationBounds.count + 1))
    public var durationMicrosByType = Array(repeating: 0, count: DNSStats.typeNames.count)
    public var durationMicrosTotal = 0

    public static func requestSlot(tcp: Bool, v6: Bool, type: Int) -> Int { ((tcp ? 2 : 0) + (v6 ? 1 : 0)) * typeNames.count + type }
    public var loopDetected = false

    public init() {}

    /// CoreDNS's `type` label values, with everything else as "other".
    public static let typeNames = ["A", "AAAA", "CNAME", "MX", "NS", "PTR", "SOA", "SRV", "TXT", "HTTPS", "ANY", "other"]
    static let typeCodes: [UInt16] = [1, 28, 5, 15, 2, 12, 6, 33, 16, 65, 255]
    /// CoreDNS's request duration buckets (seconds): 0.25 ms doubling 16 times.
    public static let durationBounds: [Double] = (0..<16).map { 0.00025 * Double(1 << $0) }

    static var counts: [WritableKeyPath<DNSStats, Int>] { [
        \.queries, \.udpQueries, \.tcpQueries, \.dropped, \.noError, \.nxDomain, \.servFail, \.formErr, \.refused,
        \.notImp, \.otherRCode, \.truncated, \.zoneAnswers, \.cacheHits, \.cacheMisses, \.coalesced, \.upstreamQueries,
        \.upstreamFailures, \.upstreamTCPFallbacks, \.upstreamLatencyMicrosTotal, \.upstreamLatencyCount, \.tcpConnectionsRejected,
        \.refusedClients, \.rateLimited, \.autopathAttempts, \.autopathAnswers, \.staleAnswers, \.prefetches, \.cacheDenialHits,
        \.durationMicrosTotal,
    ] }

    /// Sum of per-socket shards.
    static func + (a: DNSStats, b: DNSStats) -> DNSStats {
        var s = a
        for k in counts { s[keyPath: k] += b[keyPath: k] }
        s.loopDetected = a.loopDetected || b.loopDetected
        for i in s.requestsByType.indices { s.requestsByType[i] += b.requestsByType[i] }
        for i in s.durationBuckets.indices { s.durationBuckets[i] += b.durationBuckets[i] }
        for i in s.durationMicrosByType.indices { s.durationMicrosByType[i] += b.durationMicrosByType[i] }
        return s
    }

    public var averageUpstreamLatencyMicros: Int {
        upstreamLatencyCount == 0 ? 0 : upstreamLatencyMicrosTotal / upstreamLatencyCount
    }
}

/// The live counters. Atomics, not an actor, and one instance per socket (shard): each is
/// bumped by one event-loop thread, so the hot path never bounces a cache line between
/// cores; `DNSStats` sums the shards. Relaxed ordering is enough for growing counts.
final class DNSCounters: Sendable {
    let queries = Atomic<Int>(0), udpQueries = Atomic<Int>(0), tcpQueries = Atomic<Int>(0), dropped = Atomic<Int>(0)
    let noError = Atomic<Int>(0), nxDomain = Atomic<Int>(0), servFail = Atomic<Int>(0), formErr = Atomic<Int>(0)
    let refused = Atomic<Int>(0), notImp = Atomic<Int>(0), otherRCode = Atomic<Int>(0), truncated = Atomic<Int>(0)
    let zoneAnswers = Atomic<Int>(0), cacheHits = Atomic<Int>(0), cacheMisses = Atomic<Int>(0), coalesced = Atomic<Int>(0)
    let upstreamQueries = Atomic<Int>(0), upstreamFailures = Atomic<Int>(0), upstreamTCPFallbacks = Atomic<Int>(0)
    let upstreamLatencyMicrosTotal = Atomic<Int>(0), upstreamLatencyCount = Atomic<Int>(0)
    let tcpConnectionsRejected = Atomic<Int>(0)
    let refusedClients = Atomic<Int>(0), rateLimited = Atomic<Int>(0), autopathAttempts = Atomic<Int>(0), autopathAnswers = Atomic<Int>(0)
    let staleAnswers = Atomic<Int>(0), prefetches = Atomic<Int>(0), cacheDenialHits = Atomic<Int>(0), durationMicrosTotal = Atomic<Int>(0)
    let loopDetected = Atomic<Bool>(false)
    // Fixed-size atomic arrays (no Array of Atomic: not copyable); indexed by position.
    private let types = (0..<(4 * DNSStats.typeNames.count)).map { _ in AtomicBox() }
    private let buckets = (0..<(DNSStats.typeNames.count * (DNSStats.durationBounds.count + 1))).map { _ in AtomicBox() }
    private let typeMicros = (0..<DNSStats.typeNames.count).map { _ in AtomicBox() }
    /// Bucket upper bounds in nanoseconds.
    private static let boundsNanos: [UInt64] = DNSStats.durationBounds.map { UInt64($0 * 1e9) }

    /// Counts the query by protocol, client family and type (read from its bytes: one name
    /// skip); returns the type's index for `observe`.
    @discardableResult
    func countType(_ bytes: [UInt8], tcp: Bool = false, v6: Bool = false) -> Int {
        var i = 12
        while i < bytes.count, bytes[i] != 0, bytes[i] & 0xC0 == 0 { i += 1 + Int(bytes[i]) }
        var slot = DNSStats.typeNames.count - 1
        if i + 2 < bytes.count, bytes[i] == 0 {
            let t = UInt16(bytes[i + 1]) << 8 | UInt16(bytes[i + 2])
            if let k = DNSStats.typeCodes.firstIndex(of: t) { slot = k }
        }
        types[DNSStats.requestSlot(tcp: tcp, v6: v6, type: slot)].value.wrappingAdd(1, ordering: .relaxed)
        return slot
    }

    func observe(nanoseconds n: UInt64, type: Int) {
        var k = 0
        while k < Self.boundsNanos.count, n > Self.boundsNanos[k] { k += 1 }
        buckets[type * (Self.boundsNanos.count + 1) + k].value.wrappingAdd(1, ordering: .relaxed)
        typeMicros[type].value.wrappingAdd(Int(n / 1000), ordering: .relaxed)
        durationMicrosTotal.wrappingAdd(Int(n / 1000), ordering: .relaxed)
    }

    func bump(_ a: borrowing Atomic<Int>, by n: Int = 1) { a.wrappingAdd(n, ordering: .relaxed) }

    func count(rcode: UInt16) {
        switch RCode(rawValue: rcode) {
        case .noError?: bump(noError)
        case .nxDomain?: bump(nxDomain)
        case .servFail?: bump(servFail)
        case .formErr?: bump(formErr)
        case .refused?: bump(refused)
        case .notImp?: bump(notImp)
        default: bump(otherRCode)
        }
    }

    func snapshot() -> DNSStats {
        var s = DNSStats()
        s.queries = queries.load(ordering: .relaxed)
        s.udpQueries = udpQueries.load(ordering: .relaxed)
        s.tcpQueries = tcpQueries.load(ordering: .relaxed)
        s.dropped = dropped.load(ordering: .relaxed)
        s.noError = noError.load(ordering: .relaxed)
        s.nxDomain = nxDomain.load(ordering: .relaxed)
        s.servFail = servFail.load(ordering: .relaxed)
        s.formErr = formErr.load(ordering: .relaxed)
        s.refused = refused.load(ordering: .relaxed)
        s.notImp = notImp.load(ordering: .relaxed)
        s.otherRCode = otherRCode.load(ordering: .relaxed)
        s.truncated = truncated.load(ordering: .relaxed)
        s.zoneAnswers = zoneAnswers.load(ordering: .relaxed)
        s.cacheHits = cacheHits.load(ordering: .relaxed)
        s.cacheMisses = cacheMisses.load(ordering: .relaxed)
        s.coalesced = coalesced.load(ordering: .relaxed)
        s.upstreamQueries = upstreamQueries.load(ordering: .relaxed)
        s.upstreamFailures = upstreamFailures.load(ordering: .relaxed)
        s.upstreamTCPFallbacks = upstreamTCPFallbacks.load(ordering: .relaxed)
        s.upstreamLatencyMicrosTotal = upstreamLatencyMicrosTotal.load(ordering: .relaxed)
        s.upstreamLatencyCount = upstreamLatencyCount.load(ordering: .relaxed)
        s.tcpConnectionsRejected = tcpConnectionsRejected.load(ordering: .relaxed)
        s.refusedClients = refusedClients.load(ordering: .relaxed)
        s.rateLimited = rateLimited.load(ordering: .relaxed)
        s.autopathAttempts = autopathAttempts.load(ordering: .relaxed)
        s.autopathAnswers = autopathAnswers.load(ordering: .relaxed)
        s.staleAnswers = staleAnswers.load(ordering: .relaxed)
        s.prefetches = prefetches.load(ordering: .relaxed)
        s.cacheDenialHits = cacheDenialHits.load(ordering: .relaxed)
        s.durationMicrosTotal = durationMicrosTotal.load(ordering: .relaxed)
        s.requestsByType = types.map { $0.value.load(ordering: .relaxed) }
        s.durationBuckets = buckets.map { $0.value.load(ordering: .relaxed) }
        s.durationMicrosByType = typeMicros.map { $0.value.load(ordering: .relaxed) }
        s.loopDetected = loopDetected.load(ordering: .relaxed)
        return s
    }
}

/// One atomic counter as a class, so counters can live in arrays.
final class AtomicBox: Sendable {
    let value = Atomic<Int>(0)
}
