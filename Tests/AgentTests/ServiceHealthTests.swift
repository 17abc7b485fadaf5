import ClusterState
import Foundation
import IPAddressing
import ServiceProxy
import Testing
@testable import Agent

/// The proxy's health verdict, the health check node ports' targets and the replies, without
/// sockets (`HealthEndToEndTests` serves them to real clients).
@Suite struct ProxyHealthTests {
    func status(syncs: Int, failures: Int = 0, inSync: Bool) -> ServiceProxyStatus {
        var s = ServiceProxyStatus()
        s.syncs = syncs
        s.failures = failures
        s.inSync = inSync
        return s
    }

    let t0 = Date(timeIntervalSince1970: 1_800_000_000)
    func verdict(_ h: ProxyHealth, at seconds: Double) -> ProxyHealth.Verdict {
        h.verdict(now: t0 + seconds, fullSyncInterval: .seconds(300), grace: .seconds(60))
    }

    @Test func unhealthyUntilTheFirstSync() {
        let h = ProxyHealth()
        #expect(!verdict(h, at: 0).healthy)
        h.observe(status(syncs: 0, inSync: false), at: t0)
        #expect(!verdict(h, at: 1).healthy)
        #expect(verdict(h, at: 1).lastUpdated == nil)
        h.observe(status(syncs: 1, inSync: true), at: t0 + 2)
        #expect(verdict(h, at: 3).healthy)
        #expect(verdict(h, at: 3).lastUpdated == t0 + 2)
    }

    @Test func staleWhenNoSyncForTheIntervalPlusGrace() {
        let h = ProxyHealth()
        h.observe(status(syncs: 1, inSync: true), at: t0)
        h.observe(status(syncs: 1, inSync: true), at: t0 + 200)  // no new sync: the stamp stays
        #expect(verdict(h, at: 360).healthy)
        #expect(!verdict(h, at: 361).healthy)
        h.observe(status(syncs: 2, inSync: true), at: t0 + 362)  // the periodic full sync
        #expect(verdict(h, at: 363).healthy)
    }

    @Test func failingLongerThanGrace() {
        let h = ProxyHealth()
        h.observe(status(syncs: 3, inSync: true), at: t0)
        h.observe(status(syncs: 3, failures: 1, inSync: false), at: t0 + 10)
        h.observe(status(syncs: 3, failures: 5, inSync: false), at: t0 + 40)  // retried, still failing
        #expect(verdict(h, at: 70).healthy, "a failure shorter than grace is tolerated")
        #expect(!verdict(h, at: 71).healthy)
        h.observe(status(syncs: 4, failures: 5, inSync: true), at: t0 + 72)
        #expect(verdict(h, at: 73).healthy, "a success clears the failure")
    }

    /// The actor's own timestamp of its last successful sync is used as it is.
    @Test func theActorsLastSuccessfulSyncIsUsed() {
        let h = ProxyHealth()
        var s = status(syncs: 1, inSync: true)
        s.lastSuccessfulSync = (t0 + 5).timeIntervalSince1970
        h.observe(s, at: t0 + 100)
        #expect(verdict(h, at: 100).lastUpdated == t0 + 5, "not the time it was observed")
        #expect(!verdict(h, at: 366).healthy)
        // A replaced actor (no sync yet) does not erase it.
        h.observe(status(syncs: 0, inSync: false), at: t0 + 101)
        #expect(verdict(h, at: 102).lastUpdated == t0 + 5)
    }

    @Test func aRestartedProxyIsNotTakenForASync() {
        let h = ProxyHealth()
        h.observe(status(syncs: 57, inSync: true), at: t0)
        h.observe(status(syncs: 0, inSync: false), at: t0 + 100)  // new actor (zone changed)
        #expect(verdict(h, at: 100).lastUpdated == t0)
        h.observe(status(syncs: 1, inSync: true), at: t0 + 101)
        #expect(verdict(h, at: 101).lastUpdated == t0 + 101)
    }

    /// A node being deleted fails /healthz (load balancers drain it) but not /livez.
    @Test func aNodeBeingDeletedIsNotEligible() {
        let h = ProxyHealth()
        h.observe(status(syncs: 1, inSync: true), at: t0)
        h.setNodeEligible(false)
        let healthz = HealthReplies.proxy(path: "/healthz", verdict: verdict(h, at: 1))
        #expect(healthz.status == .serviceUnavailable)
        #expect(String(decoding: healthz.body, as: UTF8.self).contains(#""nodeEligible": false"#))
        #expect(HealthReplies.proxy(path: "/livez", verdict: verdict(h, at: 1)).status == .ok)
        h.setNodeEligible(true)
        #expect(HealthReplies.proxy(path: "/healthz", verdict: verdict(h, at: 1)).status == .ok)
    }

    @Test func repliesInKubeProxysShape() throws {
        let h = ProxyHealth()
        h.observe(status(syncs: 1, inSync: true), at: t0)
        let ok = HealthReplies.proxy(path: "/healthz", verdict: verdict(h, at: 1))
        #expect(ok.status == .ok)
        let body = try #require(try JSONSerialization.jsonObject(with: Data(ok.body)) as? [String: Any])
        #expect(body["lastUpdated"] as? String == "2027-01-15T08:00:00.000Z")
        #expect(body["currentTime"] as? String == "2027-01-15T08:00:01.000Z")
        #expect(body["nodeEligible"] as? Bool == true)
        let live = HealthReplies.proxy(path: "/livez", verdict: verdict(h, at: 1))
        #expect(live.status == .ok)
        #expect(String(decoding: live.body, as: UTF8.self) == #"{"lastUpdated": "2027-01-15T08:00:00.000Z","currentTime": "2027-01-15T08:00:01.000Z"}"# + "\n")
        #expect(HealthReplies.proxy(path: "/healthz", verdict: verdict(h, at: 400)).status == .serviceUnavailable)
        #expect(HealthReplies.proxy(path: "/metrics", verdict: verdict(h, at: 1)).status == .notFound)

        let target = HealthCheckTarget(service: NamespacedName("shop", "checkout"), port: 31999, localEndpoints: 2)
        let up = HealthReplies.service(target, proxyHealthy: true)
        #expect(up.status == .ok)
        #expect(up.headers.contains { $0 == ("X-Load-Balancing-Endpoint-Weight", "2") })
        #expect(String(decoding: up.body, as: UTF8.self)
            == #"{"localEndpoints":2,"service":{"name":"checkout","namespace":"shop"},"serviceProxyHealthy":true}"# + "\n")
        var none = target
        none.localEndpoints = 0
        #expect(HealthReplies.service(none, proxyHealthy: true).status == .serviceUnavailable)
        #expect(HealthReplies.service(target, proxyHealthy: false).status == .serviceUnavailable, "an unhealthy proxy fails every port")
    }
}

@Suite struct HealthCheckTargetsTests {
    static func service(_ name: String, type: ServiceType = .loadBalancer, etp: TrafficPolicy = .local, hc: UInt16? = 31999) -> Service {
        Service(metadata: ObjectMeta(name: name, namespace: "shop"), type: type, clusterIPs: [IPAddress("10.96.41.17")!],
                ports: [ServicePort(name: "https", port: 443, nodePort: 31443)], externalTrafficPolicy: etp, healthCheckNodePort: hc)
    }

    static func slice(_ name: String, for service: String, family: EndpointAddressType = .ipv4,
                      _ endpoints: [(String, String, Bool)]) -> EndpointSlice {
        EndpointSlice(metadata: ObjectMeta(name: name, namespace: "shop", labels: [EndpointSlice.serviceNameLabel: service]),
                      addressType: family,
                      endpoints: endpoints.map { Endpoint(addresses: [IPAddress($0.0)!], conditions: EndpointConditions(ready: $0.2), nodeName: $0.1) },
                      ports: [EndpointPort(name: "https", port: 8443)])
    }

    func store(_ objects: [ClusterObject]) async -> ClusterStore {
        let store = ClusterStore()
        await store.apply(objects.map { .upsert($0) })
        return store
    }

    @Test func countsReadyLocalEndpointsOncePerPod() async {
        let store = await store([
            .service(Self.service("checkout")),
            .endpointSlice(Self.slice("checkout-v4", for: "checkout", [("10.244.1.5", "node1", true), ("10.244.1.6", "node1", false),
                                                                         ("10.244.2.5", "node2", true)])),
            .endpointSlice(Self.slice("checkout-v6", for: "checkout", family: .ipv6, [("fd00:10:244:1::5", "node1", true)])),
        ])
        var targets = HealthCheckTargets(nodeName: "node1")
        let changes = targets.update(nil, in: await store.snapshot())
        #expect(changes.count == 1)
        #expect(changes.first?.new == HealthCheckTarget(service: NamespacedName("shop", "checkout"), port: 31999, localEndpoints: 1))
        var other = HealthCheckTargets(nodeName: "node3")
        #expect(other.update(nil, in: await store.snapshot()).first?.new?.localEndpoints == 0, "no local endpoint: still served, with 0")
    }

    @Test func onlyServicesThatAskForOne() async {
        let store = await store([
            .service(Self.service("cluster-policy", etp: .cluster, hc: nil)),
            .service(Self.service("no-port", hc: nil)),
            .service(Self.service("nodeport", type: .nodePort, hc: 31998)),
        ])
        var targets = HealthCheckTargets(nodeName: "node1")
        _ = targets.update(nil, in: await store.snapshot())
        #expect(targets.byService.values.map(\.port) == [31998])
    }

    @Test func eventsTouchOnlyTheirServices() async throws {
        let store = await store([.service(Self.service("checkout"))])
        let events = await store.subscribe()
        var targets = HealthCheckTargets(nodeName: "node1")
        _ = targets.update(nil, in: await store.snapshot())
        await store.apply([.upsert(.endpointSlice(Self.slice("checkout-v4", for: "checkout", [("10.244.1.5", "node1", true)]))),
                           .upsert(.namespace(Namespace(metadata: ObjectMeta(name: "shop"))))])
        var iterator = events.makeAsyncIterator()
        let event = try #require(await iterator.next())
        let affected = HealthCheckTargets.affected(by: event)
        #expect(affected == [NamespacedName("shop", "checkout")])
        let changes = targets.update(affected, in: await store.snapshot())
        #expect(changes.map(\.new?.localEndpoints) == [1])
        // The service deleted: its port goes.
        await store.apply([.delete(ObjectKey(.service, namespace: "shop", name: "checkout"))])
        let gone = targets.update(HealthCheckTargets.affected(by: try #require(await iterator.next())), in: await store.snapshot())
        #expect(gone.count == 1 && gone[0].old?.port == 31999 && gone[0].new == nil)
        #expect(HealthCheckTargets.affected(by: .resync(version: 9)) == nil)
    }
}

@Suite struct ProxyHealthConfigTests {
    @Test func defaultsFileAndFlags() throws {
        let d = try ConfigLoader.parse(yaml: "", defaultNodeName: "node1")
        #expect(d.proxyHealth.listen == "0.0.0.0:10256")
        #expect(d.proxyHealth.grace == .seconds(60))
        let f = try ConfigLoader.parse(yaml: "proxyHealth: {listen: \"[::]:10257\", grace: 5}", defaultNodeName: "node1")
        #expect(f.proxyHealth.listen == "[::]:10257")
        #expect(f.proxyHealth.grace == .seconds(5))
        let o = try ConfigLoader.parse(yaml: "", overrides: ["proxyHealth.listen": "", "proxyHealth.grace": "0"], defaultNodeName: "node1")
        #expect(o.proxyHealth.listen.isEmpty, "empty disables")
        #expect(o.proxyHealth.grace == .zero)
        #expect(ConfigLoader.flagName("proxyHealth.listen") == "proxy-health-listen")
        #expect(ConfigLoader.flagName("proxyHealth.grace") == "proxy-health-grace")
    }

    @Test(arguments: [("proxyHealth: {listen: nowhere}", "config key proxyHealth.listen: \"nowhere\" is not HOST:PORT"),
                      ("proxyHealth: {grace: soon}", "config key proxyHealth.grace"),
                      ("proxyHealth: {port: 1}", "config key proxyHealth.port: unknown key")])
    func badValuesNameTheKey(yaml: String, message: String) {
        #expect { _ = try ConfigLoader.parse(yaml: yaml, defaultNodeName: "node1") } throws: { "\($0)".contains(message) }
    }
}
