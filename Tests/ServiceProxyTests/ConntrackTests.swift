import ClusterState
import Testing
@testable import ServiceProxy

@Suite struct ConntrackTests {
    let dns = service("dns", type: .nodePort, ports: [ServicePort(name: "dns", protocol: .udp, port: 53, targetPort: .int(5353), nodePort: 30053)],
                      externalIPs: ["203.0.113.53"])
    func dnsSlice(_ ips: [String]) -> EndpointSlice {
        slice("dns", ports: [EndpointPort(name: "dns", protocol: .udp, port: 5353)], ips.map { EP(ip: $0) })
    }

    /// The filters for the dns service going from `old` endpoints to `new` ones (nil: no slice).
    func filters(_ old: [String]?, _ new: [String]?) async -> [String] {
        let before = await desired([dns], old.map { [dnsSlice($0)] } ?? [])
        let after = await desired([dns], new.map { [dnsSlice($0)] } ?? [])
        let id = NamespacedName("ns1", "dns")
        return StaleConntrack.filters(old: before.udpPorts[id] ?? [:], new: after.udpPorts[id] ?? [:]).map(\.description)
    }

    @Test func endpointRemovedClearsFlowsDNATedToIt() async {
        #expect(await filters(["10.244.1.1", "10.244.1.2"], ["10.244.1.1"]) == [
            "-f ipv4 -p udp --orig-dst 10.96.0.10 --orig-port-dst 53 --reply-src 10.244.1.2",
            "-f ipv4 -p udp --orig-dst 203.0.113.53 --orig-port-dst 53 --reply-src 10.244.1.2",
            "-f ipv4 -p udp --orig-port-dst 30053 --reply-src 10.244.1.2",
        ])
    }

    @Test func firstEndpointClearsEveryFlowToTheService() async {
        #expect(await filters(nil, ["10.244.1.1"]) == [
            "-f ipv4 -p udp --orig-dst 10.96.0.10 --orig-port-dst 53",
            "-f ipv4 -p udp --orig-dst 203.0.113.53 --orig-port-dst 53",
            "-f ipv4 -p udp --orig-port-dst 30053",
        ])
    }

    @Test func tcpAndUnchangedUDPNeedNothing() async {
        #expect(await filters(["10.244.1.1"], ["10.244.1.1"]).isEmpty)
        let tcpOld = await desired([service("web")], [slice("web", [EP(ip: "10.244.1.1"), EP(ip: "10.244.1.2")])])
        #expect(tcpOld.udpPorts.isEmpty)
    }

    @Test func serviceDeletedClearsItsEndpointsFlows() async {
        let old = await desired([dns], [dnsSlice(["10.244.1.1"])])
        let id = NamespacedName("ns1", "dns")
        let filters = StaleConntrack.filters(old: old.udpPorts[id]!, new: [:])
        #expect(filters.count == 3)
        #expect(filters.allSatisfy { $0.replySource == ip("10.244.1.1") })
    }

    @Test func plannerReportsFiltersForDirtyServicesOnly() async throws {
        let store = ClusterStore()
        await store.apply([.upsert(.service(dns)), .upsert(.service(service("web", ips: ["10.96.0.11"])))])
        var planner = ServiceProxyPlanner(configuration: testConfig)
        // The first plan after start knows no history: it deletes only flows whose reply source
        // is not a current endpoint (the web service is TCP: nothing).
        await store.apply([.upsert(.endpointSlice(dnsSlice(["10.244.1.9"])))])
        #expect(planner.plan(snapshot: await store.snapshot(), applied: nil).conntrack.map(\.description) == [
            "-f ipv4 -p udp --orig-dst 10.96.0.10 --orig-port-dst 53 --reply-src-not 10.244.1.9",
            "-f ipv4 -p udp --orig-dst 203.0.113.53 --orig-port-dst 53 --reply-src-not 10.244.1.9",
            "-f ipv4 -p udp --orig-port-dst 30053 --reply-src-not 10.244.1.9",
        ])
        // A later full plan: the flows DNATed to the endpoint that went, and every flow off the
        // current endpoints (none now).
        await store.apply([.delete(ObjectKey(.endpointSlice, namespace: "ns1", name: "dns-ipv4"))])
        planner.requestFullSync()
        let full = planner.plan(snapshot: await store.snapshot(), applied: nil).conntrack
        #expect(full.count == 6)
        #expect(full.filter { $0.replySource == ip("10.244.1.9") }.count == 3)
        #expect(full.filter { $0.keepingReplySources == [] }.count == 3)
        let events = await store.subscribe()
        await store.apply([.upsert(.endpointSlice(dnsSlice(["10.244.1.1"])))])
        planner.record(try #require(await events.nextEvent()))
        let plan = planner.plan(snapshot: await store.snapshot(), applied: nil)
        #expect(plan.conntrack.count == 3)
        #expect(plan.conntrack.allSatisfy { $0.replySource == nil })
    }

    /// A start filter keeps flows to current endpoints, deletes the others (also flows to the
    /// service IP never DNATed); without a destination (NodePort) only DNATed flows.
    @Test func offEndpointFiltersSelectFlowsOffTheCurrentEndpoints() {
        let service = ConntrackFilter(family: .v4, originalDestination: ip("10.96.0.10"), originalDestinationPort: 53, replySource: nil,
                                      keepingReplySources: [ip("10.244.1.1")])
        #expect(!service.matches(originalDestination: ip("10.96.0.10"), port: 53, replySource: ip("10.244.1.1")))
        #expect(service.matches(originalDestination: ip("10.96.0.10"), port: 53, replySource: ip("10.244.1.2")))
        #expect(service.matches(originalDestination: ip("10.96.0.10"), port: 53, replySource: ip("10.96.0.10")))
        #expect(!service.matches(originalDestination: ip("10.96.0.11"), port: 53, replySource: ip("10.244.1.2")))
        #expect(!service.matches(originalDestination: ip("10.96.0.10"), port: 54, replySource: ip("10.244.1.2")))
        let nodePort = ConntrackFilter(family: .v4, originalDestination: nil, originalDestinationPort: 30053, replySource: nil,
                                       keepingReplySources: [ip("10.244.1.1")])
        #expect(nodePort.matches(originalDestination: ip("192.168.1.11"), port: 30053, replySource: ip("10.244.1.2")))
        #expect(!nodePort.matches(originalDestination: ip("192.0.2.7"), port: 30053, replySource: ip("192.0.2.7")), "not DNATed")
        #expect(!nodePort.matches(originalDestination: ip("192.168.1.11"), port: 30053, replySource: ip("10.244.1.1")))
        // The index the deleters use answers the same as the filters it holds.
        let index = ConntrackFilterIndex([service, nodePort])
        #expect(index.matches(originalDestination: ip("10.96.0.10"), port: 53, replySource: ip("10.244.1.2")))
        #expect(!index.matches(originalDestination: ip("10.96.0.10"), port: 53, replySource: ip("10.244.1.1")))
        #expect(index.matches(originalDestination: ip("192.168.1.11"), port: 30053, replySource: ip("10.244.1.2")))
        #expect(!index.matches(originalDestination: ip("10.96.0.11"), port: 53, replySource: ip("10.244.1.2")))
    }

    @Test func conntrackToolLinesParse() throws {
        let e = try #require(ConntrackLine("udp      17 28 src=10.244.3.5 dst=10.96.0.20 sport=40353 dport=53 [UNREPLIED] "
                                           + "src=10.244.1.5 dst=10.244.3.5 sport=5353 dport=40353 mark=0 use=1"))
        #expect(e.source == ip("10.244.3.5") && e.destination == ip("10.96.0.20") && e.sourcePort == 40353 && e.destinationPort == 53)
        #expect(e.replySource == ip("10.244.1.5"))
        #expect(ConntrackLine("conntrack v1.4.7 (conntrack-tools): 1 flow entries have been shown.") == nil)
    }
}
