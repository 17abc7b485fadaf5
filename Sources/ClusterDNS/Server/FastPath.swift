extension QueryProcessor {
    /// The common case, without building messages: one A/AAAA question (optionally with a
    /// plain EDNS0 OPT) answered positively from the zone. The reply copies the query's
    /// header and question bytes (so the client's case is kept) and points every owner
    /// name at the question (0xC00C). Anything else returns nil and takes the general path.
    func fastZoneReply(_ bytes: [UInt8], overTCP: Bool) -> [UInt8]? {
        guard bytes.count >= 17, bytes[2] & 0xF8 == 0, bytes[4] == 0, bytes[5] == 1,
              bytes[6] == 0, bytes[7] == 0, bytes[8] == 0, bytes[9] == 0, bytes[10] == 0, bytes[11] <= 1 else { return nil }
        var r = DNSReader(bytes)
        r.pos = 12
        guard let name = try? r.name(), let type = try? r.u16(), let qclass = try? r.u16(),
              qclass == DNSClass.internet, type == RRType.a.rawValue || type == RRType.aaaa.rawValue else { return nil }
        let questionEnd = r.pos
        var dnssecOK = false
        var maxSize = overTCP ? 65535 : DNSLimits.classicUDPSize
        let hasOPT = bytes[11] == 1
        if hasOPT {
            guard let opt = try? r.record(), opt.type == .opt, opt.name.wire == [0], opt.ttl & 0x00FF_0000 == 0 else { return nil }
            dnssecOK = opt.ttl & 0x8000 != 0
            if !overTCP { maxSize = udpLimit(EDNS(udpSize: UInt16(opt.rclass))) }
        }
        guard let result = zone.resolve(DNSQuestion(name: name, type: RRType(type))), result.rcode == .noError,
              result.forwardTarget == nil, !result.answers.isEmpty, result.additional.isEmpty, result.authority.isEmpty else { return nil }
        var out = [UInt8]()
        out.reserveCapacity(questionEnd + result.answers.count * 28 + 11)
        out.append(contentsOf: bytes[0..<questionEnd])
        out[2] = 0x84 | (bytes[2] & 0x01)   // QR, AA, RD echoed
        out[3] = 0x80 | (bytes[3] & 0x10)   // RA, CD echoed, NOERROR
        let n = result.answers.count
        out[6] = UInt8(n >> 8); out[7] = UInt8(n & 0xFF)
        out[11] = hasOPT ? 1 : 0
        for rec in result.answers {
            out.append(0xC0); out.append(0x0C)
            out.append(0); out.append(UInt8(type))
            out.append(0); out.append(1)
            out.append(UInt8(truncatingIfNeeded: rec.ttl >> 24)); out.append(UInt8(truncatingIfNeeded: rec.ttl >> 16))
            out.append(UInt8(truncatingIfNeeded: rec.ttl >> 8)); out.append(UInt8(truncatingIfNeeded: rec.ttl))
            switch rec.data {
            case .a(let a):
                out.append(0); out.append(4)
                let v = a.value
                out.append(UInt8(v >> 24)); out.append(UInt8((v >> 16) & 0xFF)); out.append(UInt8((v >> 8) & 0xFF)); out.append(UInt8(v & 0xFF))
            case .aaaa(let a):
                out.append(0); out.append(16)
                out.append(contentsOf: a.bytes)
            default:
                return nil
            }
        }
        if hasOPT {
            let size = DNSWire.advertisedUDPSize
            out += [0, 0, 41, UInt8(size >> 8), UInt8(size & 0xFF), 0, 0, dnssecOK ? 0x80 : 0, 0, 0, 0]
        }
        guard out.count <= maxSize else { return nil }  // needs truncation: the general path does it
        counters.bump(counters.zoneAnswers)
        counters.bump(counters.noError)
        return out
    }
}
