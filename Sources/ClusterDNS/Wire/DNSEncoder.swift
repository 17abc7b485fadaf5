/// Writes messages with name compression (RFC 1035 §4.1.4). Compression matches suffixes
/// case-insensitively and points at the first occurrence, so answers whose owner is the
/// question name reuse the question's bytes and keep the case the client asked with.
struct DNSWriter {
    private(set) var bytes: [UInt8] = []
    /// Literal suffixes already written: lower-cased wire bytes of the suffix and its offset.
    private var suffixes: [(key: ArraySlice<UInt8>, offset: Int)] = []

    init(capacity: Int = 512) { bytes.reserveCapacity(capacity) }

    var count: Int { bytes.count }

    mutating func u8(_ v: UInt8) { bytes.append(v) }
    mutating func u16(_ v: UInt16) { bytes.append(UInt8(v >> 8)); bytes.append(UInt8(v & 0xFF)) }
    mutating func u32(_ v: UInt32) { u16(UInt16(v >> 16)); u16(UInt16(v & 0xFFFF)) }
    mutating func append(_ b: some Sequence<UInt8>) { bytes.append(contentsOf: b) }

    mutating func set16(_ v: UInt16, at i: Int) { bytes[i] = UInt8(v >> 8); bytes[i + 1] = UInt8(v & 0xFF) }

    mutating func truncate(to n: Int) {
        bytes.removeSubrange(n...)
        suffixes.removeAll { $0.offset >= n }
    }

    mutating func name(_ n: DNSName, compress: Bool = true) {
        let key = n.key
        var i = 0
        while key[i] != 0 {
            if compress, let hit = suffixes.first(where: { $0.key.elementsEqual(key[i...]) }) {
                u16(0xC000 | UInt16(hit.offset))
                return
            }
            if bytes.count < 0x4000 { suffixes.append((key[i...], bytes.count)) }
            let len = Int(n.wire[i])
            bytes.append(contentsOf: n.wire[i...(i + len)])
            i += 1 + len
        }
        u8(0)
    }

    mutating func characterString(_ s: [UInt8]) {
        let n = min(s.count, 255)
        u8(UInt8(n)); append(s.prefix(n))
    }

    mutating func record(_ r: DNSRecord) {
        name(r.name)
        u16(r.type.rawValue); u16(r.rclass); u32(r.ttl)
        let lenAt = count
        u16(0)
        switch r.data {
        case .a(let a): u32(a.value)
        case .aaaa(let a): append(a.bytes)
        case .cname(let t), .ns(let t), .ptr(let t): name(t)
        case .srv(let p, let w, let port, let t): u16(p); u16(w); u16(port); name(t, compress: false)
        case .txt(let strings): for s in strings { characterString(s) }
        case .soa(let m, let r, let serial, let refresh, let retry, let expire, let minimum):
            name(m); name(r); u32(serial); u32(refresh); u32(retry); u32(expire); u32(minimum)
        case .hinfo(let cpu, let os): characterString(cpu); characterString(os)
        case .mx(let pref, let ex): u16(pref); name(ex)
        case .raw(let b): append(b)
        }
        set16(UInt16(count - lenAt - 2), at: lenAt)
    }

    mutating func opt(_ e: EDNS) {
        u8(0); u16(RRType.opt.rawValue); u16(e.udpSize)
        u8(e.extendedRCode); u8(e.version); u16(e.dnssecOK ? 0x8000 : 0)
        u16(UInt16(e.options.count)); append(e.options)
    }
}

extension DNSMessage {
    /// Encodes the message within `maxSize` bytes, truncating by whole records (RFC 1035
    /// §4.2.1, RFC 2181 §9), as CoreDNS does (miekg/dns `Msg.Truncate`):
    /// - the answer section keeps every record that fits, in order, and sets TC at the first
    ///   one that does not; nothing follows a cut answer section. A stub resolver without TCP
    ///   fallback (musl before 1.2.4) uses those records, glibc and Go retry over TCP;
    /// - the authority section is required when there is no answer (the SOA of a negative
    ///   answer, a referral's NS): cut the same way, with TC;
    /// - otherwise authority and additional data are optional: an RRset that does not fit is
    ///   left out whole and TC stays clear (RFC 2181 §9), and smaller ones after it still go in;
    /// - the OPT record always goes in (its room is reserved first).
    public func encode(maxSize: Int = 65535) -> [UInt8] {
        var w = DNSWriter(capacity: min(maxSize, 512))
        var h = header
        w.u16(h.id); w.u16(0)
        w.u16(UInt16(questions.count)); w.u16(0); w.u16(0); w.u16(0)
        for q in questions { w.name(q.name); w.u16(q.type.rawValue); w.u16(q.qclass) }
        let optSize = edns.map { 11 + $0.options.count } ?? 0
        let limit = max(maxSize, w.count + optSize) - optSize
        var counts = [0, 0, 0]
        var cut = false
        counts[0] = w.records(answers[...], limit: limit, cut: &cut)
        if !cut {
            counts[1] = answers.isEmpty ? w.records(authority[...], limit: limit, cut: &cut) : w.optionalRRsets(authority, limit: limit)
        }
        if !cut { counts[2] = w.optionalRRsets(additional, limit: limit) }
        if cut { h.truncated = true }
        var arCount = counts[2]
        if let e = edns { w.opt(e); arCount += 1 }
        w.set16(h.flags, at: 2)
        w.set16(UInt16(counts[0]), at: 6); w.set16(UInt16(counts[1]), at: 8); w.set16(UInt16(arCount), at: 10)
        return w.bytes
    }
}

extension DNSWriter {
    /// Writes records in order while they fit within `limit`; sets `cut` at the first that does
    /// not (it is removed again). Returns how many were written.
    mutating func records(_ rs: ArraySlice<DNSRecord>, limit: Int, cut: inout Bool) -> Int {
        var n = 0
        for r in rs {
            let before = count
            record(r)
            if count > limit { truncate(to: before); cut = true; break }
            n += 1
        }
        return n
    }

    /// Optional data: each RRset (owner, type, class; wherever its records are in the section)
    /// goes in whole or not at all. Returns how many records were written.
    mutating func optionalRRsets(_ rs: [DNSRecord], limit: Int) -> Int {
        let start = count
        var cut = false
        let all = records(rs[...], limit: limit, cut: &cut)
        guard cut else { return all }  // the common case: everything fits
        truncate(to: start)
        var order: [RRSetKey] = []
        var sets: [RRSetKey: [DNSRecord]] = [:]
        for r in rs {
            let k = RRSetKey(name: r.name.key, type: r.type.rawValue, rclass: r.rclass)
            if sets[k] == nil { order.append(k) }
            sets[k, default: []].append(r)
        }
        var n = 0
        for k in order {
            let set = sets[k]!
            let before = count
            var setCut = false
            if records(set[...], limit: limit, cut: &setCut) == set.count { n += set.count } else { truncate(to: before) }
        }
        return n
    }
}

private struct RRSetKey: Hashable {
    var name: [UInt8]
    var type: UInt16
    var rclass: UInt16
}
