import ClusterSources
import ClusterState
import Foundation
import IPAddressing
import ServiceLifecycle

/// What the agent needs from a remote source: its health for `nodenet status`, and (etcd)
/// where `nodenet apply` writes.
struct RemoteSource: Sendable {
    var status: @Sendable () -> SourceStatus
    var write: (@Sendable ([StoreChange]) async throws -> Void)?
}

/// Runs the etcd or Kubernetes source into the store. READY waits for the first sync, or for
/// `firstSyncTimeout` after which the agent serves from its persisted state and says so.
struct SourceService: AgentActor {
    let agent: NodeAgent
    static let firstSyncTimeout: Duration = .seconds(30)

    func run() async throws {
        let config = agent.config
        let name = "source"
        agent.board.register(name, message: "connecting to \(config.source.rawValue)")
        await agent.waitForState()
        let runSource: @Sendable () async throws -> Void
        let waitSync: @Sendable (Duration) async -> Bool
        switch config.source {
        case .embedded:
            return
        case .etcd:
            let source = try EtcdSource(configuration: EtcdSourceConfiguration(endpoints: config.etcd.endpoints, prefix: config.etcd.prefix,
                                                                                nodeName: config.nodeName),
                                        store: agent.store, logger: agent.logger)
            agent.setRemoteSource(RemoteSource(status: { source.status }, write: { try await source.writer.apply($0) }))
            runSource = { try await source.run() }
            waitSync = { await source.waitForFirstSync(timeout: $0) }
            if config.podCIDRs.isEmpty {
                let leaser = SubnetLeaser(client: source.client, prefix: config.etcd.prefix, nodeName: config.nodeName, ttl: Int64(config.etcd.leaseSeconds),
                                          stateDir: config.stateDir)
                Task { await hold(leaser) }
            }
        case .kubernetes:
            let connection: KubeConnection
            do {
                if let path = config.kubernetes.kubeconfig, FileManager.default.fileExists(atPath: path) {
                    connection = try KubeConnection.kubeconfig(path: path)
                } else {
                    connection = try KubeConnection.inCluster()
                }
            } catch {
                agent.board.failed(name, "no Kubernetes credentials: \(error)")
                throw error
            }
            let source = try KubernetesSource(configuration: KubernetesSourceConfiguration(
                connection: connection, nodeName: config.nodeName, allPods: config.dns.pods != .disabled), store: agent.store, logger: agent.logger)
            agent.setRemoteSource(RemoteSource(status: { source.status }, write: nil))
            runSource = { try await source.run() }
            waitSync = { await source.waitForFirstSync(timeout: $0) }
        }
        let started = ContinuousClock.now
        let kind = config.source.rawValue
        Task {
            // With a full sync stored from an earlier run the node serves it at once: the source
            // does not hold readiness back while it reconnects.
            let persisted = agent.servesPersistedSync
            if persisted {
                agent.board.reconciled(name, seconds: 0, state: .pending,
                                       message: "serving the persisted state of an earlier sync; connecting to \(kind)")
            }
            let synced = await waitSync(persisted ? .seconds(86400 * 365) : Self.firstSyncTimeout)
            agent.board.reconciled(name, seconds: (ContinuousClock.now - started).seconds, state: synced ? .inSync : .pending,
                                   message: synced ? "synced from \(kind)"
                                       : "not synced after \(Self.firstSyncTimeout): serving the persisted state, retrying")
            if !synced {
                _ = await waitSync(.seconds(86400 * 365))
                agent.board.reconciled(name, seconds: (ContinuousClock.now - started).seconds, message: "synced from \(kind)")
            }
            do {
                try await agent.database.recordSyncedSource(kind)
            } catch {
                agent.logger.warning("cannot record the source's sync in the state database", metadata: ["error": "\(error)"])
            }
        }
        try await cancelWhenGracefulShutdown { try await runSource() }
    }

    /// Takes this node's subnet lease in etcd, one subnet per clusterCIDR family (retrying
    /// while etcd is unreachable), records it in the local store so pods can be attached at
    /// once, then keeps the lease alive.
    private func hold(_ leaser: SubnetLeaser) async {
        let config = agent.config
        let ranges = config.podSubnetRanges
        guard !ranges.isEmpty else { return }
        // Bounded so a node that started while etcd was down takes its subnet soon after etcd is back.
        var backoff = Backoff(initial: .milliseconds(200), maximum: .seconds(2))
        while !Task.isCancelled {
            do {
                // The Node object carries an InternalIP of each pod family: peers route each
                // family's subnet via the address of that family.
                let nodeIPs = agent.nodeIP.map { DefaultInterface.nodeAddresses(primary: $0, families: ranges.map(\.family)) } ?? []
                let cidrs = try await leaser.acquire(ranges: ranges, nodeIP: nodeIPs)
                try await agent.store.commit([.upsert(.lease(SubnetLease(nodeName: config.nodeName, cidrs: cidrs)))])
                await agent.refreshPodSubnets()
                agent.logger.info("etcd subnet lease held", metadata: ["cidrs": "\(cidrs.map(\.description))"])
                try await leaser.run()
            } catch {
                agent.logger.warning("etcd subnet lease: retrying", metadata: ["error": "\(error)"])
                try? await Task.sleep(for: backoff.next())
            }
        }
    }
}
