// Decoding rtnetlink replies and events into values. Unknown attributes are skipped; a
// message too short for its fixed header throws (never traps).
import IPAddressing

public enum RouteDecoding {
    static func family(_ f: UInt8) -> IPFamily? {
        f == Netlink.afInet ? .v4 : f == Netlink.afInet6 ? .v6 : nil
    }

    /// RTM_NEWLINK / RTM_DELLINK.
    public static func link(_ m: NetlinkMessage) throws(NetlinkError) -> Link {
        let r = ByteReader(m.payload)
        guard r.count >= 16 else { throw .malformed("parse", "link message", "ifinfomsg needs 16 bytes, have \(r.count)") }
        let index = try r.s32(4)
        let attrs = try Attributes(r.rest(from: 16))
        var kind: String?
        var vxlan: VxlanSettings?
        if let info = try attrs.nested(Netlink.iflaLinkInfo) {
            kind = info.string(Netlink.iflaInfoKind)
            if kind == "vxlan", let data = try info.nested(Netlink.iflaInfoData) {
                vxlan = VxlanSettings(vni: data.u32(Netlink.vxlanID) ?? 0, port: data.be16(Netlink.vxlanPort) ?? 0,
                                      local: data.address(Netlink.vxlanLocal) ?? data.address(Netlink.vxlanLocal6),
                                      underlayIndex: data.u32(Netlink.vxlanLink).map { Int32(bitPattern: $0) },
                                      learning: (data.u8(Netlink.vxlanLearning) ?? 0) != 0)
            }
        }
        return Link(index: index, name: attrs.string(Netlink.iflaIfname) ?? "", kind: kind,
                    mtu: attrs.u32(Netlink.iflaMTU) ?? 0,
                    mac: attrs.bytes(Netlink.iflaAddress).flatMap { MACAddress(bytes: $0) },
                    flags: try r.u32(8),
                    masterIndex: attrs.u32(Netlink.iflaMaster).map { Int32(bitPattern: $0) }.flatMap { $0 == 0 ? nil : $0 },
                    parentIndex: attrs.u32(Netlink.iflaLink).map { Int32(bitPattern: $0) },
                    operState: attrs.u8(Netlink.iflaOperState) ?? 0, vxlan: vxlan)
    }

    /// RTM_NEWADDR / RTM_DELADDR. IFA_LOCAL is the interface's own address (on point-to-point
    /// links IFA_ADDRESS is the peer), so it wins when present.
    public static func address(_ m: NetlinkMessage) throws(NetlinkError) -> InterfaceAddress {
        let r = ByteReader(m.payload)
        guard r.count >= 8 else { throw .malformed("parse", "address message", "ifaddrmsg needs 8 bytes, have \(r.count)") }
        let attrs = try Attributes(r.rest(from: 8))
        guard let a = attrs.address(Netlink.ifaLocal) ?? attrs.address(Netlink.ifaAddress) else {
            throw .malformed("parse", "address message", "no IFA_LOCAL or IFA_ADDRESS")
        }
        let length = Int(try r.u8(1))
        guard length <= a.family.bitWidth else { throw .malformed("parse", "address \(a)", "prefix length \(length)") }
        return InterfaceAddress(index: Int32(bitPattern: try r.u32(4)), prefix: IPPrefix(address: a, length: length))
    }

    /// RTM_NEWROUTE / RTM_DELROUTE. Returns nil for routes nodenet does not model (other than
    /// unicast, or families other than IPv4/IPv6).
    public static func route(_ m: NetlinkMessage) throws(NetlinkError) -> Route? {
        let r = ByteReader(m.payload)
        guard r.count >= 12 else { throw .malformed("parse", "route message", "rtmsg needs 12 bytes, have \(r.count)") }
        let type = try r.u8(7)
        guard let f = family(try r.u8(0)), type == Netlink.rtnUnicast else { return nil }
        let attrs = try Attributes(r.rest(from: 12))
        let length = Int(try r.u8(1))
        guard length <= f.bitWidth else { throw .malformed("parse", "route message", "dst_len \(length)") }
        let zero: IPAddress = f == .v4 ? .v4(IPv4Address(0)) : .v6(IPv6Address(high: 0, low: 0))
        let dst = attrs.address(Netlink.rtaDst) ?? zero
        let headerTable = UInt32(try r.u8(4))
        // IPv6 routes added without a metric get 1024 (IP6_RT_PRIO_USER); report that as "not
        // set" so a route reads back equal to the value that created it.
        let rawPriority = attrs.u32(Netlink.rtaPriority)
        let priority = f == .v6 && rawPriority == 1024 ? nil : rawPriority
        guard dst.family == f else { throw .malformed("parse", "route message", "RTA_DST of the wrong family") }
        return Route(destination: IPPrefix(address: dst, length: length), gateway: attrs.address(Netlink.rtaGateway),
                     outputIndex: attrs.u32(Netlink.rtaOif).map { Int32(bitPattern: $0) },
                     table: attrs.u32(Netlink.rtaTable) ?? headerTable, protocol: try r.u8(5),
                     scope: RouteScope(rawValue: try r.u8(6)) ?? .universe,
                     onlink: try r.u32(8) & Netlink.rtnhFOnlink != 0,
                     priority: priority, preferredSource: attrs.address(Netlink.rtaPrefsrc))
    }

    /// RTM_NEWNEIGH / RTM_DELNEIGH of family AF_INET/AF_INET6.
    public static func neighbour(_ m: NetlinkMessage) throws(NetlinkError) -> Neighbour? {
        let r = ByteReader(m.payload)
        guard r.count >= 12 else { throw .malformed("parse", "neighbour message", "ndmsg needs 12 bytes, have \(r.count)") }
        guard family(try r.u8(0)) != nil else { return nil }
        let attrs = try Attributes(r.rest(from: 12))
        guard let dst = attrs.address(Netlink.ndaDst) else { return nil }
        return Neighbour(index: try r.s32(4), address: dst, mac: attrs.bytes(Netlink.ndaLLAddr).flatMap { MACAddress(bytes: $0) },
                         state: try r.u16(8))
    }

    /// RTM_NEWNEIGH / RTM_DELNEIGH of family AF_BRIDGE.
    public static func fdb(_ m: NetlinkMessage) throws(NetlinkError) -> FDBEntry? {
        let r = ByteReader(m.payload)
        guard r.count >= 12 else { throw .malformed("parse", "fdb message", "ndmsg needs 12 bytes, have \(r.count)") }
        guard try r.u8(0) == Netlink.afBridge else { return nil }
        let attrs = try Attributes(r.rest(from: 12))
        guard let mac = attrs.bytes(Netlink.ndaLLAddr).flatMap({ MACAddress(bytes: $0) }) else { return nil }
        return FDBEntry(index: try r.s32(4), mac: mac, destination: attrs.address(Netlink.ndaDst), state: try r.u16(8),
                        isSelf: try r.u8(10) & Netlink.ntfSelf != 0)
    }
}
