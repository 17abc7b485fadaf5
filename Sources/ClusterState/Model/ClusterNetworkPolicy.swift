import IPAddressing

/// policy.networking.k8s.io/v1alpha2 ClusterNetworkPolicy (sig-network's network-policy-api,
/// NPEP-285: AdminNetworkPolicy and BaselineAdminNetworkPolicy merged into one kind with a tier).
/// Cluster-scoped. Evaluation per direction: Admin tier (by priority, then rule order) →
/// NetworkPolicy → Baseline tier → default allow. Accept and Deny are final for the direction,
/// Pass skips the rest of the tier. There is no implicit isolation: a subject pod with no
/// matching rule is not affected.
public struct ClusterNetworkPolicy: Hashable, Sendable {
    public enum Tier: String, Hashable, Sendable, CaseIterable {
        case admin = "Admin"
        case baseline = "Baseline"
    }

    public enum Action: String, Hashable, Sendable, CaseIterable {
        case accept = "Accept"
        case deny = "Deny"
        case pass = "Pass"
    }

    /// `namespaceSelector` AND `podSelector` (both required in the API shape; `{}` is every).
    public struct NamespacedPods: Hashable, Sendable {
        public var namespaceSelector: LabelSelector
        public var podSelector: LabelSelector

        public init(namespaceSelector: LabelSelector = .everything, podSelector: LabelSelector = .everything) {
            self.namespaceSelector = namespaceSelector
            self.podSelector = podSelector
        }
    }

    /// The pods a policy applies to: exactly one of the two in the API (host-network pods never).
    public enum Subject: Hashable, Sendable {
        case namespaces(LabelSelector)
        case pods(NamespacedPods)
    }

    /// One `from`/`to` item: exactly one field in the API. `networks` is egress only.
    /// `unsupported` is a peer whose only field nodenet does not implement (the experimental
    /// `nodes` and `domainNames`, or a field of a newer API version): the API says to fail
    /// closed, so an Accept rule with it matches nothing and a Deny or Pass rule denies all.
    public enum Peer: Hashable, Sendable {
        case namespaces(LabelSelector)
        case pods(NamespacedPods)
        case networks([IPPrefix])
        case unsupported(field: String)
    }

    /// A destination port: one number or an inclusive range (`start < end` in the API).
    public enum PortMatch: Hashable, Sendable {
        case number(Int)
        case range(ClosedRange<Int>)
    }

    /// One `protocols` item: a protocol with an optional destination port (absent: every port
    /// of that protocol), or `destinationNamedPort`, resolved on the destination pod (name and
    /// the container port's protocol).
    public enum ProtocolMatch: Hashable, Sendable {
        case port(L4Protocol, PortMatch?)
        case namedPort(String)
    }

    public struct Rule: Hashable, Sendable {
        public enum Direction: String, Hashable, Sendable { case ingress, egress }

        /// Optional, at most 100 characters; nodenet names the rule by it in `policy check`
        /// (by its index when absent).
        public var name: String?
        public var action: Action
        /// `from` for ingress, `to` for egress: at least one; any of them matches.
        public var peers: [Peer]
        /// Empty: every protocol and port. Otherwise any of them matches.
        public var protocols: [ProtocolMatch]

        public init(name: String? = nil, action: Action, peers: [Peer], protocols: [ProtocolMatch] = []) {
            self.name = name
            self.action = action
            self.peers = peers
            self.protocols = protocols
        }
    }

    public var metadata: ObjectMeta
    public var tier: Tier
    /// 0...1000, lower first. Equal priorities with overlapping rules are ambiguous in the API;
    /// nodenet orders them by name so every node decides alike.
    public var priority: Int
    public var subject: Subject
    /// In precedence order (the first matching rule decides), at most 25 each.
    public var ingress: [Rule]
    public var egress: [Rule]

    public init(metadata: ObjectMeta, tier: Tier, priority: Int, subject: Subject,
                ingress: [Rule] = [], egress: [Rule] = []) {
        self.metadata = metadata
        self.tier = tier
        self.priority = priority
        self.subject = subject
        self.ingress = ingress
        self.egress = egress
    }

    public var name: String { metadata.name }

    /// The evaluation order inside a tier: priority, then name (the API leaves ties to the
    /// implementation; every node must break them the same way).
    public static func precedes(_ a: ClusterNetworkPolicy, _ b: ClusterNetworkPolicy) -> Bool {
        a.priority != b.priority ? a.priority < b.priority : a.name < b.name
    }
}
