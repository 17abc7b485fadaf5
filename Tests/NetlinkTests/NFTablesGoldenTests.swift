// Golden bytes of nf_tables messages and expressions, checked against what nft 1.0.6 sends for
// the same command (`nft --debug=mnl -f`, attribute by attribute; nft's set user data, which
// only nft itself reads, is left out).
import IPAddressing
import Testing
@testable import Netlink

@Suite("nf_tables golden bytes")
struct NFTablesGoldenTests {
    func hex(_ b: some Collection<UInt8>) -> String {
        b.map { ($0 < 16 ? "0" : "") + String($0, radix: 16) }.joined()
    }

    /// Attributes after nlmsghdr (16) and nfgenmsg (4).
    func body(_ r: NetlinkRequest) -> String { hex(r.bytes.dropFirst(20)) }

    @Test func dynamicTimeoutSet() {
        // add set ip t aff { type ipv4_addr ; flags dynamic,timeout ; timeout 10800s ; }
        let s = NFTablesSet(name: "aff", id: 2, keyType: 7, keyLength: 4, flags: 0x30, timeoutMilliseconds: 10_800_000)
        let r = NFTablesMessages.newSet(table: "t", family: .v4, s)
        #expect(Array(r.bytes[4..<6]) == [0x09, 0x0a], "NFT_MSG_NEWSET (9) of subsystem 10")
        let want: [String] = [
            "0600" + "0100" + "74000000",          // NFTA_SET_TABLE "t"
            "0800" + "0200" + "61666600",          // NFTA_SET_NAME "aff"
            "0800" + "0300" + "00000030",          // NFTA_SET_FLAGS TIMEOUT|EVAL
            "0800" + "0400" + "00000007",          // NFTA_SET_KEY_TYPE ipv4_addr
            "0800" + "0500" + "00000004",          // NFTA_SET_KEY_LEN 4
            "0800" + "0a00" + "00000002",          // NFTA_SET_ID 2
            "0c00" + "0b00" + "0000000000a4cb80",  // NFTA_SET_TIMEOUT 10800000 ms
        ]
        #expect(body(r) == want.joined())
    }
}
