extension QueryProcessor {
    /// The common cases, without building messages: one question (optionally with a plain
    /// EDNS0 OPT) answered from the zone with A/AAAA records, or negatively (NXDOMAIN or
    /// NODATA with the SOA). The reply copies the query's header and question bytes (so the
    /// client's case is kept) and points owner names into the question (0xC00C, or the
    /// apex suffix for the SOA). Anything else returns nil and takes the general path.
    /// `autopath`: NXDOMAIN answers are left to the general path (they may be a search-list query).
    func fastZoneReply(_ bytes: [UInt8], overTCP: Bool, autopath: Bool = false) -> [UInt8]? {
        guard bytes.count >= 17, bytes[2] & 0xF8 == 0, bytes[4] == 0, bytes[5] == 1,
              bytes[6] == 0, bytes[7] == 0, bytes[8] == 0, bytes[9] == 0, bytes[10] == 0, bytes[11] <= 1 else { return nil }
        if let wire = wireReply(bytes, overTCP: overTCP) { return wire }
        var r = DNSReader(bytes)
        r.pos = 12
        guard let name = try? r.name(), let type = try? r.u16(), let qclass = try? r.u16(),
              qclass == DNSClass.internet, ![RRType.any, .axfr, .ixfr, .opt].contains(RRType(type)) else { return nil }
        let questionEnd = r.pos
        var dnssecOK = false
        var maxSize = overTCP ? 65535 : DNSLimits.classicUDPSize
        let hasOPT = bytes[11] == 1
        if hasOPT {
            guard let opt = try? r.record(), opt.type == .opt, opt.name.wire == [0], opt.ttl & 0x00FF_0000 == 0 else { return nil }
            dnssecOK = opt.ttl & 0x8000 != 0
            if !overTCP { maxSize = udpLimit(EDNS(udpSize: UInt16(opt.rclass))) }
        }
        guard let result = zone.resolve(DNSQuestion(name: name, type: RRType(type)), replica: replica), result.rcode == .noError || result.rcode == .nxDomain,
              result.forwardTarget == nil, result.additional.isEmpty, !(autopath && result.rcode == .nxDomain), result.authority.count == (result.answers.isEmpty ? 1 : 0) else { return nil }
        var out = [UInt8]()
        out.reserveCapacity(questionEnd + result.answers.count * 28 + 11)
        out.append(contentsOf: bytes[0..<questionEnd])
        out[2] = 0x84 | (bytes[2] & 0x01)   // QR, AA, RD echoed
        out[3] = 0x80 | (bytes[3] & 0x10) | UInt8(result.rcode.rawValue)   // RA, CD echoed, rcode
        let n = result.answers.count
        out[6] = UInt8(n >> 8); out[7] = UInt8(n & 0xFF)
        out[9] = UInt8(result.authority.count)
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
        if let soa = result.authority.first {
            guard case .soa(_, _, let serial, let refresh, let retry, let expire, let minimum) = soa.data,
                  let apexAt = DNSName.suffixOffset(name.key, zone.resolver.apexKey) else { return nil }
            // Owner: the apex, which is a suffix of the question name.
            let apex: [UInt8] = [0xC0 | UInt8((12 + apexAt) >> 8), UInt8((12 + apexAt) & 0xFF)]
            out += apex
            out += [0, 6, 0, 1]
            appendU32(&out, soa.ttl)
            let rdata: [UInt8] = [2, 110, 115, 3, 100, 110, 115] + apex + [10] + Array("hostmaster".utf8) + apex
            let rdlen = rdata.count + 20
            out += [UInt8(rdlen >> 8), UInt8(rdlen & 0xFF)]
            out += rdata
            for v in [serial, refresh, retry, expire, minimum] { appendU32(&out, v) }
        }
        if hasOPT {
            let size = DNSWire.advertisedUDPSize
            out += [0, 0, 41, UInt8(size >> 8), UInt8(size & 0xFF), 0, 0, dnssecOK ? 0x80 : 0, 0, 0, 0]
        }
        guard out.count <= maxSize else { return nil }  // needs truncation: the general path does it
        counters.bump(counters.zoneAnswers)
        counters.count(rcode: result.rcode.rawValue)
        return out
    }
}

extension QueryProcessor {
    /// A service name's A/AAAA answer from its precomputed wire form (`WireAnswers`): the
    /// question's bytes are scanned in place (no name object), looked up once, and the reply
    /// is the query's header and question plus the stored records. nil: not such a query.
    /// The caller checked the header (one question, no answers, at most one additional).
    func wireReply(_ bytes: [UInt8], overTCP: Bool) -> [UInt8]? {
        var i = 12
        while i < bytes.count, bytes[i] != 0 {
            guard bytes[i] & 0xC0 == 0 else { return nil }
            i += 1 + Int(bytes[i])
        }
        let nameEnd = i + 1
        let questionEnd = nameEnd + 4
        guard questionEnd <= bytes.count, nameEnd - 12 <= DNSLimits.maxNameLength, bytes[nameEnd + 2] == 0, bytes[nameEnd + 3] == 1 else { return nil }
        let type = UInt16(bytes[nameEnd]) << 8 | UInt16(bytes[nameEnd + 1])
        let zoneType = type == 1 || type == 28
        // Forwarded names answered from the cache: anything but the zone's own names, reverse
        // names (the zone answers some), the meta types, and the forwarder's loop probe.
        let cacheType = forwarder != nil && ![RRType.ptr, .any, .axfr, .ixfr, .opt].contains(RRType(type))
        guard zoneType || cacheType else { return nil }
        let hasOPT = bytes[11] == 1
        var dnssecOK = false
        var maxSize = overTCP ? 65535 : DNSLimits.classicUDPSize
        if hasOPT {
            var r = DNSReader(bytes)
            r.pos = questionEnd
            guard let opt = try? r.record(), r.pos == bytes.count, opt.type == .opt, opt.name.wire == [0], opt.ttl & 0x00FF_0000 == 0 else { return nil }
            dnssecOK = opt.ttl & 0x8000 != 0
            if !overTCP { maxSize = udpLimit(EDNS(udpSize: UInt16(opt.rclass))) }
        } else {
            guard questionEnd == bytes.count else { return nil }
        }
        var key = Array(bytes[12..<nameEnd])
        for k in key.indices where key[k] >= 65 && key[k] <= 90 { key[k] |= 0x20 }
        if cacheType, DNSName.suffixOffset(key, zone.resolver.apexKey) == nil {
            return cacheReply(bytes, key: key, type: type, questionEnd: questionEnd, hasOPT: hasOPT, dnssecOK: dnssecOK, maxSize: maxSize)
        }
        guard zoneType, let answer = zone.wireAnswer(WireAnswers.Key(name: key, type: type), replica: replica) else { return nil }
        var out = [UInt8]()
        out.reserveCapacity(questionEnd + answer.records.count + 11)
        out.append(contentsOf: bytes[0..<questionEnd])
        out[2] = 0x84 | (bytes[2] & 0x01)   // QR, AA, RD echoed
        out[3] = 0x80 | (bytes[3] & 0x10)   // RA, CD echoed, NOERROR
        out[6] = UInt8(answer.count >> 8); out[7] = UInt8(answer.count & 0xFF)
        out[11] = hasOPT ? 1 : 0
        out.append(contentsOf: answer.records)
        if hasOPT {
            let size = DNSWire.advertisedUDPSize
            out += [0, 0, 41, UInt8(size >> 8), UInt8(size & 0xFF), 0, 0, dnssecOK ? 0x80 : 0, 0, 0, 0]
        }
        guard out.count <= maxSize else { return nil }
        counters.bump(counters.zoneAnswers)
        counters.bump(counters.noError)
        return out
    }
}

extension QueryProcessor {
    /// A forwarded name's answer from the cache's wire form: header (QR, RD and CD echoed, RA,
    /// the cached AD and rcode), the client's question, the cached records with TTLs aged.
    func cacheReply(_ bytes: [UInt8], key: [UInt8], type: UInt16, questionEnd: Int, hasOPT: Bool, dnssecOK: Bool, maxSize: Int) -> [UInt8]? {
        guard let forwarder else { return nil }
        let cacheKey = CacheKey(name: key, type: type, qclass: DNSClass.internet)
        guard let (entry, records) = forwarder.cachedWire(cacheKey, question: DNSQuestion(name: DNSName(uncheckedWire: Array(bytes[12..<(questionEnd - 4)])), type: RRType(type))) else {
            return nil
        }
        var out = [UInt8]()
        out.reserveCapacity(questionEnd + records.count + 11)
        out.append(contentsOf: bytes[0..<questionEnd])
        out[2] = 0x80 | (bytes[2] & 0x01)                                              // QR, RD echoed
        out[3] = 0x80 | (entry.authenticData ? 0x20 : 0) | (bytes[3] & 0x10) | entry.rcode   // RA, AD, CD echoed
        for k in 0..<6 { out[6 + k] = entry.counts[k] }
        if hasOPT { out[11] &+= 1; if out[11] == 0 { out[10] &+= 1 } }
        out.append(contentsOf: records)
        if hasOPT {
            let size = DNSWire.advertisedUDPSize
            out += [0, 0, 41, UInt8(size >> 8), UInt8(size & 0xFF), 0, 0, dnssecOK ? 0x80 : 0, 0, 0, 0]
        }
        guard out.count <= maxSize else { return nil }  // needs truncation: the general path does it
        counters.count(rcode: UInt16(entry.rcode))
        return out
    }
}

private func appendU32(_ out: inout [UInt8], _ v: UInt32) {
    out.append(UInt8(v >> 24)); out.append(UInt8((v >> 16) & 0xFF)); out.append(UInt8((v >> 8) & 0xFF)); out.append(UInt8(v & 0xFF))
}
