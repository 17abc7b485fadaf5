import ClusterDNS
import ClusterState
import Foundation
import IPAddressing
import Netlink
import ServiceLifecycle

/// The cluster DNS responder on the node-local address(es). They live on a device of the
/// agent's own (`nodenet-dns`, a bridge: this kernel has no dummy device), so pods reach them
/// through their default route to the node without any service NAT in the way.
struct DNSService: AgentActor {
    let agent: NodeAgent
    static let deviceName = "nodenet-dns"

    func run() async throws {
        let name = "dns"
        let config = agent.config
        // A ServiceGroup stops the agent when any service returns: a disabled actor idles.
        guard config.dns.enabled else { try? await gracefulShutdown(); return }
        agent.board.register(name)
        do {
            try Self.ensureDevice(addresses: config.dns.listen)
        } catch {
            agent.board.failed(name, "cannot put \(config.dns.listen.map(\.description)) on \(Self.deviceName): \(error)")
            throw error
        }
        do {
            let session = try NetlinkSession(protocol: Netlink.netfilter)
            try DNSNotrack.ensure(session: session, addresses: config.dns.listen, port: config.dns.port)
        } catch {
            // DNS still works with conntrack; say so rather than refusing to serve.
            agent.logger.warning("cannot exempt the DNS addresses from conntrack", metadata: ["error": "\(error)"])
            agent.board.update(name) { $0.lastError = "notrack rules: \(error)" }
        }
        let upstreams: UpstreamSource
        if let first = config.dns.upstreams.first, first.hasPrefix("/") {
            upstreams = .resolvConf(path: first)
        } else {
            upstreams = .servers(config.dns.upstreams.compactMap { UpstreamServer(parsing: $0) })
        }
        let mode = ClusterDNS.PodRecordMode(rawValue: config.dns.pods.rawValue) ?? .insecure
        let server = ClusterDNSServer(
            configuration: DNSConfiguration(listenAddresses: config.dns.listen, port: config.dns.port, clusterDomain: config.clusterDomain,
                                            ttl: config.dns.ttl, podMode: mode, upstreams: upstreams,
                                            nameserverAddresses: config.dns.listen),
            store: agent.store, logger: agent.logger)
        agent.statusDetails(name) {
            let s = server.stats
            let avg = s.upstreamLatencyCount > 0 ? "\(s.upstreamLatencyMicrosTotal / s.upstreamLatencyCount) us" : "-"
            return ["queries": "\(s.queries) (udp \(s.udpQueries), tcp \(s.tcpQueries))",
                    "answers": "NOERROR \(s.noError), NXDOMAIN \(s.nxDomain), SERVFAIL \(s.servFail), FORMERR \(s.formErr), REFUSED \(s.refused)",
                    "cache": "hits \(s.cacheHits), misses \(s.cacheMisses), coalesced \(s.coalesced)",
                    "upstream": "queries \(s.upstreamQueries), failures \(s.upstreamFailures), avg latency \(avg)"
                        + (s.loopDetected ? ", LOOP DETECTED: forwarding stopped" : ""),
                    "listen": config.dns.listen.map { "\($0):\(config.dns.port)" }.joined(separator: ", ")]
        }
        let started = ContinuousClock.now
        let readiness = Task {
            while !Task.isCancelled, !server.isReady { try? await Task.sleep(for: .milliseconds(20)) }
            agent.board.reconciled(name, seconds: (ContinuousClock.now - started).seconds,
                                   message: "serving \(config.clusterDomain) on \(config.dns.listen.map(\.description).joined(separator: ","))")
        }
        defer { readiness.cancel() }
        // Cancellation on shutdown starts the server's lame duck: it keeps answering for a few
        // seconds while reporting not ready, then returns.
        try await cancelWhenGracefulShutdown { try await server.run() }
    }

    /// The device with every listen address (host prefix), up. Idempotent; never flushes.
    static func ensureDevice(addresses: [IPAddress]) throws {
        let client = try RouteClient()
        let link = try client.link(named: deviceName) ?? client.createBridge(name: deviceName)
        let have = Set(try client.addresses(index: link.index).map(\.prefix.address))
        for a in addresses where !have.contains(a) {
            try client.addAddress(InterfaceAddress(index: link.index, prefix: IPPrefix(address: a, length: a.family.bitWidth)))
        }
        if !link.isUp { try client.setLink(index: link.index, LinkChange(up: true)) }
    }
}
