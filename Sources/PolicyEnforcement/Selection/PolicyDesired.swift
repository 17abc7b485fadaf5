import ClusterState
import IPAddressing

/// The compiled desired state: what the kernel must hold for the policies to be enforced on
/// this node (or, for `nodenet policy check`, on every node at once). Kept by `PolicyEngine`,
/// which changes it entry by entry as pods, namespaces and policies change.
public struct PolicyDesired: Sendable, Equatable {
    /// Address -> identity number, for every pod of the cluster and the DNS responder.
    public var addressIdentity: [IPAddress: UInt32] = [:]
    /// Address -> namespace number (peers given as whole namespaces).
    public var addressNamespace: [IPAddress: UInt32] = [:]
    /// Local pods' addresses by identity (the kernel's allow sets are keyed by these).
    public var localAddresses: [UInt32: Set<IPAddress>] = [:]
    /// Allowed combinations, each with the rules that allow it.
    public var allows: [AllowKey: Set<RuleRef>] = [:]
    /// Policies isolating each local identity, per direction.
    public var isolatedBy: [UInt32: [PolicyDirection: Set<NamespacedName>]] = [:]
    /// Identity number -> identity (for status and explanations).
    public var identities: [UInt32: Identity] = [:]
    public var namespaceNumbers: [String: UInt32] = [:]
    /// Pods by address (explanations).
    public var podsByAddress: [IPAddress: NamespacedName] = [:]
    /// The node's pod subnets: an address there that is no known pod is a pod being created
    /// (its ADD has not returned), and its traffic is dropped until its policies are in.
    public var localSubnets: [IPPrefix] = []
    /// The node's DNS responder addresses (the input chain judges traffic to them).
    public var dnsAddresses: [IPAddress] = []
    /// Named ports a rule asked for that no destination pod has (status lines, not errors).
    public var unresolvedNamedPorts: [RuleRef: Set<String>] = [:]

    public init() {}

    /// Is the local pod at `address` isolated for `direction`?
    public func isIsolated(_ address: IPAddress, _ direction: PolicyDirection) -> Bool {
        guard let n = addressIdentity[address], localAddresses[n]?.contains(address) == true else { return false }
        return !(isolatedBy[n]?[direction]?.isEmpty ?? true)
    }

    /// Local addresses isolated for `direction`.
    public func isolated(_ direction: PolicyDirection) -> Set<IPAddress> {
        var out: Set<IPAddress> = []
        for (n, by) in isolatedBy where !(by[direction]?.isEmpty ?? true) { out.formUnion(localAddresses[n] ?? []) }
        return out
    }

    /// Local pods isolated for `direction` (status).
    public func isolatedPodCount(_ direction: PolicyDirection) -> Int {
        isolated(direction).reduce(into: Set<NamespacedName>()) { if let p = podsByAddress[$1] { $0.insert(p) } }.count
    }
}
