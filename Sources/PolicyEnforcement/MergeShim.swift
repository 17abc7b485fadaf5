import ClusterState
// MERGE: removed when the NetworkPolicy store kind lands.
extension ClusterSnapshot {
    var networkPolicies: [NamespacedName: NetworkPolicy] { [:] }
}
