import NIOCore

/// Server-side search path (CoreDNS `autopath`, without its `pods verified` cost: the pod's
/// namespace comes from the zone's address table). A pod with `ndots:5` and the search list
/// `<ns>.svc.<zone> svc.<zone> <zone>` asks `example.com.<ns>.svc.<zone>` first and, walking
/// the list, up to four queries later `example.com`. When that first query would be NXDOMAIN,
/// the server walks the rest of the list itself, in the client's order, and answers the first
/// query with a CNAME to the first name that exists plus that name's answer (or, for the bare
/// name, the upstream's); the client's resolver follows the CNAME in the same reply. When every
/// candidate is NXDOMAIN (or the bare name fails upstream) the first NXDOMAIN goes back
/// unchanged and the client walks on as it would have: the final answer is always the same.
extension QueryProcessor {
    func searchPath(_ query: DNSMessage, _ q: DNSQuestion, first: ZoneResult, client: SocketAddress, maxSize: Int) -> QueryAction? {
        guard let ip = ClientAddress.ip(client), let ns = zone.namespace(of: ip, replica: replica) else { return nil }
        let resolver = zone.resolver
        let firstDomain = DNSName(labels: [ns, "svc"], under: resolver.apex)
        guard let baseEnd = DNSName.suffixOffset(q.name.key, firstDomain.key), baseEnd > 0 else { return nil }
        // The name the client searched for, in its own case.
        let base = Array(q.name.wire[0..<baseEnd])
        counters.bump(counters.autopathAttempts)
        // Encoded now (cheap), counted only when it is what goes out.
        let firstReply = response(query, first).encode(maxSize: maxSize)
        func unchanged() -> QueryAction { counters.count(rcode: RCode.nxDomain.rawValue); return .reply(firstReply) }
        for domain in [DNSName(labels: ["svc"], under: resolver.apex), resolver.apex] {
            let candidate = DNSName(uncheckedWire: base + domain.wire)
            guard let r = zone.resolve(DNSQuestion(name: candidate, type: q.type), replica: replica), r.rcode != .nxDomain else { continue }
            return answer(query, q, candidate, r, fallback: firstReply, maxSize: maxSize)
        }
        // The bare name: in the zone (`a.b.svc` from another namespace is found above, but
        // `x.pod.cluster.local` style names are bare ones), else upstream.
        let bare = DNSName(uncheckedWire: base + [0])
        if let r = zone.resolve(DNSQuestion(name: bare, type: q.type), replica: replica) {
            guard r.rcode != .nxDomain else { return unchanged() }
            return answer(query, q, bare, r, fallback: firstReply, maxSize: maxSize)
        }
        guard let forwarder, !forwarder.isLoopProbe(DNSQuestion(name: bare, type: q.type)) else { return unchanged() }
        let prefix = ZoneResult(answers: [cname(q, to: bare, ttl: nil)])
        let bareQuestion = DNSQuestion(name: bare, type: q.type)
        if let hit = forwarder.cached(bareQuestion) {
            guard hit.rcode == RCode.noError.rawValue else { return unchanged() }
            counters.bump(counters.autopathAnswers)
            return .reply(compose(query, hit, prefix: withTTL(prefix, hit.answers.first?.ttl), maxSize))
        }
        guard forwarder.admit() else { return unchanged() }
        counters.bump(counters.autopathAnswers)
        return .forward(query: query, question: bareQuestion, prefix: prefix, maxSize: maxSize, fallback: firstReply)
    }

    /// The first query's answer: CNAME to `target`, then `target`'s own answer.
    private func answer(_ query: DNSMessage, _ q: DNSQuestion, _ target: DNSName, _ r: ZoneResult, fallback: [UInt8], maxSize: Int) -> QueryAction {
        counters.bump(counters.autopathAnswers)
        var chained = r
        chained.answers.insert(cname(q, to: target, ttl: r.answers.first?.ttl), at: 0)
        if let next = r.forwardTarget {
            // An ExternalName: its CNAME is in `r`; the target's records come from upstream.
            if let hit = forwarder?.cached(DNSQuestion(name: next, type: q.type)) {
                return .reply(compose(query, hit, prefix: chained, maxSize))
            }
            guard forwarder?.admit() ?? false else { counters.count(rcode: RCode.nxDomain.rawValue); return .reply(fallback) }
            return .forward(query: query, question: DNSQuestion(name: next, type: q.type), prefix: chained, maxSize: maxSize)
        }
        return .reply(finish(response(query, chained), maxSize))
    }

    private func cname(_ q: DNSQuestion, to target: DNSName, ttl: UInt32?) -> DNSRecord {
        DNSRecord(name: q.name, type: .cname, ttl: ttl ?? zone.resolver.ttl, data: .cname(target))
    }

    private func withTTL(_ r: ZoneResult, _ ttl: UInt32?) -> ZoneResult {
        guard let ttl else { return r }
        var out = r
        for i in out.answers.indices { out.answers[i].ttl = min(out.answers[i].ttl, ttl) }
        return out
    }

    func response(_ query: DNSMessage, _ result: ZoneResult) -> DNSMessage {
        var r = DNSMessage.response(to: query, rcode: result.rcode)
        r.header.authoritative = true
        r.answers = result.answers
        r.authority = result.authority
        r.additional = result.additional
        return r
    }
}
