import Foundation

/// Probing the model: every source pod's agent gets its batch of probes at once, each probe
/// with the per-probe timeout, and the matrices are read off the answers.
extension PolicyConformanceModel {
    public struct MatrixKey: Hashable, Sendable, CustomStringConvertible {
        public var port: PortProtocol
        public var mode: ProbeMode
        public init(port: PortProtocol, mode: ProbeMode) {
            self.port = port
            self.mode = mode
        }
        public var description: String { "\(port) via \(mode)" }
    }

    public struct MatrixResult: Sendable {
        public var matrix: ReachabilityMatrix
        /// What each probe got: "ok:x/b" or "error:timeout" (the reason behind an X).
        public var outcomes: [ModelPod: [ModelPod: String]]
    }

    struct ProbeKey: Hashable {
        var from: ModelPod
        var to: ModelPod
        var port: PortProtocol
        var mode: ProbeMode
    }

    /// Runs the given probes, all at once: each source pod's agent gets its batch and runs it
    /// concurrently, and the pods run in parallel. One pass costs about one probe timeout.
    func run(_ keys: [ProbeKey]) -> [ProbeKey: String] {
        let bySource = Dictionary(grouping: keys, by: \.from)
        let sources = Array(bySource.keys)
        let results = LockedResults()
        let timeout = probeTimeout
        // A thread per source pod, not concurrentPerform: that runs as many iterations at once
        // as there are cores (two here), and blocked probes would then cost one timeout per
        // round of two pods instead of one timeout in all.
        let group = DispatchGroup()
        for src in sources {
            group.enter()
            Thread.detachNewThread { [self] in
                defer { group.leave() }
                let batch = bySource[src]!
                let requests = batch.map { k in
                    PodAgentClient.ProbeRequest(host: k.mode == .podIP ? pods[k.to]!.ip : serviceIPs[k.to]!, port: k.port.port,
                                                proto: k.port.proto.rawValue, timeout: timeout)
                }
                let answers: [String]
                do { answers = try agents[src]!.probe(requests, timeout: timeout * 4 + 10) } catch {
                    answers = Array(repeating: "error:prober \(error)", count: batch.count)
                }
                results.set(zip(batch, answers))
            }
        }
        group.wait()
        return results.all
    }

    /// The matrices for the given ports and modes (one pass, no re-probe).
    public func probeMatrices(_ ports: [PortProtocol], modes: [ProbeMode]) -> [MatrixKey: MatrixResult] {
        var keys: [ProbeKey] = []
        for port in ports { for mode in modes { for f in shape.pods { for t in shape.pods where t != f { keys.append(.init(from: f, to: t, port: port, mode: mode)) } } } }
        return matrices(run(keys), ports: ports, modes: modes)
    }

    private func matrices(_ outcomes: [ProbeKey: String], ports: [PortProtocol], modes: [ProbeMode]) -> [MatrixKey: MatrixResult] {
        var out: [MatrixKey: MatrixResult] = [:]
        for port in ports {
            for mode in modes {
                var r = MatrixResult(matrix: ReachabilityMatrix(pods: shape.pods, all: false), outcomes: [:])
                for f in shape.pods {
                    for t in shape.pods where t != f {
                        let o = outcomes[.init(from: f, to: t, port: port, mode: mode)] ?? "error:not probed"
                        r.outcomes[f, default: [:]][t] = o
                        r.matrix[f, t] = o == "ok:\(t)"
                    }
                }
                out[.init(port: port, mode: mode)] = r
            }
        }
        return out
    }

    /// Probes every expected matrix (both modes), re-probes the mismatched pairs once (as
    /// upstream ValidateOrFail does), and describes each matrix that still differs: expected
    /// and actual side by side, and the outcome of each differing probe.
    public func validate(_ expectations: [PolicyCase.Expectation]) -> (failures: [String], probes: Int) {
        var wanted: [MatrixKey: ReachabilityMatrix] = [:]
        for e in expectations { for port in e.ports where port.proto != .sctp || sctpAvailable { for m in modes { wanted[.init(port: port, mode: m)] = e.matrix } } }
        var keys: [ProbeKey] = []
        for k in wanted.keys { for f in shape.pods { for t in shape.pods where t != f { keys.append(.init(from: f, to: t, port: k.port, mode: k.mode)) } } }
        var outcomes = run(keys)
        var probes = keys.count
        func isWrong(_ k: ProbeKey) -> Bool { (outcomes[k] == "ok:\(k.to)") != wanted[.init(port: k.port, mode: k.mode)]![k.from, k.to] }
        let retry = keys.filter(isWrong)
        if !retry.isEmpty {
            for (k, v) in run(retry) { outcomes[k] = v }
            probes += retry.count
        }
        let ports = Array(Set(wanted.keys.map(\.port))).sorted()
        let results = matrices(outcomes, ports: ports, modes: modes)
        var failures: [String] = []
        for k in wanted.keys.sorted(by: { ($0.port, $0.mode.rawValue) < ($1.port, $1.mode.rawValue) }) {
            let expected = wanted[k]!, actual = results[k]!
            let bad = expected.mismatches(actual.matrix)
            guard !bad.isEmpty else { continue }
            let why = bad.prefix(12).map { "  \($0.from) -> \($0.to): expected \(expected[$0.from, $0.to] ? "connect" : "blocked"), got \(actual.outcomes[$0.from]?[$0.to] ?? "?")" }
            failures.append(ReachabilityMatrix.sideBySide(title: k.description, expected: expected, actual: actual.matrix)
                            + "\n" + why.joined(separator: "\n") + (bad.count > 12 ? "\n  ... \(bad.count - 12) more" : ""))
        }
        return (failures, probes)
    }

    public struct CaseOutcome: Sendable {
        public var failures: [String] = []
        public var notes: [String] = []
        public var probes = 0
        public var seconds = 0.0
    }

    /// Runs a case's steps in order, each followed by its expectations. Does not reset: the
    /// caller resets (also when this throws).
    public func run(_ c: PolicyCase) throws -> CaseOutcome {
        let start = Date()
        var outcome = CaseOutcome()
        for (i, step) in c.steps.enumerated() {
            if let manifest = step.apply { try applyPolicies(manifest) }
            try deletePolicies(step.delete)
            for (p, l) in step.podLabels.sorted(by: { $0.key < $1.key }) { try setPodLabels(p, l) }
            for (ns, l) in step.namespaceLabels.sorted(by: { $0.key < $1.key }) { try setNamespaceLabels(ns, l) }
            let sctp = step.expect.flatMap(\.ports).filter { $0.proto == .sctp }
            if !sctp.isEmpty, !sctpAvailable {
                outcome.notes.append("step \(i + 1): \(sctp.map(\.description).joined(separator: ", ")) not probed: this kernel has no SCTP sockets (no /proc/sys/net/sctp)")
            }
            let (failures, probes) = validate(step.expect)
            outcome.probes += probes
            outcome.failures += failures.map { "step \(i + 1): \($0)" }
        }
        outcome.seconds = Date().timeIntervalSince(start)
        return outcome
    }
}

private final class LockedResults: @unchecked Sendable {
    // @unchecked: every access goes through `lock`.
    private let lock = NSLock()
    private var values: [PolicyConformanceModel.ProbeKey: String] = [:]
    func set<S: Sequence>(_ pairs: S) where S.Element == (PolicyConformanceModel.ProbeKey, String) {
        lock.lock(); defer { lock.unlock() }
        for (k, v) in pairs { values[k] = v }
    }
    var all: [PolicyConformanceModel.ProbeKey: String] { lock.lock(); defer { lock.unlock() }; return values }
}
