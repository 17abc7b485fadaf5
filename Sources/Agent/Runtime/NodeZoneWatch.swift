import ClusterState
import IPAddressing

/// A fact of this node's own Node object (its zone label, its addresses), followed through
/// store events. Only events that touch the node's own Node object (or a resync) read it again.
enum NodeZoneWatch {
    /// The zone now, and a stream that yields it each time it changes after that.
    static func follow(_ nodeName: String, in store: ClusterStore) async -> (current: String?, changes: AsyncStream<String?>) {
        await follow(nodeName, in: store) { $0?.zone }
    }

    /// `read` of the Node object now, and a stream that yields it each time it changes after
    /// that (subscribed before the first read, so no change falls between). The stream ends
    /// when the task iterating it is cancelled.
    static func follow<T: Equatable & Sendable>(_ nodeName: String, in store: ClusterStore,
                                                _ read: @escaping @Sendable (Node?) -> T) async -> (current: T, changes: AsyncStream<T>) {
        let events = await store.subscribe()
        let current = read(await store.snapshot().nodes[nodeName])
        let key = ObjectKey(.node, name: nodeName)
        let changes = AsyncStream<T> { continuation in
            let task = Task {
                var last = current
                for await event in events {
                    switch event {
                    case .changed(_, let changes) where !changes.contains(where: { $0.key == key }): continue
                    case .synced: continue
                    default: break
                    }
                    let value = read(await store.snapshot().nodes[nodeName])
                    if value != last {
                        last = value
                        continuation.yield(value)
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
        Self.primaryAddresses(nodeIP: nodeIP, node: await store.snapshot().nodes[config.nodeName])
    }

    static func primaryAddresses(nodeIP: IPAddress?, node: Node?) -> [IPAddress] {
        var addresses = nodeIP.map { [$0] } ?? []
        for ip in node?.internalIPs ?? [] where !addresses.contains(where: { $0.family == ip.family }) {
            addresses.append(ip)
        }
        return addresses
    }

    /// The primary addresses now and as the Node object changes (it may arrive after the
    /// start, as with `nodenet apply` of a static cluster's Nodes).
    func followPrimaryNodeAddresses() async -> (current: [IPAddress], changes: AsyncStream<[IPAddress]>) {
        let agent = self
        return await NodeZoneWatch.follow(config.nodeName, in: store) { Self.primaryAddresses(nodeIP: agent.nodeIP, node: $0) }
    }
}
