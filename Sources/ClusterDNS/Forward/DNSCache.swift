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
}

/// A positive and negative cache for upstream answers (RFC 2308 for negative TTLs), with
/// TTL caps and a bounded size. Time is passed in (milliseconds on a monotonic clock) so
/// tests can drive expiry.
final class DNSCache: Sendable {
    struct Entry: Sendable {
        var message: DNSMessage
        var storedAt: Int64
        var expiresAt: Int64
    }

    private let entries = Mutex<[CacheKey: Entry]>([:])
    let capacity: Int
    let maxTTL: UInt32
    let maxNegativeTTL: UInt32

    init(capacity: Int, maxTTL: UInt32, maxNegativeTTL: UInt32) {
        self.capacity = max(capacity, 0)
        self.maxTTL = maxTTL
        self.maxNegativeTTL = maxNegativeTTL
    }

    var count: Int { entries.withLock { $0.count } }

    /// The cached answer with TTLs lowered by its age; nil when absent or expired.
    func lookup(_ key: CacheKey, now: Int64) -> DNSMessage? {
        guard let e = entries.withLock({ $0[key] }) else { return nil }
        guard now < e.expiresAt else {
            entries.withLock { d in if let cur = d[key], cur.expiresAt <= now { d[key] = nil } }
            return nil
        }
        let age = UInt32(clamping: (now - e.storedAt) / 1000)
        var m = e.message
        func aged(_ rs: [DNSRecord]) -> [DNSRecord] { rs.map { var r = $0; r.ttl = r.ttl > age ? r.ttl - age : 0; return r } }
        m.answers = aged(m.answers)
        m.authority = aged(m.authority)
        m.additional = aged(m.additional)
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
        let entry = Entry(message: stored, storedAt: now, expiresAt: now + Int64(ttl) * 1000)
        entries.withLock { d in
            if d.count >= capacity, d[key] == nil {
                // Drop expired entries first; if none, an arbitrary one (hash order is random enough).
                d = d.filter { $0.value.expiresAt > now }
                // Still full of live entries: evict a tenth at once so inserts stay O(1) amortised.
                if d.count >= capacity {
                    for victim in d.keys.prefix(max(1, capacity / 10)) { d[victim] = nil }
                }
            }
            d[key] = entry
        }
    }
}
