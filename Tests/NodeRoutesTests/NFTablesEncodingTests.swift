// Pure tests of the small nf_tables encoder NodeRoutes uses (Netlink/NFTablesMessages.swift):
// message layout, rule user data (nft's comment TLV) and rule dump decoding. The kernel and
// nft oracle comparison is in PrivilegedMasqueradeTests.
import IPAddressing
import Testing
@testable import Netlink

@Suite("nf_tables encoding")
struct NFTablesEncodingTests {
    // nf_tables.h values, spelled out so the test does not lean on the encoder's own constants.
    let newRule: UInt16 = 10 << 8 | 6, newTable: UInt16 = 10 << 8 | 0, delRule: UInt16 = 10 << 8 | 8
    let ruleTable: UInt16 = 1, ruleChain: UInt16 = 2, ruleHandle: UInt16 = 3, ruleExpressions: UInt16 = 4, ruleUserData: UInt16 = 7

    func attributes(_ request: NetlinkRequest) throws -> (NetlinkMessage, Attributes) {
        let m = try #require(try NetlinkMessage.parse(request.bytes).first)
        return (m, try Attributes(m.payload.dropFirst(4)))
    }

    @Test func ruleMessageLayout() throws {
        let e = NFTablesExpression.match(IPPrefix("10.244.0.0/16")!, source: true) + [.masquerade]
        let request = NFTablesMessages.newRule(table: "nodenet", chain: "pod-egress", family: .v4, expressions: e, comment: "nodenet pod-egress 10.244.0.0/16")
        let (m, a) = try attributes(request)
        #expect(m.type == newRule)
        #expect(m.flags & Netlink.fCreate != 0 && m.flags & 0x800 != 0, "NLM_F_CREATE | NLM_F_APPEND")
        #expect(m.payload.first == 2, "nfgenmsg family NFPROTO_IPV4")
        #expect(a.string(ruleTable) == "nodenet" && a.string(ruleChain) == "pod-egress")
        let list = try #require(try a.nested(ruleExpressions))
        let names = try list.all(1).map { try Attributes($0).string(1) }
        #expect(names == ["payload", "cmp", "masq"])
        // Expression data is big endian: payload base 1 (network header), offset 12, length 2.
        let payload = try #require(try Attributes(list.all(1)[0]).nested(2))
        #expect(payload.be32(2) == 1 && payload.be32(3) == 12 && payload.be32(4) == 2)
        let userData = try #require(a.bytes(ruleUserData))
        #expect(Array(userData.prefix(2)) == [0, 33], "TLV comment type 0, length with NUL")
        #expect(NFTablesMessages.comment(userData: userData) == "nodenet pod-egress 10.244.0.0/16")
    }

    @Test func tableAndDeleteMessages() throws {
        let (t, ta) = try attributes(NFTablesMessages.newTable("nodenet", family: .v6))
        #expect(t.type == newTable && t.payload.first == 10 && ta.string(1) == "nodenet")
        #expect(t.flags & Netlink.fExcl == 0, "creating an existing table must not fail")
        let (d, da) = try attributes(NFTablesMessages.deleteRule(table: "nodenet", chain: "pod-egress", family: .v4, handle: 0x1_0000_0002))
        #expect(d.type == delRule)
        #expect(Array(try #require(da.bytes(ruleHandle))) == [0, 0, 0, 1, 0, 0, 0, 2])
    }

    @Test func ruleDumpDecoding() throws {
        var b = NfnetlinkMessages.builder(message: 6, family: 2)
        b.attribute(ruleTable, string: "nodenet")
        b.attribute(ruleHandle, u64: UInt64(7).bigEndian)
        b.attribute(ruleUserData, bytes: NFTablesMessages.userData(comment: "nodenet pod-egress fd00::/56"))
        let m = try #require(try NetlinkMessage.parse(b.finish()).first)
        #expect(try NFTablesMessages.rule(m) == NFTablesRule(handle: 7, comment: "nodenet pod-egress fd00::/56"))
        // With nodenet's digest after the comment, both are read back.
        var d = NfnetlinkMessages.builder(message: 6, family: 2)
        d.attribute(ruleHandle, u64: UInt64(8).bigEndian)
        d.attribute(ruleUserData, bytes: NFTablesMessages.userData(comment: String(repeating: "c", count: 200)) + NFTablesRuleDigest.userData(0x0102_0304_0506_0708))
        let withDigest = try NFTablesMessages.rule(try #require(try NetlinkMessage.parse(d.finish()).first))
        #expect(withDigest?.digest == 0x0102_0304_0506_0708)
        #expect(withDigest?.comment?.utf8.count == 127, "a comment is written cut at 127 bytes")
        // User data with other TLVs first (nft may add more), and truncated user data.
        #expect(NFTablesMessages.comment(userData: [1, 2, 9, 9, 0, 3, 0x61, 0x62, 0][...]) == "ab")
        #expect(NFTablesMessages.comment(userData: [0, 30, 0x61][...]) == nil)
    }
}
