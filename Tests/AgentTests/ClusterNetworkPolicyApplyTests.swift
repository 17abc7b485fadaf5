import Agent
import Foundation
import NodenetTestSupport
import Testing

/// `nodenet apply` / `delete` of ClusterNetworkPolicies (cluster-scoped) against the built agent
/// (embedded source), in a network namespace of the test's own: refused whole with the field
/// named, stored in the API shape, kept across a restart, deleted by manifest.
@Suite(.serialized, .enabled(if: isPrivileged, "needs root and iproute2"))
struct ClusterNetworkPolicyApplyTests {
    static let manifest = """
    apiVersion: v1
    kind: Namespace
    metadata: {name: gryffindor}
    ---
    apiVersion: policy.networking.k8s.io/v1alpha2
    kind: ClusterNetworkPolicy
    metadata: {name: deny-slytherin}
    spec:
      tier: Admin
      priority: 10
      subject: {namespaces: {matchLabels: {kubernetes.io/metadata.name: gryffindor}}}
      ingress:
        - name: deny-from-slytherin
          action: Deny
          from: [{namespaces: {matchLabels: {kubernetes.io/metadata.name: slytherin}}}]
        - action: Pass
          from: [{namespaces: {}}]
          protocols: [{tcp: {destinationPort: {range: {start: 8080, end: 8090}}}}, {destinationNamedPort: web}]
    ---
    apiVersion: policy.networking.k8s.io/v1alpha2
    kind: ClusterNetworkPolicy
    metadata: {name: baseline-egress}
    spec:
      tier: Baseline
      priority: 500
      subject: {pods: {namespaceSelector: {}, podSelector: {matchLabels: {app: web}}}}
      egress:
        - {action: Deny, to: [{networks: [169.254.169.254/32, "fd00:ec2::254/128"]}]}
    """



    @Test func appliedRefusedWholeKeptAcrossRestartAndDeleted() throws {
        let ns = try TestNamespace("cnp")
        defer { ns.delete() }
        let dir = TempDirectory()
        let agent = AgentProcess(namespace: ns, directory: dir, args: ["--node-name", "node1", "--pod-cidrs", "10.244.1.0/24"])
        try agent.start()
        defer { agent.stop() }

        // A bad policy after good objects: nothing is written, and the error names the field.
        let bad = Self.manifest + "\n---\napiVersion: policy.networking.k8s.io/v1alpha2\nkind: ClusterNetworkPolicy\nmetadata: {name: broken}\n"
            + "spec: {tier: Admin, priority: 1, subject: {namespaces: {}}, egress: [{action: Accept, to: [{networks: [10.0.0.0/8]}], protocols: [{destinationNamedPort: web}]}]}\n"
        let refused = try agent.apply(bad)
        #expect(!refused.ok)
        #expect(refused.stderr.contains("document 4 (ClusterNetworkPolicy broken): spec.egress[0]: a networks peer cannot be set with destinationNamedPort"),
                "\(refused.stderr)")
        #expect(try status(agent).objects.isEmpty, "the valid documents before it were not written either")

        let applied = try agent.apply(Self.manifest)
        #expect(applied.ok, "\(applied.stderr)")
        #expect(applied.stdout.contains("ClusterNetworkPolicy deny-slytherin created"), "\(applied.stdout)")
        #expect(applied.stdout.contains("ClusterNetworkPolicy baseline-egress created"), "\(applied.stdout)")
        #expect(try status(agent).objects["ClusterNetworkPolicy"] == 2)
        #expect(try agent.apply(Self.manifest).stdout.contains("ClusterNetworkPolicy deny-slytherin unchanged"))

        func check() throws {
            let policies = try storedObjects(agent, "ClusterNetworkPolicy")
            #expect(policies.count == 2)
            let deny = try #require(policies.first { ($0["metadata"] as? [String: Any])?["name"] as? String == "deny-slytherin" })
            #expect(deny["apiVersion"] as? String == "policy.networking.k8s.io/v1alpha2")
            #expect((deny["metadata"] as? [String: Any])?["namespace"] == nil, "cluster-scoped")
            let spec = try #require(deny["spec"] as? [String: Any])
            #expect(spec["tier"] as? String == "Admin" && spec["priority"] as? Int == 10)
            let ingress = try #require(spec["ingress"] as? [[String: Any]])
            #expect(ingress.map { $0["action"] as? String } == ["Deny", "Pass"])
            #expect(ingress[0]["name"] as? String == "deny-from-slytherin")
        }
        try check()

        // The embedded store keeps them across a restart.
        #expect(agent.stop() == 0)
        try agent.start()
        #expect(try status(agent).objects["ClusterNetworkPolicy"] == 2)
        try check()

        // Deleting by manifest removes it; the namespace line is not needed for a cluster-scoped kind.
        let one = "apiVersion: policy.networking.k8s.io/v1alpha2\nkind: ClusterNetworkPolicy\nmetadata: {name: baseline-egress}\n"
            + "spec: {tier: Baseline, priority: 500, subject: {namespaces: {}}}\n"
        let deleted = try agent.cli(["delete", "-f", "-"], stdin: one)
        #expect(deleted.stdout.contains("ClusterNetworkPolicy baseline-egress deleted"), "\(deleted.stdout)\(deleted.stderr)")
        #expect(try status(agent).objects["ClusterNetworkPolicy"] == 1)
    }

    /// The etcd source: `nodenet apply` writes the policy at its cluster-scoped key and it comes
    /// back through the watch; an invalid one put by another writer is skipped and named on
    /// `nodenet status`'s source line.
    @Test(.enabled(if: (try? Shell.which("etcd")) != nil, "needs etcd-server"))
    func etcdSourceAppliesAndNamesTheInvalidPolicyInStatus() throws {
        let ns = try TestNamespace("cnp-etcd")
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
        #expect(waitForObjects(agent, "ClusterNetworkPolicy", count: 2), "the policies came back through the watch")
        let stored = try ns.run(["etcdctl", "--endpoints", endpoint, "get", "--print-value-only", "/nodenet/objects/ClusterNetworkPolicy/deny-slytherin"])
        #expect(stored.stdout.contains(#""tier":"Admin""#), "stored at the cluster-scoped key: \(stored.stdout)")

        let bad = #"{"apiVersion":"policy.networking.k8s.io/v1alpha2","kind":"ClusterNetworkPolicy","metadata":{"name":"bad-action"},"#
            + #""spec":{"tier":"Baseline","priority":3,"subject":{"namespaces":{}},"ingress":[{"action":"Allow","from":[{"namespaces":{}}]}]}}"#
        #expect(try ns.run(["etcdctl", "--endpoints", endpoint, "put", "/nodenet/objects/ClusterNetworkPolicy/bad-action", bad]).ok)
        var named = ""
        for _ in 0..<100 where !named.contains("bad-action") {
            named = (try? status(agent))?.source.message ?? ""
            if !named.contains("bad-action") { usleep(100_000) }
        }
        #expect(named.contains("last skipped /nodenet/objects/ClusterNetworkPolicy/bad-action: spec.ingress[0].action: Unsupported value: \"Allow\""),
                "\(named)")
        #expect(try status(agent).objects["ClusterNetworkPolicy"] == 2, "the invalid policy is not in the store")
    }
}
