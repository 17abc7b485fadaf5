import ClusterState
import IPAddressing
import Netlink
import Testing
@testable import ServiceProxy

/// The model -> kernel expression mapping, without privileges. Each expected list is what
/// `nft --debug=netlink` prints for the rule's nft text (nft 1.0.6), written as our cases.
@Suite("netlink rule encoder") struct NetlinkBackendEncoderTests {
    let enc = NetlinkRuleEncoder()

    func exprs(_ e: NFExpression, _ f: TableFamily = .ip) -> [NFTablesExpression] {
        var state = NetlinkRuleEncoder.BatchState(tag: nil)
        var pre: [NetlinkRequest] = []
        return enc.expressions(e, f, &state, &pre)
    }

    @Test func concatenatedVmapUsesConsecutiveRegisters() {
        // ip daddr . meta l4proto . th dport vmap @service-ips:
        // payload 4b @ network + 16 => reg 1; meta l4proto => reg 9; payload 2b @ transport + 2 => reg 10; lookup dreg 0
        #expect(exprs(.vmap([.daddr, .l4proto, .dport], map: "service-ips")) == [
            .payload(base: .network, offset: 16, length: 4, dreg: 1), .meta(.l4proto, dreg: 9),
            .payload(base: .transport, offset: 2, length: 2, dreg: 10),
            .lookup(NFTablesSetReference("service-ips"), sreg: 1, dreg: 0, inverted: false),
        ])
        // ip6: the address takes four 4-byte registers, so l4proto lands in reg 12.
        #expect(exprs(.vmap([.daddr, .l4proto, .dport], map: "service-ips"), .ip6)[1] == .meta(.l4proto, dreg: 12))
    }

    @Test func statementsMatchNft() {
        // meta l4proto tcp dnat to 10.244.1.5:8080 (the dnat part)
        #expect(exprs(.dnat(ip("10.244.1.5"), 8080)) == [
            .immediate(dreg: 1, data: [10, 244, 1, 5]), .immediate(dreg: 2, data: [0x1f, 0x90]),
            .nat(destination: true, family: .v4, addressRegister: 1, portRegister: 2),
        ])
        // meta mark set meta mark or 0x4000: ( reg 1 & 0xffffbfff ) ^ 0x00004000
        #expect(exprs(.markSetOr(0x4000)) == [
            .meta(.mark, dreg: 1), .bitwise(sreg: 1, dreg: 1, mask: [0xff, 0xbf, 0xff, 0xff], xor: [0, 0x40, 0, 0]), .metaSet(.mark, sreg: 1),
        ])
        // ct state new: ( reg 1 & 0x00000008 ) ^ 0, cmp neq 0
        #expect(exprs(.ctStateNew) == [
            .ct(key: 0, dreg: 1), .bitwise(sreg: 1, dreg: 1, mask: [8, 0, 0, 0], xor: [0, 0, 0, 0]), .cmp(sreg: 1, equal: false, data: [0, 0, 0, 0]),
        ])
        // fib daddr type local: cmp eq reg 1 0x00000002
        #expect(exprs(.fibTypeLocal(.daddr)) == [.fibAddressType(source: false, dreg: 1), .cmp(sreg: 1, equal: true, data: [2, 0, 0, 0])])
        #expect(exprs(.reject(.portUnreachable), .ip6) == [.reject(tcpReset: false, icmpCode: 4)])
        #expect(exprs(.masquerade) == [.masq(flags: 0x10)])
        // ip saddr != 10.244.0.0/16: 2 bytes compared
        #expect(exprs(.match(.saddr, .prefix(IPPrefix("10.244.0.0/16")!), negated: true))
            == [.payload(base: .network, offset: 12, length: 2, dreg: 1), .cmp(sreg: 1, equal: false, data: [10, 244])])
        #expect(exprs(.match(.dport, .port(80))) == [.payload(base: .transport, offset: 2, length: 2, dreg: 1), .cmp(sreg: 1, equal: true, data: [0, 80])])
    }

    @Test func elementOnlyShapeExpressionsMatchNft() {
        // dnat ip to ip daddr . meta l4proto . th dport . numgen random mod 3 map @backends:
        // reg 1, 9, 10, numgen => reg 11; lookup dreg 1; nat addr_min reg 1 proto_min reg 9
        #expect(exprs(.dnatMap([.daddr, .l4proto, .dport, .numgen(3)], map: "backends")) == [
            .payload(base: .network, offset: 16, length: 4, dreg: 1), .meta(.l4proto, dreg: 9),
            .payload(base: .transport, offset: 2, length: 2, dreg: 10), .numgenRandom(modulus: 3, dreg: 11),
            .lookup(NFTablesSetReference("backends"), sreg: 1, dreg: 1, inverted: false),
            .nat(destination: true, family: .v4, addressRegister: 1, portRegister: 9),
        ])
        // ip6: the endpoint's port follows its 16-byte address (proto_min reg 2 = 4-byte reg 12).
        #expect(exprs(.dnatMap([.daddr, .l4proto, .dport, .numgen(3)], map: "backends"), .ip6).last
            == .nat(destination: true, family: .v6, addressRegister: 1, portRegister: 12))
        // ct status dnat tcp dport != 0 ...: status & 0x20 != 0; l4proto == 6; dport != 0
        #expect(exprs(.ctStatusDNAT) == [
            .ct(key: 2, dreg: 1), .bitwise(sreg: 1, dreg: 1, mask: [0x20, 0, 0, 0], xor: [0, 0, 0, 0]), .cmp(sreg: 1, equal: false, data: [0, 0, 0, 0]),
        ])
        #expect(exprs(.protocolPort(.udp)) == [
            .meta(.l4proto, dreg: 1), .cmp(sreg: 1, equal: true, data: [17]),
            .payload(base: .transport, offset: 2, length: 2, dreg: 1), .cmp(sreg: 1, equal: false, data: [0, 0]),
        ])
        // update @affinity { ip saddr . ct original ip daddr . meta l4proto . ct original proto-dst timeout 600s : ip daddr . tcp dport }:
        // key reg 1, 9, 10, 11; data at reg 2 (the next 16-byte register) and 13, as nft 1.0.6 writes it.
        let key: [NFField] = [.saddr, .ctOriginalDaddr, .l4proto, .ctOriginalDport]
        #expect(exprs(.recordDestination(map: "affinity", key: key, timeout: 600, proto: .tcp)) == [
            .payload(base: .network, offset: 12, length: 4, dreg: 1), .ctDirection(key: 20, dreg: 9, direction: 0),
            .meta(.l4proto, dreg: 10), .ctDirection(key: 12, dreg: 11, direction: 0),
            .payload(base: .network, offset: 16, length: 4, dreg: 12), .payload(base: .transport, offset: 2, length: 2, dreg: 13),
            .dynsetUpdateMap(NFTablesSetReference("affinity"), keyRegister: 1, dataRegister: 2, timeoutMilliseconds: 600_000),
        ])
        // ip6: a 40-byte key and 20-byte data fit the 64 bytes of registers only packed: the data
        // follows the key at 4-byte register 10 (nft 1.0.6 would align it to 16 bytes and fail).
        let v6 = exprs(.recordDestination(map: "affinity", key: key, timeout: 600, proto: .tcp), .ip6)
        #expect(v6[4] == .payload(base: .network, offset: 24, length: 16, dreg: NFTablesExpression.register32(10)))
        #expect(v6[5] == .payload(base: .transport, offset: 2, length: 2, dreg: NFTablesExpression.register32(14)))
        let record: NFTablesExpression = .dynsetUpdateMap(NFTablesSetReference("affinity"), keyRegister: 1,
                                                          dataRegister: NFTablesExpression.register32(10), timeoutMilliseconds: 600_000)
        #expect(v6.count == 7)
        #expect(v6[6] == record)
    }

    @Test func anonymousSetsComeBeforeTheirRule() {
        let rule = NFRule([.numgenVmap([.goto("a"), .goto("b")])])
        let (requests, origin) = enc.requests([.addRule(.ip, chain: "c", rule)], anonymousTag: "x_1_")
        #expect(requests.map(\.operation) == ["add nftables set", "add nftables elements", "add nftables rule"])
        #expect(origin == [0, 0, 0])
        #expect(requests[0].object == "nodenet __mapx_1_1")
    }

    @Test func intervalsAreSortedMergedAndEnded() {
        // { 5.6.7.8, 1.2.3.0/24, 1.2.4.0/24 }: 0 (end), 1.2.3.0, 1.2.5.0 (end), 5.6.7.8, 5.6.7.9 (end)
        let e = NetlinkRuleEncoder.intervals([.address(ip("5.6.7.8")), .prefix(IPPrefix("1.2.3.0/24")!), .prefix(IPPrefix("1.2.4.0/24")!)])
        #expect(e == [NFTablesElement(key: [0, 0, 0, 0], intervalEnd: true), NFTablesElement(key: [1, 2, 3, 0]),
                      NFTablesElement(key: [1, 2, 5, 0], intervalEnd: true), NFTablesElement(key: [5, 6, 7, 8]),
                      NFTablesElement(key: [5, 6, 7, 9], intervalEnd: true)])
        // Up to the top of the space: no end element.
        #expect(NetlinkRuleEncoder.intervals([.prefix(IPPrefix("255.0.0.0/8")!)]).last == NFTablesElement(key: [255, 0, 0, 0]))
    }

    @Test func setSpecsAndKeysRoundTrip() {
        let spec = SetSpec("service-ips", key: [.ipv4Addr, .inetProto, .inetService], verdictMap: true)
        let s = NetlinkRuleEncoder.set(spec, .ip)
        #expect(s.keyType == 0x730d && s.keyLength == 12 && s.flags == 8 && s.dataType == 0xffff_ff00)
        let info = NFTablesSetInfo(table: "nodenet", name: "service-ips", keyType: s.keyType, keyLength: s.keyLength, flags: s.flags,
                                   dataType: s.dataType, timeoutMilliseconds: nil)
        #expect(NetlinkRulesetBackend.spec(info) == spec)
        let key = ElementKey([.address(ip("10.96.0.10")), .proto(.tcp), .port(80)])
        let bytes = NetlinkRuleEncoder.key(key)
        #expect(bytes == [10, 96, 0, 10, 6, 0, 0, 0, 0, 80, 0, 0])
        #expect(NetlinkRulesetBackend.elementKey(bytes, spec.keyType) == key)
        #expect(NetlinkRulesetBackend.elementKey(Array(bytes.dropLast()), spec.keyType) == nil)
        let affinity = NetlinkRuleEncoder.set(SetSpec("a", key: [.ipv4Addr], timeout: 600), .ip)
        #expect(affinity.flags == 0x30 && affinity.timeoutMilliseconds == 600_000 && affinity.keyLength == 4)
    }

    @Test func digestsFollowTheRuleText() {
        let r = NFRule([.verdict(.goto("x"))])
        #expect(NetlinkRuleEncoder.digest(.ip, "c", r) == NetlinkRuleEncoder.digest(.ip, "c", r))
        #expect(NetlinkRuleEncoder.digest(.ip, "c", r) != NetlinkRuleEncoder.digest(.ip, "d", r))
        #expect(NetlinkRuleEncoder.digest(.ip, "c", r) != NetlinkRuleEncoder.digest(.ip, "c", NFRule([.verdict(.goto("y"))])))
    }

    /// After a restart every chain is flushed and rewritten (rules unknown), and the backend may
    /// drop the rewrites whose digests the kernel already holds; never for a chain that uses a
    /// set the transaction re-creates (the kernel refuses to delete a set in use: the restart
    /// after an affinity timeout change failed with EBUSY, forever), nor for a chain it re-creates.
    @Test func restartRewritesAroundRecreatedSetsAreNotSkippable() async throws {
        let slices = [slice("sticky", [EP(ip: "10.244.1.5"), EP(ip: "10.244.2.5")]), slice("web", [EP(ip: "10.244.1.6")])]
        var kernel = (await desired([service("sticky", affinity: 600), service("web", ips: ["10.96.0.11"])], slices)).model
        for (family, table) in kernel.tables {
            for name in table.chains.keys { kernel.tables[family]?.chains[name]?.rules = nil }
        }
        var planner = ServiceProxyPlanner(configuration: testConfig)
        let plan = planner.plan(snapshot: await snapshot([service("sticky", affinity: 300), service("web", ips: ["10.96.0.11"])], slices),
                                applied: kernel)
        // The old timeout's set goes; the record rules that used it are rewritten (their digests
        // differ from the kernel's, so the backend cannot drop that rewrite: no EBUSY).
        #expect(plan.operations.contains(.deleteSet(.ip, name: "aff-600s")))
        #expect(plan.operations.contains(.addSet(.ip, SetSpec("aff-300s", key: [.ipv4Addr, .inetProto, .inetService]))))
        let skippable = NetlinkRulesetBackend.skippableRewrites(plan.operations)
        let names = Set(skippable.keys.map { "\($0.family.rawValue) \($0.chain)" })
        for chain in ["services", "cluster-lb", "external-local", "nat-postrouting"] {
            #expect(names.contains("ip \(chain)"), "\(chain)")
        }
        let old = kernel.tables[.ip]?.chains["nat-postrouting"]
        #expect(old?.rules == nil)
        let fresh = (await desired([service("sticky", affinity: 600), service("web", ips: ["10.96.0.11"])], slices)).model
        let oldDigests = (fresh.tables[.ip]?.chains["nat-postrouting"]?.rules ?? []).map { NetlinkRuleEncoder.digest(.ip, "nat-postrouting", $0) }
        #expect(skippable[.init(family: .ip, chain: "nat-postrouting")] != oldDigests)

        let rule = NFRule([.verdict(.accept)])
        let recreated: [RulesetOperation] = [.flushChain(.ip, name: "x"), .flushChain(.ip, name: "y"), .deleteChain(.ip, name: "x"),
                                             .addChain(.ip, name: "x", base: BaseChainSpec(.filter, .input, priority: 0)),
                                             .addRule(.ip, chain: "x", rule), .addRule(.ip, chain: "y", rule)]
        #expect(NetlinkRulesetBackend.skippableRewrites(recreated) == [.init(family: .ip, chain: "y"): [NetlinkRuleEncoder.digest(.ip, "y", rule)]])
    }
}
