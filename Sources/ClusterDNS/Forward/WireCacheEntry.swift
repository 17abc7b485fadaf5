/// A cached upstream answer in wire form, so a cache hit is answered like a precomputed zone
/// answer: the client's header and question, then these records with their TTLs aged in
/// place. Encoded once when stored, from a message whose question has the same length as any
/// client's (names compare case-insensitively), so compression pointers into the question
/// stay valid whatever case the client uses.
struct WireCacheEntry: Sendable {
    /// Flags byte 3 of the header without RA/CD (AD and rcode), and the section counts.
    var rcode: UInt8
    var authenticData: Bool
    var counts: [UInt8]   // bytes 6..<12: answer, authority, additional
    /// Records after the question.
    var records: [UInt8]
    /// Offsets of TTL fields in `records`, with the TTL stored.
    var ttls: [(offset: Int, ttl: UInt32)]

    init?(_ m: DNSMessage) {
        guard m.questions.count == 1, m.edns == nil, m.rcode < 16 else { return nil }
        let bytes = m.encode()
        var r = DNSReader(bytes)
        r.pos = 12
        guard (try? r.name()) != nil, (try? r.u16()) != nil, (try? r.u16()) != nil else { return nil }
        let start = r.pos
        let total = m.answers.count + m.authority.count + m.additional.count
        var ttls: [(Int, UInt32)] = []
        for _ in 0..<total {
            guard (try? r.name()) != nil, (try? r.u16()) != nil, (try? r.u16()) != nil else { return nil }
            let at = r.pos - start
            guard let ttl = try? r.u32(), let len = try? r.u16() else { return nil }
            ttls.append((at, ttl))
            r.pos += Int(len)
            guard r.pos <= bytes.count else { return nil }
        }
        guard r.pos == bytes.count else { return nil }
        rcode = UInt8(m.rcode)
        authenticData = m.header.authenticData
        counts = Array(bytes[6..<12])
        records = Array(bytes[start...])
        self.ttls = ttls
    }

    /// The records with every TTL lowered by `age` seconds.
    func aged(by age: UInt32) -> [UInt8] {
        var out = records
        guard age > 0 else { return out }
        for (offset, ttl) in ttls {
            let t = ttl > age ? ttl - age : 0
            out[offset] = UInt8(t >> 24); out[offset + 1] = UInt8((t >> 16) & 0xFF)
            out[offset + 2] = UInt8((t >> 8) & 0xFF); out[offset + 3] = UInt8(t & 0xFF)
        }
        return out
    }
}
