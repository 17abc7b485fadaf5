import ClusterState
import IPAddressing

/// `nodenet policy check`: would a new connection from a pod to a pod (or an address) be
/// allowed, and which policy and rule decided. Computed by the same compiler and the same
/// verdict procedure as the programmed tables, with every pod treated as local (each node
/// enforces its own pods; the answer is the cluster's).
public enum PolicyCheck {
    public enum Target: Sendable, Equatable {
        case pod(NamespacedName)
        case address(IPAddress)
    }

    public struct Query: Sendable, Equatable {
        public var from: NamespacedName
        public var to: Target
        public var proto: L4Protocol
        public var port: UInt16

        public init(from: NamespacedName, to: Target, proto: L4Protocol, port: UInt16) {
            self.from = from
            self.to = to
            self.proto = proto
            self.port = port
        }

        /// Parses the command line's forms: `NS/POD`, `NS/POD|IP`, `N/PROTO` (PROTO tcp, udp,
        /// sctp in any case; TCP when absent).
        public init(from: String, to: String, port: String) throws(CheckError) {
            func pod(_ s: String, _ flag: String) throws(CheckError) -> NamespacedName {
                let parts = s.split(separator: "/", omittingEmptySubsequences: false)
                guard parts.count == 2, !parts[0].isEmpty, !parts[1].isEmpty else {
                    throw CheckError("\(flag) \"\(s)\" is not NAMESPACE/POD")
                }
                return NamespacedName(String(parts[0]), String(parts[1]))
            }
            let source = try pod(from, "--from")
            let target: Target = if let ip = IPAddress(to) { .address(ip) } else { .pod(try pod(to, "--to")) }
            let parts = port.split(separator: "/")
            guard (1...2).contains(parts.count), let n = UInt16(parts[0]), n > 0 else {
                throw CheckError("--port \"\(port)\" is not PORT or PORT/PROTOCOL (e.g. 80/TCP)")
            }
            var proto = L4Protocol.tcp
            if parts.count == 2 {
                guard let p = L4Protocol(rawValue: parts[1].uppercased()) else {
                    throw CheckError("--port \"\(port)\": protocol must be TCP, UDP or SCTP")
                }
                proto = p
            }
            self.init(from: source, to: target, proto: proto, port: n)
        }
    }

    public struct CheckError: Error, CustomStringConvertible, Sendable {
        public var description: String
        public init(_ d: String) { description = d }
    }

    public struct Direction: Codable, Sendable, Equatable {
        public var isolated: Bool
        public var isolatingPolicies: [String]
        public var allowingRules: [String]
        /// What decided this direction through the tiers: Admin, NetworkPolicy, Baseline or
        /// default (allowed, nothing decides).
        public var decidedBy: String?
        /// The ClusterNetworkPolicy and rule (its name, else `egress[i]`) that decided, and its action.
        public var clusterNetworkPolicy: String?
        public var rule: String?
        public var action: String?
        /// An Admin Pass rule that sent the connection on to NetworkPolicy and Baseline.
        public var passedBy: String?
    }

    public struct Result: Codable, Sendable, Equatable {
        public var allowed: Bool
        public var source: String
        public var destination: String
        public var port: String
        /// "egress" or "ingress" when denied.
        public var deniedBy: String?
        public var egress: Direction
        public var ingress: Direction
        public var summary: String
    }

    public static func run(_ q: Query, inputs: PolicyInputs) throws(CheckError) -> Result {
        guard let from = inputs.pods[q.from] else { throw CheckError("no pod \(q.from) with addresses in the store") }
        var destinationAddresses: [IPAddress]
        var label: String
        switch q.to {
        case .pod(let id):
            guard let to = inputs.pods[id] else { throw CheckError("no pod \(id) with addresses in the store") }
            destinationAddresses = to.ips
            label = id.description
        case .address(let ip):
            destinationAddresses = [ip]
            label = ip.description
        }
        // The first family both ends have.
        guard let pair = from.ips.lazy.compactMap({ s in destinationAddresses.first { $0.family == s.family }.map { (s, $0) } }).first else {
            throw CheckError("\(q.from) and \(label) share no address family")
        }
        var engine = EnforcementEngine(everyNodeLocal: true)
        engine.load(inputs, recordOperations: false)
        let tiered = engine.verdict(from: pair.0, to: pair.1, proto: q.proto, port: q.port)
        let v = tiered.networkPolicy
        func direction(_ d: PolicyDirection) -> Direction {
            let t = tiered.decisions[d]
            return Direction(isolated: v.allowingRules[d] != nil, isolatingPolicies: (v.isolatingPolicies[d] ?? []).map(\.description),
                             allowingRules: (v.allowingRules[d] ?? []).map(\.description), decidedBy: t?.stage.rawValue,
                             clusterNetworkPolicy: t?.policy, rule: t?.rule, action: t?.action?.rawValue, passedBy: t?.passedBy)
        }
        let port = "\(q.port)/\(q.proto.rawValue)"
        return Result(allowed: tiered.allowed, source: "\(q.from) (\(pair.0))", destination: "\(label) (\(pair.1))", port: port,
                      deniedBy: tiered.deniedBy?.rawValue, egress: direction(.egress), ingress: direction(.ingress),
                      summary: "\(q.from) -> \(label) \(port): \(tiered)")
    }
}
