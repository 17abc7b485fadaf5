import ClusterState
import IPAddressing
import ServiceLifecycle

/// With the etcd source, a pod's address is known only on the node that attached it. This
/// actor publishes it: for every attachment that names a pod, the Pod object in etcd gets
/// `status.podIPs` and `spec.nodeName` (created if nobody applied one), so every node's
/// endpoints controller, service rules and DNS see the pod. When the attachment goes, the
/// addresses are cleared (the Pod object itself belongs to whoever applied it).
struct PodIPPublisher: AgentActor {
    let agent: NodeAgent

    func run() async throws {
        await agent.waitForState()
        let events = await agent.store.subscribe()
        await publish(all: true, changes: [])
        await cancelWhenGracefulShutdown {
            for await event in events {
                switch event {
                case .changed(_, let changes):
                    // Attachments come and go here; Pod objects are re-applied by users (without
                    // addresses): both can leave a local pod's published addresses out of date.
                    let relevant = changes.filter { $0.key.kind == .attachment || $0.key.kind == .pod }
                    if !relevant.isEmpty { await publish(all: false, changes: relevant) }
                case .resync, .synced:
                    await publish(all: true, changes: [])
                }
            }
        }
    }

    private func publish(all: Bool, changes: [ObjectChange]) async {
        guard let write = agent.remoteSource?.write else { return }
        let snapshot = await agent.store.snapshot()
        let node = agent.config.nodeName
        var pods = Set<NamespacedName>()
        if all {
            pods = Set(snapshot.attachments.values.compactMap(\.pod))
        } else {
            let local = Set(snapshot.attachments.values.compactMap(\.pod))
            for c in changes {
                for o in [c.old, c.new] {
                    switch o {
                    case .attachment(let a)?: if let p = a.pod { pods.insert(p) }
                    case .pod(let p)? where local.contains(p.id): pods.insert(p.id)
                    default: break
                    }
                }
            }
        }
        var out: [StoreChange] = []
        for id in pods.sorted() {
            let ips = snapshot.attachments.values.filter { $0.pod == id }.sorted { $0.keyName < $1.keyName }.flatMap { $0.ips.map(\.address) }
            var pod = snapshot.pods[id] ?? Pod(metadata: ObjectMeta(name: id.name, namespace: id.namespace))
            if pod.nodeName != nil, pod.nodeName != node, ips.isEmpty { continue }  // someone else's pod
            let before = pod
            pod.podIPs = ips
            if !ips.isEmpty { pod.nodeName = node }
            if pod != before || snapshot.pods[id] == nil, !(snapshot.pods[id] == nil && ips.isEmpty) {
                out.append(.upsert(.pod(pod)))
            }
        }
        guard !out.isEmpty else { return }
        do {
            try await write(out)
        } catch {
            agent.logger.warning("publishing pod addresses to etcd failed; retried on the next change or resync",
                                 metadata: ["pods": "\(out.count)", "error": "\(error)"])
        }
    }
}
