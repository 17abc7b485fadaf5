import ClusterState

/// This node's zone (its Node object's `topology.kubernetes.io/zone` label), followed through
/// store events. Only events that touch the node's own Node object (or a resync) read it again.
enum NodeZoneWatch {
    /// The zone now.
    static func zone(of nodeName: String, in store: ClusterStore) async -> String? {
        await store.snapshot().nodes[nodeName]?.zone
    }

    /// Yields the zone each time it differs from `current` (and the last one yielded). Ends
    /// when the task iterating it is cancelled.
    static func changes(of nodeName: String, in store: ClusterStore, from current: String?) async -> AsyncStream<String?> {
        let events = await store.subscribe()
        let key = ObjectKey(.node, name: nodeName)
        return AsyncStream { continuation in
            let task = Task {
                var last = current
                for await event in events {
                    switch event {
                    case .changed(_, let changes) where !changes.contains(where: { $0.key == key }): continue
                    case .synced: continue
                    default: break
                    }
                    let zone = await zone(of: nodeName, in: store)
                    if zone != last {
                        last = zone
                        continuation.yield(zone)
                    }
                }
                continuation.finish()
            }
            continuation.onTermination = { _ in task.cancel() }
        }
    }
}
