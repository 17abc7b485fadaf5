import Foundation
import NodenetTestSupport
import Testing

/// NetworkPolicy in the running agents, beyond the conformance matrix: what a connection
/// already open does when a policy starts denying it (kept: the documented choice), the
/// kernel's enforcement while an agent is stopped and across its restart (no fail-open window,
/// nothing rewritten), and `nodenet policy check`.
@Suite(.serialized, .enabled(if: isPrivileged && (try? Shell.which("socat")) != nil, "needs root and socat"))
struct NetworkPolicyAgentTests {
    static let policy = """
        apiVersion: networking.k8s.io/v1
        kind: NetworkPolicy
        metadata: {name: web-from-client-only, namespace: apps}
        spec:
          podSelector: {matchLabels: {app: web}}
          ingress:
          - from: [{podSelector: {matchLabels: {app: client}}}]
            ports: [{port: 8080}, {port: 9000}]
        """

    func poll(_ what: String, seconds: Double = 10, _ condition: () throws -> Bool) throws {
        let deadline = Date().addingTimeInterval(seconds)
        while Date() < deadline {
            if try condition() { return }
            usleep(20_000)
        }
        Issue.record("timed out waiting for \(what)")
    }

    @Test func establishedKeptRestartEnforcedAndExplained() throws {
        let cluster = try TestCluster(nodes: 2)
        defer { cluster.close() }
        try cluster.startAgents()
        try cluster.applyEverywhere(cluster.nodeManifest)
        let web = try cluster.addPod("web", on: 1)
        let client = try cluster.addPod("client", on: 0)
        let other = try cluster.addPod("other", on: 0)
        try cluster.applyEverywhere(cluster.podManifest([web], labels: ["app": "web"]) + "---\n"
                                    + cluster.podManifest([client], labels: ["app": "client"]) + "---\n"
                                    + cluster.podManifest([other], labels: ["app": "other"]))
        try cluster.echoPeerServer(in: web)
        // A line echo server for the long-lived connection.
        try cluster.spawn(in: web.ns, ["socat", "TCP-LISTEN:9000,fork,reuseaddr", "EXEC:cat"])
        func reaches(_ from: TestCluster.Pod) throws -> Bool {
            try cluster.request(from: from.ns, web.ip, 8080, timeout: 2).stdout.contains("from-web")
        }
        try poll("the web server") { try reaches(other) }

        // A connection from `other` opened before the policy, kept talking through it.
        let log = cluster.dir.file("long-lived.log")
        let script = cluster.dir.write("long-lived.py", """
            import socket, sys, time
            s = socket.create_connection((sys.argv[1], 9000), timeout=2)
            ok = 0
            for i in range(150):
                s.sendall(b"ping\\n")
                if s.recv(16) == b"ping\\n":
                    ok += 1
                print(ok, flush=True)
                time.sleep(0.02)
            """)
        let longLived = try Shell.spawn(["/usr/bin/nsenter", "--net=\(other.ns.path)", "/usr/bin/python3", script, web.ip], log: log)
        defer { kill(longLived, SIGKILL); waitpid(longLived, nil, 0) }
        try poll("the long-lived connection to answer") { ((try? String(contentsOfFile: log, encoding: .utf8)) ?? "").contains("\n5\n") }

        for node in cluster.nodes { #expect(try node.agent.apply(Self.policy).ok) }
        try poll("the policy to deny new connections from other") { try !reaches(other) }
        #expect(try reaches(client), "the client is allowed")
        var status: Int32 = 0
        waitpid(longLived, &status, 0)
        let counts = ((try? String(contentsOfFile: log, encoding: .utf8)) ?? "").split(separator: "\n")
        #expect(counts.last == "150", "the connection opened before the policy keeps flowing (documented): \(counts.suffix(3))")

        // The agent of web's node stops: the kernel keeps enforcing the last state.
        let node = cluster.nodes[1]
        let before = try node.ns.check(["nft", "-a", "list", "table", "ip", "nodenet-policy"]).stdout
        #expect(node.agent.stop() == 0)
        #expect(try !reaches(other), "denied while the agent is down")
        #expect(try reaches(client), "allowed while the agent is down")
        try node.agent.start()
        #expect(try !reaches(other), "denied after the restart")
        #expect(try reaches(client), "allowed after the restart")
        let after = try node.ns.check(["nft", "-a", "list", "table", "ip", "nodenet-policy"]).stdout
        func elements(_ listing: String) -> [Substring] { listing.split(separator: "\n").filter { $0.contains(" . ") || $0.contains(" : 0x") } }
        #expect(elements(before) == elements(after), "the restart rewrote elements")

        // `nodenet policy check`: exit status 4 and the deciding policy for a denial; the rule
        // for an allowed connection.
        let denied = try node.agent.cli(["policy", "check", "--from", "apps/other", "--to", "apps/web", "--port", "8080/TCP"])
        #expect(denied.status == 4, "\(denied.stdout)\(denied.stderr)")
        #expect(denied.stdout.contains("DENIED") && denied.stdout.contains("apps/web-from-client-only"), "\(denied.stdout)")
        let allowed = try node.agent.cli(["policy", "check", "--from", "apps/client", "--to", "apps/web", "--port", "9000"])
        #expect(allowed.ok && allowed.stdout.contains("allowed by apps/web-from-client-only ingress[0]"), "\(allowed.stdout)")
        let bad = try node.agent.cli(["policy", "check", "--from", "apps", "--to", "apps/web", "--port", "80"])
        #expect(bad.status == 1 && bad.stderr.contains("NAMESPACE/POD"), "\(bad.stderr)")
        let s = try node.agent.cli(["status", "--json"]).stdout
        #expect(s.contains("\"policy\""), "a policy row")
    }

    /// Refused packets are exported: the series exist at zero from the start, and a connection
    /// a policy refuses moves its node's `nodenet_policy_denied_packets_total` for its family
    /// and direction (the reject rules' counters, read at the scrape), and no other.
    @Test func deniedPacketsAreExported() throws {
        let cluster = try TestCluster(nodes: 1, agentArgs: { _ in ["--metrics-listen", "127.0.0.1:9154"] })
        defer { cluster.close() }
        try cluster.startAgents()
        try cluster.applyEverywhere(cluster.nodeManifest)
        let web = try cluster.addPod("web", on: 0)
        let other = try cluster.addPod("other", on: 0)
        try cluster.applyEverywhere(cluster.podManifest([web], labels: ["app": "web"]) + "---\n"
                                    + cluster.podManifest([other], labels: ["app": "other"]))
        try cluster.echoPeerServer(in: web)
        func reaches() throws -> Bool { try cluster.request(from: other.ns, web.ip, 8080, timeout: 2).stdout.contains("from-web") }
        func denied() throws -> [String: Double] {
            let text = try cluster.nodes[0].ns.check(["curl", "-sf", "--max-time", "5", "http://127.0.0.1:9154/metrics"]).stdout
            var out: [String: Double] = [:]
            for line in text.split(separator: "\n") where line.hasPrefix("nodenet_policy_denied_packets_total{") {
                let parts = line.split(separator: " ")
                out[String(parts[0].dropFirst("nodenet_policy_denied_packets_total".count))] = Double(parts[1])
            }
            return out
        }
        try poll("the web server") { try reaches() }
        let series = ["{family=\"ipv4\",direction=\"ingress\"}", "{family=\"ipv4\",direction=\"egress\"}",
                      "{family=\"ipv6\",direction=\"ingress\"}", "{family=\"ipv6\",direction=\"egress\"}"]
        #expect(try denied() == Dictionary(uniqueKeysWithValues: series.map { ($0, 0) }), "every series at zero before any denial")

        #expect(try cluster.nodes[0].agent.apply(Self.policy).ok)
        try poll("the policy to refuse other") { try !reaches() }
        try poll("the refusal counted") { try (denied()[series[0]] ?? 0) > 0 }
        let after = try denied()
        #expect(after[series[1]] == 0 && after[series[2]] == 0 && after[series[3]] == 0, "only IPv4 ingress moved: \(after)")

        // A ClusterNetworkPolicy Deny rule has a counter of its own: `other` refused by an Admin
        // rule (before any NetworkPolicy) is counted per policy and rule.
        func tierDenied() throws -> Double? {
            let text = try cluster.nodes[0].ns.check(["curl", "-sf", "--max-time", "5", "http://127.0.0.1:9154/metrics"]).stdout
            let series = #"nodenet_cluster_policy_denied_packets_total{policy="quarantine-other",rule="drop-other-egress"} "#
            return text.split(separator: "\n").first { $0.hasPrefix(series) }.flatMap { Double($0.dropFirst(series.count)) }
        }
        #expect(try tierDenied() == nil, "no series before the rule's first denial")
        #expect(try cluster.nodes[0].agent.apply("""
            apiVersion: policy.networking.k8s.io/v1alpha2
            kind: ClusterNetworkPolicy
            metadata: {name: quarantine-other}
            spec:
              tier: Admin
              priority: 10
              subject: {pods: {namespaceSelector: {}, podSelector: {matchLabels: {app: other}}}}
              egress:
              - {name: drop-other-egress, action: Deny, to: [{networks: ["0.0.0.0/0", "::/0"]}]}
            """).ok)
        try poll("the admin deny counted for its rule") {
            _ = try? cluster.request(from: other.ns, web.ip, 8080, timeout: 1)
            return try (tierDenied() ?? 0) > 0
        }
    }

    /// `policy.enabled: false`: tables an earlier run left are removed (they would enforce stale
    /// policies), pods attach without waiting for policy, the row says disabled.
    @Test func disabledRemovesLeftoverTables() throws {
        let cluster = try TestCluster(nodes: 1, agentArgs: { _ in ["--policy-enabled", "false"] })
        defer { cluster.close() }
        let node = cluster.nodes[0]
        try node.ns.check(["nft", "add", "table", "ip", "nodenet-policy"])
        try node.ns.check(["nft", "add", "table", "ip6", "nodenet-policy"])
        try cluster.startAgents()
        try poll("the leftover tables to go") { try !node.ns.run(["nft", "list", "table", "ip", "nodenet-policy"]).ok }
        #expect(try !node.ns.run(["nft", "list", "table", "ip6", "nodenet-policy"]).ok)
        let pod = try cluster.addPod("web", on: 0)
        #expect(!pod.ip.isEmpty)
        let status = try node.agent.cli(["status"]).stdout
        #expect(status.contains("disabled"), "\(status)")
    }

    /// A transaction the kernel refuses (an element of the policy tables written behind the
    /// agent's back with another value: EEXIST) is an error on the `policy` row and its table
    /// objects, logged once; the retry, a full sync that reads the kernel back, repairs it and
    /// the ADD that waited completes.
    @Test func aRefusedTransactionIsReportedAndRepaired() throws {
        let cluster = try TestCluster(nodes: 1)
        defer { cluster.close() }
        try cluster.startAgents()
        try cluster.applyEverywhere(cluster.nodeManifest)
        let node = cluster.nodes[0]
        try poll("the policy tables") { try node.ns.run(["nft", "list", "map", "ip", "nodenet-policy", "identity"]).ok }
        // The first pod gets the subnet's first free address (the gateway is .1).
        try node.ns.check(["nft", "add", "element", "ip", "nodenet-policy", "identity", "{ 10.244.1.2 : 0x00000999 }"])
        let pod = try cluster.addPod("web", on: 0)
        #expect(pod.ip == "10.244.1.2", "the address the element was planted for")
        let map = try node.ns.check(["nft", "list", "map", "ip", "nodenet-policy", "identity"]).stdout
        #expect(map.contains("10.244.1.2") && !map.contains("0x00000999"), "repaired: \(map)")
        let status = try node.agent.cli(["status", "--json"]).stdout
        #expect(status.contains("\"table\"") && status.contains("ip nodenet-policy"), "the tables are objects of the row: \(status)")
        let log = node.agent.log(tail: 400)
        let failures = log.split(separator: "\n").filter { $0.contains("policy rules sync failed") }
        #expect(failures.count == 1, "logged once: \(failures)")
        #expect(log.contains("policy rules in sync again"), "\(log)")
    }
}
