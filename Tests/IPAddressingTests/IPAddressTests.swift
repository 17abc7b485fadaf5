import Testing
@testable import IPAddressing

@Suite struct IPAddressTests {
    @Test(arguments: ["10.244.1.5", "0.0.0.0", "255.255.255.255", "::", "::1", "fe80::1", "2001:db8::ff00:42:8329", "::ffff:192.0.2.1", "2001:db8:0:1::"])
    func roundTrip(_ text: String) throws {
        let a = try #require(IPAddress(text))
        #expect(IPAddress(a.description) == a)
        #expect(IPAddress(bytes: a.bytes) == a)
    }

    @Test func canonicalV6() {
        #expect(IPAddress("2001:0db8:0000:0000:0000:0000:0000:0001")?.description == "2001:db8::1")
        #expect(IPAddress("2001:db8:0:0:1:0:0:1")?.description == "2001:db8::1:0:0:1")
        #expect(IPAddress("1:0:2:3:4:5:6:7")?.description == "1:0:2:3:4:5:6:7")
    }

    @Test(arguments: ["", "1.2.3", "1.2.3.4.5", "256.1.1.1", "01.2.3.4", "1..2.3", "a.b.c.d", ":::", "1:2:3:4:5:6:7:8:9", "1::2::3", "12345::", "1.2.3.4/24", " 1.2.3.4", "::1.2.3"])
    func rejects(_ text: String) {
        #expect(IPAddress(text) == nil)
    }

    @Test func prefixMath() throws {
        let p = try IPPrefix(parsing: "10.244.1.7/24")
        #expect(!p.isNetwork)
        #expect(p.network.description == "10.244.1.0/24")
        #expect(p.contains(IPAddress("10.244.1.200")!))
        #expect(!p.contains(IPAddress("10.244.2.1")!))
        #expect(p.size == 256)
        #expect(p.address(at: 1)?.description == "10.244.1.1")
        #expect(p.address(at: 256) == nil)
        #expect(p.lastAddress.description == "10.244.1.255")
        #expect(p.netmask.description == "255.255.255.0")
        #expect(p.offset(of: IPAddress("10.244.1.9")!) == 9)
        let cluster = try IPPrefix(parsing: "10.244.0.0/16")
        #expect(cluster.subnet(length: 24, index: 3)?.description == "10.244.3.0/24")
        #expect(cluster.subnetCount(length: 24) == 256)
        #expect(cluster.subnet(length: 24, index: 256) == nil)
        #expect(cluster.contains(p))
        #expect(!p.contains(cluster))
        #expect(cluster.overlaps(p))
    }

    @Test func prefixV6() throws {
        let p = try IPPrefix(parsing: "fd00:10:244::/56")
        #expect(p.subnet(length: 64, index: 1)?.description == "fd00:10:244:1::/64")
        let s = try IPPrefix(parsing: "fd00:10:244:1::/64")
        #expect(s.address(at: 1)?.description == "fd00:10:244:1::1")
        #expect(s.lastAddress.description == "fd00:10:244:1:ffff:ffff:ffff:ffff")
        #expect(p.contains(s))
    }

    @Test(arguments: ["10.0.0.0", "10.0.0.0/33", "::/129", "10.0.0.0/-1", "10.0.0.0/+8", "x/8", "10.0.0.0/"])
    func prefixRejects(_ text: String) {
        #expect(IPPrefix(text) == nil)
    }
}
