import Foundation
import Yams

/// One NetworkPolicy conformance case from the cases file: steps run in order on the model
/// (policies applied or deleted, pod and namespace labels replaced), each followed by the
/// matrices it must produce.
///
/// File shape (see the header of Tests/AgentTests/NetworkPolicyCases/netpol-cases.yaml):
/// ```yaml
/// cases:
/// - name: deny-all-ingress-in-x
///   description: ...
///   steps:
///   - apply: |                  # NetworkPolicy documents, verbatim (create or update)
///       apiVersion: networking.k8s.io/v1
///       kind: NetworkPolicy
///       ...
///     delete: [x/deny-all]      # NetworkPolicies by namespace/name
///     podLabels: {x/a: {pod: a, extra: "yes"}}        # the pod's complete new label set
///     namespaceLabels: {y: {ns: y, kubernetes.io/metadata.name: y, team: blue}}
///     expect:
///     - ports: [TCP/80, UDP/80]
///       matrix: |
///             x/a x/b ...
///         x/a  -   .  ...
/// ```
/// In `apply`, `{{ip x/b}}` stands for that pod's IPv4 address (upstream's ipBlock cases put
/// a pod's address in the policy at run time).
public struct PolicyCase: Sendable, CustomStringConvertible {
    public var name: String
    public var description: String { name }
    public var summary: String
    public var steps: [Step]

    public struct Step: Sendable {
        /// NetworkPolicy manifests to apply (create or update), verbatim from the file.
        public var apply: String?
        /// (namespace, name) of NetworkPolicies to delete.
        public var delete: [ModelPod]
        public var podLabels: [ModelPod: [String: String]]
        public var namespaceLabels: [String: [String: String]]
        public var expect: [Expectation]
    }

    public struct Expectation: Sendable {
        public var ports: [PortProtocol]
        public var matrix: ReachabilityMatrix
        public init(ports: [PortProtocol], matrix: ReachabilityMatrix) {
            self.ports = ports
            self.matrix = matrix
        }
    }

    /// True when any step creates or changes a policy (and so needs NetworkPolicy support).
    public var usesPolicies: Bool { steps.contains { $0.apply != nil } }
    /// True when a step applies a ClusterNetworkPolicy (the cluster-wide tiers).
    public var usesClusterPolicies: Bool { steps.contains { $0.apply?.contains("kind: ClusterNetworkPolicy") == true } }
    public var portProtocols: Set<PortProtocol> { Set(steps.flatMap { $0.expect.flatMap(\.ports) }) }
}

public struct PolicyCaseError: Error, CustomStringConvertible, Sendable {
    public var message: String
    public var description: String { message }
}

public enum PolicyCases {
    /// The cases in `path`, validated against the model (every pod, namespace and matrix cell
    /// named must exist; every apply must be NetworkPolicy documents with name and namespace).
    public static func load(path: String, model: ModelShape = .upstream) throws -> [PolicyCase] {
        let text: String
        do { text = try String(contentsOfFile: path, encoding: .utf8) } catch {
            throw PolicyCaseError(message: "cannot read the cases file \(path): \(error)")
        }
        return try parse(text, model: model)
    }

    public static func parse(_ text: String, model: ModelShape = .upstream) throws -> [PolicyCase] {
        let root: Node?
        do { root = try Yams.compose(yaml: text) } catch { throw PolicyCaseError(message: "cases file: \(error)") }
        guard let list = root?["cases"]?.sequence else { throw PolicyCaseError(message: "cases file: no `cases:` list") }
        var names = Set<String>()
        return try list.enumerated().map { index, node in
            guard let name = node["name"]?.string, !name.isEmpty else { throw PolicyCaseError(message: "case \(index + 1): no name") }
            guard names.insert(name).inserted else { throw PolicyCaseError(message: "case \(name): name used twice") }
            func fail(_ m: String) -> PolicyCaseError { PolicyCaseError(message: "case \(name): \(m)") }
            guard let stepNodes = node["steps"]?.sequence, !stepNodes.isEmpty else { throw fail("no steps") }
            let steps = try stepNodes.enumerated().map { i, s -> PolicyCase.Step in
                func failStep(_ m: String) -> PolicyCaseError { fail("step \(i + 1): \(m)") }
                let apply = s["apply"]?.string
                if let apply {
                    for (kind, ns, n) in try documents(apply) {
                        guard (kind == "NetworkPolicy" && ns != nil && n != nil) || (kind == "ClusterNetworkPolicy" && n != nil) else {
                            throw failStep("apply holds a \(kind) without name or namespace; only namespaced NetworkPolicies and named ClusterNetworkPolicies")
                        }
                    }
                }
                let delete = try (s["delete"]?.sequence ?? []).map { d -> ModelPod in
                    guard let t = d.string, let ref = ModelPod(t) else { throw failStep("delete entry \(d.string ?? "?") is not namespace/name") }
                    return ref
                }
                var podLabels: [ModelPod: [String: String]] = [:]
                for (k, v) in s["podLabels"]?.mapping ?? [:] {
                    guard let ref = k.string.flatMap(ModelPod.init), model.pods.contains(ref) else {
                        throw failStep("podLabels: \(k.string ?? "?") is not a model pod")
                    }
                    podLabels[ref] = try labels(v) { failStep("podLabels of \(ref): \($0)") }
                }
                var namespaceLabels: [String: [String: String]] = [:]
                for (k, v) in s["namespaceLabels"]?.mapping ?? [:] {
                    guard let ns = k.string, model.namespaces.contains(ns) else {
                        throw failStep("namespaceLabels: \(k.string ?? "?") is not a model namespace")
                    }
                    namespaceLabels[ns] = try labels(v) { failStep("namespaceLabels of \(ns): \($0)") }
                }
                let expect = try (s["expect"]?.sequence ?? []).map { e -> PolicyCase.Expectation in
                    let ports = try (e["ports"]?.sequence ?? []).map { p -> PortProtocol in
                        guard let t = p.string, let pp = PortProtocol(t), model.ports.contains(pp.port) else {
                            throw failStep("port \(p.string ?? "?") is not PROTO/PORT on a model port \(model.ports)")
                        }
                        return pp
                    }
                    guard !ports.isEmpty else { throw failStep("an expectation without ports") }
                    guard let text = e["matrix"]?.string else { throw failStep("an expectation without a matrix") }
                    do {
                        return .init(ports: ports, matrix: try ReachabilityMatrix.parse(text, pods: model.pods))
                    } catch {
                        throw failStep("matrix for \(ports.map(\.description).joined(separator: ",")): \(error)")
                    }
                }
                if apply == nil, delete.isEmpty, podLabels.isEmpty, namespaceLabels.isEmpty, i > 0 {
                    throw failStep("changes nothing")
                }
                return .init(apply: apply, delete: delete, podLabels: podLabels, namespaceLabels: namespaceLabels, expect: expect)
            }
            return PolicyCase(name: name, summary: node["description"]?.string ?? "", steps: steps)
        }
    }

    /// (kind, namespace, name) of each document of a manifest.
    public static func documents(_ manifest: String) throws -> [(kind: String, namespace: String?, name: String?)] {
        var out: [(kind: String, namespace: String?, name: String?)] = []
        do {
            // The sequence keeps a parse error instead of throwing it: check it at the end.
            var docs = try Yams.compose_all(yaml: manifest)
            while let doc = docs.next() {
                guard doc.mapping != nil else { continue }
                out.append((doc["kind"]?.string ?? "?", doc["metadata"]?["namespace"]?.string, doc["metadata"]?["name"]?.string))
            }
            if let error = docs.error { throw error }
        } catch {
            throw PolicyCaseError(message: "not YAML: \(error)")
        }
        return out
    }

    private static func labels(_ node: Node, _ fail: (String) -> PolicyCaseError) throws -> [String: String] {
        guard let m = node.mapping else { throw fail("not a mapping") }
        var out: [String: String] = [:]
        for (k, v) in m {
            guard let key = k.string, let value = v.string else { throw fail("labels are strings") }
            out[key] = value
        }
        return out
    }
}

/// The upstream model's names: namespaces x, y, z; pods a, b, c in each; ports 80 and 81.
public struct ModelShape: Sendable {
    public var namespaces: [String]
    public var podNames: [String]
    public var ports: [Int]
    public var pods: [ModelPod] { namespaces.flatMap { ns in podNames.map { ModelPod(ns, $0) } } }

    public static let upstream = ModelShape(namespaces: ["x", "y", "z"], podNames: ["a", "b", "c"], ports: [80, 81])
}
