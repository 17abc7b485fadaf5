import CNetlink
import IPAddressing
import Netlink

/// Deletes conntrack entries matching `ConntrackFilter`s over ctnetlink: one dump of the
/// family's table, matching in user space (UDP, original destination and port, reply
/// source), then one IPCTNL_MSG_CT_DELETE per match carrying the original tuple as dumped.
/// An entry that vanished in between (ENOENT) is not an error.
struct ConntrackDeleter {
    let session: NetlinkSession

    private static let subsystem = UInt16(NFNL_SUBSYS_CTNETLINK)
    private static func a(_ t: some RawRepresentable<UInt32>) -> UInt16 { UInt16(t.rawValue) }

    /// One dumped entry, reduced to what filters look at.
    struct Entry {
        var tuple: ArraySlice<UInt8>
        var protocolNumber: UInt8
        var originalDestination: IPAddress?
        var originalDestinationPort: UInt16?
        var replySource: IPAddress?
    }

    @discardableResult
    func delete(_ filters: [ConntrackFilter]) throws -> Int {
        var deleted = 0
        for family in [IPFamily.v4, .v6] {
            let mine = ConntrackFilterIndex(filters.filter { $0.family == family })
            guard !mine.isEmpty else { continue }
            let nfFamily = family == .v4 ? Netlink.afInet : Netlink.afInet6
            let dump = NfnetlinkMessages.builder(subsystem: Self.subsystem, message: UInt16(IPCTNL_MSG_CT_GET.rawValue), family: nfFamily,
                                                 flags: Netlink.fDump)
            let messages = try session.dump(NetlinkRequest(bytes: dump.finish(), operation: "list conntrack", object: family == .v4 ? "ipv4" : "ipv6"))
            var requests: [NetlinkRequest] = []
            for m in messages where m.type == Self.subsystem << 8 | UInt16(IPCTNL_MSG_CT_NEW.rawValue) {
                guard let e = try Self.entry(m), e.protocolNumber == 17,
                      mine.matches(originalDestination: e.originalDestination, port: e.originalDestinationPort, replySource: e.replySource)
                else { continue }
                var b = NfnetlinkMessages.builder(subsystem: Self.subsystem, message: UInt16(IPCTNL_MSG_CT_DELETE.rawValue), family: nfFamily)
                b.attribute(Self.a(CTA_TUPLE_ORIG) | Netlink.nlaNested, bytes: e.tuple)
                requests.append(NetlinkRequest(bytes: b.finish(), operation: "delete conntrack entry",
                                               object: "udp dst \(e.originalDestination?.description ?? "?"):\(e.originalDestinationPort ?? 0)"))
            }
            guard !requests.isEmpty else { continue }
            let result = try session.batch(requests)
            for (_, e) in result.failures where !e.isNotFound { throw e }
            deleted += requests.count - result.failures.count
        }
        return deleted
    }

    static func entry(_ m: NetlinkMessage) throws(NetlinkError) -> Entry? {
        guard m.payload.count >= 4 else { return nil }
        let attrs = try Attributes(m.payload.dropFirst(4))
        guard let orig = attrs.bytes(a(CTA_TUPLE_ORIG)) else { return nil }
        let o = try tuple(orig), r = try attrs.bytes(a(CTA_TUPLE_REPLY)).map(tuple)
        return Entry(tuple: orig, protocolNumber: o.proto, originalDestination: o.destination, originalDestinationPort: o.destinationPort,
                     replySource: r?.source)
    }

    static func tuple(_ bytes: ArraySlice<UInt8>) throws(NetlinkError) -> (source: IPAddress?, destination: IPAddress?, proto: UInt8, destinationPort: UInt16?) {
        let t = try Attributes(bytes)
        var source: IPAddress?, destination: IPAddress?, proto: UInt8 = 0, port: UInt16?
        if let ip = t.bytes(a(CTA_TUPLE_IP)) {
            let i = try Attributes(ip)
            source = (i.bytes(a(CTA_IP_V4_SRC)) ?? i.bytes(a(CTA_IP_V6_SRC))).flatMap { IPAddress(bytes: $0) }
            destination = (i.bytes(a(CTA_IP_V4_DST)) ?? i.bytes(a(CTA_IP_V6_DST))).flatMap { IPAddress(bytes: $0) }
        }
        if let p = t.bytes(a(CTA_TUPLE_PROTO)) {
            let pa = try Attributes(p)
            proto = pa.u8(a(CTA_PROTO_NUM)) ?? 0
            port = pa.be16(a(CTA_PROTO_DST_PORT))
        }
        return (source, destination, proto, port)
    }
}
