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

func netlinkBackend(in ns: TestNamespace, additionBatchLimit: Int = 10_000) throws -> NetlinkRulesetBackend {
    try NetlinkRulesetBackend(namespace: NetworkNamespace(named: ns.name), additionBatchLimit: additionBatchLimit)
}

@Suite(.serialized, .enabled(if: isPrivileged, "needs root and ip/nft")) struct NetlinkBackendTests {
    /// The oracle: the same model through netlink in one namespace and as `nft -f` text in
    /// another must list identically. With a tiny batch limit the load goes as many batches
    /// (cut between operations), and must end the same.
    @Test(arguments: [10_000, 7]) func fullModelListsLikeNftF(additionBatchLimit: Int) async throws {
        let viaNetlink = try TestNamespace("nlbe"), viaNft = try TestNamespace("nftf")
        defer { viaNetlink.delete(); viaNft.delete() }
        let (services, slices) = featureCluster()
        let d = await desired(services, slices)
        let ops = RulesetDiff.operations(from: nil, to: d.model)
        let b = try netlinkBackend(in: viaNetlink, additionBatchLimit: additionBatchLimit)
        try await b.apply(ops)
        let file = TempDirectory()
        try viaNft.check(["nft", "-f", file.write("rules.nft", NftRenderer().script(ops))])
        expectSameListing(try normalizedListing(viaNetlink), try normalizedListing(viaNft))
        // And the dump reads back as the model (chains, hooks, sets, elements).
        expectKernel(try await b.currentState(), equals: d.model)
    }

    /// An incremental transaction on top of a full one, both ways, lists identically too;
    /// and the netlink side then reads back as the planner's model.
    @Test func incrementalTransactionListsLikeNftF() async throws {
        let viaNetlink = try TestNamespace("nlbe"), viaNft = try TestNamespace("nftf")
        defer { viaNetlink.delete(); viaNft.delete() }
        let b = try netlinkBackend(in: viaNetlink), n = try backend(in: viaNft)
        let (services, slices) = featureCluster()
        let store = ClusterStore()
        await store.apply(services.map { .upsert(.service($0)) } + slices.map { .upsert(.endpointSlice($0)) })
        var planner = ServiceProxyPlanner(configuration: testConfig)
        let first = planner.plan(snapshot: await store.snapshot(), applied: nil)
        try await b.apply(first.operations)
        try await n.apply(first.operations)
        let events = await store.subscribe()
        var web = services[0]
        web.type = .nodePort
        web.ports = [ServicePort(name: "http", port: 80, targetPort: .int(8080), nodePort: 30081)]
        await store.apply([
            .upsert(.service(web)),
            .upsert(.endpointSlice(slice("lb", ports: [EndpointPort(name: "https", port: 8443)], [EP(ip: "10.244.3.1", node: "node3")]))),
            .delete(ObjectKey(.service, namespace: "ns1", name: "sctp")),
        ])
        planner.record(try #require(await events.nextEvent()))
        let second = planner.plan(snapshot: await store.snapshot(), applied: nil)
        #expect(!second.full && !second.operations.isEmpty)
        try await b.apply(second.operations)
        try await n.apply(second.operations)
        expectSameListing(try normalizedListing(viaNetlink), try normalizedListing(viaNft))
        expectKernel(try await b.currentState(), equals: planner.desired.model)
    }

    /// After a restart the planner rewrites every chain (rules unknown); chains whose kernel
    /// rules carry the same digests are left alone: same rule handles, nothing rewritten. A
    /// chain changed behind our back is still rewritten.
    /// The start-up probe of every kernel feature the shape uses passes here and leaves nothing.
    @Test func kernelFeatureProbeLeavesNothing() async throws {
        let ns = try TestNamespace("nlbe")
        defer { ns.delete() }
        try await netlinkBackend(in: ns).checkKernelFeatures()
        #expect(try ns.check(["nft", "list", "ruleset"]).stdout.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty)
    }

    @Test func restartLeavesUnchangedChainsAlone() async throws {
        let ns = try TestNamespace("nlbe")
        defer { ns.delete() }
        let (services, slices) = featureCluster()
        let d = await desired(services, slices)
        try await netlinkBackend(in: ns).apply(RulesetDiff.operations(from: nil, to: d.model))
        // Someone adds a rule to one chain: that chain must be rewritten.
        try ns.check(["nft", "add", "rule", "ip", "nodenet", "cluster-lb", "counter"])
        let before = try ns.check(["nft", "-a", "list", "table", "ip", "nodenet"]).stdout
        let restarted = try netlinkBackend(in: ns)
        var planner = ServiceProxyPlanner(configuration: testConfig)
        let plan = planner.plan(snapshot: await snapshot(services, slices), applied: try await restarted.currentState())
        #expect(plan.operations.contains { if case .flushChain = $0 { true } else { false } }, "the plan rewrites chains")
        try await restarted.apply(plan.operations)
        let after = try ns.check(["nft", "-a", "list", "table", "ip", "nodenet"]).stdout
        func chain(_ text: String, _ name: String) -> String {
            text.components(separatedBy: "chain \(name) {").dropFirst().first?.components(separatedBy: "\n\t}").first ?? ""
        }
        #expect(chain(after, "external-local") == chain(before, "external-local"), "same handles: not rewritten")
        #expect(chain(after, "services") == chain(before, "services"))
        #expect(chain(before, "cluster-lb").contains("counter"))
        #expect(!chain(after, "cluster-lb").contains("counter"), "the changed chain was rewritten")
        let again = try netlinkBackend(in: ns)
        expectKernel(try await again.currentState(), equals: d.model)
    }

    /// A refused message aborts the whole batch: nothing changes, and the error names the
    /// operation (in nft syntax) and the kernel's reason.
    @Test func failingTransactionNamesTheOperation() async throws {
        let ns = try TestNamespace("nlbe")
        defer { ns.delete() }
        let b = try netlinkBackend(in: ns)
        try await b.apply(RulesetDiff.operations(from: nil, to: DesiredState(configuration: testConfig).model))
        let before = try normalizedListing(ns)
        let bad: [RulesetOperation] = [
            .addChain(.ip, name: "service-new", base: nil),
            .addElements(.ip, set: "cluster-ips", [ElementKey([.address(ip("10.96.0.99"))]): nil]),
            .addRule(.ip, chain: "service-new", NFRule([.verdict(.jump("no-such-chain"))])),
        ]
        do {
            try await b.apply(bad)
            Issue.record("a jump to a missing chain was accepted")
        } catch {
            #expect(error.operation == "add rule ip nodenet service-new jump no-such-chain", "\(error)")
            #expect(error.message.contains("ENOENT"), "\(error)")
        }
        #expect(try normalizedListing(ns) == before)
    }
}

/// The two ways rules reach the kernel; kernel and traffic tests run once with each.
enum BackendKind: String, CaseIterable, Sendable, CustomTestStringConvertible {
    case nft, netlink
    var testDescription: String { rawValue }
}

func backend(_ kind: BackendKind, in ns: TestNamespace) throws -> any RulesetBackend {
    switch kind {
    case .nft: try backend(in: ns)
    case .netlink: try netlinkBackend(in: ns)
    }
}
