import Synchronization

/// What forwarded answers are cached under: lower-cased name, type and class.
struct CacheKey: Hashable, Sendable {
    var name: [UInt8]
    var type: UInt16
    var qclass: UInt16

    init(_ q: DNSQuestion) {
        name = q.name.key
        type = q.type.rawValue
        qclass = q.qclass
    }

    /// The name's bytes in one call (see `WireAnswers.Key`).
    func hash(into h: inout Hasher) {
        name.withUnsafeBytes { h.combine(bytes: $0) }
        h.combine(type)
        h.combine(qclass)
    }

    init(name: [UInt8], type: UInt16, qclass: UInt16) {
        self.name = name
        self.type = type
        self.qclass = qclass
    }
}

/// A positive and negative cache for upstream answers (RFC 2308 for negative TTLs), with
/// TTL caps and a bounded size. Time is passed in (milliseconds on a monotonic clock) so
/// tests can drive expiry.
final class DNSCache: Sendable {
    struct Entry: Sendable {
        var message: DNSMessage
        var storedAt: Int64
        var expiresAt: Int64
        /// Hits since stored, and whether a prefetch of this entry is under way.
        var hits = 0
        var prefetching = false
        /// The same answer in wire form (nil when it could not be made).
        var wire: WireCacheEntry?
    }

    private let entries = Mutex<[CacheKey: Entry]>([:])
    let capacity: Int
    let maxTTL: UInt32
    let maxNegativeTTL: UInt32
    /// How long past expiry an entry is kept for serve-stale, in milliseconds.
    let staleMilliseconds: Int64
    /// Entries with this many hits are refreshed in their last tenth of life; 0: never.
    let prefetchHits: Int
    /// The TTL of an answer served stale (RFC 8767 recommends 30 s).
    static let staleTTL: UInt32 = 30

    init(capacity: Int, maxTTL: UInt32, maxNegativeTTL: UInt32, staleSeconds: UInt32 = 0, prefetchHits: Int = 0) {
        self.capacity = max(capacity, 0)
        self.maxTTL = maxTTL
        self.maxNegativeTTL = maxNegativeTTL
        staleMilliseconds = Int64(staleSeconds) * 1000
        self.prefetchHits = prefetchHits
    }

    var count: Int { entries.withLock { $0.count } }

    /// Entries by kind (positive answers, negative ones), for the metrics; O(entries), at scrape.
    var counts: (success: Int, denial: Int) {
        entries.withLock { d in
            let denial = d.values.reduce(0) { $0 + ($1.message.answers.isEmpty ? 1 : 0) }
            return (d.count - denial, denial)
        }
    }

    /// The cached answer with TTLs lowered by its age; nil when absent or expired. `prefetch`
    /// is true (once per entry) when a popular entry should be refreshed now.
    func lookup(_ key: CacheKey, now: Int64) -> (message: DNSMessage, prefetch: Bool)? {
        let found: (Entry, Bool)? = entries.withLock { d in
            guard let i = d.index(forKey: key) else { return nil }
            let e = d.values[i]
            guard now < e.expiresAt else {
                if now >= e.expiresAt + staleMilliseconds { d.remove(at: i) }
                return nil
            }
            d.values[i].hits += 1
            let lifetime = e.expiresAt - e.storedAt
            let prefetch = prefetchHits > 0 && !e.prefetching && e.hits + 1 >= prefetchHits && (e.expiresAt - now) * 10 <= lifetime
            if prefetch { d.values[i].prefetching = true }
            return (e, prefetch)
        }
        guard let (e, prefetch) = found else { return nil }
        return (Self.aged(e.message, by: UInt32(clamping: (now - e.storedAt) / 1000), cap: nil), prefetch)
    }

    /// A fresh entry's wire form with its age in seconds (the fast path); `prefetch` as in `lookup`.
    func wireLookup(_ key: CacheKey, now: Int64) -> (entry: WireCacheEntry, age: UInt32, denial: Bool, prefetch: Bool)? {
        entries.withLock { d in
            guard let i = d.index(forKey: key) else { return nil }
            let e = d.values[i]
            guard now < e.expiresAt, let wire = e.wire else { return nil }
            d.values[i].hits += 1
            let lifetime = e.expiresAt - e.storedAt
            let prefetch = prefetchHits > 0 && !e.prefetching && e.hits + 1 >= prefetchHits && (e.expiresAt - now) * 10 <= lifetime
            if prefetch { d.values[i].prefetching = true }
            return (wire, UInt32(clamping: (now - e.storedAt) / 1000), e.message.answers.isEmpty, prefetch)
        }
    }

    /// An expired entry still inside the serve-stale window, with TTLs of at most `staleTTL`.
    func stale(_ key: CacheKey, now: Int64) -> DNSMessage? {
        guard let e = entries.withLock({ $0[key] }), now >= e.expiresAt, now < e.expiresAt + staleMilliseconds else { return nil }
        return Self.aged(e.message, by: 0, cap: Self.staleTTL)
    }

    private static func aged(_ message: DNSMessage, by age: UInt32, cap: UInt32?) -> DNSMessage {
        var m = message
        func adjust(_ rs: [DNSRecord]) -> [DNSRecord] {
            rs.map { var r = $0; r.ttl = r.ttl > age ? r.ttl - age : 0; if let cap { r.ttl = min(r.ttl, cap) }; return r }
        }
        m.answers = adjust(m.answers)
        m.authority = adjust(m.authority)
        m.additional = adjust(m.additional)
        return m
    }

    /// How long an upstream response may be cached, in seconds; nil when it must not be.
    func cacheTTL(_ m: DNSMessage) -> UInt32? {
        guard !m.header.truncated else { return nil }
        switch RCode(rawValue: m.rcode) {
        case .noError? where !m.answers.isEmpty:
            return min(m.answers.map(\.ttl).min() ?? 0, maxTTL)
        case .noError?, .nxDomain?:
            // Negative: the SOA's TTL bounded by its minimum field (RFC 2308 §5).
            guard let soa = m.authority.first(where: { $0.type == .soa }), case .soa(_, _, _, _, _, _, let minimum) = soa.data else { return nil }
            return min(soa.ttl, minimum, maxNegativeTTL)
        default:
            return nil
        }
    }

    func store(_ key: CacheKey, _ m: DNSMessage, now: Int64) {
        guard capacity > 0, let ttl = cacheTTL(m), ttl > 0 else { return }
        var stored = m
        stored.edns = nil
        let entry = Entry(message: stored, storedAt: now, expiresAt: now + Int64(ttl) * 1000, wire: WireCacheEntry(stored))
        entries.withLock { d in
            if d.count >= capacity, d[key] == nil {
                // Drop expired entries first; if none, an arbitrary one (hash order is random enough).
                d = d.filter { $0.value.expiresAt + staleMilliseconds > now }
                // Still full of live entries: evict a tenth at once so inserts stay O(1) amortised.
                if d.count >= capacity {
                    for victim in d.keys.prefix(max(1, capacity / 10)) { d[victim] = nil }
                }
            }
            d[key] = entry
        }
    }
}
