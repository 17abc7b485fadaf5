import ClusterState
import Foundation
import Logging
import NodenetTestSupport
import Testing
@testable import ServiceProxy

/// A cluster using every feature at once: the oracle is the kernel accepting it.
func featureCluster() -> ([Service], [EndpointSlice]) {
    let services = [
        service("web"),
        service("np", type: .nodePort, ips: ["10.96.0.11"], ports: [ServicePort(name: "dns", protocol: .udp, port: 53, targetPort: .int(5353), nodePort: 30053)],
                affinity: 600),
        service("lb", type: .loadBalancer, ips: ["10.96.0.12", "fd00:96::12"],
                ports: [ServicePort(name: "https", port: 443, targetPort: .int(8443), nodePort: 31443)],
                etp: .local, externalIPs: ["203.0.113.9"], ingress: ["198.51.100.7", "2001:db8::7"],
                sourceRanges: ["192.0.2.0/24", "192.168.1.0/24", "2001:db8:1::/48"]),
        service("local", ips: ["10.96.0.13"], itp: .local),
        service("empty", type: .nodePort, ips: ["10.96.0.14"], ports: [ServicePort(name: "http", port: 80, nodePort: 30080)]),
        service("sctp", ips: ["10.96.0.15"], ports: [ServicePort(name: "s", protocol: .sctp, port: 9999, targetPort: .int(9999))]),
    ]
    let slices = [
        slice("web", [EP(ip: "10.244.1.5"), EP(ip: "10.244.2.7", node: "node2")]),
        slice("np", ports: [EndpointPort(name: "dns", protocol: .udp, port: 5353)], [EP(ip: "10.244.1.6")]),
        slice("lb", ports: [EndpointPort(name: "https", port: 8443)], [EP(ip: "10.244.1.7"), EP(ip: "10.244.3.1", node: "node3")]),
        slice("lb", family: .ipv6, ports: [EndpointPort(name: "https", port: 8443)], [EP(ip: "fd00:10:244:1::7")]),
        slice("local", [EP(ip: "10.244.1.8"), EP(ip: "10.244.2.8", node: "node2")]),
        slice("sctp", ports: [EndpointPort(name: "s", protocol: .sctp, port: 9999)], [EP(ip: "10.244.1.9", ready: false, serving: true, terminating: true)]),
    ]
    return (services, slices)
}

func backend(in ns: TestNamespace) throws -> NftCommandBackend {
    NftCommandBackend(nftPath: try Shell.which("nft"), conntrackPath: try Shell.which("conntrack"),
                      commandPrefix: [try Shell.which("ip"), "netns", "exec", ns.name])
}

/// Compares what the kernel holds with the model: same chains (and hooks), same sets, same elements.
func expectKernel(_ kernel: RulesetModel?, equals model: RulesetModel, sourceLocation: SourceLocation = #_sourceLocation) {
    guard let kernel else { Issue.record("no tables in the kernel", sourceLocation: sourceLocation); return }
    for family in TableFamily.allCases {
        let k = kernel.tables[family], m = model.tables[family]
        #expect(Set(k?.chains.keys ?? [:].keys) == Set(m?.chains.keys ?? [:].keys), "\(family) chains", sourceLocation: sourceLocation)
        #expect(k?.chains.mapValues(\.base) == m?.chains.mapValues(\.base), "\(family) base chains", sourceLocation: sourceLocation)
        #expect(k?.sets.mapValues(\.spec) == m?.sets.mapValues(\.spec), "\(family) sets", sourceLocation: sourceLocation)
        #expect(k?.sets.mapValues(\.elements) == m?.sets.mapValues(\.elements), "\(family) elements", sourceLocation: sourceLocation)
    }
    // With rules taken on trust, nothing is left to do.
    #expect(RulesetDiff.operations(from: kernel.assumingRules(from: model), to: model).isEmpty, sourceLocation: sourceLocation)
}

@Suite(.serialized, .enabled(if: isPrivileged, "needs root and ip/nft")) struct KernelTests {
    @Test func renderedRulesetIsValidNftablesAndReadsBack() async throws {
        let ns = try TestNamespace("proxy")
        defer { ns.delete() }
        let (services, slices) = featureCluster()
        let d = await desired(services, slices)
        #expect(d.skipped.isEmpty, "\(d.skipped)")
        // The oracle: `nft -f` of the rendered text.
        let file = TempDirectory()
        try ns.check(["nft", "-f", file.write("rules.nft", NftRenderer().ruleset(d.model))])
        let json = try ns.check(["nft", "-j", "list", "table", "ip", "nodenet"]).stdout
        #expect(json.contains("\"name\": \"backends\"") || json.contains("\"name\":\"backends\""))
        let b = try backend(in: ns)
        let kernel = try #require(try await b.currentState())
        expectKernel(kernel, equals: d.model)
        #expect(kernel.elementCount == d.model.elementCount)
        // IPv6: the LB's ClusterIP and ingress IP, one endpoint each (the ingress IP with eTP
        // Local also in backends-local).
        #expect(kernel.tables[.ip6]?.sets["backends"]?.elements.count == 2)
        #expect(kernel.tables[.ip6]?.sets["backends-local"]?.elements.count == 1)
        #expect(kernel.tables[.ip]?.sets["aff-600s"]?.elements.count == 2)  // ClusterIP and NodePort tuples
        let listing = try ns.check(["nft", "list", "chain", "ip", "nodenet", "external-local"]).stdout
        #expect(listing.contains("short-circuit pod traffic"))
        // What nft lists, nft reads back: the listing is a valid ruleset (operators save and restore it).
        let saved = try ns.check(["nft", "list", "ruleset"]).stdout
        let ns2 = try TestNamespace("proxy2")
        defer { ns2.delete() }
        try ns2.check(["nft", "-f", file.write("saved.nft", saved)])
    }

    @Test(arguments: BackendKind.allCases) func incrementalTransactionOnTopReadsBack(_ kind: BackendKind) async throws {
        let ns = try TestNamespace("proxy")
        defer { ns.delete() }
        let b = try backend(kind, in: ns)
        let (services, slices) = featureCluster()
        let store = ClusterStore()
        await store.apply(services.map { .upsert(.service($0)) } + slices.map { .upsert(.endpointSlice($0)) })
        var planner = ServiceProxyPlanner(configuration: testConfig)
        let first = planner.plan(snapshot: await store.snapshot(), applied: try await b.currentState())
        #expect(first.full)
        try await b.apply(first.operations)

        let events = await store.subscribe()
        var np = services[1]
        np.sessionAffinityTimeout = 60            // affinity set replaced under its chains
        var web = services[0]
        web.type = .nodePort                       // ClusterIP -> NodePort
        web.ports = [ServicePort(name: "http", port: 80, targetPort: .int(8080), nodePort: 30081)]
        await store.apply([
            .upsert(.service(np)), .upsert(.service(web)),
            .upsert(.endpointSlice(slice("empty", ports: [EndpointPort(name: "http", port: 80)], [EP(ip: "10.244.1.10")]))),
            .upsert(.endpointSlice(slice("lb", ports: [EndpointPort(name: "https", port: 8443)], [EP(ip: "10.244.3.1", node: "node3")]))),
            .delete(ObjectKey(.service, namespace: "ns1", name: "sctp")),
        ])
        planner.record(try #require(await events.nextEvent()))
        let second = planner.plan(snapshot: await store.snapshot(), applied: nil)
        #expect(!second.full)
        try await b.apply(second.operations)
        expectKernel(try await b.currentState(), equals: planner.desired.model)

        // And the way back to nothing: both tables go.
        try await b.apply(RulesetDiff.operations(from: planner.desired.model, to: RulesetModel()))
        #expect(try await b.currentState() == nil)
    }

    @Test(arguments: BackendKind.allCases) func failedTransactionChangesNothingAndSaysWhy(_ kind: BackendKind) async throws {
        let ns = try TestNamespace("proxy")
        defer { ns.delete() }
        let b = try backend(kind, in: ns)
        let d = DesiredState(configuration: testConfig)
        try await b.apply(RulesetDiff.operations(from: nil, to: d.model))
        let before = try await b.currentState()
        let bad: [RulesetOperation] = [
            .addChain(.ip, name: "service-x", base: nil),
            .addRule(.ip, chain: "service-x", NFRule([.verdict(.goto("missing-chain"))])),
        ]
        await #expect(throws: BackendError.self) { try await b.apply(bad) }
        do {
            try await b.apply(bad)
        } catch {
            #expect(error.description.contains("missing-chain") || error.description.contains("No such file"))
        }
        #expect(try await b.currentState() == before)
    }

    @Test(arguments: BackendKind.allCases) func actorProgramsTheStoreAndFollowsChanges(_ kind: BackendKind) async throws {
        let ns = try TestNamespace("proxy")
        defer { ns.delete() }
        let b = try backend(kind, in: ns)
        let store = ClusterStore()
        let (services, slices) = featureCluster()
        await store.apply(services.map { .upsert(.service($0)) } + slices.map { .upsert(.endpointSlice($0)) })
        // Something already in the kernel from a previous run: kept and corrected, not flushed.
        let stale = RulesetDiff.operations(from: nil, to: DesiredState(configuration: testConfig).model)
            + [.addChain(.ip, name: "service-ns1/gone/tcp/http", base: nil),
               .addElements(.ip, set: SharedName.noEndpointReject, [ElementKey([.address(ip("10.96.0.99")), .proto(.tcp), .port(80)]): nil])]
        try await b.apply(stale)
        var config = testConfig
        config.coalesceDelay = .milliseconds(5)
        let actor = ServiceProxyActor(store: store, configuration: config, backend: b, logger: Logger(label: "test"))
        let task = Task { await actor.run() }
        defer { task.cancel() }
        try await waitFor { await actor.status().syncs >= 1 }
        var status = await actor.status()
        #expect(status.inSync)
        #expect(status.services == 6)
        #expect(status.lastError == nil)
        let kernel = try await b.currentState()
        let web = ElementKey([.address(ip("10.96.0.10")), .proto(.tcp), .port(80)])
        #expect(kernel?.tables[.ip]?.chains["service-ns1/gone/tcp/http"] == nil)
        #expect(kernel?.tables[.ip]?.sets[SharedName.noEndpointReject]?.elements.keys.contains { $0.values.first == .address(ip("10.96.0.99")) } == false)
        #expect(kernel?.tables[.ip]?.sets["n2"]?.elements[web] != nil)

        await store.apply([.delete(ObjectKey(.service, namespace: "ns1", name: "web"))])
        try await waitFor { await actor.status().syncs >= 2 }
        status = await actor.status()
        #expect(status.services == 5)
        #expect(status.fullSyncs == 1)
        #expect(try await b.currentState()?.tables[.ip]?.sets["n2"]?.elements[web] == nil)
        #expect(await actor.rulesText().contains("add element ip nodenet aff-600s { 10.96.0.11 . udp . 53, 192.168.1.11 . udp . 30053 }"))
    }

    @Test(arguments: BackendKind.allCases) func conntrackDeleteRunsInTheNamespace(_ kind: BackendKind) async throws {
        let ns = try TestNamespace("proxy")
        defer { ns.delete() }
        let b = try backend(kind, in: ns)
        // Nothing matches in a fresh namespace: that is success, not an error.
        #expect(try await b.deleteConntrack([ConntrackFilter(family: .v4, originalDestination: ip("10.96.0.10"), originalDestinationPort: 53,
                                                     replySource: ip("10.244.1.1"))]) == 0)
    }
}

/// Polls `condition` for up to 10 s.
func waitFor(_ condition: @Sendable () async -> Bool, sourceLocation: SourceLocation = #_sourceLocation) async throws {
    let deadline = ContinuousClock.now + .seconds(10)
    while ContinuousClock.now < deadline {
        if await condition() { return }
        try await Task.sleep(for: .milliseconds(20))
    }
    Issue.record("condition not met within 10 s", sourceLocation: sourceLocation)
}
