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
    static let deviceName = "nodenet-dns"

    func run() async throws {
        let name = "dns"
        let config = agent.config
        // A ServiceGroup stops the agent when any service returns: a disabled actor idles.
        guard config.dns.enabled else { try? await gracefulShutdown(); return }
        agent.board.register(name)
        // Subscribed before the first read, so a subnet that appears in between is not missed.
        let subnetChanges = agent.podCIDRChanges()
        let listen = ListenSet(config.dns.listenAddresses(podCIDRs: agent.podCIDRs))
        prepare(listen.all)
        let upstreams: UpstreamSource
        if let first = config.dns.upstreams.first, first.hasPrefix("/") {
            upstreams = .resolvConf(path: first)
        } else {
            upstreams = .servers(config.dns.upstreams.compactMap { UpstreamServer(parsing: $0) })
        }
        let mode = ClusterDNS.PodRecordMode(rawValue: config.dns.pods.rawValue) ?? .insecure
        var dnsConfig = DNSConfiguration(listenAddresses: listen.all, port: config.dns.port, clusterDomain: config.clusterDomain,
                                         ttl: config.dns.ttl, podMode: mode, upstreams: upstreams,
                                         nameserverAddresses: config.dns.listen)
        dnsConfig.allowedClients = allowedClients(podCIDRs: agent.podCIDRs)
        dnsConfig.responseRateLimit = config.dns.rateLimit
        dnsConfig.autopath = config.dns.autopath
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
        // Readiness once the server answers on some address; then the row follows the listeners:
        // one that cannot be bound is an error on the row (and retried by the server), never a
        // reason to stop the agent. While one fails, the device is re-checked too (its address
        // may be what is missing).
        let watcher = Task {
            while !Task.isCancelled, !server.isReady { try? await Task.sleep(for: .milliseconds(20)) }
            var reported: [IPAddress: String]? = nil
            var lastRepair = ContinuousClock.now
            while !Task.isCancelled {
                let failed = server.failedListeners
                if failed != reported {
                    if failed.isEmpty {
                        agent.board.reconciled(name, seconds: (ContinuousClock.now - started).seconds,
                                               message: "serving \(config.clusterDomain) on \(server.listenAddresses.map(\.description).joined(separator: ","))")
                    } else {
                        if reported == nil { agent.board.reconciled(name, seconds: (ContinuousClock.now - started).seconds) }
                        agent.board.failed(name, failed.sorted { $0.key.description < $1.key.description }
                            .map { "listener \($0.key): \($0.value); retrying" }.joined(separator: "; "))
                    }
                    reported = failed
                }
                if !failed.isEmpty, ContinuousClock.now - lastRepair > .seconds(5) {
                    prepare(listen.all)
                    lastRepair = ContinuousClock.now
                }
                try? await Task.sleep(for: .milliseconds(200))
            }
        }
        defer { watcher.cancel() }
        // An IPv6 pod subnet that appears later brings the IPv6 address.
        let follower = Task {
            for await cidrs in subnetChanges {
                server.setAllowedClients(allowedClients(podCIDRs: cidrs))
                let wanted = config.dns.listenAddresses(podCIDRs: cidrs)
                let added = listen.add(wanted)
                guard !added.isEmpty else { continue }
                agent.logger.info("dns: serving on more addresses", metadata: ["addresses": "\(added.map(\.description))"])
                prepare(listen.all)
                await server.listen(on: added)
            }
        }
        defer { follower.cancel() }
        // Cancellation on shutdown starts the server's lame duck: it keeps answering for a few
        // seconds while reporting not ready, then returns.
        try await cancelWhenGracefulShutdown { try await server.run() }
    }

    /// Who may query: the node itself (loopback, its address, the DNS addresses: what a local
    /// process's query comes from) and this node's pod subnets, plus `dns.allowedClients`.
    func allowedClients(podCIDRs: [IPPrefix]) -> [IPPrefix] {
        let config = agent.config
        var own: [IPAddress] = config.dns.listen + (config.dns.listenIPv6.map { [$0] } ?? [])
        if let ip = agent.nodeIP { own.append(ip) }
        return [IPPrefix("127.0.0.0/8")!, IPPrefix("::1/128")!] + own.map { IPPrefix(address: $0, length: $0.family.bitWidth) }
            + podCIDRs + config.dns.allowedClients
    }

    /// The addresses on the device and exempt from conntrack. Failures are logged and left to
    /// the listener retry (which reports them): DNS still works with conntrack, and the other
    /// addresses still serve.
    private func prepare(_ addresses: [IPAddress]) {
        do {
            try Self.ensureDevice(addresses: addresses)
        } catch {
            agent.logger.error("cannot put the DNS addresses on \(Self.deviceName)",
                               metadata: ["addresses": "\(addresses.map(\.description))", "error": "\(error)"])
        }
        do {
            let session = try NetlinkSession(protocol: Netlink.netfilter)
            try DNSNotrack.ensure(session: session, addresses: addresses, port: agent.config.dns.port)
        } catch {
            agent.logger.warning("cannot exempt the DNS addresses from conntrack", metadata: ["error": "\(error)"])
            agent.board.update("dns") { $0.lastError = "notrack rules: \(error)" }
        }
    }

    static func endpoint(_ a: IPAddress, _ port: UInt16) -> String { a.family == .v6 ? "[\(a)]:\(port)" : "\(a):\(port)" }

    /// The device with every listen address (host prefix), up. Idempotent; never flushes. IPv6
    /// addresses skip duplicate address detection (IFA_F_NODAD): a tentative address cannot be
    /// bound, and this device has no link for DAD to probe anyway. One address that cannot be
    /// added does not keep the others off.
    static func ensureDevice(addresses: [IPAddress]) throws {
        let client = try RouteClient()
        let link = try client.link(named: deviceName) ?? client.createBridge(name: deviceName)
        let have = Set(try client.addresses(index: link.index).map(\.prefix.address))
        var failures: [String] = []
        for a in addresses where !have.contains(a) {
            do {
                try client.addAddress(InterfaceAddress(index: link.index, prefix: IPPrefix(address: a, length: a.family.bitWidth),
                                                       noDAD: a.family == .v6))
            } catch {
                failures.append("\(a): \(error)")
            }
        }
        if !link.isUp { try client.setLink(index: link.index, LinkChange(up: true)) }
        if !failures.isEmpty { throw DNSDeviceError(message: failures.joined(separator: "; ")) }
    }
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

struct DNSDeviceError: Error, CustomStringConvertible {
    var message: String
    var description: String { "cannot add \(message)" }
}
