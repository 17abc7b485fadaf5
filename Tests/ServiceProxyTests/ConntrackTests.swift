import ClusterState
import Testing
@testable import ServiceProxy

@Suite struct ConntrackTests {
    let dns = service("dns", type: .nodePort, ports: [ServicePort(name: "dns", protocol: .udp, port: 53, targetPort: .int(5353), nodePort: 30053)],
                      externalIPs: ["203.0.113.53"])
    func dnsSlice(_ ips: [String]) -> EndpointSlice {
        slice("dns", ports: [EndpointPort(name: "dns", protocol: .udp, port: 5353)], ips.map { EP(ip: $0) })
    }

    @Test func endpointRemovedClearsFlowsDNATedToIt() async {
        let old = await desired([dns], [dnsSlice(["10.244.1.1", "10.244.1.2"])])
        let new = await desired([dns], [dnsSlice(["10.244.1.1"])])
        let id = NamespacedName("ns1", "dns")
        let filters = StaleConntrack.filters(old: old.udpPorts[id] ?? [:], new: new.udpPorts[id] ?? [:])
        #expect(filters.map(\.description) == [
            "-f ipv4 -p udp --orig-dst 10.96.0.10 --orig-port-dst 53 --reply-src 10.244.1.2",
            "-f ipv4 -p udp --orig-dst 203.0.113.53 --orig-port-dst 53 --reply-src 10.244.1.2",
            "-f ipv4 -p udp --orig-port-dst 30053 --reply-src 10.244.1.2",
        ])
    }

    @Test func firstEndpointClearsEveryFlowToTheService() async {
        let old = await desired([dns], [])
        let new = await desired([dns], [dnsSlice(["10.244.1.1"])])
        let id = NamespacedName("ns1", "dns")
        let filters = StaleConntrack.filters(old: old.udpPorts[id] ?? [:], new: new.udpPorts[id] ?? [:])
        #expect(filters.map(\.description) == [
            "-f ipv4 -p udp --orig-dst 10.96.0.10 --orig-port-dst 53",
            "-f ipv4 -p udp --orig-dst 203.0.113.53 --orig-port-dst 53",
            "-f ipv4 -p udp --orig-port-dst 30053",
        ])
    }

    @Test func tcpAndUnchangedUDPNeedNothing() async {
        let same = await desired([dns], [dnsSlice(["10.244.1.1"])])
        let id = NamespacedName("ns1", "dns")
        #expect(StaleConntrack.filters(old: same.udpPorts[id]!, new: same.udpPorts[id]!).isEmpty)
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
        _ = planner.plan(snapshot: await store.snapshot(), applied: nil)
        let events = await store.subscribe()
        await store.apply([.upsert(.endpointSlice(dnsSlice(["10.244.1.1"])))])
        planner.record(try #require(await events.nextEvent()))
        let plan = planner.plan(snapshot: await store.snapshot(), applied: nil)
        #expect(plan.conntrack.count == 3)
        #expect(plan.conntrack.allSatisfy { $0.replySource == nil })
    }
}
