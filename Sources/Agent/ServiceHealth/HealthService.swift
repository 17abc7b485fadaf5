import ClusterState
import Foundation
import NIOCore
import ServiceLifecycle
import ServiceProxy

/// The health endpoints kube-proxy serves: the proxy's `/healthz` and `/livez` on
/// `proxyHealth.listen`, and one health check node port per LoadBalancer (or NodePort) service
/// with externalTrafficPolicy Local and a `healthCheckNodePort`, on the node's address.
/// Driven by store events: a change touches only the services it names. Never gates
/// readiness, and a port that cannot be opened is shown in status (the `health` row's error)
/// and tried again every `retryInterval`, not fatal.
struct HealthService: AgentActor {
    let agent: NodeAgent
    static let retryInterval: Duration = .seconds(3)

    func run() async throws {
        let name = "health"
        agent.board.register(name, gatesReadiness: false)
        let config = agent.config
        let health = agent.proxyHealth
        // The interval the agent's proxy re-syncs at (ProxyConfiguration's default).
        let interval = ProxyConfiguration(nodeName: config.nodeName).fullSyncInterval
        let grace = config.proxyHealth.grace
        let verdict: @Sendable () -> ProxyHealth.Verdict = { health.verdict(fullSyncInterval: interval, grace: grace) }

        var proxyChannel: (any Channel)?
        var problems: [String] = []
        if let (host, port) = ConfigLoader.parseHostPort(config.proxyHealth.listen) {
            let server = ControlServer(socketPath: "", group: agent.group, logger: agent.logger) { request in
                HealthReplies.proxy(path: request.path, verdict: verdict())
            }
            do {
                proxyChannel = try await server.bind(host: host, port: port)
            } catch {
                problems.append("cannot listen on \(config.proxyHealth.listen): \(error)")
                agent.logger.error("proxy health endpoint disabled: cannot listen",
                                   metadata: ["listen": "\(config.proxyHealth.listen)", "error": "\(error)"])
            }
        }
        // The node's primary addresses, as the proxy's NodePorts (kube-proxy's nftables mode
        // listens on those too); every address when none is known.
        @Sendable func hosts() async -> [String] {
            let addresses = await agent.primaryNodeAddresses().map(\.description)
            return addresses.isEmpty ? ["0.0.0.0"] : addresses
        }
        let ports = HealthCheckPortServers(group: agent.group, logger: agent.logger, hosts: await hosts(), proxyHealthy: { verdict().healthy })
        let events = await agent.store.subscribe()
        let fixed = problems
        @Sendable func report() async {
            let failures = await ports.failures
            let open = await ports.openPorts
            let errors = fixed + failures.keys.sorted().compactMap { failures[$0] }
            var message = config.proxyHealth.listen.isEmpty ? "proxy health off" : "proxy health on \(config.proxyHealth.listen)"
            message += ", \(open.count) health check node ports"
            agent.board.reconciled(name, seconds: 0, state: errors.isEmpty ? .inSync : .error, message: message)
            agent.board.update(name) { row in
                row.counters = ["healthCheckNodePorts": open.count]
                if let e = errors.first, row.lastError != e {
                    row.lastError = e
                    row.lastErrorAt = Date()
                }
            }
        }
        agent.statusDetails(name) {
            var d: [String: String] = [:]
            let failures = await ports.failures
            for t in await ports.served {
                d["port \(t.port)"] = "\(t.service): \(t.localEndpoints) local endpoints" + (failures[t.port].map { " (\($0))" } ?? "")
            }
            return d
        }
        await cancelWhenGracefulShutdown {
            // Subscribed first, then the full pass: no change falls between the two.
            var targets = HealthCheckTargets(nodeName: config.nodeName)
            let ownNode = ObjectKey(.node, name: config.nodeName)
            @Sendable func checkEligible() async {
                health.setNodeEligible(await agent.store.snapshot().nodes[config.nodeName]?.metadata.deletionTimestamp == nil)
                // The Node object also gives the other family's address (issue 22).
                await ports.setHosts(await hosts())
            }
            await checkEligible()
            await ports.apply(targets.update(nil, in: await agent.store.snapshot()))
            await report()
            // A port another process holds is tried again every few seconds (and at each change).
            let retrier = Task {
                while (try? await Task.sleep(for: Self.retryInterval)) != nil {
                    guard await !ports.failures.isEmpty else { continue }
                    await ports.retry()
                    await report()
                }
            }
            defer { retrier.cancel() }
            for await event in events {
                switch event {
                case .changed(_, let changes) where changes.contains(where: { $0.key == ownNode }): await checkEligible()
                case .resync: await checkEligible()
                default: break
                }
                let affected = HealthCheckTargets.affected(by: event)
                if affected?.isEmpty == true { continue }
                await ports.apply(targets.update(affected, in: await agent.store.snapshot()))
                await ports.retry()
                await report()
            }
        }
        await ports.closeAll()
        try? await proxyChannel?.close()
    }
}
