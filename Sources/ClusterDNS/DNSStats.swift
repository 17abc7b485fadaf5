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
    public var tcpConnectionsRejected = 0
    public var loopDetected = false

    public init() {}

    static var counts: [WritableKeyPath<DNSStats, Int>] { [
        \.queries, \.udpQueries, \.tcpQueries, \.dropped, \.noError, \.nxDomain, \.servFail, \.formErr, \.refused,
        \.notImp, \.otherRCode, \.truncated, \.zoneAnswers, \.cacheHits, \.cacheMisses, \.coalesced, \.upstreamQueries,
        \.upstreamFailures, \.upstreamTCPFallbacks, \.upstreamLatencyMicrosTotal, \.upstreamLatencyCount, \.tcpConnectionsRejected,
    ] }

    /// Sum of per-socket shards.
    static func + (a: DNSStats, b: DNSStats) -> DNSStats {
        var s = a
        for k in counts { s[keyPath: k] += b[keyPath: k] }
        s.loopDetected = a.loopDetected || b.loopDetected
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
    let loopDetected = Atomic<Bool>(false)

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
        s.loopDetected = loopDetected.load(ordering: .relaxed)
        return s
    }
}
