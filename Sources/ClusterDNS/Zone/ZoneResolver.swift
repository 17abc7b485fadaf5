import ClusterState
import IPAddressing

/// The outcome of asking the cluster zone.
struct ZoneResult: Sendable, Equatable {
    var rcode: RCode = .noError
    var answers: [DNSRecord] = []
    var authority: [DNSRecord] = []
    var additional: [DNSRecord] = []
    /// An ExternalName target outside the zone: the server resolves it upstream and appends.
    var forwardTarget: DNSName?
}

/// Answers questions from `ZoneData` the way CoreDNS's kubernetes plugin does (see
/// shared/reference/dns.md §2-3). Pure: no clocks, no I/O. A class so that every event-loop
/// thread reads the same immutable fields in place instead of copying (and retaining) them
/// per query: shared reference counts bounce between cores.
final class ZoneResolver: Sendable {
    let apex: DNSName
    let apexKey: [UInt8]
    let ttl: UInt32
    let podMode: PodRecordMode
    let nameserverAddresses: [IPAddress]
    let nsName: DNSName
    let hostmaster: DNSName

    static let schemaVersion: [UInt8] = Array("1.1.0".utf8)
    static let versionTTL: UInt32 = 28800

    init(configuration c: DNSConfiguration) {
        apex = DNSName(uncheckedWire: (DNSName(c.clusterDomain) ?? DNSName("cluster.local")!).key)
        apexKey = apex.wire
        ttl = c.ttl
        podMode = c.podMode
        nameserverAddresses = c.nameserverAddresses
        nsName = DNSName(labels: ["ns", "dns"], under: apex)
        hostmaster = DNSName(labels: ["hostmaster"], under: apex)
    }

    func soa(serial: UInt32) -> DNSRecord {
        DNSRecord(name: apex, type: .soa, ttl: min(ttl, 300),
                  data: .soa(mname: nsName, rname: hostmaster, serial: serial, refresh: 7200, retry: 1800, expire: 86400, minimum: ttl))
    }

    /// Labels of `key` in front of the apex, rightmost first; nil when not under the apex.
    func relativeLabels(_ key: [UInt8]) -> [ArraySlice<UInt8>]? {
        guard let end = DNSName.suffixOffset(key, apexKey) else { return nil }
        var labels: [ArraySlice<UInt8>] = []
        var i = 0
        while i < end { let n = Int(key[i]); labels.append(key[(i + 1)...(i + n)]); i += 1 + n }
        return labels.reversed()
    }

    /// nil: the name is not in the cluster zone nor a known reverse address (forward it).
    func resolve(_ q: DNSQuestion, in data: ZoneData) -> ZoneResult? {
        let key = q.name.key
        guard let rel = relativeLabels(key) else {
            return q.type == .ptr ? reverse(q, data) : nil
        }
        var result = lookup(q, rel, data, depth: 0)
        if result.answers.isEmpty || result.rcode != .noError { result.authority = [soa(serial: data.serial)] }
        return result
    }

    private func nodata() -> ZoneResult { ZoneResult() }
    private func nxdomain() -> ZoneResult { ZoneResult(rcode: .nxDomain) }

    private func lookup(_ q: DNSQuestion, _ rel: [ArraySlice<UInt8>], _ data: ZoneData, depth: Int) -> ZoneResult {
        guard let last = rel.first else { return apexAnswer(q, serial: data.serial) }
        if rel.count == 1, last.elementsEqual("dns-version".utf8) {
            guard q.type == .txt else { return nodata() }
            return ZoneResult(answers: [DNSRecord(name: q.name, type: .txt, ttl: Self.versionTTL, data: .txt([Self.schemaVersion]))])
        }
        if last.elementsEqual("svc".utf8) { return serviceAnswer(q, rel, data, depth: depth) }
        if last.elementsEqual("pod".utf8) { return podAnswer(q, rel, data) }
        return nxdomain()
    }

    /// The apex SOA carries the zone's one serial, the same as negative answers' SOA (CoreDNS).
    private func apexAnswer(_ q: DNSQuestion, serial: UInt32) -> ZoneResult {
        switch q.type {
        case .soa:
            var r = soa(serial: serial)
            r.name = q.name
            return ZoneResult(answers: [r])
        case .ns:
            let glue = nameserverAddresses.map { addressRecord(nsName, $0) }
            return ZoneResult(answers: [DNSRecord(name: q.name, type: .ns, ttl: ttl, data: .ns(nsName))], additional: glue)
        default: return nodata()
        }
    }

    private func addressRecord(_ owner: DNSName, _ a: IPAddress) -> DNSRecord {
        switch a {
        case .v4(let v): DNSRecord(name: owner, type: .a, ttl: ttl, data: .a(v))
        case .v6(let v): DNSRecord(name: owner, type: .aaaa, ttl: ttl, data: .aaaa(v))
        }
    }

    /// A or AAAA records for the addresses of the asked family; NODATA for other types.
    private func addressAnswer(_ q: DNSQuestion, _ addresses: [IPAddress]) -> ZoneResult {
        let want: IPFamily
        switch q.type {
        case .a: want = .v4
        case .aaaa: want = .v6
        default: return nodata()
        }
        var answers: [DNSRecord] = []
        answers.reserveCapacity(addresses.count)
        for a in addresses where a.family == want { answers.append(addressRecord(q.name, a)) }
        return ZoneResult(answers: answers)
    }

    private func serviceName(_ id: NamespacedName) -> DNSName {
        DNSName(labels: [id.name, id.namespace, "svc"], under: apex)
    }

    private func serviceAnswer(_ q: DNSQuestion, _ rel: [ArraySlice<UInt8>], _ data: ZoneData, depth: Int) -> ZoneResult {
        switch rel.count {
        case 1: return nodata()
        case 2: return data.namespaceExists(String(decoding: rel[1], as: UTF8.self)) ? nodata() : nxdomain()
        case 3...5: break
        default: return nxdomain()
        }
        let id = NamespacedName(String(decoding: rel[1], as: UTF8.self), String(decoding: rel[2], as: UTF8.self))
        guard let entry = data.services[id], entry.nameExists else { return nxdomain() }
        if case .externalName(let target) = entry.kind {
            guard rel.count == 3 else { return nxdomain() }
            return externalNameAnswer(q, target, data, depth: depth)
        }
        switch rel.count {
        case 3:
            if q.type == .srv { return srvAnswer(q, serviceName(id), entry, entry.ports) }
            return addressAnswer(q, entry.addresses)
        case 4:
            let label = String(decoding: rel[3], as: UTF8.self)
            let addrs = entry.endpoints.filter { $0.label == label }.map(\.address)
            return addrs.isEmpty ? nxdomain() : addressAnswer(q, addrs)
        default:
            let proto = String(decoding: rel[3], as: UTF8.self), name = String(decoding: rel[4], as: UTF8.self)
            let ports = entry.ports.filter { $0.proto == proto && $0.name == name }
            guard !ports.isEmpty else { return nxdomain() }
            return q.type == .srv ? srvAnswer(q, serviceName(id), entry, ports) : nodata()
        }
    }

    /// SRV per named port: the service itself (ClusterIP) or each endpoint (headless), with
    /// the targets' addresses in the additional section. Weights split 100 evenly as CoreDNS does.
    private func srvAnswer(_ q: DNSQuestion, _ owner: DNSName, _ entry: ServiceEntry, _ ports: [ServiceEntry.NamedPort]) -> ZoneResult {
        var targets: [(DNSName, [IPAddress])] = []
        var combos = 0
        if case .clusterIP(let ips) = entry.kind {
            targets = [(owner, ips)]
            combos = ips.count * ports.count
        } else {
            var byLabel: [String: Int] = [:]
            for ep in entry.endpoints {
                combos += ports.count
                if let i = byLabel[ep.label] { targets[i].1.append(ep.address); continue }
                byLabel[ep.label] = targets.count
                targets.append((DNSName(labels: [ep.label], under: owner), [ep.address]))
            }
        }
        let weight = UInt16(100 / max(combos, 1))
        var result = ZoneResult()
        for p in ports {
            for (t, _) in targets {
                result.answers.append(DNSRecord(name: q.name, type: .srv, ttl: ttl, data: .srv(priority: 0, weight: weight, port: p.port, target: t)))
            }
        }
        if !ports.isEmpty {
            for (t, addrs) in targets { result.additional += addrs.map { addressRecord(t, $0) } }
        }
        return result
    }

    private func externalNameAnswer(_ q: DNSQuestion, _ target: DNSName, _ data: ZoneData, depth: Int) -> ZoneResult {
        let cname = DNSRecord(name: q.name, type: .cname, ttl: ttl, data: .cname(target))
        guard q.type != .cname else { return ZoneResult(answers: [cname]) }
        if let rel = relativeLabels(target.key) {
            guard depth < 8 else { return ZoneResult(rcode: .servFail) }
            var inner = lookup(DNSQuestion(name: target, type: q.type), rel, data, depth: depth + 1)
            inner.answers.insert(cname, at: 0)
            // The CNAME exists even when its target does not: NOERROR with the chain so far.
            if inner.rcode == .nxDomain { inner.rcode = .noError }
            return inner
        }
        return ZoneResult(answers: [cname], forwardTarget: target)
    }

    private func podAnswer(_ q: DNSQuestion, _ rel: [ArraySlice<UInt8>], _ data: ZoneData) -> ZoneResult {
        if rel.count == 1 { return nodata() }
        guard podMode != .disabled, rel.count <= 3 else { return nxdomain() }
        let ns = String(decoding: rel[1], as: UTF8.self)
        if rel.count == 2 {
            return podMode == .insecure || data.podsPerNamespace[ns] != nil ? nodata() : nxdomain()
        }
        guard let address = Self.undash(rel[2]) else { return nxdomain() }
        if podMode == .verified, data.podAddresses[PodAddressKey(namespace: ns, address: address)] == nil { return nxdomain() }
        return addressAnswer(q, [address])
    }

    /// "10-240-0-1" or "fd00--1" back to an address.
    static func undash(_ label: ArraySlice<UInt8>) -> IPAddress? {
        let text = String(decoding: label, as: UTF8.self)
        if let v4 = IPv4Address(text.replacingDashes(with: ".")) { return .v4(v4) }
        if let v6 = IPv6Address(text.replacingDashes(with: ":")) { return .v6(v6) }
        return nil
    }

    // MARK: reverse

    private func reverse(_ q: DNSQuestion, _ data: ZoneData) -> ZoneResult? {
        guard let address = Self.reverseAddress(q.name.key), let targets = data.ptr[address] else { return nil }
        let answers = targets.map { t in
            let svc = serviceName(t.service)
            let target = t.label.map { DNSName(labels: [$0], under: svc) } ?? svc
            return DNSRecord(name: q.name, type: .ptr, ttl: ttl, data: .ptr(target))
        }
        return ZoneResult(answers: answers)
    }

    /// The address a full `in-addr.arpa` / `ip6.arpa` name stands for; nil for partial names.
    static func reverseAddress(_ key: [UInt8]) -> IPAddress? {
        var labels: [ArraySlice<UInt8>] = []
        var i = 0
        while i < key.count, key[i] != 0 {
            let n = Int(key[i]); labels.append(key[(i + 1)...(i + n)]); i += 1 + n
            if labels.count > 34 { return nil }
        }
        if labels.count == 6, labels[4].elementsEqual("in-addr".utf8), labels[5].elementsEqual("arpa".utf8) {
            var v: UInt32 = 0
            for l in labels[0..<4].reversed() {
                guard let o = UInt8(String(decoding: l, as: UTF8.self)), l.count == String(o).utf8.count else { return nil }
                v = v << 8 | UInt32(o)
            }
            return .v4(IPv4Address(v))
        }
        if labels.count == 34, labels[32].elementsEqual("ip6".utf8), labels[33].elementsEqual("arpa".utf8) {
            var hi: UInt64 = 0, lo: UInt64 = 0
            for (n, l) in labels[0..<32].reversed().enumerated() {
                guard l.count == 1, let d = UInt64(String(decoding: l, as: UTF8.self), radix: 16) else { return nil }
                if n < 16 { hi = hi << 4 | d } else { lo = lo << 4 | d }
            }
            return .v6(IPv6Address(high: hi, low: lo))
        }
        return nil
    }
}

extension String {
    func replacingDashes(with c: Character) -> String { String(map { $0 == "-" ? c : $0 }) }
}
