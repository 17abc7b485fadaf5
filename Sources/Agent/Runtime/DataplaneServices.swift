import ClusterState
import Foundation
import IPAddressing
import Netlink
import NodeRoutes
import ServiceLifecycle
import ServiceProxy
import Synchronization

/// Routes to the other nodes' pod subnets (host-gw, vxlan, auto) and masquerade for traffic
/// leaving the cluster. Cancelling leaves every route in place.
struct NodeRoutesService: AgentActor {
    let agent: NodeAgent

    func run() async throws {
        let name = "routes"
        agent.board.register(name)
        await agent.waitForState()
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
                Self.report(status, to: agent.board, name)
            },
            // Every change, not only full reconciles: counters and the applied store version
            // follow each Node event (the row said 0 peers with 5,000 routes programmed).
            onChange: { [agent] status in
                guard status.reconciled else { return }
                agent.board.update(name) { row in
                    if row.state == .inSync || row.state == .error {
                        row.state = status.errors.isEmpty ? .inSync : .error
                        row.message = status.summary
                    }
                }
                Self.report(status, to: agent.board, name)
            })
        agent.statusDetails(name) {
            var d: [String: String] = [:]
            for p in routes.status.peers {
                // Per family: each pod subnet with its next hop and state ("host-gw 10.244.2.0/24 via
                // 192.168.1.12 in-sync, fd00:10:244:2::/64 via fd00:1::12 in-sync").
                let routes = p.routes.isEmpty ? "via \(p.nextHop ?? "-") \(p.podCIDRs.joined(separator: ",")): \(p.state.rawValue)"
                    : p.routes.map { "\($0.subnet) via \($0.nextHop ?? "-") \($0.state.rawValue)" }.joined(separator: ", ")
                d[p.name] = "\(p.mode ?? "-") \(routes)" + (p.message.map { " (\($0))" } ?? "")
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

    private static func report(_ status: NodeRoutesStatus, to board: StatusBoard, _ name: String) {
        board.update(name) { row in
            row.counters = ["peers": status.peerCount, "routes": status.routes, "repairs": status.repairs]
            row.appliedVersion = status.appliedVersion
            row.objects = status.objects
            if let e = status.errors.first { row.lastError = e }
        }
    }
}

/// Services in nftables: ClusterIP, NodePort, LoadBalancer and external IPs, affinity, policies.
///
/// The node's zone (topology-aware routing) is part of the proxy's configuration: when the own
/// Node's zone label changes (or the Node object first arrives from the source), the proxy actor
/// is replaced by one with the new zone. The new actor's first sync is a full one against the
/// kernel (no flush: only the elements the zone changes are rewritten), as after an agent restart.
struct ServiceProxyService: AgentActor {
    let agent: NodeAgent

    /// The row's kernel objects: each table the proxy owns (in error with the last transaction's
    /// error while the kernel does not hold the desired state: a transaction is all or nothing,
    /// so the whole table is behind), then every Service or EndpointSlice that could not be
    /// programmed, with the reason. In sync Services are not listed one by one: at 30,000
    /// services the row would be rebuilt per change; `nodenet status --json` has the counts and
    /// `nodenet status --rules` the elements.
    static func objects(_ s: ServiceProxyStatus) -> [KernelObjectStatus] {
        let tableError = s.inSync ? nil : (s.lastError ?? "not programmed yet")
        return s.tables.map { KernelObjectStatus(kind: "table", name: $0, error: tableError) }
            + s.skipped.map { skipped in
                let parts = skipped.object.split(separator: " ", maxSplits: 1)
                let kind = parts.count == 2 ? parts[0].lowercased() : "object"
                return KernelObjectStatus(kind: kind, name: parts.count == 2 ? String(parts[1]) : skipped.object,
                                          error: "not programmed: \(skipped.reason)")
            }
    }

    func run() async throws {
        let name = "services"
        agent.board.register(name)
        await agent.waitForState()
        let config = agent.config
        // nftables over netlink; the nft-command backend is for tests and operators only.
        let backend: any RulesetBackend
        do {
            backend = try NetlinkRulesetBackend()
        } catch {
            agent.board.failed(name, "cannot open nfnetlink: \(error)")
            throw error
        }
        let (initialAddresses, addressChanges) = await agent.followPrimaryNodeAddresses()
        // The row follows the proxy's own events (each sync, each version applied without one):
        // nothing polls the proxy, and reading the status never waits for it.
        @Sendable func publish(_ event: ServiceProxyActor.Event) {
            switch event {
            case .applied(let version):
                agent.board.update(name) { row in row.appliedVersion = max(row.appliedVersion ?? 0, version) }
            case .synced(let s):
                agent.proxyHealth.observe(s)
                if s.inSync {
                    agent.board.reconciled(name, seconds: s.lastSyncSeconds ?? 0,
                                           message: "\(s.services) services, \(s.rules) rules")
                } else if let e = s.lastError {
                    agent.board.failed(name, e)
                }
                agent.board.update(name) { row in
                    row.counters = ["services": s.services, "endpoints": s.endpoints, "rules": s.rules]
                    row.appliedVersion = s.appliedVersion
                    row.objects = Self.objects(s)
                }
            }
        }
        @Sendable func makeProxy(zone: String?) async -> ServiceProxyActor {
            ServiceProxyActor(
                store: agent.store,
                configuration: ProxyConfiguration(nodeName: config.nodeName, nodeAddresses: initialAddresses,
                                                  nodePortRange: config.nodePortRange, clusterCIDRs: config.clusterCIDRs,
                                                  serviceCIDRs: config.serviceCIDRs, nodeZone: zone),
                backend: backend, logger: agent.logger, onEvent: publish)
        }
        let (initialZone, zones) = await NodeZoneWatch.follow(config.nodeName, in: agent.store)
        // The running actor, read by the status details and the rules route.
        final class Current: Sendable {
            let proxy: Mutex<ServiceProxyActor>
            init(_ p: ServiceProxyActor) { proxy = Mutex(p) }
            var value: ServiceProxyActor { proxy.withLock { $0 } }
        }
        let current = Current(await makeProxy(zone: initialZone))
        agent.statusDetails(name) {
            let proxy = current.value
            let s = await proxy.status()
            var d = ["services": "\(s.services)", "endpoints": "\(s.endpoints)", "chains": "\(s.chains)", "rules": "\(s.rules)",
                     "elements": "\(s.elements)", "last sync": s.lastSyncSeconds.map { String(format: "%.1f ms", $0 * 1000) } ?? "-",
                     "syncs": "\(s.syncs)",
                     // Store event to kernel of the last sync an event asked for (kube-proxy's
                     // network programming latency).
                     "programming": s.lastProgrammingSeconds.map { String(format: "%.3f ms", $0 * 1000) } ?? "-"]
            d["zone"] = await proxy.configuration.nodeZone ?? "none"
            for (i, skipped) in s.skipped.prefix(10).enumerated() { d["skipped \(i + 1)"] = skipped.description }
            return d
        }
        agent.route("GET /v1/rules") { _ in
            ControlReply(body: Array(await current.value.rulesText().utf8), contentType: "text/plain")
        }
        // A zone change reconfigures the running actor (one full sync, nothing flushed).
        let proxy = current.value
        let follow = Task {
            for await zone in zones { await proxy.setNodeZone(zone) }
        }
        defer { follow.cancel() }
        // So do the node's addresses: NodePorts answer on the Node object's InternalIP of the
        // other family, which a static cluster's `nodenet apply` brings after the start.
        let followAddresses = Task {
            for await addresses in addressChanges { await proxy.setNodeAddresses(addresses) }
        }
        defer { followAddresses.cancel() }
        await cancelWhenGracefulShutdown { await proxy.run() }
    }
}
