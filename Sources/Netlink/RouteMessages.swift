// Encoding of every rtnetlink request nodenet sends. Pure functions from values to bytes,
// so each message kind has golden-byte tests that need no privileges.
import IPAddressing

/// Builders for rtnetlink requests. Each returns a `NetlinkRequest` with sequence 0; the
/// session numbers it when it is sent.
public enum RouteMessages {
    // MARK: fixed headers

    /// struct ifinfomsg: family, pad, type, index, flags, change (16 bytes).
    static func ifinfomsg(_ b: inout MessageBuilder, family: UInt8 = Netlink.afUnspec, index: Int32 = 0, flags: UInt32 = 0, change: UInt32 = 0) {
        b.appendInteger(family); b.appendInteger(UInt8(0)); b.appendInteger(UInt16(0))
        b.appendInteger(index); b.appendInteger(flags); b.appendInteger(change)
    }

    /// struct ifaddrmsg: family, prefixlen, flags, scope, index (8 bytes).
    static func ifaddrmsg(_ b: inout MessageBuilder, family: UInt8, prefixLength: UInt8 = 0, index: Int32 = 0) {
        b.appendInteger(family); b.appendInteger(prefixLength); b.appendInteger(UInt8(0)); b.appendInteger(UInt8(0))
        b.appendInteger(UInt32(bitPattern: index))
    }

    /// struct rtmsg: family, dst_len, src_len, tos, table, protocol, scope, type, flags (12 bytes).
    static func rtmsg(_ b: inout MessageBuilder, family: UInt8, dstLength: UInt8 = 0, table: UInt8 = 0, protocol proto: UInt8 = 0,
                      scope: UInt8 = 0, type: UInt8 = 0, flags: UInt32 = 0) {
        for v in [family, dstLength, 0, 0, table, proto, scope, type] { b.appendInteger(v) }
        b.appendInteger(flags)
    }

    /// struct ndmsg: family, pad1, pad2, ifindex, state, flags, type (12 bytes).
    static func ndmsg(_ b: inout MessageBuilder, family: UInt8, index: Int32 = 0, state: UInt16 = 0, flags: UInt8 = 0) {
        b.appendInteger(family); b.appendInteger(UInt8(0)); b.appendInteger(UInt16(0))
        b.appendInteger(index); b.appendInteger(state); b.appendInteger(flags); b.appendInteger(UInt8(0))
    }

    static func family(_ f: IPFamily) -> UInt8 { f == .v4 ? Netlink.afInet : Netlink.afInet6 }

    // MARK: links

    static let createFlags = Netlink.fCreate | Netlink.fExcl

    /// RTM_NEWLINK creating a link of `kind`; `data` fills IFLA_INFO_DATA when given.
    static func newLink(kind: String, name: String, mtu: UInt32?, mac: MACAddress?, object: String, up: Bool = false,
                        masterIndex: Int32? = nil, echo: Bool = false,
                        data: ((inout MessageBuilder) -> Void)? = nil) throws(NetlinkError) -> NetlinkRequest {
        try InterfaceName.validate(name, operation: "create \(kind)")
        // NLM_F_ECHO: kernels from 6.1 send the new link back with the ACK, which saves a
        // lookup on a pod's ADD; older ones ignore the flag (the client then asks).
        var b = MessageBuilder(type: Netlink.newLink, flags: createFlags | (echo ? Netlink.fEcho : 0))
        ifinfomsg(&b, flags: up ? Netlink.iffUp : 0, change: up ? Netlink.iffUp : 0)
        commonLinkAttributes(&b, name: name, mtu: mtu, mac: mac)
        if let m = masterIndex { b.attribute(Netlink.iflaMaster, u32: UInt32(bitPattern: m)) }
        b.nested(Netlink.iflaLinkInfo) { info in
            info.attribute(Netlink.iflaInfoKind, string: kind)
            if let data { info.nested(Netlink.iflaInfoData, data) }
        }
        return NetlinkRequest(bytes: b.finish(), operation: "create \(kind)", object: object)
    }

    /// RTM_NEWLINK for a veth pair. With `peerNamespaceFD` the peer is created directly in that
    /// namespace (IFLA_NET_NS_FD inside VETH_INFO_PEER), so it never appears in ours.
    /// `masterIndex` and `up` apply to the local side at creation (one request instead of three).
    public static func createVeth(name: String, peerName: String, peerNamespaceFD: Int32? = nil, mtu: UInt32? = nil,
                                  mac: MACAddress? = nil, peerMAC: MACAddress? = nil, masterIndex: Int32? = nil,
                                  up: Bool = false) throws(NetlinkError) -> NetlinkRequest {
        try InterfaceName.validate(peerName, operation: "create veth peer")
        return try newLink(kind: "veth", name: name, mtu: mtu, mac: mac, object: "\(name) (peer \(peerName))",
                           up: up, masterIndex: masterIndex, echo: true) { data in
            data.nested(Netlink.vethInfoPeer) { peer in
                ifinfomsg(&peer)
                commonLinkAttributes(&peer, name: peerName, mtu: mtu, mac: peerMAC)
                if let fd = peerNamespaceFD { peer.attribute(Netlink.iflaNetNSFD, u32: UInt32(bitPattern: fd)) }
            }
        }
    }

    public static func createBridge(name: String, mtu: UInt32? = nil, mac: MACAddress? = nil) throws(NetlinkError) -> NetlinkRequest {
        try newLink(kind: "bridge", name: name, mtu: mtu, mac: mac, object: name)
    }

    public static func createVxlan(name: String, settings v: VxlanSettings, mtu: UInt32? = nil, mac: MACAddress? = nil) throws(NetlinkError) -> NetlinkRequest {
        guard v.vni < 1 << 24 else { throw .invalid("create vxlan", name, "VNI \(v.vni) does not fit in 24 bits") }
        return try newLink(kind: "vxlan", name: name, mtu: mtu, mac: mac, object: "\(name) (vni \(v.vni))") { data in
            data.attribute(Netlink.vxlanID, u32: v.vni)
            if let u = v.underlayIndex { data.attribute(Netlink.vxlanLink, u32: UInt32(bitPattern: u)) }
            switch v.local {
            case .v4(let a)?: data.attribute(Netlink.vxlanLocal, bytes: a.bytes)
            case .v6(let a)?: data.attribute(Netlink.vxlanLocal6, bytes: a.bytes)
            case nil: break
            }
            if v.port != 0 { data.attribute(Netlink.vxlanPort, be16: v.port) }  // network order, as the kernel wants
            data.attribute(Netlink.vxlanLearning, u8: v.learning ? 1 : 0)
        }
    }

    static func commonLinkAttributes(_ b: inout MessageBuilder, name: String, mtu: UInt32?, mac: MACAddress?) {
        b.attribute(Netlink.iflaIfname, string: name)
        if let mtu { b.attribute(Netlink.iflaMTU, u32: mtu) }
        if let mac { b.attribute(Netlink.iflaAddress, bytes: mac.bytes) }
    }

    /// RTM_NEWLINK on an existing index (no NLM_F_CREATE): up/down, MTU, MAC, master, rename.
    public static func setLink(index: Int32, _ c: LinkChange, object: String? = nil) throws(NetlinkError) -> NetlinkRequest {
        if let n = c.newName { try InterfaceName.validate(n, operation: "rename link") }
        var b = MessageBuilder(type: Netlink.newLink, flags: 0)
        let up = c.up ?? false
        ifinfomsg(&b, index: index, flags: up ? Netlink.iffUp : 0, change: c.up == nil ? 0 : Netlink.iffUp)
        if let n = c.newName { b.attribute(Netlink.iflaIfname, string: n) }
        if let mtu = c.mtu { b.attribute(Netlink.iflaMTU, u32: mtu) }
        if let mac = c.mac { b.attribute(Netlink.iflaAddress, bytes: mac.bytes) }
        if let m = c.masterIndex { b.attribute(Netlink.iflaMaster, u32: UInt32(bitPattern: m)) }
        if let notify = c.arpNotify {
            b.nested(Netlink.iflaAfSpec) { spec in
                spec.nested(UInt16(Netlink.afInet)) { inet in
                    inet.nested(Netlink.iflaInetConf) { conf in conf.attribute(Netlink.ipv4DevconfArpNotify, u32: notify ? 1 : 0) }
                }
            }
        }
        return NetlinkRequest(bytes: b.finish(), operation: "set link", object: object ?? "index \(index)")
    }

    /// Moves a link into another namespace (RTM_NEWLINK with IFLA_NET_NS_FD).
    public static func moveLink(index: Int32, toNamespaceFD fd: Int32, object: String? = nil) -> NetlinkRequest {
        var b = MessageBuilder(type: Netlink.newLink, flags: 0)
        ifinfomsg(&b, index: index)
        b.attribute(Netlink.iflaNetNSFD, u32: UInt32(bitPattern: fd))
        return NetlinkRequest(bytes: b.finish(), operation: "move link to namespace", object: object ?? "index \(index)")
    }

    /// Bridge port hairpin mode: RTM_SETLINK, AF_BRIDGE, IFLA_PROTINFO (which must carry
    /// NLA_F_NESTED, or the bridge reads it as the old one-byte port state) { IFLA_BRPORT_MODE }.
    public static func setHairpin(portIndex: Int32, enabled: Bool, object: String? = nil) -> NetlinkRequest {
        var b = MessageBuilder(type: Netlink.setLink, flags: 0)
        ifinfomsg(&b, family: Netlink.afBridge, index: portIndex)
        b.nested(Netlink.iflaProtinfo, nestedFlag: true) { $0.attribute(Netlink.brportMode, u8: enabled ? 1 : 0) }
        return NetlinkRequest(bytes: b.finish(), operation: "set hairpin mode", object: object ?? "port index \(portIndex)")
    }

    public static func deleteLink(index: Int32, object: String? = nil) -> NetlinkRequest {
        var b = MessageBuilder(type: Netlink.delLink, flags: 0)
        ifinfomsg(&b, index: index)
        return NetlinkRequest(bytes: b.finish(), operation: "delete link", object: object ?? "index \(index)")
    }

    /// RTM_GETLINK for one link by name (a plain request, not a dump).
    public static func getLink(name: String) throws(NetlinkError) -> NetlinkRequest {
        try InterfaceName.validate(name, operation: "find link")
        var b = MessageBuilder(type: Netlink.getLink, flags: 0)
        ifinfomsg(&b)
        b.attribute(Netlink.iflaIfname, string: name)
        return NetlinkRequest(bytes: b.finish(), operation: "find link", object: name)
    }

    public static func getLink(index: Int32) -> NetlinkRequest {
        var b = MessageBuilder(type: Netlink.getLink, flags: 0)
        ifinfomsg(&b, index: index)
        return NetlinkRequest(bytes: b.finish(), operation: "find link", object: "index \(index)")
    }

    public static func dumpLinks() -> NetlinkRequest {
        var b = MessageBuilder(type: Netlink.getLink, flags: Netlink.fDump)
        ifinfomsg(&b)
        return NetlinkRequest(bytes: b.finish(), operation: "list links", object: "all")
    }

    // MARK: addresses

    public static func address(_ a: InterfaceAddress, add: Bool, replace: Bool = false) -> NetlinkRequest {
        let flags: UInt16 = add ? (Netlink.fCreate | (replace ? Netlink.fReplace : Netlink.fExcl)) : 0
        var b = MessageBuilder(type: add ? Netlink.newAddr : Netlink.delAddr, flags: flags)
        ifaddrmsg(&b, family: family(a.prefix.family), prefixLength: UInt8(a.prefix.length), index: a.index)
        b.attribute(Netlink.ifaLocal, address: a.prefix.address)
        b.attribute(Netlink.ifaAddress, address: a.prefix.address)
        if add, a.noDAD { b.attribute(Netlink.ifaFlags, u32: Netlink.ifaFNoDAD) }
        return NetlinkRequest(bytes: b.finish(), operation: add ? "add address" : "delete address",
                              object: "\(a.prefix) on index \(a.index)")
    }

    /// RTM_GETADDR dump, filtered in the kernel by family and interface (strict checking).
    public static func dumpAddresses(family f: IPFamily? = nil, index: Int32 = 0) -> NetlinkRequest {
        var b = MessageBuilder(type: Netlink.getAddr, flags: Netlink.fDump)
        ifaddrmsg(&b, family: f.map(family) ?? Netlink.afUnspec, index: index)
        return NetlinkRequest(bytes: b.finish(), operation: "list addresses", object: index == 0 ? "all" : "index \(index)")
    }

    // MARK: routes

    /// With `nexthopID` the route points at a nexthop object instead of carrying gateway and
    /// device itself. A delete matches on destination, table, protocol and priority only: a
    /// route installed through a nexthop object does not match a delete that names a gateway.
    public static func route(_ change: RouteChange, nexthopID: UInt32? = nil) -> NetlinkRequest {
        let r = change.route
        let isDelete: Bool
        let flags: UInt16
        let operation: String
        switch change {
        case .add: (isDelete, flags, operation) = (false, Netlink.fCreate | Netlink.fExcl, "add route")
        case .replace: (isDelete, flags, operation) = (false, Netlink.fCreate | Netlink.fReplace, "replace route")
        case .delete: (isDelete, flags, operation) = (true, 0, "delete route")
        }
        var b = MessageBuilder(type: isDelete ? Netlink.delRoute : Netlink.newRoute, flags: flags)
        // Tables past 255 go in RTA_TABLE only, with rtm_table RT_TABLE_UNSPEC (as ip(8) does).
        let smallTable = r.table < 256 ? UInt8(r.table) : 0
        // A delete uses scope RT_SCOPE_NOWHERE and type unspec so it matches whatever is there,
        // but keeps the protocol: the kernel then only deletes routes that are nodenet's.
        rtmsg(&b, family: family(r.destination.family), dstLength: UInt8(r.destination.length), table: smallTable,
              protocol: r.protocol, scope: isDelete ? 255 : r.scope.rawValue, type: isDelete ? 0 : Netlink.rtnUnicast,
              flags: r.onlink && nexthopID == nil && !isDelete ? Netlink.rtnhFOnlink : 0)
        if r.table >= 256 { b.attribute(Netlink.rtaTable, u32: r.table) }
        if r.destination.length > 0 { b.attribute(Netlink.rtaDst, address: r.destination.address) }
        if let id = nexthopID {
            b.attribute(Netlink.rtaNexthopID, u32: id)
        } else if !isDelete {
            if let g = r.gateway { b.attribute(Netlink.rtaGateway, address: g) }
            if let o = r.outputIndex { b.attribute(Netlink.rtaOif, u32: UInt32(bitPattern: o)) }
        }
        if let p = r.priority { b.attribute(Netlink.rtaPriority, u32: p) }
        if let s = r.preferredSource { b.attribute(Netlink.rtaPrefsrc, address: s) }
        return NetlinkRequest(bytes: b.finish(), operation: operation, object: describe(r))
    }

    static func describe(_ r: Route) -> String {
        var s = r.destination.description
        if let g = r.gateway { s += " via \(g)" }
        if let o = r.outputIndex { s += " dev index \(o)" }
        if r.table != Route.mainTable { s += " table \(r.table)" }
        return s
    }

    /// RTM_GETROUTE dump filtered in the kernel by table and protocol (NETLINK_GET_STRICT_CHK).
    public static func dumpRoutes(family f: IPFamily, table: UInt32?, protocol proto: UInt8?) -> NetlinkRequest {
        var b = MessageBuilder(type: Netlink.getRoute, flags: Netlink.fDump)
        let t = table ?? 0
        rtmsg(&b, family: family(f), table: t < 256 ? UInt8(t) : 0, protocol: proto ?? 0)
        if t >= 256 { b.attribute(Netlink.rtaTable, u32: t) }
        return NetlinkRequest(bytes: b.finish(), operation: "list routes", object: "\(f) table \(table.map(String.init) ?? "all")")
    }

    // MARK: neighbours and FDB

    public static func neighbour(_ n: Neighbour, add: Bool) -> NetlinkRequest {
        var b = MessageBuilder(type: add ? Netlink.newNeigh : Netlink.delNeigh, flags: add ? Netlink.fCreate | Netlink.fReplace : 0)
        ndmsg(&b, family: family(n.address.family), index: n.index, state: add ? n.state : 0)
        b.attribute(Netlink.ndaDst, address: n.address)
        if add, let mac = n.mac { b.attribute(Netlink.ndaLLAddr, bytes: mac.bytes) }
        return NetlinkRequest(bytes: b.finish(), operation: add ? "set neighbour" : "delete neighbour",
                              object: "\(n.address) on index \(n.index)")
    }

    public static func fdb(_ e: FDBEntry, add: Bool) -> NetlinkRequest {
        var b = MessageBuilder(type: add ? Netlink.newNeigh : Netlink.delNeigh, flags: add ? Netlink.fCreate | Netlink.fReplace : 0)
        ndmsg(&b, family: Netlink.afBridge, index: e.index, state: add ? e.state : 0, flags: e.isSelf ? Netlink.ntfSelf : 0)
        b.attribute(Netlink.ndaLLAddr, bytes: e.mac.bytes)
        if let d = e.destination { b.attribute(Netlink.ndaDst, address: d) }
        return NetlinkRequest(bytes: b.finish(), operation: add ? "set fdb entry" : "delete fdb entry",
                              object: "\(e.mac) on index \(e.index)")
    }

    /// RTM_GETNEIGH dump of ARP/NDP entries, filtered by device with NDA_IFINDEX.
    public static func dumpNeighbours(family f: IPFamily, index: Int32 = 0) -> NetlinkRequest {
        var b = MessageBuilder(type: Netlink.getNeigh, flags: Netlink.fDump)
        ndmsg(&b, family: family(f))
        if index != 0 { b.attribute(Netlink.ndaIfindex, u32: UInt32(bitPattern: index)) }
        return NetlinkRequest(bytes: b.finish(), operation: "list neighbours", object: index == 0 ? "all" : "index \(index)")
    }

    /// RTM_GETNEIGH dump of AF_BRIDGE FDB entries; for AF_BRIDGE the kernel reads ndm_ifindex
    /// as the port to filter on.
    public static func dumpFDB(index: Int32 = 0) -> NetlinkRequest {
        var b = MessageBuilder(type: Netlink.getNeigh, flags: Netlink.fDump)
        ndmsg(&b, family: Netlink.afBridge, index: index)
        return NetlinkRequest(bytes: b.finish(), operation: "list fdb entries", object: index == 0 ? "all" : "index \(index)")
    }
}
