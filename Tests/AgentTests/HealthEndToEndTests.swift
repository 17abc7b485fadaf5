import Foundation
import NodenetTestSupport
import Testing

/// The health endpoints of the built agent, asked by a host on the fabric as a cloud load
/// balancer would: a health check node port per LoadBalancer service with
/// externalTrafficPolicy Local (200 with local endpoints, 503 without, gone with the service),
/// and the proxy's /healthz and /livez on 10256.
@Suite(.serialized, .enabled(if: isPrivileged && (try? Shell.which("curl")) != nil, "needs root and curl"))
struct HealthEndToEndTests {
    static let node = """
        apiVersion: v1
        kind: Node
        metadata: {name: node1, labels: {topology.kubernetes.io/zone: eu-west-1a}}
        spec: {podCIDRs: [10.244.1.0/24]}
        status: {addresses: [{type: InternalIP, address: 192.168.1.11}]}
        ---
        apiVersion: v1
        kind: Namespace
        metadata: {name: shop}
        ---
        apiVersion: v1
        kind: Service
        metadata: {name: checkout, namespace: shop}
        spec:
          type: LoadBalancer
          clusterIP: 10.96.41.17
          externalTrafficPolicy: Local
          healthCheckNodePort: 31999
          ports: [{name: https, port: 443, targetPort: 8443, nodePort: 31443}]
        """

    static func slice(on node: String) -> String {
        """
        apiVersion: discovery.k8s.io/v1
        kind: EndpointSlice
        metadata: {name: checkout-7xq2p, namespace: shop, labels: {kubernetes.io/service-name: checkout}}
        addressType: IPv4
        endpoints:
        - {addresses: [10.244.1.5], nodeName: \(node), conditions: {ready: true}}
        - {addresses: [10.244.1.6], nodeName: \(node), conditions: {ready: false}}
        ports: [{name: https, port: 8443, protocol: TCP}]
        """
    }

    /// (HTTP status, body) of a GET from the fabric; status "000" when nothing answers.
    func get(_ cluster: TestCluster, _ url: String) throws -> (code: String, body: String) {
        let r = try cluster.fabric.run(["curl", "-s", "--max-time", "2", "-w", "\n%{http_code}", url])
        let lines = r.stdout.split(separator: "\n", omittingEmptySubsequences: false)
        return (String(lines.last ?? ""), lines.dropLast().joined(separator: "\n"))
    }

    /// Polls until the answer's status is `code` (bounded: 10 s).
    func until(_ code: String, _ cluster: TestCluster, _ url: String) throws -> (code: String, body: String) {
        var r = try get(cluster, url)
        let deadline = Date().addingTimeInterval(10)
        while r.code != code, Date() < deadline {
            usleep(50_000)
            r = try get(cluster, url)
        }
        return r
    }

    func json(_ body: String) -> [String: Any] {
        (try? JSONSerialization.jsonObject(with: Data(body.utf8))) as? [String: Any] ?? [:]
    }

    @Test func healthCheckNodePortFollowsLocalEndpoints() throws {
        let cluster = try TestCluster(nodes: 1)
        defer { cluster.close() }
        try cluster.startAgents()
        let agent = cluster.nodes[0].agent
        let applied = try agent.apply(Self.node + "\n---\n" + Self.slice(on: "node1"))
        try #require(applied.ok, "\(applied.stderr)")

        // A ready endpoint on this node (the not-ready one is not counted): 200.
        var r = try until("200", cluster, "http://192.168.1.11:31999/healthz")
        #expect(r.code == "200", "\(r.body)\n\(agent.log())")
        var body = json(r.body)
        #expect(body["localEndpoints"] as? Int == 1)
        #expect(body["serviceProxyHealthy"] as? Bool == true)
        #expect((body["service"] as? [String: String]) == ["namespace": "shop", "name": "checkout"])
        let headers = try cluster.fabric.run(["curl", "-s", "-D", "-", "-o", "/dev/null", "--max-time", "2", "http://192.168.1.11:31999/"]).stdout
        #expect(headers.contains("X-Load-Balancing-Endpoint-Weight: 1"), "\(headers)")

        // The endpoints move to another node: 503, the same body with 0.
        try #require(try agent.apply(Self.slice(on: "node2")).ok)
        r = try until("503", cluster, "http://192.168.1.11:31999/healthz")
        #expect(r.code == "503")
        body = json(r.body)
        #expect(body["localEndpoints"] as? Int == 0)
        #expect(body["serviceProxyHealthy"] as? Bool == true)

        // Back on this node, and the port changed: the old one closes, the new one answers.
        try #require(try agent.apply(Self.slice(on: "node1")).ok)
        try #require(try agent.apply(Self.node.replacingOccurrences(of: "31999", with: "31998")).ok)
        #expect(try until("200", cluster, "http://192.168.1.11:31998/").code == "200")
        #expect(try until("000", cluster, "http://192.168.1.11:31999/").code == "000", "the old port still answers")

        // The service deleted: nothing listens any more.
        let deleted = try agent.cli(["delete", "-f", "-"], stdin: "apiVersion: v1\nkind: Service\nmetadata: {name: checkout, namespace: shop}\n")
        #expect(deleted.ok, "\(deleted.stderr)")
        #expect(try until("000", cluster, "http://192.168.1.11:31998/").code == "000")
    }

    /// Issue 22: on a dual-stack node the health check node port answers on the node's
    /// address of each family, also when its Node object (which names the IPv6 InternalIP)
    /// arrives after the agent started. Without the fix the IPv6 address never answered.
    @Test func healthCheckNodePortOnBothFamilies() throws {
        let cluster = try TestCluster(nodes: 1, families: .dualStack)
        defer { cluster.close() }
        try cluster.startAgents()
        let agent = cluster.nodes[0].agent
        let manifest = cluster.nodeManifest + "---\n" + Self.node.components(separatedBy: "---\n").dropFirst().joined(separator: "---\n")
            + "\n---\n" + Self.slice(on: "node1")
        let applied = try agent.apply(manifest)
        try #require(applied.ok, "\(applied.stderr)")
        for host in ["192.168.1.11", "[fd00:1::11]"] {
            let r = try until("200", cluster, "http://\(host):31999/healthz")
            #expect(r.code == "200" && json(r.body)["localEndpoints"] as? Int == 1, "\(host): \(r.code) \(r.body)")
        }
    }

    /// A health check node port another process holds: the `health` row says so, the rest of
    /// the agent runs on, and the port is served once it is free.
    @Test func aTakenPortIsReportedAndRetried() throws {
        let cluster = try TestCluster(nodes: 1)
        defer { cluster.close() }
        try cluster.startAgents()
        let node = cluster.nodes[0]
        let squatter = try Shell.spawn(["/usr/bin/nsenter", "--net=\(node.ns.path)", "python3", "-c",
                                        "import socket, time\ns = socket.socket()\ns.bind(('192.168.1.11', 31999))\ns.listen()\ntime.sleep(120)"])
        var squatterAlive = true
        defer { if squatterAlive { kill(squatter, SIGKILL); waitpid(squatter, nil, 0) } }
        var listening = false
        for _ in 0..<100 where !listening {
            listening = try node.ns.run(["ss", "-Hltn", "sport = :31999"]).stdout.contains("31999")
            if !listening { usleep(50_000) }
        }
        try #require(listening, "socat did not listen")
        try #require(try node.agent.apply(Self.node + "\n---\n" + Self.slice(on: "node1")).ok)

        func healthRow() throws -> [String: Any] {
            let doc = (try? JSONSerialization.jsonObject(with: Data(try node.agent.cli(["status", "--json"]).stdout.utf8))) as? [String: Any]
            return (doc?["actors"] as? [[String: Any]])?.first { $0["name"] as? String == "health" } ?? [:]
        }
        var row = try healthRow()
        let deadline = Date().addingTimeInterval(10)
        while row["state"] as? String != "error", Date() < deadline { usleep(100_000); row = try healthRow() }
        #expect(row["state"] as? String == "error", "\(row)")
        #expect((row["lastError"] as? String ?? "").contains("192.168.1.11:31999"), "\(row)")
        #expect(try get(cluster, "http://192.168.1.11:10256/healthz").code == "200", "the rest of the agent serves")

        kill(squatter, SIGKILL)
        waitpid(squatter, nil, 0)
        squatterAlive = false
        #expect(try until("200", cluster, "http://192.168.1.11:31999/").code == "200", "served once free")
        row = try healthRow()
        let until = Date().addingTimeInterval(10)
        while row["state"] as? String != "in-sync", Date() < until { usleep(100_000); row = try healthRow() }
        #expect(row["state"] as? String == "in-sync", "\(row)\n\(node.agent.log())")
    }

    @Test func proxyHealthzAndLivez() throws {
        let cluster = try TestCluster(nodes: 1)
        defer { cluster.close() }
        try cluster.startAgents()
        try #require(try cluster.nodes[0].agent.apply(Self.node).ok)
        for path in ["/healthz", "/livez"] {
            let r = try until("200", cluster, "http://192.168.1.11:10256\(path)")
            #expect(r.code == "200", "\(path): \(r.body)")
            let body = json(r.body)
            let last = body["lastUpdated"] as? String ?? "", now = body["currentTime"] as? String ?? ""
            #expect(last.hasSuffix("Z") && now.hasSuffix("Z") && last <= now, "\(path): \(r.body)")
        }
        #expect(try get(cluster, "http://192.168.1.11:10256/other").code == "404")

        // The node being deleted: /healthz fails so load balancers drain it, /livez does not.
        let deleting = Self.node.replacingOccurrences(of: "metadata: {name: node1, labels:",
                                                      with: "metadata: {name: node1, deletionTimestamp: \"2026-12-07T10:00:00Z\", labels:")
        try #require(try cluster.nodes[0].agent.apply(deleting).ok)
        let draining = try until("503", cluster, "http://192.168.1.11:10256/healthz")
        #expect(draining.code == "503")
        #expect(json(draining.body)["nodeEligible"] as? Bool == false, "\(draining.body)")
        #expect(try get(cluster, "http://192.168.1.11:10256/livez").code == "200")
        try #require(try cluster.nodes[0].agent.apply(Self.node).ok)
        #expect(try until("200", cluster, "http://192.168.1.11:10256/healthz").code == "200")
    }

    /// The node's zone label reaches the service proxy, and a change of it too (the proxy is
    /// replaced by one with the new zone, and keeps serving).
    @Test func nodeZoneReachesTheProxy() throws {
        let cluster = try TestCluster(nodes: 1)
        defer { cluster.close() }
        try cluster.startAgents()
        let agent = cluster.nodes[0].agent
        func zone() throws -> String? {
            let r = try agent.cli(["status", "--json"])
            let doc = (try? JSONSerialization.jsonObject(with: Data(r.stdout.utf8))) as? [String: Any]
            return ((doc?["details"] as? [String: Any])?["services"] as? [String: String])?["zone"]
        }
        func zoneBecomes(_ want: String) throws -> String? {
            var z = try zone()
            let deadline = Date().addingTimeInterval(10)
            while z != want, Date() < deadline { usleep(50_000); z = try zone() }
            return z
        }
        #expect(try zoneBecomes("none") == "none")
        try #require(try agent.apply(Self.node).ok)
        #expect(try zoneBecomes("eu-west-1a") == "eu-west-1a")
        try #require(try agent.apply(Self.node.replacingOccurrences(of: "eu-west-1a", with: "eu-west-1b")).ok)
        #expect(try zoneBecomes("eu-west-1b") == "eu-west-1b")
        // The replaced proxy serves: the service's ClusterIP rules are in the kernel, and
        // /healthz is healthy again after the new actor's first sync.
        #expect(try until("200", cluster, "http://192.168.1.11:10256/healthz").code == "200")
        let rules = try cluster.nodes[0].ns.run(["nft", "list", "table", "ip", "nodenet"]).stdout
        #expect(rules.contains("10.96.41.17"), "\(rules)")
    }

    /// `proxyHealth.listen` moves or disables the endpoint.
    @Test func proxyHealthListenIsConfigurable() throws {
        let cluster = try TestCluster(nodes: 1) { _ in ["--proxy-health-listen", "127.0.0.1:10266"] }
        defer { cluster.close() }
        try cluster.startAgents()
        let node = cluster.nodes[0].ns
        var code = ""
        let deadline = Date().addingTimeInterval(10)
        repeat {
            code = try node.run(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "2", "http://127.0.0.1:10266/healthz"]).stdout
            if code != "200" { usleep(50_000) }
        } while code != "200" && Date() < deadline
        #expect(code == "200")
        #expect(try get(cluster, "http://192.168.1.11:10256/healthz").code == "000", "not on the default address")
    }
}
