import Agent
import Foundation
import NodenetTestSupport
import Testing

/// `nodenet apply` / `delete` of NetworkPolicies against the built agent (embedded source), in a
/// network namespace of the test's own: defaulted on the way in, refused whole with the field
/// named, persisted across a restart.
@Suite(.serialized, .enabled(if: isPrivileged, "needs root and iproute2"))
struct NetworkPolicyApplyTests {
    static let manifest = """
    apiVersion: v1
    kind: Namespace
    metadata: {name: apps, labels: {team: storefront}}
    ---
    apiVersion: networking.k8s.io/v1
    kind: NetworkPolicy
    metadata: {name: default-deny, namespace: apps}
    spec: {podSelector: {}}
    ---
    apiVersion: networking.k8s.io/v1
    kind: NetworkPolicy
    metadata: {name: allow-frontend-to-db, namespace: apps}
    spec:
      podSelector: {matchLabels: {role: db}}
      ingress:
        - from:
            - namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: apps}}
              podSelector: {matchLabels: {role: frontend}}
          ports:
            - port: 6379
            - {protocol: UDP, port: 32000, endPort: 32768}
      egress:
        - ports: [{protocol: UDP, port: 53}]
    """



    @Test func appliedDefaultedRefusedWholeAndKeptAcrossRestart() throws {
        let ns = try TestNamespace("netpol")
        defer { ns.delete() }
        let dir = TempDirectory()
        let agent = AgentProcess(namespace: ns, directory: dir, args: ["--node-name", "node1", "--pod-cidrs", "10.244.1.0/24"])
        try agent.start()
        defer { agent.stop() }

        // A bad policy after good objects: nothing is written, and the error names the field.
        let bad = Self.manifest + "\n---\napiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: broken, namespace: apps}\n"
            + "spec: {podSelector: {}, egress: [{to: [{ipBlock: {cidr: 10.244.0.0/16, except: [10.96.0.0/12]}}]}]}\n"
        let refused = try agent.apply(bad)
        #expect(!refused.ok)
        #expect(refused.stderr.contains("document 4 (NetworkPolicy apps/broken): spec.egress[0].to[0].ipBlock.except[0]: \"10.96.0.0/12\": must be a strict subset of `cidr` (10.244.0.0/16)"),
                "\(refused.stderr)")
        #expect(try status(agent).objects.isEmpty, "the valid documents before it were not written either")

        let applied = try agent.apply(Self.manifest)
        #expect(applied.ok, "\(applied.stderr)")
        #expect(applied.stdout.contains("NetworkPolicy apps/default-deny created"), "\(applied.stdout)")
        #expect(applied.stdout.contains("NetworkPolicy apps/allow-frontend-to-db created"), "\(applied.stdout)")
        #expect(try status(agent).objects["NetworkPolicy"] == 2)
        #expect(try agent.apply(Self.manifest).stdout.contains("NetworkPolicy apps/allow-frontend-to-db unchanged"))

        // Stored defaulted, as the API server would store it.
        func check() throws {
            let policies = try storedObjects(agent, "NetworkPolicy")
            #expect(policies.count == 2)
            let allow = try #require(policies.first { ($0["metadata"] as? [String: Any])?["name"] as? String == "allow-frontend-to-db" })
            let spec = try #require(allow["spec"] as? [String: Any])
            #expect(spec["policyTypes"] as? [String] == ["Ingress", "Egress"])
            let ports = try #require((spec["ingress"] as? [[String: Any]])?.first?["ports"] as? [[String: Any]])
            #expect(ports.first?["protocol"] as? String == "TCP")
            let namespace = try #require(try storedObjects(agent, "Namespace").first)
            #expect((namespace["metadata"] as? [String: Any])?["labels"] as? [String: String]
                    == ["kubernetes.io/metadata.name": "apps", "team": "storefront"])
        }
        try check()

        // The embedded store keeps them across a restart.
        #expect(agent.stop() == 0)
        try agent.start()
        #expect(try status(agent).objects["NetworkPolicy"] == 2)
        try check()

        // Deleting the policy document removes it (delete validates the manifest too).
        let one = "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: default-deny, namespace: apps}\nspec: {podSelector: {}}\n"
        let deleted = try agent.cli(["delete", "-f", "-"], stdin: one)
        #expect(deleted.stdout.contains("NetworkPolicy apps/default-deny deleted"), "\(deleted.stdout)\(deleted.stderr)")
        #expect(try status(agent).objects["NetworkPolicy"] == 1)
    }

    /// The etcd source: `nodenet apply` writes the policy to etcd and it comes back through the
    /// watch; a policy another writer put in etcd that does not validate is skipped, and
    /// `nodenet status` names it on the source line.
    @Test(.enabled(if: (try? Shell.which("etcd")) != nil, "needs etcd-server"))
    func etcdSourceAppliesAndNamesTheInvalidPolicyInStatus() throws {
        let ns = try TestNamespace("netpol-etcd")
        defer { ns.delete() }
        let dir = TempDirectory()
        let etcd = try LocalEtcd(in: ns, dir: dir)
        defer { etcd.stop() }
        let endpoint = etcd.endpoint
        let agent = AgentProcess(namespace: ns, directory: dir, args: ["--node-name", "node1", "--source", "etcd", "--etcd-endpoints", endpoint])
        try agent.start()
        defer { agent.stop() }

        let applied = try agent.apply(Self.manifest)
        #expect(applied.ok, "\(applied.stderr)")
        #expect(waitForObjects(agent, "NetworkPolicy", count: 2), "the policies came back through the watch")
        let stored = try ns.run(["etcdctl", "--endpoints", endpoint, "get", "--print-value-only", "/nodenet/objects/NetworkPolicy/apps/allow-frontend-to-db"])
        #expect(stored.stdout.contains(#""policyTypes":["Ingress","Egress"]"#), "stored defaulted: \(stored.stdout)")

        let bad = #"{"apiVersion":"networking.k8s.io/v1","kind":"NetworkPolicy","metadata":{"name":"bad-port","namespace":"apps"},"#
            + #""spec":{"podSelector":{},"ingress":[{"ports":[{"port":"http_alt"}]}]}}"#
        #expect(try ns.run(["etcdctl", "--endpoints", endpoint, "put", "/nodenet/objects/NetworkPolicy/apps/bad-port", bad]).ok)
        var named = ""
        for _ in 0..<100 where !named.contains("bad-port") {
            named = (try? status(agent))?.source.message ?? ""
            if !named.contains("bad-port") { usleep(100_000) }
        }
        #expect(named.contains("last skipped /nodenet/objects/NetworkPolicy/apps/bad-port: spec.ingress[0].ports[0].port: \"http_alt\": must contain only alpha-numeric characters"),
                "\(named)")
        #expect(try status(agent).objects["NetworkPolicy"] == 2, "the invalid policy is not in the store")
    }
}
