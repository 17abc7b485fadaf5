#if canImport(Glibc)
import Glibc
#endif
import IPAddressing
import NIOCore
import Synchronization

/// Which clients the server answers (issue #14 item 6): a DNS server on an address anything can
/// route to otherwise forwards for the world (an amplifier). Clients outside the list get
/// REFUSED with the question echoed and nothing else, so a refusal is never larger than the
/// query. An empty list allows everyone (the library default; the agent always sets one).
/// One instance per socket shard: read by that socket's event loop only, so its lock is never
/// contended; `update` (the pod subnets changed) takes each shard's lock once.
final class ClientACL: Sendable {
    private struct Compiled: Sendable {
        var allowAll = true
        /// (network, mask) in host order.
        var v4: [(UInt32, UInt32)] = []
        var v6: [IPPrefix] = []
    }

    private let compiled = Mutex(Compiled())

    init(_ prefixes: [IPPrefix] = []) { update(prefixes) }

    func update(_ prefixes: [IPPrefix]) {
        var c = Compiled()
        c.allowAll = prefixes.isEmpty
        for p in prefixes {
            switch p.address {
            case .v4(let a):
                let mask: UInt32 = p.length == 0 ? 0 : ~UInt32(0) << (32 - UInt32(p.length))
                c.v4.append((a.value & mask, mask))
            case .v6: c.v6.append(p)
            }
        }
        compiled.withLock { $0 = c }
    }

    /// Whether `address` may query. An IPv4-mapped IPv6 source is judged as the IPv4 address.
    func allows(_ address: SocketAddress?) -> Bool {
        compiled.withLock { c in
            if c.allowAll { return true }
            guard let ip = address.flatMap(ClientAddress.ip) else { return false }
            switch ip {
            case .v4(let a): return c.v4.contains { a.value & $0.1 == $0.0 }
            case .v6: return c.v6.contains { $0.contains(ip) }
            }
        }
    }
}

enum ClientAddress {
    /// The peer's IP from NIO's socket address, without going through text.
    static func ip(_ s: SocketAddress) -> IPAddress? {
        switch s {
        case .v4(let a):
            return .v4(IPv4Address(UInt32(bigEndian: a.address.sin_addr.s_addr)))
        case .v6(let a):
            var addr = a.address.sin6_addr
            let bytes = withUnsafeBytes(of: &addr) { Array($0) }
            // ::ffff:a.b.c.d (a dual-stack socket's IPv4 peer)
            if bytes[0..<10].allSatisfy({ $0 == 0 }), bytes[10] == 0xFF, bytes[11] == 0xFF {
                return IPv4Address(bytes: bytes[12..<16]).map(IPAddress.v4)
            }
            return IPv6Address(bytes: bytes).map(IPAddress.v6)
        default:
            return nil
        }
    }
}

/// Response rate limiting for identical answers (BIND's RRL, simplified): per client network
/// (/24 for IPv4, /56 for IPv6), per answer (question name case-folded, type, rcode), at most
/// `limit` responses per second. Over the limit the response becomes an empty truncated one
/// (TC set, "slip 1"): a real client retries over TCP and gets its answer, a spoofed victim
/// receives nothing bigger than the query. UDP only (TCP sources cannot be spoofed).
/// A fixed table of buckets indexed by hash, so memory is bounded whatever the traffic; a
/// collision replaces the bucket (never limits a different answer). One per socket shard, used
/// only by that socket's event loop.
final class ResponseRateLimiter: @unchecked Sendable {
    // @unchecked: only ever touched from the event loop of the socket that owns it.
    private struct Bucket {
        var tag: UInt64 = 0
        var second: UInt32 = 0
        var count: UInt32 = 0
    }

    let limit: Int
    private var buckets: [Bucket]
    private let mask: Int

    init(limit: Int, slots: Int = 4096) {
        self.limit = limit
        buckets = Array(repeating: Bucket(), count: slots)
        mask = slots - 1
    }

    /// True when this response may go out as is; false: send it truncated instead.
    func admit(reply: [UInt8], to client: SocketAddress, now second: UInt32) -> Bool {
        guard limit > 0, reply.count >= 12 else { return true }
        var h: UInt64 = 0xcbf2_9ce4_8422_2325
        @inline(__always) func mix(_ b: UInt8) { h = (h ^ UInt64(b)) &* 0x100_0000_01b3 }
        switch client {
        case .v4(let a):
            let v = UInt32(bigEndian: a.address.sin_addr.s_addr) & 0xFFFF_FF00
            mix(UInt8(truncatingIfNeeded: v >> 24)); mix(UInt8(truncatingIfNeeded: v >> 16)); mix(UInt8(truncatingIfNeeded: v >> 8))
        case .v6(let a):
            var addr = a.address.sin6_addr
            withUnsafeBytes(of: &addr) { for b in $0.prefix(7) { mix(b) } }
        default: return true
        }
        mix(reply[3] & 0x0F)  // rcode
        // The question (name case-folded, type, class), right after the header.
        var i = 12
        while i < reply.count {
            let n = Int(reply[i])
            if n == 0 || n & 0xC0 != 0 { break }
            mix(UInt8(n))
            var j = i + 1
            while j <= i + n, j < reply.count {
                let c = reply[j]
                mix(c >= 65 && c <= 90 ? c | 0x20 : c)
                j += 1
            }
            i += 1 + n
        }
        if i + 4 < reply.count { for k in (i + 1)...(i + 4) { mix(reply[k]) } }
        let tag = h | 1
        let slot = Int(truncatingIfNeeded: h >> 20) & mask
        if buckets[slot].tag != tag || buckets[slot].second != second {
            buckets[slot] = Bucket(tag: tag, second: second, count: 1)
            return true
        }
        buckets[slot].count &+= 1
        return buckets[slot].count <= UInt32(clamping: limit)
    }

    /// The reply cut to header and question with TC set: what goes out over the limit.
    static func slip(_ reply: [UInt8]) -> [UInt8] {
        var out = questionOnly(reply)
        out[2] |= 0x02
        return out
    }

    /// Header and the first question (when it parses), counts fixed up; nothing else.
    static func questionOnly(_ m: [UInt8]) -> [UInt8] {
        guard m.count >= 12 else { return m }
        var end = 12
        var qd = 0
        if m[4] == 0, m[5] >= 1 {
            var r = DNSReader(m)
            r.pos = 12
            if (try? r.name()) != nil, (try? r.u16()) != nil, (try? r.u16()) != nil { end = r.pos; qd = 1 }
        }
        var out = Array(m[0..<end])
        out[4] = 0; out[5] = UInt8(qd)
        for k in 6..<12 { out[k] = 0 }
        return out
    }
}

/// Seconds on the monotonic clock (the rate limiter's window).
func monotonicSeconds() -> UInt32 { UInt32(truncatingIfNeeded: NIODeadline.now().uptimeNanoseconds / 1_000_000_000) }
