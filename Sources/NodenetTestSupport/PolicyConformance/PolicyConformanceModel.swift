import Foundation

/// The upstream NetworkPolicy conformance model (k/k test/e2e/network/netpol model.go) on a
/// three-node cluster of the built agent: namespaces x, y, z (labels `ns: <name>` and
/// `kubernetes.io/metadata.name: <name>`), pods a, b, c in each (`pod: <name>`), every pod
/// serving TCP and UDP (and SCTP when the kernel has it) on ports 80 and 81 with container
/// ports named `serve-<port>-<proto>`, one ClusterIP Service per pod with its EndpointSlice.
///
/// Pod placement: pod i of namespace j runs on node (i + j) mod 3, so every namespace has a
/// pod on every node and every node has one pod of each namespace: x/a, y/c and z/b share
/// node1 (same-node pairs across the bridge), every other pair crosses nodes.
///
/// Built once and shared by all cases (a case costs seconds; a cluster tens of seconds):
/// `reset()` deletes every policy a case created and restores every label it changed.
public final class PolicyConformanceModel: @unchecked Sendable {
    // @unchecked: built by the suite's scope and then driven by one serialized test at a time.
    @TaskLocal public static var current: PolicyConformanceModel?

    public let shape: ModelShape
    public let cluster: TestCluster
    public private(set) var pods: [ModelPod: TestCluster.Pod] = [:]
    public private(set) var serviceIPs: [ModelPod: String] = [:]
    /// This kernel has SCTP sockets (it has `net.sctp` sysctls). Checked without creating an
    /// SCTP socket, which would load the module on the machine.
    public let sctpAvailable = FileManager.default.fileExists(atPath: "/proc/sys/net/sctp")
    /// Per-probe timeout (upstream: agnhost connect --timeout=1s).
    public var probeTimeout = 1.0
    public var modes = ProbeMode.allCases
    /// Seconds the set-up took (cluster, pods, servers, first full connectivity).
    public private(set) var setupSeconds = 0.0
    /// Nil when the agents take NetworkPolicy objects, else why not (checked once at set-up).
    public private(set) var policySupportMissing: String?
    /// Nil when the agents take ClusterNetworkPolicy objects, else why not.
    public private(set) var clusterPolicySupportMissing: String?

    private var podLabels: [ModelPod: [String: String]] = [:]
    private var namespaceLabels: [String: [String: String]] = [:]
    private var policies = Set<ModelPod>()
    private var clusterPolicies = Set<String>()
    var agents: [ModelPod: PodAgentClient] = [:]
    private var processes: [pid_t] = []

    public static func defaultPodLabels(_ p: ModelPod) -> [String: String] { ["pod": p.name] }
    public static func defaultNamespaceLabels(_ ns: String) -> [String: String] { ["ns": ns, "kubernetes.io/metadata.name": ns] }

    public init(shape: ModelShape = .upstream) throws {
        let start = Date()
        self.shape = shape
        cluster = try TestCluster(nodes: 3)
        do { try build() } catch { close(); throw error }
        policySupportMissing = checkPolicySupport()
        clusterPolicySupportMissing = checkSupport("ClusterNetworkPolicy", """
            apiVersion: policy.networking.k8s.io/v1alpha2
            kind: ClusterNetworkPolicy
            metadata: {name: nodenet-support-probe}
            spec: {tier: Baseline, priority: 1000, subject: {pods: {namespaceSelector: {}, podSelector: {matchLabels: {nodenet.test/selects: nothing}}}}}
            """)
        setupSeconds = Date().timeIntervalSince(start)
    }

    public func node(of p: ModelPod) -> Int {
        ((shape.namespaces.firstIndex(of: p.namespace) ?? 0) + (shape.podNames.firstIndex(of: p.name) ?? 0)) % cluster.nodes.count
    }

    private var protocols: [PortProtocol.Proto] { sctpAvailable ? [.tcp, .udp, .sctp] : [.tcp, .udp] }

    private func build() throws {
        try cluster.startAgents()
        for ns in shape.namespaces { namespaceLabels[ns] = Self.defaultNamespaceLabels(ns) }
        try cluster.applyEverywhere(cluster.nodeManifest + "---\n" + shape.namespaces.map(namespaceManifest).joined(separator: "---\n"))
        for (i, p) in shape.pods.enumerated() {
            let id = Self.containerID()
            pods[p] = try cluster.addPod(p.name, namespace: p.namespace, on: node(of: p), containerID: id)
            podLabels[p] = Self.defaultPodLabels(p)
            serviceIPs[p] = "10.96.100.\(10 + i)"
        }
        try cluster.applyEverywhere(shape.pods.map { podManifest($0) + "---\n" + serviceManifest($0) }.joined(separator: "---\n"))

        let script = cluster.dir.write("pod-agent.py", PodAgentScript.server)
        let portList = shape.ports.map(String.init).joined(separator: ",")
        for p in shape.pods {
            let socket = cluster.dir.file("agent-\(p.namespace)-\(p.name).sock")
            processes.append(try Shell.spawn(["/usr/bin/nsenter", "--net=\(pods[p]!.ns.path)", "/usr/bin/python3", script, p.description, socket, portList],
                                             log: cluster.dir.file("agent-\(p.namespace)-\(p.name).log")))
            agents[p] = PodAgentClient(path: socket)
        }
        struct Status: Decodable { var serving: [String] }
        let expected = shape.ports.count * protocols.count
        for p in shape.pods {
            let agent = agents[p]!
            let status = try poll(seconds: 15, "the server in \(p) to start (\(cluster.dir.file("agent-\(p.namespace)-\(p.name).log")))") {
                FileManager.default.fileExists(atPath: agent.path) ? try? agent.call(["op": "status"], timeout: 2, as: Status.self) : nil
            }
            guard status.serving.count == expected else {
                throw PolicyCaseError(message: "\(p) serves \(status.serving), expected \(expected) servers")
            }
        }
        // The agents program routes and service rules asynchronously: wait (bounded) until the
        // baseline connects on one port both ways, so the first case measures policy, not
        // start-up. A baseline that never converges fails in the baseline case itself.
        let all = ReachabilityMatrix(pods: shape.pods, all: true)
        _ = try? poll(seconds: 20, "the baseline to connect") { () -> Bool? in
            let r = self.probeMatrices([PortProtocol(80, .tcp)], modes: self.modes)
            return r.values.allSatisfy { $0.matrix == all } ? true : nil
        }
    }

    // MARK: manifests

    static func flow(_ labels: [String: String]) -> String {
        // JSON is YAML flow syntax and quotes every value ("true" stays a string).
        String(decoding: try! JSONSerialization.data(withJSONObject: labels, options: [.sortedKeys]), as: UTF8.self)
    }

    private func namespaceManifest(_ ns: String) -> String {
        "apiVersion: v1\nkind: Namespace\nmetadata: {name: \(ns), labels: \(Self.flow(namespaceLabels[ns] ?? [:]))}\n"
    }

    /// The pod as upstream declares it: one container per port and protocol, its port named
    /// serve-<port>-<proto>, so named-port rules resolve as they do upstream.
    public func podManifest(_ p: ModelPod) -> String {
        let pod = pods[p]!
        var containers = ""
        for port in shape.ports {
            for proto in protocols {
                let suffix = "\(port)-\(proto.rawValue.lowercased())"
                containers += "  - {name: cont-\(suffix), ports: [{name: serve-\(suffix), containerPort: \(port), protocol: \(proto.rawValue)}]}\n"
            }
        }
        return "apiVersion: v1\nkind: Pod\nmetadata: {name: \(p.name), namespace: \(p.namespace), labels: \(Self.flow(podLabels[p] ?? [:]))}\n"
            + "spec:\n  nodeName: \(cluster.nodes[pod.node].name)\n  containers:\n\(containers)"
            + "status: {podIPs: [{ip: \(pod.ip)}]}\n"
    }

    private func serviceName(_ p: ModelPod) -> String { "s-\(p.namespace)-\(p.name)" }

    /// A selector-less ClusterIP Service with its EndpointSlice: the slice keeps pointing at
    /// the pod whatever a case does to the pod's labels.
    private func serviceManifest(_ p: ModelPod) -> String {
        let pod = pods[p]!
        var servicePorts: [String] = [], slicePorts: [String] = []
        for port in shape.ports {
            for proto in protocols {
                let name = "serve-\(port)-\(proto.rawValue.lowercased())"
                servicePorts.append("{name: \(name), port: \(port), targetPort: \(port), protocol: \(proto.rawValue)}")
                slicePorts.append("{name: \(name), port: \(port), protocol: \(proto.rawValue)}")
            }
        }
        return """
            apiVersion: v1
            kind: Service
            metadata: {name: \(serviceName(p)), namespace: \(p.namespace)}
            spec:
              clusterIP: \(serviceIPs[p]!)
              ports: [\(servicePorts.joined(separator: ", "))]
            ---
            apiVersion: discovery.k8s.io/v1
            kind: EndpointSlice
            metadata: {name: \(serviceName(p))-x7k2p, namespace: \(p.namespace), labels: {kubernetes.io/service-name: \(serviceName(p))}}
            addressType: IPv4
            endpoints: [{addresses: [\(pod.ip)], nodeName: \(cluster.nodes[pod.node].name), conditions: {ready: true}}]
            ports: [\(slicePorts.joined(separator: ", "))]

            """
    }

    /// A container id as a runtime makes them (64 hex digits).
    static func containerID() -> String {
        (0..<4).map { _ in String(UInt64.random(in: .min ... .max), radix: 16) }
            .map { String(repeating: "0", count: 16 - $0.count) + $0 }.joined()
    }

    // MARK: changes a case makes

    /// `{{ip x/b}}` replaced by that pod's address.
    public func substitute(_ manifest: String) throws -> String {
        var out = manifest
        for (p, pod) in pods { out = out.replacingOccurrences(of: "{{ip \(p)}}", with: pod.ip) }
        if let r = out.range(of: "{{") {
            throw PolicyCaseError(message: "unknown placeholder \(out[r.lowerBound...].prefix(30)) in a policy")
        }
        return out
    }

    /// Applies NetworkPolicy documents (create or update) on every node and remembers them for
    /// `reset()`.
    public func applyPolicies(_ manifest: String) throws {
        let text = try substitute(manifest)
        for d in try PolicyCases.documents(text) {
            if d.kind == "NetworkPolicy", let ns = d.namespace, let n = d.name { policies.insert(ModelPod(ns, n)) }
            if d.kind == "ClusterNetworkPolicy", let n = d.name { clusterPolicies.insert(n) }
        }
        try cluster.applyEverywhere(text)
    }

    public func deletePolicies(_ refs: [ModelPod]) throws {
        guard !refs.isEmpty else { return }
        try cluster.deleteEverywhere(refs.map {
            "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: \($0.name), namespace: \($0.namespace)}\n"
        }.joined(separator: "---\n"))
        for r in refs { policies.remove(r) }
    }

    /// Replaces a pod's labels (the whole set) by re-applying its Pod object.
    public func setPodLabels(_ p: ModelPod, _ labels: [String: String]) throws {
        podLabels[p] = labels
        try cluster.applyEverywhere(podManifest(p))
    }

    public func setNamespaceLabels(_ ns: String, _ labels: [String: String]) throws {
        namespaceLabels[ns] = labels
        try cluster.applyEverywhere(namespaceManifest(ns))
    }

    /// Back to the model without policies: every policy a case created deleted, every label
    /// it changed restored.
    public func reset() throws {
        try deletePolicies(policies.sorted())
        if !clusterPolicies.isEmpty {
            try cluster.deleteEverywhere(clusterPolicies.sorted().map {
                // A delete takes a whole valid object; only the name matters.
                "apiVersion: policy.networking.k8s.io/v1alpha2\nkind: ClusterNetworkPolicy\nmetadata: {name: \($0)}\n"
                    + "spec: {tier: Admin, priority: 0, subject: {namespaces: {}}}\n"
            }.joined(separator: "---\n"))
            clusterPolicies = []
        }
        for p in shape.pods where podLabels[p] != Self.defaultPodLabels(p) { try setPodLabels(p, Self.defaultPodLabels(p)) }
        for ns in shape.namespaces where namespaceLabels[ns] != Self.defaultNamespaceLabels(ns) {
            try setNamespaceLabels(ns, Self.defaultNamespaceLabels(ns))
        }
    }

    /// The labels of a stored object as node `node`'s agent holds it (GET /v1/objects on its
    /// control socket); nil when it has no such object.
    public func storedLabels(node: Int, kind: String, namespace: String?, name: String) throws -> [String: String]? {
        let r = try Shell.check(["curl", "-s", "--max-time", "5", "--unix-socket", cluster.nodes[node].agent.socket,
                                 "http://agent/v1/objects?kind=\(kind)"])
        struct List: Decodable {
            struct Item: Decodable {
                struct Meta: Decodable { var name: String; var namespace: String?; var labels: [String: String]? }
                var metadata: Meta
            }
            var items: [Item]
        }
        let list = try JSONDecoder().decode(List.self, from: Data(r.stdout.utf8))
        return list.items.first { $0.metadata.name == name && $0.metadata.namespace == namespace }.map { $0.metadata.labels ?? [:] }
    }

    /// The labels the model gave a pod or namespace (what `reset()` restores differs from it
    /// only while a case runs).
    public func currentLabels(of p: ModelPod) -> [String: String] { podLabels[p] ?? [:] }
    public func currentLabels(ofNamespace ns: String) -> [String: String] { namespaceLabels[ns] ?? [:] }

    /// Whether the agents take NetworkPolicy objects: `nodenet apply --dry-run` of a policy
    /// (the agent decodes and admits it and writes nothing). Nil when supported, else why not
    /// (the agent's answer).
    private func checkPolicySupport() -> String? {
        let probe = """
            apiVersion: networking.k8s.io/v1
            kind: NetworkPolicy
            metadata: {name: nodenet-support-probe, namespace: \(shape.namespaces[0])}
            spec: {podSelector: {matchLabels: {nodenet.test/selects: nothing}}, policyTypes: [Ingress]}
            """
        return checkSupport("NetworkPolicy", probe)
    }

    /// `nodenet apply --dry-run` of one object: nil when the agent takes it, else its answer.
    private func checkSupport(_ kind: String, _ probe: String) -> String? {
        guard let r = try? cluster.nodes[0].agent.cli(["apply", "--dry-run", "-f", "-"], stdin: probe) else { return "nodenet apply did not run" }
        guard r.ok else { return "nodenet apply of a \(kind): \((r.stderr + r.stdout).trimmingCharacters(in: .whitespacesAndNewlines))" }
        return nil
    }

    // MARK: life cycle

    public func close() {
        let start = Date()
        defer { print(String(format: "netpol model: torn down in %.1f s", Date().timeIntervalSince(start))) }
        for pid in processes {
            kill(pid, SIGKILL)
            var status: Int32 = 0
            waitpid(pid, &status, 0)
        }
        processes = []
        // SIGTERM to every agent first: each takes seconds to shut down (the DNS server's lame
        // duck), and one after the other that was most of the suite's time.
        for n in cluster.nodes { if let pid = n.agent.pid { kill(pid, SIGTERM) } }
        cluster.close()
    }

    /// Polls `body` every 50 ms until it returns a value, for at most `seconds`.
    func poll<T>(seconds: Double, _ what: String, _ body: () throws -> T?) throws -> T {
        let deadline = Date().addingTimeInterval(seconds)
        repeat {
            if let v = try body() { return v }
            usleep(50_000)
        } while Date() < deadline
        throw PolicyCaseError(message: "timed out after \(seconds) s waiting for \(what)")
    }

    func agent(_ p: ModelPod) -> PodAgentClient { agents[p]! }
    func track(process pid: pid_t) { processes.append(pid) }
}
