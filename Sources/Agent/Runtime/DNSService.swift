import ClusterDNS
import ClusterState
import Foundation
import IPAddressing
import Netlink
import ServiceLifecycle
import Synchronization

/// The cluster DNS responder on the node-local address(es). They live on a device of the
/// agent's own (`nodenet-dns`, a bridge: this kernel has no dummy device), so pods reach them
/// through their default route to the node without any service NAT in the way.
struct DNSService: AgentActor {
    let agent: NodeAgent
    static let deviceName = DNSDevice.deviceName

    func run() async throws {
        let name = "dns"
        let config = agent.config
        // A ServiceGroup stops the agent when any service returns: a disabled actor idles.
        guard config.dns.enabled else { try? await gracefulShutdown(); return }
        agent.board.register(name)
        await agent.waitForState()
        // Subscribed before the first read, so a subnet that appears in between is not missed.
        let subnetChanges = agent.podCIDRChanges()
        let listen = ListenSet(config.dns.listenAddresses(podCIDRs: agent.podCIDRs))
        // The device and its addresses before the server binds them (the loop below keeps them).
        let initial = listen.all
        let device = DNSDevice(client: try RouteClient(), port: config.dns.port)
        _ = await BlockingWork.run { device.reconcile(addresses: initial) }
        let upstreams: UpstreamSource
        if let first = config.dns.upstreams.first, first.hasPrefix("/") {
            upstreams = .resolvConf(path: first)
        } else {
            upstreams = .servers(config.dns.upstreams.compactMap { UpstreamServer(parsing: $0) })
        }
        let mode = ClusterDNS.PodRecordMode(rawValue: config.dns.pods.rawValue) ?? .insecure
        var dnsConfig = DNSConfiguration(listenAddresses: listen.all, port: config.dns.port, clusterDomain: config.clusterDomain,
                                         ttl: config.dns.ttl, podMode: mode, upstreams: upstreams,
                                         nameserverAddresses: config.dns.listen,
                                         lameDuckMilliseconds: config.dns.lameDuckMilliseconds)
        dnsConfig.allowedClients = allowedClients(podCIDRs: agent.podCIDRs)
        dnsConfig.responseRateLimit = config.dns.rateLimit
        dnsConfig.autopath = config.dns.autopath
        dnsConfig.udpBatchIO = config.dns.udpBatchIO
        dnsConfig.serveStaleSeconds = config.dns.serveStaleSeconds
        dnsConfig.zones = config.dns.zones.sorted { $0.key < $1.key }.map {
            ZoneForward(zone: $0.key, servers: $0.value.compactMap { UpstreamServer(parsing: $0) })
        }
        let server = ClusterDNSServer(configuration: dnsConfig, store: agent.store, logger: agent.logger)
        agent.metricsText(name) { server.coreDNSMetrics }
        agent.statusDetails(name) {
            let s = server.stats
            let avg = s.upstreamLatencyCount > 0 ? "\(s.upstreamLatencyMicrosTotal / s.upstreamLatencyCount) us" : "-"
            let failed = server.failedListeners
            return ["queries": "\(s.queries) (udp \(s.udpQueries), tcp \(s.tcpQueries))",
                    "answers": "NOERROR \(s.noError), NXDOMAIN \(s.nxDomain), SERVFAIL \(s.servFail), FORMERR \(s.formErr), REFUSED \(s.refused)",
                    "cache": "hits \(s.cacheHits), misses \(s.cacheMisses), coalesced \(s.coalesced)",
                    "upstream": "queries \(s.upstreamQueries), failures \(s.upstreamFailures), avg latency \(avg)"
                        + (s.loopDetected ? ", LOOP DETECTED: forwarding stopped" : ""),
                    "limits": "refused clients \(s.refusedClients), rate limited \(s.rateLimited), tcp connections closed \(s.tcpConnectionsRejected)",
                    "autopath": config.dns.autopath ? "answered \(s.autopathAnswers) of \(s.autopathAttempts)" : "off",
                    "stale": "served \(s.staleAnswers), prefetched \(s.prefetches)",
                    "listen": server.listenAddresses.map { "\(Self.endpoint($0, config.dns.port))\(failed[$0] == nil ? "" : " (failing, retried)")" }
                        .joined(separator: ", ")]
        }
        let started = ContinuousClock.now
        // The device, its addresses, the notrack chains and the listeners, reconciled as one
        // set of kernel objects: at once, on the device's own link and address events, every
        // `interval`, and with backoff while something fails. The row follows each pass.
        let monitor = try? NetlinkMonitor(groups: [.links, .addresses])
        let loop = KernelReconcileLoop(interval: Self.resyncInterval)
        let serverChanges = server.changes
        let reconciler = Task {
            // The first pass once the server answers on some address (its first bind) and every
            // listen address was tried, so a listener that cannot bind is in it; then a pass on
            // each change of the server's listeners (a retried address bound, or failing anew),
            // all followed from the server's change stream rather than polled.
            var changes = serverChanges.makeAsyncIterator()
            while !server.isReady || !server.listenersSettled {
                guard await changes.next() != nil, !Task.isCancelled else { return }
            }
            let follow = Task {
                while await changes.next() != nil { loop.trigger() }
            }
            defer { follow.cancel() }
            await loop.run(events: monitor?.events, relevant: { device.isRelevant($0) }, pass: {
                let addresses = listen.all
                var statuses = await BlockingWork.run { device.reconcile(addresses: addresses) }
                let failed = server.failedListeners
                statuses += server.listenAddresses.map { a in
                    KernelObjectStatus(kind: "listener", name: Self.endpoint(a, config.dns.port), error: failed[a].map { "\($0); retrying" })
                }
                return statuses
            }, report: { statuses, changes in
                for e in changes.newErrors { agent.logger.error("dns: \(e.kind) \(e.name): \(e.error ?? "")") }
                for c in changes.cleared { agent.logger.info("dns: \(c.kind) \(c.name) in sync again") }
                let errors = statuses.filter { $0.state == .error }
                if errors.isEmpty {
                    agent.board.reconciled(name, seconds: (ContinuousClock.now - started).seconds,
                                           message: "serving \(config.clusterDomain) on \(server.listenAddresses.map(\.description).joined(separator: ","))")
                } else {
                    if !agent.board.hasReconciled(name) { agent.board.reconciled(name, seconds: (ContinuousClock.now - started).seconds) }
                    agent.board.failed(name, errors.map { "\($0.kind) \($0.name): \($0.error ?? "")" }.joined(separator: "; "), count: !changes.newErrors.isEmpty)
                }
                agent.board.update(name) { $0.objects = statuses }
            })
        }
        defer { reconciler.cancel(); monitor?.stop() }
        // An IPv6 pod subnet that appears later brings the IPv6 address.
        let follower = Task {
            for await cidrs in subnetChanges {
                server.setAllowedClients(allowedClients(podCIDRs: cidrs))
                let wanted = config.dns.listenAddresses(podCIDRs: cidrs)
                let added = listen.add(wanted)
                guard !added.isEmpty else { continue }
                agent.logger.info("dns: serving on more addresses", metadata: ["addresses": "\(added.map(\.description))"])
                let all = listen.all
                _ = await BlockingWork.run { device.reconcile(addresses: all) }
                await server.listen(on: added)
                loop.trigger()
            }
        }
        defer { follower.cancel() }
        // Cancellation on shutdown starts the server's lame duck: it keeps answering for a few
        // seconds while reporting not ready, then returns.
        try await cancelWhenGracefulShutdown { try await server.run() }
    }

    /// The periodic full pass over the DNS device, its addresses and notrack chains.
    static let resyncInterval: Duration = .seconds(10)

    /// Who may query: the node itself (loopback, its address, the DNS addresses: what a local
    /// process's query comes from) and this node's pod subnets, plus `dns.allowedClients`.
    func allowedClients(podCIDRs: [IPPrefix]) -> [IPPrefix] {
        let config = agent.config
        var own: [IPAddress] = config.dns.listen + (config.dns.listenIPv6.map { [$0] } ?? [])
        if let ip = agent.nodeIP { own.append(ip) }
        return [IPPrefix("127.0.0.0/8")!, IPPrefix("::1/128")!] + own.map { IPPrefix(address: $0, length: $0.family.bitWidth) }
            + podCIDRs + config.dns.allowedClients
    }

    static func endpoint(_ a: IPAddress, _ port: UInt16) -> String { a.family == .v6 ? "[\(a)]:\(port)" : "\(a):\(port)" }

}

/// The addresses the DNS actor serves on; only ever grows while the agent runs.
final class ListenSet: Sendable {
    private let addresses: Mutex<[IPAddress]>
    init(_ initial: [IPAddress]) { addresses = Mutex(initial) }
    var all: [IPAddress] { addresses.withLock { $0 } }
    /// Adds those not present yet and returns them.
    func add(_ wanted: [IPAddress]) -> [IPAddress] {
        addresses.withLock { l in
            let new = wanted.filter { !l.contains($0) }
            l += new
            return new
        }
    }
}
