import IPAddressing

/// Why a message could not be parsed. Every malformed input ends here, never in a trap.
public enum DNSParseError: Error, Equatable, Sendable {
    case tooShort(at: Int)
    case badLabel(at: Int)
    case nameTooLong(at: Int)
    case pointerLoop(at: Int)
    case badRData(type: UInt16, at: Int)
    case duplicateOPT
}

/// A bounds-checked reader over one message. Names are decompressed with a strict rule:
/// a pointer must point before the label that holds it, so chains always terminate.
struct DNSReader {
    let bytes: [UInt8]
    var pos = 0

    init(_ bytes: [UInt8]) { self.bytes = bytes }

    var remaining: Int { bytes.count - pos }

    mutating func u8() throws(DNSParseError) -> UInt8 {
        guard pos < bytes.count else { throw .tooShort(at: pos) }
        defer { pos += 1 }
        return bytes[pos]
    }

    mutating func u16() throws(DNSParseError) -> UInt16 {
        guard pos + 2 <= bytes.count else { throw .tooShort(at: pos) }
        defer { pos += 2 }
        return UInt16(bytes[pos]) << 8 | UInt16(bytes[pos + 1])
    }

    mutating func u32() throws(DNSParseError) -> UInt32 {
        UInt32(try u16()) << 16 | UInt32(try u16())
    }

    mutating func take(_ n: Int) throws(DNSParseError) -> ArraySlice<UInt8> {
        guard n >= 0, pos + n <= bytes.count else { throw .tooShort(at: pos) }
        defer { pos += n }
        return bytes[pos..<(pos + n)]
    }

    mutating func name() throws(DNSParseError) -> DNSName {
        var out: [UInt8] = []
        out.reserveCapacity(32)
        var p = pos
        var jumped = false
        // Lowest offset a pointer may target: strictly decreasing targets rule out loops.
        var limit = pos
        while true {
            guard p < bytes.count else { throw .tooShort(at: p) }
            let len = bytes[p]
            switch len & 0xC0 {
            case 0x00:
                if len == 0 {
                    out.append(0)
                    if !jumped { pos = p + 1 }
                    guard out.count <= DNSLimits.maxNameLength else { throw .nameTooLong(at: p) }
                    return DNSName(uncheckedWire: out)
                }
                let n = Int(len)
                guard p + 1 + n <= bytes.count else { throw .tooShort(at: p) }
                out.append(len)
                out.append(contentsOf: bytes[(p + 1)...(p + n)])
                guard out.count < DNSLimits.maxNameLength else { throw .nameTooLong(at: p) }
                p += 1 + n
            case 0xC0:
                guard p + 1 < bytes.count else { throw .tooShort(at: p) }
                let target = Int(len & 0x3F) << 8 | Int(bytes[p + 1])
                guard target < limit else { throw .pointerLoop(at: p) }
                if !jumped { pos = p + 2; jumped = true }
                limit = target
                p = target
            default:
                // 0x40 (extended labels, obsolete) and 0x80 (reserved).
                throw .badLabel(at: p)
            }
        }
    }

    mutating func header() throws(DNSParseError) -> DNSHeader {
        let id = try u16(), flags = try u16()
        return DNSHeader(id: id, flags: flags, counts: (try u16(), try u16(), try u16(), try u16()))
    }

    mutating func question() throws(DNSParseError) -> DNSQuestion {
        DNSQuestion(name: try name(), type: RRType(try u16()), qclass: try u16())
    }

    /// One resource record; OPT comes back with its raw fields for the caller to unpack.
    mutating func record() throws(DNSParseError) -> DNSRecord {
        let owner = try name()
        let type = RRType(try u16())
        let rclass = try u16()
        let ttl = try u32()
        let rdlen = Int(try u16())
        guard rdlen <= remaining else { throw .tooShort(at: pos) }
        let start = pos, end = pos + rdlen
        let data: RData
        switch type {
        case .a:
            guard rdlen == 4 else { throw .badRData(type: type.rawValue, at: start) }
            data = .a(IPv4Address(bytes: try take(4))!)
        case .aaaa:
            guard rdlen == 16 else { throw .badRData(type: type.rawValue, at: start) }
            data = .aaaa(IPv6Address(bytes: try take(16))!)
        case .cname: data = .cname(try name())
        case .ns: data = .ns(try name())
        case .ptr: data = .ptr(try name())
        case .srv:
            data = .srv(priority: try u16(), weight: try u16(), port: try u16(), target: try name())
        case .soa:
            data = .soa(mname: try name(), rname: try name(), serial: try u32(), refresh: try u32(),
                        retry: try u32(), expire: try u32(), minimum: try u32())
        case RRType(15):
            data = .mx(preference: try u16(), exchange: try name())
        case .txt:
            var strings: [[UInt8]] = []
            while pos < end {
                let n = Int(try u8())
                guard pos + n <= end else { throw .badRData(type: type.rawValue, at: start) }
                strings.append(Array(try take(n)))
            }
            data = .txt(strings)
        case .hinfo:
            let c = Int(try u8()); let cpu = Array(try take(c))
            let o = Int(try u8()); let os = Array(try take(o))
            data = .hinfo(cpu: cpu, os: os)
        default:
            data = .raw(Array(try take(rdlen)))
        }
        guard pos == end else { throw .badRData(type: type.rawValue, at: start) }
        return DNSRecord(name: owner, type: type, rclass: rclass, ttl: ttl, data: data)
    }
}

extension DNSMessage {
    /// Parses a whole message. Counts must match the content; trailing bytes are ignored
    /// (some middleboxes pad). Throws `DNSParseError` for anything malformed.
    public init(parsing bytes: [UInt8]) throws(DNSParseError) {
        var r = DNSReader(bytes)
        let h = try r.header()
        // Each question needs at least 5 bytes and each record 11: reject absurd counts early
        // instead of looping over them.
        let minimum = Int(h.qdCount) * 5 + (Int(h.anCount) + Int(h.nsCount) + Int(h.arCount)) * 11
        guard minimum <= r.remaining else { throw .tooShort(at: 12) }
        var qs: [DNSQuestion] = []
        for _ in 0..<h.qdCount { qs.append(try r.question()) }
        var an: [DNSRecord] = [], ns: [DNSRecord] = [], ar: [DNSRecord] = []
        for _ in 0..<h.anCount { an.append(try r.record()) }
        for _ in 0..<h.nsCount { ns.append(try r.record()) }
        var edns: EDNS?
        for _ in 0..<h.arCount {
            let rec = try r.record()
            if rec.type == .opt {
                guard edns == nil else { throw .duplicateOPT }
                var e = EDNS(udpSize: UInt16(rec.rclass), extendedRCode: UInt8(rec.ttl >> 24),
                             version: UInt8((rec.ttl >> 16) & 0xFF), dnssecOK: rec.ttl & 0x8000 != 0)
                if case .raw(let opts) = rec.data { e.options = opts }
                edns = e
            } else {
                ar.append(rec)
            }
        }
        self.init(header: h, questions: qs, answers: an, authority: ns, additional: ar, edns: edns)
    }
}
