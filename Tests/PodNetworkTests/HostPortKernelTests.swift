import ClusterState
import Foundation
import IPAddressing
import Netlink
import NodenetTestSupport
import Testing
@testable import PodNetwork

/// The host port chains against the real kernel, in a namespace of the test's own.
@Suite(.serialized, .enabled(if: isPrivileged && (try? Shell.which("nft")) != nil, "needs root and nft"))
struct HostPortKernelTests {
    static let cidrs = [IPPrefix("10.244.101.0/24")!, IPPrefix("fd00:10:244:101::/64")!]

    /// The rules nft lists in `family`'s nodenet table.
    static func listedRules(_ ns: TestNamespace, _ family: String) throws -> Int {
        let text = try ns.check(["nft", "-j", "list", "table", family, "nodenet"]).stdout
        let root = try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any]
        let items = root?["nftables"] as? [[String: Any]] ?? []
        return items.filter { $0["rule"] != nil }.count
    }

    /// A pod with a realistic 64-hex container id, dual-stack, whose IPv6 hairpin rule has a
    /// comment over the 127 bytes the rule's comment keeps: a second sync changes nothing,
    /// CHECK finds every rule, and the kernel holds each rule once.
    @Test func rulesWithLongCommentsAreFoundAgain() throws {
        let ns = try TestNamespace("hostport")
        defer { ns.delete() }
        let session = try NetlinkSession(protocol: Netlink.netfilter, namespace: NetworkNamespace(path: ns.path))
        let table = HostPortTable(session: session)
        table.load([])
        let key = String(repeating: "4f2a9c81d7e6b035", count: 4) + "/eth0"
        let mappings: [PodAttachment.PortMapping] = [
            .init(hostPort: 8080, containerPort: 8080),
            .init(hostPort: 8443, containerPort: 443, hostIP: IPAddress("fd00:1111:2222:3333::11")),
        ]
        try table.claim(key: key, mappings, version: "1.1.0")
        table.bind(key: key, ips: [IPPrefix("10.244.101.43/24")!, IPPrefix("fd00:10:244:101::1a2b/64")!])
        let binding = try #require(table.bindings.first)

        var wanted = 0, longest = 0
        for family in IPFamily.allCases {
            for role in HostPortRules.Role.allCases {
                let rules = HostPortRules.rules(role, family: family, bindings: [binding], podCIDRs: Self.cidrs)
                wanted += rules.count
                longest = max(longest, rules.map(\.comment.utf8.count).max() ?? 0)
            }
        }
        #expect(longest > 127, "the fixture needs a comment longer than the kernel keeps")

        #expect(try table.sync(podCIDRs: Self.cidrs) == wanted, "the first sync adds every rule")
        #expect(try table.sync(podCIDRs: Self.cidrs) == 0, "a second sync changes nothing (no delete and re-add)")
        #expect(table.missing(binding, podCIDRs: Self.cidrs).isEmpty, "CHECK finds every rule")
        #expect(try Self.listedRules(ns, "ip") + Self.listedRules(ns, "ip6") == wanted, "each rule once")

        // A rule removed behind the agent's back is named by CHECK and restored by the next sync.
        try ns.check(["nft", "flush", "chain", "ip6", "nodenet", "hostports-hairpin"])
        let hairpin = HostPortRules.rules(.hairpin, family: .v6, bindings: [binding], podCIDRs: Self.cidrs).count
        let missing = table.missing(binding, podCIDRs: Self.cidrs)
        #expect(missing.count == hairpin && missing.allSatisfy { $0.hasPrefix("hostports-hairpin: ") }, "\(missing)")
        #expect(try table.sync(podCIDRs: Self.cidrs) == hairpin)
        #expect(table.missing(binding, podCIDRs: Self.cidrs).isEmpty)
    }
}
