import ClusterState
import IPAddressing

/// This node's zone (its Node object's `topology.kubernetes.io/zone` label), followed through
/// store events. Only events that touch the node's own Node object (or a resync) read it again.
enum NodeZoneWatch {
    /// The zone now, and a stream that yields it each time it changes after that (subscribed
    /// before the first read, so no change falls between). The stream ends when the task
    /// iterating it is cancelled.
    static func follow(_ nodeName: String, in store: ClusterStore) async -> (current: String?, changes: AsyncStream<String?>) {
        let events = await store.subscribe()
        let current = await store.snapshot().nodes[nodeName]?.zone
        let key = ObjectKey(.node, name: nodeName)
        let changes = AsyncStream<String?> { continuation in
            let task = Task {
                var last = current
                for await event in events {
                    switch event {
                    case .changed(_, let changes) where !changes.contains(where: { $0.key == key }): continue
                    case .synced: continue
                    default: break
                    }
                    let zone = await store.snapshot().nodes[nodeName]?.zone
                    if zone != last {
                        last = zone
                        continuation.yield(zone)
                    }
                }
                continuation.finish()
            }
            continuation.onTermination = { _ in task.cancel() }
        }
        return (current, changes)
    }
}

extension NodeAgent {
    /// The node's primary address of each family (kube-proxy's `--nodeport-addresses primary`,
    /// its default since 1.29): the configured or discovered node IP, and the Node object's
    /// InternalIP of the other family. NodePorts and health check node ports answer on these.
    func primaryNodeAddresses() async -> [IPAddress] {
        var addresses = nodeIP.map { [$0] } ?? []
        for ip in await store.snapshot().nodes[config.nodeName]?.internalIPs ?? []
        where !addresses.contains(where: { $0.family == ip.family }) {
            addresses.append(ip)
        }
        return addresses
    }
}
