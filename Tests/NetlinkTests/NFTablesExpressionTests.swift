// Golden bytes of every nf_tables expression kind. Expected bytes are built from the uapi
// attribute numbers written out here (not the encoder's constants), one helper per netlink
// attribute shape; each case names the line `nft --debug=netlink` prints for it (nft 1.0.6).
import IPAddressing
import Testing
@testable import Netlink

/// Netlink attribute builders for expected bytes: little-endian header, 4-byte padding.
enum Golden {
    static func attr(_ type: UInt16, _ payload: [UInt8]) -> [UInt8] {
        let len = UInt16(4 + payload.count)
        var out = [UInt8(len & 0xff), UInt8(len >> 8), UInt8(type & 0xff), UInt8(type >> 8)] + payload
        while out.count % 4 != 0 { out.append(0) }
        return out
    }
    static func nest(_ type: UInt16, _ children: [UInt8]...) -> [UInt8] { attr(type | 0x8000, children.flatMap { $0 }) }
    static func be32(_ type: UInt16, _ v: UInt32) -> [UInt8] { attr(type, [UInt8(v >> 24), UInt8((v >> 16) & 0xff), UInt8((v >> 8) & 0xff), UInt8(v & 0xff)]) }
    static func u64zero(_ type: UInt16) -> [UInt8] { attr(type, [UInt8](repeating: 0, count: 8)) }
    static func string(_ type: UInt16, _ s: String) -> [UInt8] { attr(type, Array(s.utf8) + [0]) }
    /// NFTA_*_DATA / NFTA_CMP_DATA style: nest { NFTA_DATA_VALUE (1) bytes }.
    static func value(_ type: UInt16, _ bytes: [UInt8]) -> [UInt8] { nest(type, attr(1, bytes)) }
    /// An expression: NFTA_EXPR_NAME (1), NFTA_EXPR_DATA (2) nest.
    static func expr(_ name: String, _ data: [UInt8]...) -> [UInt8] { string(1, name) + nest(2, data.flatMap { $0 }) }
}

@Suite("nf_tables expressions: golden bytes")
struct NFTablesExpressionTests {
    typealias G = Golden

    func encoded(_ e: NFTablesExpression) -> [UInt8] {
        var b = MessageBuilder(type: 0, flags: 0)
        e.encode(into: &b)
        return Array(b.bytes.dropFirst(16))
    }

    @Test func payloadMetaCmpBitwise() {
        // [ payload load 4b @ network header + 16 => reg 1 ]: DREG 1, BASE 2, OFFSET 3, LEN 4
        #expect(encoded(.payload(base: .network, offset: 16, length: 4, dreg: 1)) == G.expr("payload", G.be32(1, 1), G.be32(2, 1), G.be32(3, 16), G.be32(4, 4)))
        // [ payload load 2b @ transport header + 2 => reg 10 ] (third field of a concatenation)
        #expect(encoded(.payload(base: .transport, offset: 2, length: 2, dreg: NFTablesExpression.register32(2)))
            == G.expr("payload", G.be32(1, 10), G.be32(2, 2), G.be32(3, 2), G.be32(4, 2)))
        // [ meta load l4proto => reg 9 ]: DREG 1, KEY 2 (NFT_META_L4PROTO 16)
        #expect(encoded(.meta(.l4proto, dreg: 9)) == G.expr("meta", G.be32(1, 9), G.be32(2, 16)))
        // [ meta set mark with reg 1 ]: KEY 2 (NFT_META_MARK 3), SREG 3
        #expect(encoded(.metaSet(.mark, sreg: 1)) == G.expr("meta", G.be32(2, 3), G.be32(3, 1)))
        // [ cmp neq reg 1 0x0000f40a ]: SREG 1, OP 2 (NFT_CMP_NEQ 1), DATA 3 { VALUE }
        #expect(encoded(.cmp(sreg: 1, equal: false, data: [10, 244])) == G.expr("cmp", G.be32(1, 1), G.be32(2, 1), G.value(3, [10, 244])))
        // [ bitwise reg 1 = ( reg 1 & 0xffffbfff ) ^ 0x00004000 ]: SREG 1, DREG 2, LEN 3, MASK 4, XOR 5
        let mask: [UInt8] = [0xff, 0xbf, 0xff, 0xff], xor: [UInt8] = [0, 0x40, 0, 0]
        #expect(encoded(.bitwise(sreg: 1, dreg: 1, mask: mask, xor: xor))
            == G.expr("bitwise", G.be32(1, 1), G.be32(2, 1), G.be32(3, 4), G.value(4, mask), G.value(5, xor)))
    }

    @Test func lookupsImmediatesAndVerdicts() {
        // [ lookup reg 1 set service-ips dreg 0 ]: SET 1, SREG 2, DREG 3
        #expect(encoded(.lookup(NFTablesSetReference("service-ips"), sreg: 1, dreg: 0, inverted: false))
            == G.expr("lookup", G.string(1, "service-ips"), G.be32(2, 1), G.be32(3, 0)))
        // [ lookup reg 1 set __set%d 0x1 ]: SET_ID 4, FLAGS 5 (NFT_LOOKUP_F_INV)
        #expect(encoded(.lookup(NFTablesSetReference("__set%d", id: 3), sreg: 1, dreg: nil, inverted: true))
            == G.expr("lookup", G.string(1, "__set%d"), G.be32(2, 1), G.be32(4, 3), G.be32(5, 1)))
        // [ immediate reg 2 0x0000901f ]: DREG 1, DATA 2 { VALUE }
        #expect(encoded(.immediate(dreg: 2, data: [0x1f, 0x90])) == G.expr("immediate", G.be32(1, 2), G.value(2, [0x1f, 0x90])))
        // [ immediate reg 0 goto -> d ]: DATA 2 { VERDICT 2 { CODE 1 (NFT_GOTO -4), CHAIN 2 } }
        #expect(encoded(.verdict(.goto("d")))
            == G.expr("immediate", G.be32(1, 0), G.nest(2, G.nest(2, G.be32(1, UInt32(bitPattern: -4)), G.string(2, "d")))))
        // [ immediate reg 0 return ]: NFT_RETURN -5, no chain
        #expect(encoded(.verdict(.return)) == G.expr("immediate", G.be32(1, 0), G.nest(2, G.nest(2, G.be32(1, UInt32(bitPattern: -5))))))
        // accept (NF_ACCEPT 1) and drop (NF_DROP 0)
        #expect(encoded(.verdict(.accept)) == G.expr("immediate", G.be32(1, 0), G.nest(2, G.nest(2, G.be32(1, 1)))))
        #expect(encoded(.verdict(.drop)) == G.expr("immediate", G.be32(1, 0), G.nest(2, G.nest(2, G.be32(1, 0)))))
    }

    @Test func statements() {
        // [ numgen reg 1 = random mod 2 ]: DREG 1, MODULUS 2, TYPE 3 (NFT_NG_RANDOM 1), OFFSET 4
        #expect(encoded(.numgenRandom(modulus: 2, dreg: 1)) == G.expr("numgen", G.be32(1, 1), G.be32(2, 2), G.be32(3, 1), G.be32(4, 0)))
        // [ nat dnat ip addr_min reg 1 proto_min reg 2 flags 0x2 ]: TYPE 1 (DNAT 1), FAMILY 2, ADDR_MIN 3, PROTO_MIN 5, FLAGS 7
        #expect(encoded(.nat(destination: true, family: .v4, addressRegister: 1, portRegister: 2))
            == G.expr("nat", G.be32(1, 1), G.be32(2, 2), G.be32(3, 1), G.be32(5, 2), G.be32(7, 2)))
        // ip6: NFPROTO_IPV6 10
        #expect(encoded(.nat(destination: true, family: .v6, addressRegister: 1, portRegister: 2))
            == G.expr("nat", G.be32(1, 1), G.be32(2, 10), G.be32(3, 1), G.be32(5, 2), G.be32(7, 2)))
        // [ masq flags 0x10 ] (fully random); plain masq has no data at all
        #expect(encoded(.masq(flags: 0x10)) == G.expr("masq", G.be32(1, 0x10)))
        #expect(encoded(.masquerade) == G.string(1, "masq"))
        // [ ct load state => reg 1 ]: DREG 1, KEY 2 (NFT_CT_STATE 0)
        #expect(encoded(.ct(key: 0, dreg: 1)) == G.expr("ct", G.be32(1, 1), G.be32(2, 0)))
        // [ fib daddr type => reg 1 ]: DREG 1, RESULT 2 (ADDRTYPE 3), FLAGS 3 (F_DADDR 2; F_SADDR 1)
        #expect(encoded(.fibAddressType(source: false, dreg: 1)) == G.expr("fib", G.be32(1, 1), G.be32(2, 3), G.be32(3, 2)))
        #expect(encoded(.fibAddressType(source: true, dreg: 1)) == G.expr("fib", G.be32(1, 1), G.be32(2, 3), G.be32(3, 1)))
        // [ reject type 0 code 3 ] / [ reject type 1 code 0 ]: TYPE 1, ICMP_CODE 2 (u8)
        #expect(encoded(.reject(tcpReset: false, icmpCode: 3)) == G.expr("reject", G.be32(1, 0), G.attr(2, [3])))
        #expect(encoded(.reject(tcpReset: true, icmpCode: 0)) == G.expr("reject", G.be32(1, 1), G.attr(2, [0])))
        // [ counter pkts 0 bytes 0 ]: BYTES 1, PACKETS 2 (u64)
        #expect(encoded(.counter) == G.expr("counter", G.u64zero(1), G.u64zero(2)))
        // [ dynset update reg_key 1 set aff ]: SET_NAME 1, OP 3 (UPDATE 1), SREG_KEY 4
        #expect(encoded(.dynsetUpdate(NFTablesSetReference("aff"), sreg: 1)) == G.expr("dynset", G.string(1, "aff"), G.be32(3, 1), G.be32(4, 1)))
    }

    @Test func elementOnlyServiceShape() {
        // [ ct load dst_ip => reg 9 , dir original ]: DREG 1, KEY 2 (NFT_CT_DST_IP 20), DIRECTION 3 (u8, original 0)
        #expect(encoded(.ctDirection(key: 20, dreg: 9, direction: 0)) == G.expr("ct", G.be32(1, 9), G.be32(2, 20), G.attr(3, [0])))
        // [ dynset update reg_key 1 set affinity sreg_data 2 timeout 10800000ms ]: SET_NAME 1, OP 3 (UPDATE 1),
        // SREG_KEY 4, SREG_DATA 5, TIMEOUT 6 (u64 ms, big endian)
        let timeout = G.attr(6, [0, 0, 0, 0, 0x00, 0xa4, 0xcb, 0x80])  // 10,800,000
        #expect(encoded(.dynsetUpdateMap(NFTablesSetReference("affinity"), keyRegister: 1, dataRegister: 2, timeoutMilliseconds: 10_800_000))
            == G.expr("dynset", G.string(1, "affinity"), G.be32(3, 1), G.be32(4, 1), G.be32(5, 2), timeout))
        // [ lookup reg 1 set backends dreg 1 ]: SET 1, SREG 2, DREG 3
        #expect(encoded(.lookup(NFTablesSetReference("backends"), sreg: 1, dreg: 1, inverted: false))
            == G.expr("lookup", G.string(1, "backends"), G.be32(2, 1), G.be32(3, 1)))
        // [ lookup reg 1 set fw-allow 0x1 ]: inverted, FLAGS 5 (NFT_LOOKUP_F_INV)
        #expect(encoded(.lookup(NFTablesSetReference("fw-allow"), sreg: 1, dreg: nil, inverted: true))
            == G.expr("lookup", G.string(1, "fw-allow"), G.be32(2, 1), G.be32(5, 1)))
    }

    @Test func dataMapAndRangeElements() {
        func element(_ e: NFTablesElement) -> [UInt8] {
            var b = MessageBuilder(type: 0, flags: 0)
            NFTablesMessages.encode(e, into: &b)
            return Array(b.bytes.dropFirst(16))
        }
        // A data-map element: KEY 1 { VALUE }, DATA 2 { VALUE } (10.244.1.5 . 8080, the port padded to 4 bytes).
        let key: [UInt8] = [10, 96, 0, 10, 6, 0, 0, 0, 0, 80, 0, 0, 1, 0, 0, 0]
        let data: [UInt8] = [10, 244, 1, 5, 0x1f, 0x90, 0, 0]
        #expect(element(NFTablesElement(key: key, data: data)) == G.value(1, key) + G.value(2, data))
        // A concatenated range: KEY 1 and KEY_END 10, no interval-end flag.
        let start: [UInt8] = [198, 51, 100, 7, 1, 187, 0, 0, 192, 0, 2, 0], end: [UInt8] = [198, 51, 100, 7, 1, 187, 0, 0, 192, 0, 2, 255]
        #expect(element(NFTablesElement(key: start, keyEnd: end)) == G.value(1, start) + G.value(10, end))
    }
}

@Suite("nf_tables messages: golden bytes")
struct NFTablesMessageTests {
    typealias G = Golden

    /// (message type, attributes after nlmsghdr and nfgenmsg).
    func split(_ r: NetlinkRequest) -> (UInt16, [UInt8]) {
        (UInt16(r.bytes[4]) | UInt16(r.bytes[5]) << 8, Array(r.bytes.dropFirst(20)))
    }

    @Test func chainsTablesAndSets() {
        // NFT_MSG_NEWCHAIN (3) of a regular chain: TABLE 1, NAME 3
        var (t, a) = split(NFTablesMessages.newChain(table: "t", name: "c", family: .v4))
        #expect(t == 0x0a03 && a == G.string(1, "t") + G.string(3, "c"))
        // NFT_MSG_DELCHAIN (5)
        (t, a) = split(NFTablesMessages.deleteChain(table: "t", name: "c", family: .v4))
        #expect(t == 0x0a05 && a == G.string(1, "t") + G.string(3, "c"))
        // flush = NFT_MSG_DELRULE (8) without handle: RULE_TABLE 1, RULE_CHAIN 2
        (t, a) = split(NFTablesMessages.flushChain(table: "t", name: "c", family: .v6))
        #expect(t == 0x0a08 && a == G.string(1, "t") + G.string(2, "c"))
        // NFT_MSG_DELTABLE (2), NFT_MSG_DELSET (11)
        (t, a) = split(NFTablesMessages.deleteTable("t", family: .v4))
        #expect(t == 0x0a02 && a == G.string(1, "t"))
        (t, a) = split(NFTablesMessages.deleteSet(table: "t", name: "m", family: .v4))
        #expect(t == 0x0a0b && a == G.string(1, "t") + G.string(2, "m"))
        // add map ip t m { type ipv4_addr . inet_proto . inet_service : verdict ; } as nft sends it
        // (minus its user data): FLAGS 3 MAP, KEY_TYPE 4 0x730d, KEY_LEN 5 12, DATA_TYPE 6, DATA_LEN 7, ID 10
        let map = NFTablesSet(name: "m", id: 1, keyType: 0x730d, keyLength: 12, flags: 8, dataType: 0xffff_ff00)
        (t, a) = split(NFTablesMessages.newSet(table: "t", family: .v4, map))
        #expect(t == 0x0a09 && a == G.string(1, "t") + G.string(2, "m") + G.be32(3, 8) + G.be32(4, 0x730d) + G.be32(5, 12)
            + G.be32(6, 0xffff_ff00) + G.be32(7, 0) + G.be32(10, 1))
    }

    @Test func elements() {
        // element 0a00600a 00000006 00005000 : goto -> c   (NFT_MSG_NEWSETELEM 12)
        // LIST_TABLE 1, LIST_SET 2, LIST_ELEMENTS 3 { LIST_ELEM 1 { KEY 1 { VALUE }, DATA 2 { VERDICT 2 { CODE, CHAIN } } } }
        let key: [UInt8] = [10, 96, 0, 10, 6, 0, 0, 0, 0, 0x50, 0, 0]
        let rs = NFTablesMessages.elements(add: true, table: "t", set: "m", family: .v4, [NFTablesElement(key: key, verdict: .goto("c"))])
        #expect(rs.count == 1)
        let (t, a) = split(rs[0])
        let elem = G.nest(1, G.value(1, key), G.nest(2, G.nest(2, G.be32(1, UInt32(bitPattern: -4)), G.string(2, "c"))))
        #expect(t == 0x0a0c && a == G.string(1, "t") + G.string(2, "m") + G.nest(3, elem))
        // An interval end: FLAGS 3 = NFT_SET_ELEM_INTERVAL_END, and DELSETELEM (14) with the set id of the batch
        let del = NFTablesMessages.elements(add: false, table: "t", set: "__set%d", setID: 7, family: .v4,
                                            [NFTablesElement(key: [1, 2, 4, 0], intervalEnd: true)])
        let (dt, da) = split(del[0])
        #expect(dt == 0x0a0e && da == G.string(1, "t") + G.string(2, "__set%d") + G.be32(4, 7)
            + G.nest(3, G.nest(1, G.value(1, [1, 2, 4, 0]), G.be32(3, 1))))
    }

    @Test func largeElementListsSplitUnderTheAttributeLimit() throws {
        let many = (0..<20_000).map { i in NFTablesElement(key: [10, 96, UInt8(i >> 8), UInt8(i & 0xff)]) }
        let rs = NFTablesMessages.elements(add: true, table: "t", set: "s", family: .v4, many)
        #expect(rs.count > 1)
        var total = 0
        for r in rs {
            let m = try #require(try NetlinkMessage.parse(r.bytes).first)
            let list = try #require(try Attributes(m.payload.dropFirst(4)).bytes(3))
            #expect(list.count < 65_535)
            total += try Attributes(list).entries.count
        }
        #expect(total == 20_000)
    }
}
