import NIOCore

/// What to do with one received datagram or TCP frame.
enum QueryAction: Sendable {
    case drop
    case reply([UInt8])
    /// Needs the upstream: `question` is the client's, or an ExternalName target whose answer
    /// is appended after `prefix` (the CNAME).
    case forward(query: DNSMessage, question: DNSQuestion, prefix: ZoneResult?, maxSize: Int, fallback: [UInt8]? = nil)
}

/// Turns query bytes into response bytes. The synchronous part (parsing, zone answers,
/// errors) runs on the event loop; only upstream work is asynchronous.
final class QueryProcessor: Sendable {
    let zone: ClusterZone
    let forwarder: Forwarder?
    let counters: DNSCounters
    let ttl: UInt32
    let maxUDPResponseSize: Int
    /// Which zone replica this processor reads: the one of the event loop it runs on.
    let replica: Int
    /// Who may ask (this shard's copy; see `ClientACL`).
    let acl: ClientACL
    let autopath: Bool

    init(zone: ClusterZone, forwarder: Forwarder?, counters: DNSCounters, configuration: DNSConfiguration, replica: Int = 0,
         acl: ClientACL? = nil) {
        self.zone = zone
        self.replica = replica
        self.acl = acl ?? ClientACL(configuration.allowedClients)
        autopath = configuration.autopath
        self.forwarder = forwarder
        self.counters = counters
        ttl = configuration.ttl
        maxUDPResponseSize = max(configuration.maxUDPResponseSize, DNSLimits.classicUDPSize)
    }

    /// Counts the request (metrics) and returns its type index for the duration histogram.
    func count(_ bytes: [UInt8], overTCP: Bool, client: SocketAddress?) -> Int {
        var v6 = false
        if case .v6? = client { v6 = true }
        return counters.countType(bytes, tcp: overTCP, v6: v6)
    }

    /// `client`: the sender (nil in unit tests: allowed when the list is empty, no autopath).
    func handle(_ bytes: [UInt8], overTCP: Bool, client: SocketAddress? = nil, allowFastPath: Bool = true) -> QueryAction {
        counters.bump(counters.queries)
        if overTCP { counters.bump(counters.tcpQueries) } else { counters.bump(counters.udpQueries) }
        // Too short for a header, or a response: never answer (no reflection of junk).
        guard bytes.count >= 12, bytes[2] & 0x80 == 0 else { counters.bump(counters.dropped); return .drop }
        guard acl.allows(client) else { return .reply(refuse(bytes)) }
        if allowFastPath, let fast = fastZoneReply(bytes, overTCP: overTCP, autopath: autopath && client != nil) { return .reply(fast) }
        let query: DNSMessage
        do { query = try DNSMessage(parsing: bytes) } catch {
            return .reply(formErr(bytes))
        }
        let maxSize = overTCP ? 65535 : udpLimit(query.edns)
        guard query.header.opcode == 0 else { return .reply(finish(DNSMessage.response(to: query, rcode: .notImp), maxSize)) }
        guard query.questions.count == 1, let q = query.questions.first, q.type != .opt else {
            return .reply(finish(DNSMessage.response(to: query, rcode: .formErr), maxSize))
        }
        if let e = query.edns, e.version > 0 {
            var r = DNSMessage.response(to: query, rcode: .badVers)
            r.questions = []
            return .reply(finish(r, maxSize))
        }
        guard q.qclass == DNSClass.internet else { return .reply(finish(DNSMessage.response(to: query, rcode: .refused), maxSize)) }
        switch q.type {
        case .axfr, .ixfr:
            return .reply(finish(DNSMessage.response(to: query, rcode: .refused), maxSize))
        case .any:
            // RFC 8482: one small synthesized record instead of everything (no amplification).
            var r = DNSMessage.response(to: query, rcode: .noError)
            r.answers = [DNSRecord(name: q.name, type: .hinfo, ttl: ttl, data: .hinfo(cpu: Array("RFC8482".utf8), os: []))]
            return .reply(finish(r, maxSize))
        default: break
        }
        if let result = zone.resolve(q, replica: replica) {
            counters.bump(counters.zoneAnswers)
            if autopath, result.rcode == .nxDomain, let client, let action = searchPath(query, q, first: result, client: client, maxSize: maxSize) {
                return action
            }
            if let target = result.forwardTarget {
                if let hit = forwarder?.cached(DNSQuestion(name: target, type: q.type)) {
                    return .reply(compose(query, hit, prefix: result, maxSize))
                }
                guard forwarder?.admit() ?? true else { return .reply(finish(DNSMessage.response(to: query, rcode: .refused), maxSize)) }
                return .forward(query: query, question: DNSQuestion(name: target, type: q.type), prefix: result, maxSize: maxSize)
            }
            var r = DNSMessage.response(to: query, rcode: result.rcode)
            r.header.authoritative = true
            r.answers = result.answers
            r.authority = result.authority
            r.additional = result.additional
            return .reply(finish(r, maxSize))
        }
        if let f = forwarder, f.isLoopProbe(q) {
            return .reply(finish(DNSMessage.response(to: query, rcode: .servFail), maxSize))
        }
        if let hit = forwarder?.cached(q) { return .reply(compose(query, hit, prefix: nil, maxSize)) }
        guard forwarder?.admit() ?? true else { return .reply(finish(DNSMessage.response(to: query, rcode: .refused), maxSize)) }
        return .forward(query: query, question: q, prefix: nil, maxSize: maxSize)
    }

    /// Completes a `.forward` action. With a `fallback` (autopath's first answer), an upstream
    /// answer other than NOERROR gives the fallback instead: the client walks on by itself.
    func forward(query: DNSMessage, question: DNSQuestion, prefix: ZoneResult?, maxSize: Int, fallback: [UInt8]? = nil) async -> [UInt8] {
        defer { forwarder?.release() }
        guard let upstream = await forwarder?.resolve(question) else {
            if let fallback { counters.count(rcode: UInt16(fallback[3] & 0x0F)); return fallback }
            return finish(DNSMessage.response(to: query, rcode: .servFail), maxSize)
        }
        if let fallback, upstream.rcode != RCode.noError.rawValue { counters.count(rcode: UInt16(fallback[3] & 0x0F)); return fallback }
        return compose(query, upstream, prefix: prefix, maxSize)
    }

    /// The client's reply from an upstream answer, after the zone's CNAME when there is one.
    func compose(_ query: DNSMessage, _ upstream: DNSMessage, prefix: ZoneResult?, _ maxSize: Int) -> [UInt8] {
        let code = RCode(rawValue: upstream.rcode) ?? .servFail
        var r = DNSMessage.response(to: query, rcode: code)
        r.header.authenticData = upstream.header.authenticData
        // An upstream answer that was itself cut (TCP failed too) stays marked as such; one too
        // big for this client is cut by `encode`, whole records and TC, like a zone answer.
        r.header.truncated = upstream.header.truncated
        if let prefix {
            r.header.authoritative = true
            r.answers = prefix.answers + upstream.answers
            r.authority = upstream.answers.isEmpty ? upstream.authority : []
        } else {
            r.answers = upstream.answers
            r.authority = upstream.authority
            r.additional = upstream.additional
        }
        return finish(r, maxSize)
    }

    /// The client's UDP limit: 512 without EDNS0, else what it advertises within our cap.
    func udpLimit(_ e: EDNS?) -> Int {
        guard let e else { return DNSLimits.classicUDPSize }
        return min(max(Int(e.udpSize), DNSLimits.classicUDPSize), maxUDPResponseSize)
    }

    func finish(_ m: DNSMessage, _ maxSize: Int) -> [UInt8] {
        let bytes = m.encode(maxSize: maxSize)
        counters.count(rcode: m.rcode)
        if bytes[2] & 0x02 != 0 { counters.bump(counters.truncated) }
        return bytes
    }

    /// REFUSED for a client outside the allow list: header and question only, so never
    /// bigger than what was sent (no amplification, whatever the question).
    private func refuse(_ query: [UInt8]) -> [UInt8] {
        counters.bump(counters.refusedClients)
        counters.count(rcode: RCode.refused.rawValue)
        var out = ResponseRateLimiter.questionOnly(query)
        out[2] = 0x80 | (query[2] & 0x79)  // QR, opcode, RD
        out[3] = UInt8(RCode.refused.rawValue)
        return out
    }

    /// FORMERR for a message we could not parse: the id and opcode echoed, nothing else.
    private func formErr(_ query: [UInt8]) -> [UInt8] {
        counters.bump(counters.formErr)
        var out = [UInt8](repeating: 0, count: 12)
        out[0] = query[0]; out[1] = query[1]
        out[2] = 0x80 | (query[2] & 0x79)  // QR, opcode, RD
        out[3] = UInt8(RCode.formErr.rawValue)
        return out
    }
}
