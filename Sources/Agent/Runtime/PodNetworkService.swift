import CNIProtocol
import ClusterState
import Foundation
import IPAddressing
import Metrics
import Netlink
import NodeRoutes
import PodNetwork
import ServiceLifecycle

/// Hosts PodNetwork: the node bridge, CNI requests from the shim (`POST /v1/cni`), and the
/// start-up repair of attachments (queued DELs, pods whose namespace is gone).
struct PodNetworkService: AgentActor {
    /// The node bridge pods attach to (NodeReset removes it by this name).
    static let bridgeName = "nodenet0"
    let agent: NodeAgent

    func run() async throws {
        let name = "pods"
        agent.board.register(name)
        await agent.waitForState()
        let started = ContinuousClock.now
        let config = agent.config
        // Both in the agent's own namespace (the node's): one for the request path, one for
        // removing DELs' interfaces in the background.
        let host: RouteClient, reaper: RouteClient
        do {
            host = try RouteClient()
            reaper = try RouteClient()
        } catch {
            agent.board.failed(name, "cannot open netlink: \(error)")
            throw error
        }
        // Host port chains (in nodenet's nftables tables); without netfilter netlink the pods
        // still attach, only ADDs asking for port mappings fail.
        let nftables: NetlinkSession?
        do {
            nftables = try NetlinkSession(protocol: Netlink.netfilter)
        } catch {
            agent.logger.error("no nftables session: host ports are unavailable", metadata: ["error": "\(error)"])
            nftables = nil
        }
        let pods = PodNetwork(
            configuration: PodNetworkConfiguration(
                bridgeName: Self.bridgeName, mtu: Self.podMTU(host: host, nodeIP: agent.nodeIP, routing: config.routing),
                dnsServers: config.dns.enabled ? config.dns.podNameservers.map(\.description) : [],
                clusterDomain: config.clusterDomain, runDir: config.runDir),
            store: agent.store, database: agent.database.writer, host: host, reaperClient: reaper, nftables: nftables, logger: agent.logger)

        @Sendable func applySubnets() {
            let cidrs = agent.podCIDRs
            guard !cidrs.isEmpty else { return }
            do {
                try pods.updatePodCIDRs(cidrs)
            } catch {
                agent.board.failed(name, "pod subnets \(cidrs.map(\.description)): \(error)")
            }
        }
        if config.policy.enabled {
            let handle = agent.policy, timeout = config.policy.addTimeout
            pods.setAdmission { _, version in try await handle.admit(version: version, timeout: timeout) }
        }
        applySubnets()
        let released = await pods.reconcile()
        /// `descriptor`: the pod's namespace as the plugin opened it, owned from here on.
        // Every command and result at zero from the start, so a rate or an alert on errors
        // sees the series before the first call.
        for command in CNICommand.allCases {
            for result in ["success", "error"] {
                _ = Counter(label: "nodenet_cni_operations_total", dimensions: [("command", command.rawValue), ("result", result)])
            }
        }
        @Sendable func answer(_ body: [UInt8], descriptor: Int32? = nil) async -> CNIReply {
            do {
                let request = try CNIRequest.fromEnvelope(body)
                let namespace = descriptor.map { NetworkNamespace(adopting: $0, path: request.netns ?? "CNI_NETNS") }
                let started = ContinuousClock.now
                let reply = await pods.handle(request, namespace: namespace)
                let command = request.command.rawValue
                Metrics.Timer(label: "nodenet_cni_operation_duration_seconds", dimensions: [("command", command)])
                    .record(duration: ContinuousClock.now - started)
                let result: String
                if case .failure = reply { result = "error" } else { result = "success" }
                Counter(label: "nodenet_cni_operations_total", dimensions: [("command", command), ("result", result)]).increment()
                return reply
            } catch {
                if let descriptor { close(descriptor) }
                return .failure(error)
            }
        }
        @Sendable func envelope(_ reply: CNIReply) -> [UInt8] {
            (try? reply.envelope()) ?? (try? CNIReply.failure(CNIError(.ioFailure, "cannot encode the reply")).envelope()) ?? []
        }
        // The JSON envelope (`CNIReply.envelope`), and the raw form the shim's fast path reads
        // without a JSON decoder: `<exit code>\n<stdout>` (CNIFastWire).
        agent.route("POST /v1/cni") { request in
            ControlReply(body: envelope(await answer(request.body)))
        }
        agent.route("POST \(CNIFastWire.path)") { request in
            ControlReply(body: CNIFastWire.replyBody(await answer(request.body)))
        }
        // The plugin's own socket: the same two routes, with the pod's namespace handed over
        // as a descriptor (the agent need not see the runtime's mounts). Bound once the
        // routes above exist, so a plugin that finds it is always answered.
        let cniSocket: CNISocketServer?
        do {
            cniSocket = try CNISocketServer(socketPath: config.cniSocketPath, logger: agent.logger)
        } catch {
            agent.logger.error("no CNI socket: plugins fall back to the control socket and namespace paths", metadata: ["error": "\(error)"])
            cniSocket = nil
        }
        cniSocket?.start { path, body, descriptor in
            let reply = await answer(body, descriptor: descriptor)
            return path == CNIFastWire.path ? CNIFastWire.replyBody(reply) : envelope(reply)
        }
        defer { cniSocket?.stop() }
        let report: @Sendable (Double) async -> Void = { seconds in
            let count = await agent.attachmentCount
            let cidrs = pods.podCIDRs
            agent.board.reconciled(name, seconds: seconds, state: cidrs.isEmpty ? .pending : .inSync,
                                   message: cidrs.isEmpty ? "waiting for a pod subnet" : "bridge \(pods.configuration.bridgeName), mtu \(pods.configuration.mtu)")
            agent.board.update(name) { $0.counters["attachments"] = count }
        }
        // Addresses in use and free are read from IPAM when scraped, not kept up to date per call.
        agent.onScrape(name) {
            Metrics.Gauge(label: "nodenet_cni_attachments").record(await agent.attachmentCount)
            for usage in pods.addressUsage() {
                let dims = [("subnet", usage.subnet.description)]
                Metrics.Gauge(label: "nodenet_ipam_addresses_used", dimensions: dims).record(Double(usage.used))
                Metrics.Gauge(label: "nodenet_ipam_addresses_free", dimensions: dims).record(Double(usage.free))
            }
        }
        if released > 0 { agent.logger.info("start-up repair released attachments", metadata: ["count": "\(released)"]) }
        await report((ContinuousClock.now - started).seconds)

        // The host port chains, reconciled in the one shape: every change rewrites them at
        // once (PodNetwork), and this loop passes over them periodically and with backoff while
        // one fails, with one status per chain and each error logged once.
        let hostPortLoop = KernelReconcileLoop(interval: Self.hostPortResync)
        let hostPortTask = Task {
            await hostPortLoop.run(pass: {
                await BlockingWork.run { pods.reconcileHostPorts() }
            }, report: { objects, changes in
                for e in changes.newErrors { agent.logger.error("pods: \(e.kind) \(e.name): \(e.error ?? "")") }
                for c in changes.cleared { agent.logger.info("pods: \(c.kind) \(c.name) in sync again") }
                let errors = objects.filter { $0.state == .error }
                if !errors.isEmpty {
                    agent.board.failed(name, "host ports: " + errors.map { "\($0.name): \($0.error ?? "")" }.joined(separator: "; "),
                                       count: !changes.newErrors.isEmpty)
                } else if !changes.cleared.isEmpty {
                    await report(0)
                }
                agent.board.update(name) { $0.objects = objects }
            })
        }
        defer { hostPortTask.cancel() }

        let changes = agent.podCIDRChanges()
        await cancelWhenGracefulShutdown {
            for await _ in changes {
                let t = ContinuousClock.now
                applySubnets()
                await report((ContinuousClock.now - t).seconds)
            }
        }
        pods.drainReleases()  // interfaces of DELs already answered are removed before exit
    }

    /// The periodic pass over the host port chains.
    static let hostPortResync: Duration = .seconds(10)

    /// The underlay's MTU (the link that holds the node address), less the vxlan overhead of
    /// the underlay's family where pods' packets may be encapsulated (VTEPAddress.podMTU).
    static func podMTU(host: RouteClient, nodeIP: IPAddress?, routing: RoutingMode) -> UInt32 {
        var mtu: UInt32 = 1500
        if let nodeIP, let address = try? host.addresses().first(where: { $0.prefix.address == nodeIP }),
           let link = try? host.link(index: address.index) {
            mtu = link.mtu
        }
        return VTEPAddress.podMTU(underlayMTU: mtu, underlayFamily: nodeIP?.family ?? .v4, routing: routing)
    }
}
