import ClusterState

/// Which policies could see an identity of a namespace, as a target or as a peer: the
/// candidates `PolicyEngine` asks `canSee` about when an identity starts or ends, instead of
/// every policy of the cluster (1,000 policies x every identity a change touches was the bulk
/// of a pod change's and of the full load's selection work).
///
/// A policy is filed under its own namespace (its targets, and peers without a namespace
/// selector, live there) and under every namespace one of its namespace-selector peers matches
/// now. So `canSee(p, identity)` implies `p` is filed under `identity.namespace`; the converse
/// need not hold (an over-approximation, as `canSee` is). Namespace labels are read through
/// the engine's view (a namespace known only from its pods has just its name label).
struct PolicyIndex: Sendable {
    private(set) var byNamespace: [String: Set<NamespacedName>] = [:]
    /// Where each policy is filed (to take it out again).
    private var filedUnder: [NamespacedName: Set<String>] = [:]
    /// The namespace-selector peers (non-ipBlock) of each policy that has any.
    private var namespaceSelectors: [NamespacedName: [LabelSelector]] = [:]
    /// Policies whose egress named ports follow pod addresses (`dependsOnPodAddresses`): any
    /// pod change may change them.
    private(set) var addressDependent: Set<NamespacedName> = []

    /// Policies with a namespace-selector peer: a namespace's labels changing may change them.
    var withNamespaceSelectors: Dictionary<NamespacedName, [LabelSelector]>.Keys { namespaceSelectors.keys }

    /// The policies that could see an identity of `namespace`.
    func candidates(_ namespace: String) -> Set<NamespacedName> { byNamespace[namespace] ?? [] }

    /// Files a new or changed policy (nil: removed) against every namespace known now.
    mutating func file(_ id: NamespacedName, _ policy: NetworkPolicy?, namespaces: some Sequence<String>,
                       labels: (String) -> [String: String]) {
        for ns in filedUnder.removeValue(forKey: id) ?? [] { unfile(id, ns) }
        namespaceSelectors[id] = nil
        addressDependent.remove(id)
        guard let policy else { return }
        if policy.dependsOnPodAddresses { addressDependent.insert(id) }
        var selectors: [LabelSelector] = []
        for rule in policy.ingress { for peer in rule.peers where peer.ipBlock == nil { if let s = peer.namespaceSelector { selectors.append(s) } } }
        for rule in policy.egress { for peer in rule.peers where peer.ipBlock == nil { if let s = peer.namespaceSelector { selectors.append(s) } } }
        var under: Set<String> = [policy.namespace]
        if !selectors.isEmpty {
            namespaceSelectors[id] = selectors
            for ns in namespaces where !under.contains(ns) {
                let l = labels(ns)
                if selectors.contains(where: { $0.matches(l) }) { under.insert(ns) }
            }
        }
        for ns in under { byNamespace[ns, default: []].insert(id) }
        filedUnder[id] = under
    }

    /// A namespace appeared or its labels changed: the namespace-selector policies are filed
    /// under it, or not, again. O(policies with namespace selectors).
    mutating func refile(namespace ns: String, labels: [String: String]) {
        // A policy stays filed under its own namespace whatever the labels.
        for (id, selectors) in namespaceSelectors where id.namespace != ns {
            let matches = selectors.contains { $0.matches(labels) }
            let filed = filedUnder[id]?.contains(ns) ?? false
            if matches && !filed {
                filedUnder[id, default: []].insert(ns)
                byNamespace[ns, default: []].insert(id)
            } else if !matches && filed {
                filedUnder[id]?.remove(ns)
                unfile(id, ns)
            }
        }
    }

    private mutating func unfile(_ id: NamespacedName, _ ns: String) {
        byNamespace[ns]?.remove(id)
        if byNamespace[ns]?.isEmpty == true { byNamespace[ns] = nil }
    }
}
