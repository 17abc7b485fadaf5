import Foundation

/// The document behind `nodenet status --json` and `GET /v1/status`. Stable: fields are only
/// ever added. Dates are ISO 8601 strings.
public struct AgentStatus: Codable, Sendable {
    public struct Agent: Codable, Sendable {
        public var version: String
        public var pid: Int32
        public var startedAt: Date
        public var uptimeSeconds: Int
        public var ready: Bool
        /// Actors whose first reconcile is still outstanding.
        public var waitingFor: [String]
        public var configPath: String?
        public var socket: String
    }

    public struct Source: Codable, Sendable {
        public var kind: String
        public var synced: Bool
        public var connected: Bool
        public var lastSync: Date?
        public var storeVersion: UInt64
        public var message: String
    }

    public struct NodeInfo: Codable, Sendable {
        public var name: String
        public var nodeIP: String?
        /// The node's address of each family (the configured or discovered node IP, and the
        /// Node object's InternalIPs): where NodePorts answer.
        public var nodeIPs: [String] = []
        public var podCIDRs: [String]
        /// config, nodeObject, lease, or none.
        public var podCIDRSource: String
        public var clusterCIDRs: [String]
        public var serviceCIDRs: [String]
        public var clusterDomain: String
        public var routing: String
    }

    public struct PodRow: Codable, Sendable {
        public var namespace: String?
        public var name: String?
        public var containerID: String
        public var ifname: String
        public var ips: [String]
        public var hostInterface: String
    }

    public var agent: Agent
    public var source: Source
    public var node: NodeInfo
    /// Objects in the store per kind.
    public var objects: [String: Int]
    public var actors: [ActorStatus]
    public var pods: [PodRow]
    /// Per-actor extras (routes per peer, service counts, DNS counters) keyed by actor name.
    public var details: [String: [String: String]]

    public static func encoder() -> JSONEncoder {
        let e = JSONEncoder()
        e.outputFormatting = [.sortedKeys, .prettyPrinted, .withoutEscapingSlashes]
        e.dateEncodingStrategy = .iso8601
        return e
    }

    public static func decoder() -> JSONDecoder {
        let d = JSONDecoder()
        d.dateDecodingStrategy = .iso8601
        return d
    }
}

/// The readable form of the status document.
public enum StatusRenderer {
    public static func render(_ s: AgentStatus) -> String {
        var out = ""
        func line(_ k: String, _ v: String) { out += k.padding(toLength: 14, withPad: " ", startingAt: 0) + v + "\n" }
        line("Agent:", "nodenet \(s.agent.version), pid \(s.agent.pid), up \(duration(s.agent.uptimeSeconds)), "
            + (s.agent.ready ? "ready" : "not ready (waiting for \(s.agent.waitingFor.joined(separator: ", ")))"))
        line("Source:", "\(s.source.kind), " + (s.source.synced ? "synced" : "not synced")
            + (s.source.connected ? "" : ", disconnected") + ", store version \(s.source.storeVersion)"
            + (s.source.message.isEmpty ? "" : " (\(s.source.message))"))
        let ips = s.node.nodeIPs.isEmpty ? (s.node.nodeIP.map { [$0] } ?? []) : s.node.nodeIPs
        line("Node:", "\(s.node.name)" + (ips.isEmpty ? "" : ", IP " + ips.joined(separator: ", ")))
        line("Pod CIDRs:", s.node.podCIDRs.isEmpty ? "none (\(s.node.podCIDRSource))" : "\(s.node.podCIDRs.joined(separator: ", ")) (from \(s.node.podCIDRSource))")
        line("Cluster:", "pods \(s.node.clusterCIDRs.joined(separator: ",")), services \(s.node.serviceCIDRs.joined(separator: ",")), domain \(s.node.clusterDomain), routing \(s.node.routing)")
        let counts = s.objects.keys.sorted().map { "\($0)=\(s.objects[$0]!)" }.joined(separator: " ")
        line("Objects:", counts.isEmpty ? "none" : counts)
        out += "\nACTOR".padding(toLength: 17, withPad: " ", startingAt: 0) + "STATE".padding(toLength: 10, withPad: " ", startingAt: 0)
            + "RECONCILES  ERRORS  DETAILS\n"
        for a in s.actors {
            var details = a.message
            let counters = a.counters.keys.sorted().map { "\($0)=\(a.counters[$0]!)" }.joined(separator: " ")
            if !counters.isEmpty { details += (details.isEmpty ? "" : "; ") + counters }
            if let e = a.lastError, a.state != .error { details += (details.isEmpty ? "" : "; ") + "last error: \(e)" }
            if let objects = a.objects, !objects.isEmpty {
                let failing = objects.filter { $0.state == .error }.count
                details += (details.isEmpty ? "" : "; ") + "objects \(objects.count - failing)/\(objects.count) in sync"
            }
            out += a.name.padding(toLength: 16, withPad: " ", startingAt: 0) + a.state.rawValue.padding(toLength: 10, withPad: " ", startingAt: 0)
                + "\(a.reconciles)".padding(toLength: 11, withPad: " ", startingAt: 0) + "\(a.errors)".padding(toLength: 8, withPad: " ", startingAt: 0)
                + details + "\n"
        }
        if !s.pods.isEmpty {
            out += "\nPOD".padding(toLength: 33, withPad: " ", startingAt: 0) + "IPS".padding(toLength: 34, withPad: " ", startingAt: 0) + "HOST IF\n"
            for p in s.pods {
                let name = p.namespace.map { "\($0)/\(p.name ?? "?")" } ?? "container \(p.containerID.prefix(12))"
                out += name.padding(toLength: 32, withPad: " ", startingAt: 0) + p.ips.joined(separator: ",").padding(toLength: 34, withPad: " ", startingAt: 0) + p.hostInterface + "\n"
            }
        }
        // Every kernel object in error, by actor (`--json` has them all, in sync or not).
        let failing = s.actors.flatMap { a in (a.objects ?? []).filter { $0.state == .error }.map { (a.name, $0) } }
        if !failing.isEmpty {
            out += "\nOBJECTS IN ERROR\n"
            for (actor, o) in failing { out += "  \(actor): \(o.kind) \(o.name): \(o.error ?? "")\n" }
        }
        for key in s.details.keys.sorted() {
            guard let d = s.details[key], !d.isEmpty else { continue }
            out += "\n\(key):\n"
            for k in d.keys.sorted() { out += "  \(k): \(d[k]!)\n" }
        }
        return out
    }

    static func duration(_ seconds: Int) -> String {
        if seconds < 60 { return "\(seconds)s" }
        if seconds < 3600 { return "\(seconds / 60)m\(seconds % 60)s" }
        if seconds < 86400 { return "\(seconds / 3600)h\((seconds % 3600) / 60)m" }
        return "\(seconds / 86400)d\((seconds % 86400) / 3600)h"
    }
}
