// Parsing captured kernel replies, attribute alignment edge cases, and truncated or damaged
// input (which must throw or be skipped, never trap).
import IPAddressing
import Testing
@testable import Netlink

@Suite("decoding kernel replies")
struct DecodingTests {
    func only(_ bytes: [UInt8]) throws -> NetlinkMessage {
        let messages = try NetlinkMessage.parse(bytes)
        try #require(messages.count == 1)
        return messages[0]
    }

    @Test func capturedLinks() throws {
        let vx = try RouteDecoding.link(only(Fixtures.linkVxlan))
        #expect(vx.name == "vx0")
        #expect(vx.kind == "vxlan")
        #expect(vx.vxlan?.vni == 42)
        #expect(vx.vxlan?.local == IPAddress("192.168.0.2"))
        #expect(vx.vxlan?.learning == false)
        #expect(vx.vxlan?.port == 8472)
        #expect(vx.mtu == 1450)  // the kernel derived it from the underlay (1500 - 50)
        let veth = try RouteDecoding.link(only(Fixtures.linkVeth))
        #expect(veth.name == "u0")
        #expect(veth.kind == "veth")
        #expect(veth.isUp)
        #expect(veth.mtu == 1500)
        #expect(veth.parentIndex != nil)
        #expect(veth.mac != nil)
        let ack = try NetlinkAck(only(Fixtures.linkVethAck))
        #expect(ack.errno == 0)
        #expect(ack.requestType == Netlink.getLink)
        #expect(ack.requestSeq == 101)
    }

    @Test func capturedAddressRouteNeighbourFDBNexthop() throws {
        let a = try RouteDecoding.address(only(Fixtures.addr))
        #expect(a.prefix == IPPrefix("192.168.0.2/16"))
        let r = try #require(try RouteDecoding.route(only(Fixtures.route)))
        #expect(r.destination == IPPrefix("10.100.0.0/24"))
        #expect(r.gateway == IPAddress("192.168.1.1"))
        #expect(r.protocol == RouteProtocol.nodenet)
        #expect(r.table == Route.mainTable)
        #expect(RouteDecoding.routeNexthopID(try only(Fixtures.route)) == Nexthop.idBase)
        let n = try #require(try RouteDecoding.neighbour(only(Fixtures.neigh)))
        #expect(n.address == IPAddress("10.244.2.0"))
        #expect(n.mac == MACAddress("0a:58:0a:f4:02:00"))
        #expect(n.state == Neighbour.permanent)
        #expect(try RouteDecoding.fdb(only(Fixtures.neigh)) == nil)  // AF_INET is not FDB
        let f = try #require(try RouteDecoding.fdb(only(Fixtures.fdb)))
        #expect(f.destination == IPAddress("192.168.1.12"))
        #expect(f.isSelf)
        let nh = try #require(try RouteDecoding.nexthop(only(Fixtures.nexthop)))
        #expect(nh.id == Nexthop.idBase)
        #expect(nh.gateway == IPAddress("192.168.1.1"))
        #expect(nh.protocol == RouteProtocol.nodenet)
        for done in [Fixtures.addrDone, Fixtures.routeDone, Fixtures.neighDone, Fixtures.fdbDone, Fixtures.nexthopDone] {
            #expect(try only(done).type == Netlink.done)
        }
    }

    @Test func capturedErrorsCarryErrnoAndExtAck() throws {
        let e = try NetlinkAck(only(Fixtures.error))
        #expect(e.errno == 101)  // ENETUNREACH
        #expect(e.extAck == "Nexthop has invalid gateway")
        let exists = try NetlinkAck(only(Fixtures.eexist))
        #expect(NetlinkError.name(ofErrno: exists.errno) == "EEXIST")
        #expect(exists.extAck == nil)
        #expect(exists.requestType == Netlink.newLink)
    }

    @Test func eventsDecodeByType() throws {
        guard case .route(let r, removed: false)? = try NetlinkEvent.decode(only(Fixtures.route)) else {
            Issue.record("route event expected"); return
        }
        #expect(r.destination == IPPrefix("10.100.0.0/24"))
        guard case .fdb(_, removed: false)? = try NetlinkEvent.decode(only(Fixtures.fdb)) else {
            Issue.record("fdb event expected"); return
        }
        #expect(try NetlinkEvent.decode(only(Fixtures.addrDone)) == nil)
    }

    @Test func attributeAlignment() throws {
        var b = MessageBuilder(type: 1, flags: 0)
        b.attribute(1, bytes: [0xaa])                 // 5 bytes + 3 pad
        b.attribute(2, bytes: [0xbb, 0xbb])           // 6 + 2
        b.attribute(3, bytes: [0xcc, 0xcc, 0xcc])     // 7 + 1
        b.attribute(4, bytes: [UInt8]())              // 4, no pad
        b.attribute(5, u32: 7)                        // 8
        b.nested(6) { $0.attribute(7, u8: 1) }        // nest 4 + 8
        let bytes = b.finish()
        #expect(bytes.count == 16 + 8 + 8 + 8 + 4 + 8 + 12)
        #expect(bytes.count % 4 == 0)
        let attrs = try Attributes(try only(bytes).payload)
        #expect(attrs.entries.map(\.type) == [1, 2, 3, 4, 5, 6])
        #expect(attrs.entries.map(\.value.count) == [1, 2, 3, 0, 4, 8])
        #expect(attrs.u32(5) == 7)
        #expect(try attrs.nested(6)?.u8(7) == 1)
        var flag = MessageBuilder(type: 1, flags: 0)
        flag.flagAttribute(9)
        #expect(Array(flag.finish()[16...]) == [4, 0, 9, 0])
        // The last attribute may come without its padding.
        let unpadded = Attributes.self
        #expect(try unpadded.init(ArraySlice([5, 0, 1, 0, 0xaa])).u8(1) == 0xaa)
        // Flags in the type are masked off (NLA_F_NESTED, NLA_F_NET_BYTEORDER).
        #expect(try Attributes(ArraySlice([8, 0, 0x02, 0xc0, 1, 2, 3, 4])).entries.first?.type == 2)
    }

    @Test func malformedAttributesThrow() {
        #expect(throws: NetlinkError.self) { try Attributes(ArraySlice([3, 0, 1, 0])) }          // nla_len < 4
        #expect(throws: NetlinkError.self) { try Attributes(ArraySlice([9, 0, 1, 0, 1, 2, 3, 4])) } // past the end
        #expect(throws: NetlinkError.self) { try Attributes(ArraySlice([8, 0, 1, 0, 1, 2, 3, 4, 9])) } // stray byte
        #expect(throws: NetlinkError.self) { try NetlinkMessage.parse(hex("0f000000 0000 0000 00000000 00000000")) } // len < 16
        #expect(throws: NetlinkError.self) { try NetlinkMessage.parse(hex("20000000 0000 0000 00000000 00000000")) } // len > data
        // Typed getters refuse short values instead of reading past them.
        let short = try? Attributes(ArraySlice([6, 0, 1, 0, 1, 2, 0, 0]))
        #expect(short?.u32(1) == nil)
        #expect(short?.u16(1) == 0x0201)
        #expect(short?.address(1) == nil)
    }

    /// Every prefix of every captured reply, and every single-byte corruption of a few of them,
    /// either parses or throws; nothing traps.
    @Test func truncatedAndDamagedRepliesNeverTrap() {
        let all = [Fixtures.linkVxlan, Fixtures.linkVeth, Fixtures.addr, Fixtures.route, Fixtures.neigh, Fixtures.fdb,
                   Fixtures.nexthop, Fixtures.error, Fixtures.eexist, Fixtures.linkVethAck]
        var decoded = 0
        for fixture in all {
            for end in 0...fixture.count { decoded += decodeEverything(Array(fixture[0..<end])) }
        }
        for fixture in [Fixtures.route, Fixtures.error, Fixtures.fdb, Fixtures.addr] {
            for i in 0..<fixture.count {
                for value: UInt8 in [0x00, 0x03, 0xff] {
                    var damaged = fixture
                    damaged[i] = value
                    decoded += decodeEverything(damaged)
                }
            }
        }
        #expect(decoded > all.count)  // the intact ones did decode
    }

    private func decodeEverything(_ bytes: [UInt8]) -> Int {
        guard let messages = try? NetlinkMessage.parse(bytes) else { return 0 }
        var ok = 0
        for m in messages {
            if (try? RouteDecoding.link(m)) != nil { ok += 1 }
            if (try? RouteDecoding.address(m)) != nil { ok += 1 }
            if (try? RouteDecoding.route(m)) != nil { ok += 1 }
            if (try? RouteDecoding.neighbour(m)) != nil { ok += 1 }
            if (try? RouteDecoding.fdb(m)) != nil { ok += 1 }
            if (try? RouteDecoding.nexthop(m)) != nil { ok += 1 }
            if (try? NetlinkAck(m)) != nil { ok += 1 }
            _ = try? NetlinkEvent.decode(m)
        }
        return ok
    }

    @Test func valueParsing() {
        #expect(MACAddress("0A-58-0a-f4-02-00")?.description == "0a:58:0a:f4:02:00")
        #expect(MACAddress("0a:58:0a:f4:02") == nil)
        #expect(MACAddress("0a:58:0a:f4:02:0g") == nil)
        #expect(Sysctl.path("net.ipv4.conf.eth0.arp_notify") == "/proc/sys/net/ipv4/conf/eth0/arp_notify")
        #expect(Route(destination: IPPrefix("10.1.2.3/24")!).destination == IPPrefix("10.1.2.0/24"))
        #expect(Route(destination: IPPrefix("10.1.2.0/24")!).scope == .link)
        #expect(Route(destination: IPPrefix("10.1.2.0/24")!, gateway: IPAddress("10.0.0.1")).scope == .universe)
        let e = NetlinkError(operation: "add route", object: "10.244.2.0/24", kind: .kernel(errno: 101), extAck: "Nexthop has invalid gateway")
        #expect(e.description == "add route 10.244.2.0/24: ENETUNREACH (Network is unreachable): kernel says \"Nexthop has invalid gateway\"")
        #expect(e.errnoName == "ENETUNREACH")
    }
}
