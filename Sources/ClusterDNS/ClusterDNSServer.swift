#if canImport(Glibc)
import Glibc
#endif
import ClusterState
import IPAddressing
import Logging
import NIOCore
import NIOPosix
import Synchronization

public enum ClusterDNSError: Error, CustomStringConvertible {
    case noUpstreams(String)
    case bindFailed(address: String, port: Int, underlying: any Error)

    public var description: String {
        switch self {
        case .noUpstreams(let why): "dns: no upstream servers (\(why)); names outside the cluster zone will get SERVFAIL"
        case .bindFailed(let a, let p, let e): "dns: cannot listen on \(a) port \(p): \(e)"
        }
    }
}

/// The node-local DNS server: cluster zone from the store, everything else forwarded.
/// `run()` serves until its task is cancelled, then keeps answering for the lame-duck
/// period (with `isReady` false) and returns. Wrap it in a swift-service-lifecycle Service.
public final class ClusterDNSServer: Sendable {
    public let configuration: DNSConfiguration
    public let zone: ClusterZone
    let store: ClusterStore
    let logger: Logger
    let counters = DNSCounters()
    /// One counter shard per socket (see `DNSCounters`).
    private let shards = Mutex<[DNSCounters]>([])
    /// Every shard's client allow list, so `setAllowedClients` reaches them all.
    private let acls = Mutex<(prefixes: [IPPrefix], lists: [ClientACL])>(([], []))
    private let forwarderRef = Mutex<Forwarder?>(nil)
    private let listening = Atomic<Bool>(false)
    private let listeners: Mutex<Listeners>
    private let lameDuck = Atomic<Bool>(false)
    private let port = Atomic<Int>(0)
    /// Yields when what `isReady`, `listenersSettled` and `failedListeners` report may have
    /// changed (an address bound or failed, the zone synced, lame duck began), so a caller
    /// follows them without polling. One consumer; coalesced (one element for any number).
    public let changes: AsyncStream<Void>
    private let changed: AsyncStream<Void>.Continuation

    public init(configuration: DNSConfiguration, store: ClusterStore, logger: Logger) {
        self.configuration = configuration
        self.store = store
        self.logger = logger
        zone = ClusterZone(configuration: configuration, replicas: Self.threads(configuration))
        listeners = Mutex(Listeners(wanted: configuration.listenAddresses))
        acls.withLock { $0.prefixes = configuration.allowedClients }
        (changes, changed) = AsyncStream<Void>.makeStream(bufferingPolicy: .bufferingNewest(1))
        zone.whenSynced { [changed] in changed.yield() }
    }

    /// Replaces the client allow list (the agent: the pod subnets changed). Empty: everyone.
    public func setAllowedClients(_ prefixes: [IPPrefix]) {
        let lists = acls.withLock { a in a.prefixes = prefixes; return a.lists }
        for l in lists { l.update(prefixes) }
    }

    public var allowedClients: [IPPrefix] { acls.withLock { $0.prefixes } }

    private func newACL() -> ClientACL {
        acls.withLock { a in
            let l = ClientACL(a.prefixes)
            a.lists.append(l)
            return l
        }
    }

    /// CoreDNS-named metrics in Prometheus text format (see `CoreDNSMetrics`).
    public var coreDNSMetrics: String {
        let f = forwarderRef.withLock { $0 }
        return CoreDNSMetrics.render(stats, upstreams: f?.upstreamStats ?? [], cacheEntries: f?.cache.counts ?? (0, 0),
                                     port: boundPort ?? Int(configuration.port))
    }

    /// Per upstream: queries sent, failures, and whether it is in service now (metrics).
    public var upstreamStats: [UpstreamStats] { forwarderRef.withLock { $0 }?.upstreamStats ?? [] }

    /// Event loops: as configured, else one per core.
    static func threads(_ c: DNSConfiguration) -> Int { c.eventLoopThreads > 0 ? c.eventLoopThreads : max(1, System.coreCount) }

    /// Listening on at least one address, zone synced and not shutting down.
    public var isReady: Bool { listening.load(ordering: .relaxed) && !lameDuck.load(ordering: .relaxed) && zone.isSynced }

    /// The port actually bound (useful with port 0); nil until listening.
    public var boundPort: Int? { let p = port.load(ordering: .relaxed); return p == 0 ? nil : p }

    public var stats: DNSStats { shards.withLock { $0 }.reduce(counters.snapshot()) { $0 + $1.snapshot() } }

    private func newShard() -> DNSCounters {
        let c = DNSCounters()
        shards.withLock { $0.append(c) }
        return c
    }

    /// The upstream list from the configuration (resolv.conf read now).
    public static func upstreams(_ source: UpstreamSource) -> [UpstreamServer] {
        switch source {
        case .servers(let list): list
        case .resolvConf(let path): ResolvConf.parse(readTextFile(path) ?? "")
        }
    }

    public func run() async throws {
        let c = configuration
        let threads = Self.threads(c)
        let group = MultiThreadedEventLoopGroup(numberOfThreads: threads)
        let transport = UpstreamTransport(group: group)
        let upstreams = Self.upstreams(c.upstreams)
        if upstreams.isEmpty, c.zones.isEmpty { logger.warning("\(ClusterDNSError.noUpstreams("\(c.upstreams)"))") }
        let forwarder = Forwarder(upstreams: upstreams, zones: c.zones, configuration: c, transport: transport, counters: counters, logger: logger)
        forwarderRef.withLock { $0 = forwarder }
        let processor: @Sendable (Int) -> QueryProcessor = { [zone] loop in
            QueryProcessor(zone: zone, forwarder: forwarder, counters: self.newShard(), configuration: c, replica: loop, acl: self.newACL())
        }
        let follower = Task { [zone, store, logger] in await zone.follow(store, logger: logger) }
        let binder = Binder(group: group, processor: processor, sockets: c.udpSocketsPerAddress > 0 ? c.udpSocketsPerAddress : threads,
                            tcpClients: TCPClients(total: c.maxTCPConnections, perClient: c.maxTCPConnectionsPerClient))
        listeners.withLock { $0.binder = binder }
        await bindPending()
        // Addresses that could not be bound (not yet on the device, IPv6 still tentative, taken)
        // are retried with backoff; the others serve meanwhile.
        let retry = Task {
            var delay: Int64 = 250
            while !Task.isCancelled {
                try? await Task.sleep(for: .milliseconds(delay))
                if listeners.withLock({ $0.pending.isEmpty }) { delay = 250; continue }
                await bindPending()
                delay = min(delay * 2, max(c.listenerRetryMaxMilliseconds, 250))
            }
        }
        if !upstreams.isEmpty { Task { await forwarder.sendLoopProbe() } }
        let prefetcher = Task { await forwarder.prefetchLoop() }

        while !Task.isCancelled { try? await Task.sleep(for: .seconds(3600)) }
        retry.cancel()

        // Lame duck: keep answering while load balancers and clients notice we are going.
        lameDuck.store(true, ordering: .relaxed)
        changed.yield()
        logger.info("dns lame duck", metadata: ["milliseconds": "\(c.lameDuckMilliseconds)"])
        if c.lameDuckMilliseconds > 0 {
            // Not Task.sleep: our task is already cancelled and would not wait at all.
            try? await group.next().scheduleTask(in: .milliseconds(c.lameDuckMilliseconds)) {}.futureResult.get()
        }
        _ = await retry.value
        let (channels, batch) = listeners.withLock { l in
            defer { l.bound = [:]; l.batch = [:]; l.binder = nil }
            return (l.bound.values.flatMap { $0 }, l.batch.values.flatMap { $0 })
        }
        for s in batch { s.close() }
        for ch in channels { try? await ch.close() }
        follower.cancel()
        prefetcher.cancel()
        await transport.close()
        listening.store(false, ordering: .relaxed)
        try? await group.shutdownGracefully()
        logger.info("dns stopped")
    }

    /// Serves on more addresses too (an IPv6 pod subnet appeared): bound now when the server
    /// runs, else at its start; one that fails is retried like the configured ones.
    public func listen(on addresses: [IPAddress]) async {
        let added = listeners.withLock { l in
            let new = addresses.filter { !l.wanted.contains($0) }
            l.wanted += new
            return !new.isEmpty && l.binder != nil
        }
        if added { await bindPending() }
    }

    /// Every address the server is meant to serve on, bound or not.
    public var listenAddresses: [IPAddress] { listeners.withLock { $0.wanted } }

    /// Addresses that could not be bound yet, with the last error (retried until they bind).
    public var failedListeners: [IPAddress: String] { listeners.withLock { $0.errors } }

    /// True once every wanted address has been tried: bound, or failed (and being retried).
    public var listenersSettled: Bool { listeners.withLock { l in l.wanted.allSatisfy { l.bound[$0] != nil || l.errors[$0] != nil } } }

    /// What one bind attempt needs; set while `run()` serves.
    struct Binder: Sendable {
        let group: MultiThreadedEventLoopGroup
        let processor: @Sendable (Int) -> QueryProcessor
        let sockets: Int
        let tcpClients: TCPClients
    }

    struct Listeners: Sendable {
        var wanted: [IPAddress]
        var bound: [IPAddress: [any Channel]] = [:]
        /// UDP sockets of the batch fast path (`udpBatchIO`), per address.
        var batch: [IPAddress: [BatchUDPSocket]] = [:]
        var errors: [IPAddress: String] = [:]
        var binder: Binder?
        /// Serialises attempts (the retry loop and `listen(on:)`).
        var binding = false
        var pending: [IPAddress] { wanted.filter { bound[$0] == nil } }
    }

    /// Tries every address not bound yet, once. One address failing never affects the others.
    private func bindPending() async {
        let work: (Binder, [IPAddress])? = listeners.withLock { l in
            guard let b = l.binder, !l.binding, !l.pending.isEmpty else { return nil }
            l.binding = true
            return (b, l.pending)
        }
        guard let work else { return }
        let (binder, pending) = work
        for address in pending {
            do {
                let (channels, batch) = try await bind(address, binder)
                listeners.withLock { l in l.bound[address] = channels; l.batch[address] = batch; l.errors[address] = nil }
                listening.store(true, ordering: .relaxed)
                logger.info("dns serving", metadata: ["address": "\(address)", "port": "\(boundPort ?? 0)", "zone": "\(zone.apex)"])
            } catch {
                let message = "\(error)"
                let repeated = listeners.withLock { l in
                    defer { l.errors[address] = message }
                    return l.errors[address] == message
                }
                if !repeated { logger.warning("\(message); retrying", metadata: ["address": "\(address)"]) }
            }
        }
        listeners.withLock { $0.binding = false }
        changed.yield()
    }

    /// UDP sockets (SO_REUSEPORT, one per loop) and a TCP listener on one address; nothing stays
    /// open when any of them fails.
    private func bind(_ address: IPAddress, _ b: Binder) async throws -> ([any Channel], [BatchUDPSocket]) {
        let c = configuration
        var channels: [any Channel] = []
        var batch: [BatchUDPSocket] = []
        var port = boundPort ?? Int(c.port)
        let counters = counters
        let tcpClients = b.tcpClients
        // Sockets are pinned to loops explicitly so socket i reads zone replica i % loops.
        let loops = Array(b.group.makeIterator())
        let host = address.description
        do {
            for i in 0..<b.sockets where c.udpBatchIO {
                // The fast path: a thread per socket reading zone replica i % loops (see BatchUDPSocket).
                let s = try BatchUDPSocket(address: address, port: port, processor: b.processor(i % loops.count),
                                           rateLimit: c.responseRateLimit, maxResponse: c.maxUDPResponseSize)
                batch.append(s)
                try s.start(name: "dns-udp-\(i)")
                if port == 0 { port = s.port }
            }
            for i in 0..<b.sockets where !c.udpBatchIO {
                let shard = b.processor(i % loops.count)
                let ch = try await DatagramBootstrap(group: loops[i % loops.count])
                    .channelOption(.socketOption(.so_reuseaddr), value: 1)
                    .channelOption(.socketOption(NIOBSDSocket.Option(rawValue: SO_REUSEPORT)), value: 1)
                    .channelOption(.datagramVectorReadMessageCount, value: 32)
                    // One recvmmsg per readiness event (epoll is level-triggered here): NIO's
                    // default of 4 spends a second syscall per wakeup just to hear EAGAIN.
                    .channelOption(.maxMessagesPerRead, value: 1)
                    .channelOption(.recvAllocator, value: FixedSizeRecvByteBufferAllocator(capacity: 32 * 2048))
                    .channelInitializer { ch in
                        ch.eventLoop.makeCompletedFuture { try ch.pipeline.syncOperations.addHandler(UDPQueryHandler(processor: shard, rateLimit: c.responseRateLimit)) }
                    }
                    .bind(host: host, port: port).get()
                // Port 0: the first socket picks the port, the others share it.
                if port == 0 { port = ch.localAddress?.port ?? 0 }
                channels.append(ch)
            }
            let tcpProcessor = b.processor(0)
            let idle = TimeAmount.milliseconds(c.tcpIdleTimeoutMilliseconds)
            let messageTimeout = TimeAmount.milliseconds(c.tcpMessageTimeoutMilliseconds)
            let tcp = try await ServerBootstrap(group: b.group)
                .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
                .serverChannelOption(.backlog, value: 256)
                .childChannelInitializer { ch in
                    let client = ch.remoteAddress.flatMap(ClientAddress.ip)
                    switch tcpClients.admit(ch, client: client) {
                    case .tooManyFromClient:
                        counters.bump(counters.tcpConnectionsRejected)
                        return ch.close()
                    case .admitted(let shed):
                        if let shed {
                            counters.bump(counters.tcpConnectionsRejected)
                            shed.close(promise: nil)
                        }
                    }
                    ch.closeFuture.whenComplete { _ in tcpClients.closed(ch) }
                    return ch.eventLoop.makeCompletedFuture {
                        let ops = ch.pipeline.syncOperations
                        try ops.addHandler(DNSTCPFramer(messageTimeout: messageTimeout, idleTimeout: idle) { tcpClients.progressed($0) })
                        try ops.addHandler(TCPQueryHandler(processor: tcpProcessor))
                    }
                }
                .bind(host: host, port: port).get()
            channels.append(tcp)
        } catch {
            for s in batch { s.close() }
            for ch in channels { try? await ch.close() }
            throw ClusterDNSError.bindFailed(address: host, port: port, underlying: error)
        }
        if boundPort == nil { self.port.store(port, ordering: .relaxed) }
        return (channels, batch)
    }
}

/// Reads a small text file without Foundation (resolv.conf).
func readTextFile(_ path: String) -> String? {
    let fd = open(path, O_RDONLY | O_CLOEXEC)
    guard fd >= 0 else { return nil }
    defer { close(fd) }
    var out: [UInt8] = []
    var chunk = [UInt8](repeating: 0, count: 4096)
    while out.count < 1 << 20 {
        let n = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, 4096) }
        if n < 0, errno == EINTR { continue }
        guard n > 0 else { break }
        out += chunk[0..<n]
    }
    return String(decoding: out, as: UTF8.self)
}
