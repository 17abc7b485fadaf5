import IPAddressing

/// A Kubernetes label selector (metav1.LabelSelector): matchLabels and matchExpressions, ANDed.
/// The empty selector matches everything; a nil selector (where the API allows one) is the
/// caller's business (a peer's absent namespaceSelector means "the policy's namespace").
public struct LabelSelector: Hashable, Sendable {
    public enum Operator: String, Hashable, Sendable, CaseIterable {
        case `in` = "In"
        case notIn = "NotIn"
        case exists = "Exists"
        case doesNotExist = "DoesNotExist"
    }

    public struct Requirement: Hashable, Sendable {
        public var key: String
        public var `operator`: Operator
        /// Non-empty for In/NotIn, empty for Exists/DoesNotExist (validated when decoded).
        public var values: [String]

        public init(key: String, operator: Operator, values: [String] = []) {
            self.key = key
            self.operator = `operator`
            self.values = values
        }

        public func matches(_ labels: [String: String]) -> Bool {
            switch `operator` {
            case .in: labels[key].map { values.contains($0) } ?? false
            case .notIn: labels[key].map { !values.contains($0) } ?? true
            case .exists: labels[key] != nil
            case .doesNotExist: labels[key] == nil
            }
        }
    }

    public var matchLabels: [String: String]
    public var matchExpressions: [Requirement]

    public init(matchLabels: [String: String] = [:], matchExpressions: [Requirement] = []) {
        self.matchLabels = matchLabels
        self.matchExpressions = matchExpressions
    }

    /// `{}`: selects everything.
    public static let everything = LabelSelector()

    public var isEmpty: Bool { matchLabels.isEmpty && matchExpressions.isEmpty }

    public func matches(_ labels: [String: String]) -> Bool {
        for (k, v) in matchLabels where labels[k] != v { return false }
        return matchExpressions.allSatisfy { $0.matches(labels) }
    }
}

/// networking.k8s.io/v1 NetworkPolicy, after the defaulting the API server applies
/// (k/k pkg/apis/networking/v1/defaults.go): `policyTypes` is never empty (Ingress, plus Egress
/// when there are egress rules) and every port has a protocol (TCP). The embedded and etcd
/// sources bypass the API server, so the decoder applies both, and the validation.
public struct NetworkPolicy: Hashable, Sendable {
    public enum PolicyType: String, Hashable, Sendable, CaseIterable {
        case ingress = "Ingress"
        case egress = "Egress"
    }

    /// ipBlock: `cidr` minus every `except` (each a strict subset of `cidr`, same family).
    public struct IPBlock: Hashable, Sendable {
        public var cidr: IPPrefix
        public var except: [IPPrefix]

        public init(cidr: IPPrefix, except: [IPPrefix] = []) {
            self.cidr = cidr
            self.except = except
        }
    }

    /// One `from`/`to` item. Exactly one of (selectors) or `ipBlock`: podSelector alone selects
    /// in the policy's namespace, namespaceSelector alone every pod of the matching namespaces,
    /// both in one peer is their AND.
    public struct Peer: Hashable, Sendable {
        public var podSelector: LabelSelector?
        public var namespaceSelector: LabelSelector?
        public var ipBlock: IPBlock?

        public init(podSelector: LabelSelector? = nil, namespaceSelector: LabelSelector? = nil, ipBlock: IPBlock? = nil) {
            self.podSelector = podSelector
            self.namespaceSelector = namespaceSelector
            self.ipBlock = ipBlock
        }
    }

    /// One `ports` item: `port` absent is every port of the protocol; `port` a name is resolved
    /// on the destination pod (name and protocol must both match); `endPort` (inclusive) needs
    /// a numeric `port`.
    public struct Port: Hashable, Sendable {
        public var `protocol`: L4Protocol
        public var port: IntOrString?
        public var endPort: Int?

        public init(protocol: L4Protocol = .tcp, port: IntOrString? = nil, endPort: Int? = nil) {
            self.protocol = `protocol`
            self.port = port
            self.endPort = endPort
        }
    }

    /// An ingress rule (`from`) or an egress rule (`to`): both the ports and the peers must match;
    /// an empty list matches everything (every port and protocol / every source or destination,
    /// off-cluster ones too).
    public struct Rule: Hashable, Sendable {
        public var ports: [Port]
        public var peers: [Peer]

        public init(ports: [Port] = [], peers: [Peer] = []) {
            self.ports = ports
            self.peers = peers
        }
    }

    public var metadata: ObjectMeta
    public var podSelector: LabelSelector
    /// Defaulted: never empty.
    public var policyTypes: [PolicyType]
    public var ingress: [Rule]
    public var egress: [Rule]

    public init(metadata: ObjectMeta, podSelector: LabelSelector = .everything, policyTypes: [PolicyType]? = nil,
                ingress: [Rule] = [], egress: [Rule] = []) {
        self.metadata = metadata
        self.podSelector = podSelector
        self.policyTypes = (policyTypes?.isEmpty ?? true) ? Self.defaultTypes(egress: egress) : policyTypes!
        self.ingress = ingress
        self.egress = egress
    }

    /// SetDefaults_NetworkPolicy: Ingress always, Egress when there are egress rules.
    public static func defaultTypes(egress: [Rule]) -> [PolicyType] {
        egress.isEmpty ? [.ingress] : [.ingress, .egress]
    }

    public var name: String { metadata.name }
    public var namespace: String { metadata.namespace ?? "default" }
    public var id: NamespacedName { NamespacedName(namespace, name) }
    public var isolatesIngress: Bool { policyTypes.contains(.ingress) }
    public var isolatesEgress: Bool { policyTypes.contains(.egress) }
}
