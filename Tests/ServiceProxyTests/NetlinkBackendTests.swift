import ClusterState
import Foundation
import Netlink
import NodenetTestSupport
import Testing
@testable import ServiceProxy

/// `nft -j list table` of both families, normalized for comparison: handles dropped (they
/// count every object ever created), arrays sorted (set elements come back in hash order).
func normalizedListing(_ ns: TestNamespace) throws -> [String] {
    var out: [String] = []
    for family in ["ip", "ip6"] {
        let r = try ns.run(["nft", "-j", "list", "table", family, "nodenet"])
        guard r.status == 0 else { out.append("\(family): none"); continue }
        let root = try JSONSerialization.jsonObject(with: Data(r.stdout.utf8))
        guard let items = (root as? [String: Any])?["nftables"] as? [Any] else { continue }
        out += items.compactMap { item -> String? in
            guard let o = item as? [String: Any], o["metainfo"] == nil else { return nil }
            return canonical(normalize(o))
        }.sorted()
    }
    return out
}

private func normalize(_ v: Any) -> Any {
    if var o = v as? [String: Any] {
        o["handle"] = nil
        for (k, x) in o { o[k] = normalize(x) }
        if let e = o["elem"] as? [Any] { o["elem"] = e.map(canonical).sorted() }
        return o
    }
    if let a = v as? [Any] { return a.map(normalize) }
    return v
}

private func canonical(_ v: Any) -> String {
    guard JSONSerialization.isValidJSONObject([v]),
          let d = try? JSONSerialization.data(withJSONObject: [v], options: [.sortedKeys]) else { return "\(v)" }
    return String(decoding: d, as: UTF8.self)
}

/// Records the lines only one side has (the whole listing is too long to read in a failure).
func expectSameListing(_ got: [String], _ want: [String], sourceLocation: SourceLocation = #_sourceLocation) {
    let onlyGot = got.filter { !want.contains($0) }, onlyWant = want.filter { !got.contains($0) }
    for line in onlyGot.prefix(4) { Issue.record("only via netlink: \(line)", sourceLocation: sourceLocation) }
    for line in onlyWant.prefix(4) { Issue.record("only via nft -f: \(line)", sourceLocation: sourceLocation) }
    #expect(got.count == want.count, sourceLocation: sourceLocation)
}

func netlinkBackend(in ns: TestNamespace) throws -> NetlinkRulesetBackend {
    try NetlinkRulesetBackend(namespace: NetworkNamespace(named: ns.name))
}

@Suite(.serialized, .enabled(if: isPrivileged, "needs root and ip/nft")) struct NetlinkBackendTests {
    /// The oracle: the same model through netlink in one namespace and as `nft -f` text in
    /// another must list identically.
    @Test func fullModelListsLikeNftF() async throws {
        let viaNetlink = try TestNamespace("nlbe"), viaNft = try TestNamespace("nftf")
        defer { viaNetlink.delete(); viaNft.delete() }
        let (services, slices) = featureCluster()
        let d = await desired(services, slices)
        let ops = RulesetDiff.operations(from: nil, to: d.model)
        let b = try netlinkBackend(in: viaNetlink)
        try await b.apply(ops)
        let file = TempDirectory()
        try viaNft.check(["nft", "-f", file.write("rules.nft", NftRenderer().script(ops))])
        expectSameListing(try normalizedListing(viaNetlink), try normalizedListing(viaNft))
        // And the dump reads back as the model (chains, hooks, sets, elements).
        expectKernel(try await b.currentState(), equals: d.model)
    }
}
