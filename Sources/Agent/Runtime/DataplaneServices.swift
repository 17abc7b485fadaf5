import ClusterState
import Foundation
import IPAddressing
import Netlink
import NodeRoutes
import ServiceLifecycle
import ServiceProxy

/// Routes to the other nodes' pod subnets (host-gw, vxlan, auto) and masquerade for traffic
/// leaving the cluster. Cancelling leaves every route in place.
struct NodeRoutesService: AgentActor {
    let agent: NodeAgent

    func run() async throws {
        let name = "routes"
        agent.board.register(name)
        let config = agent.config
        guard let nodeIP = agent.nodeIP else {
            agent.board.failed(name, "no node address: set nodeIP (no default-route interface was found)")
            agent.board.reconciled(name, seconds: 0, state: .error, message: "no node address: set nodeIP")
            try? await gracefulShutdown()
            return
        }
        let mode = config.routing
        let routes = NodeRoutesActor(
            configuration: NodeRoutesConfiguration(nodeName: config.nodeName, nodeIP: nodeIP, podCIDRs: agent.podCIDRs,
                                                   clusterCIDRs: config.clusterCIDRs, mode: mode,
                                                   vxlanVNI: config.vxlan.vni, vxlanPort: config.vxlan.port),
            store: agent.store, logger: agent.logger,
            onReconciled: { [agent] status in
                agent.board.reconciled(name, seconds: 0, state: status.errors.isEmpty ? .inSync : .error, message: status.summary)
                agent.board.update(name) { row in
                    row.counters = ["peers": status.peers.count, "routes": status.routes, "repairs": status.repairs]
                    if let e = status.errors.first { row.lastError = e }
                }
            })
        agent.statusDetails(name) {
            var d: [String: String] = [:]
            for p in routes.status.peers {
                d[p.name] = "\(p.mode ?? "-") via \(p.nextHop ?? "-") \(p.podCIDRs.joined(separator: ",")): \(p.state)" + (p.message.map { " (\($0))" } ?? "")
            }
            return d
        }
        let changes = agent.podCIDRChanges()
        let follow = Task {
            for await cidrs in changes { await routes.updatePodCIDRs(cidrs) }
        }
        defer { follow.cancel() }
        try await cancelWhenGracefulShutdown { try await routes.run() }
    }
}

/// Services in nftables: ClusterIP, NodePort, LoadBalancer and external IPs, affinity, policies.
struct ServiceProxyService: AgentActor {
    let agent: NodeAgent

    func run() async throws {
        let name = "services"
        agent.board.register(name)
        let config = agent.config
        // nftables over netlink; the nft-command backend is for tests and operators only.
        let backend: any RulesetBackend
        do {
            backend = try NetlinkRulesetBackend()
        } catch {
            agent.board.failed(name, "cannot open nfnetlink: \(error)")
            throw error
        }
        let proxy = ServiceProxyActor(
            store: agent.store,
            configuration: ProxyConfiguration(nodeName: config.nodeName, nodeAddresses: agent.nodeIP.map { [$0] } ?? [],
                                              nodePortRange: config.nodePortRange, clusterCIDRs: config.clusterCIDRs,
                                              serviceCIDRs: config.serviceCIDRs),
            backend: backend, logger: agent.logger)
        agent.statusDetails(name) {
            let s = await proxy.status()
            var d = ["services": "\(s.services)", "endpoints": "\(s.endpoints)", "chains": "\(s.chains)", "rules": "\(s.rules)",
                     "elements": "\(s.elements)", "last sync": s.lastSyncSeconds.map { String(format: "%.1f ms", $0 * 1000) } ?? "-"]
            for (i, skipped) in s.skipped.prefix(10).enumerated() { d["skipped \(i + 1)"] = skipped }
            return d
        }
        agent.route("GET /v1/rules") { _ in
            ControlReply(body: Array(await proxy.rulesText().utf8), contentType: "text/plain")
        }
        // proxy.status() walks the whole desired model (about 10 ms at 10,000 services): polled
        // every 200 ms it took a large share of the two-core node's CPU from the DNS event
        // loops (bench/dns/RESULTS.md). It is polled every 200 ms after the store changed until a
        // sync shows that finished at least 1 s after the change (syncs follow changes; at most
        // 60 s), else every 10 s (periodic full syncs, retries, a sync that was already running).
        let store = agent.store
        let watcher = Task {
            var reported = -1
            var seenVersion: UInt64?
            var lastChange = ContinuousClock.now
            var syncSeen = ContinuousClock.now - .seconds(3600)
            var lastPoll = ContinuousClock.now - .seconds(60)
            while !Task.isCancelled {
                let version = await store.version
                if version != seenVersion { seenVersion = version; lastChange = .now }
                let now = ContinuousClock.now
                let pending = syncSeen < lastChange + .seconds(1) && now - lastChange < .seconds(60)
                if pending || now - lastPoll >= .seconds(10) {
                    lastPoll = now
                    let s = await proxy.status()
                    if s.syncs + s.failures != reported, s.syncs > 0 || s.failures > 0 {
                        reported = s.syncs + s.failures
                        syncSeen = now
                        if s.inSync, s.lastError == nil || s.syncs > 0 {
                            agent.board.reconciled(name, seconds: s.lastSyncSeconds ?? 0, message: "\(s.services) services, \(s.rules) rules")
                        } else if let e = s.lastError {
                            agent.board.failed(name, e)
                        }
                        agent.board.update(name) { row in
                            row.counters = ["services": s.services, "endpoints": s.endpoints, "rules": s.rules]
                        }
                    }
                }
                try? await Task.sleep(for: .milliseconds(200))
            }
        }
        defer { watcher.cancel() }
        await cancelWhenGracefulShutdown { await proxy.run() }
    }
}
