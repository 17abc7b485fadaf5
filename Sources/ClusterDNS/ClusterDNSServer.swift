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
    private let listening = Atomic<Bool>(false)
    private let lameDuck = Atomic<Bool>(false)
    private let port = Atomic<Int>(0)

    public init(configuration: DNSConfiguration, store: ClusterStore, logger: Logger) {
        self.configuration = configuration
        self.store = store
        self.logger = logger
        zone = ClusterZone(configuration: configuration, replicas: Self.threads(configuration))
    }

    /// Event loops: as configured, else one per core.
    static func threads(_ c: DNSConfiguration) -> Int { c.eventLoopThreads > 0 ? c.eventLoopThreads : max(1, System.coreCount) }

    /// Listening, zone synced and not shutting down.
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
        if upstreams.isEmpty { logger.warning("\(ClusterDNSError.noUpstreams("\(c.upstreams)"))") }
        let forwarder = Forwarder(upstreams: upstreams, configuration: c, transport: transport, counters: counters, logger: logger)
        let processor = { [zone] (loop: Int) in
            QueryProcessor(zone: zone, forwarder: forwarder, counters: self.newShard(), configuration: c, replica: loop)
        }
        let follower = Task { [zone, store, logger] in await zone.follow(store, logger: logger) }
        var channels: [any Channel] = []
        do {
            channels = try await bind(group: group, processor: processor, sockets: c.udpSocketsPerAddress > 0 ? c.udpSocketsPerAddress : threads)
        } catch {
            follower.cancel()
            await transport.close()
            try? await group.shutdownGracefully()
            throw error
        }
        listening.store(true, ordering: .relaxed)
        logger.info("dns serving", metadata: ["addresses": "\(c.listenAddresses)", "port": "\(boundPort ?? 0)",
                                              "zone": "\(zone.apex)", "upstreams": "\(upstreams)"])
        if !upstreams.isEmpty { Task { await forwarder.sendLoopProbe() } }

        while !Task.isCancelled { try? await Task.sleep(for: .seconds(3600)) }

        // Lame duck: keep answering while load balancers and clients notice we are going.
        lameDuck.store(true, ordering: .relaxed)
        logger.info("dns lame duck", metadata: ["milliseconds": "\(c.lameDuckMilliseconds)"])
        if c.lameDuckMilliseconds > 0 {
            // Not Task.sleep: our task is already cancelled and would not wait at all.
            try? await group.next().scheduleTask(in: .milliseconds(c.lameDuckMilliseconds)) {}.futureResult.get()
        }
        for ch in channels { try? await ch.close() }
        follower.cancel()
        await transport.close()
        listening.store(false, ordering: .relaxed)
        try? await group.shutdownGracefully()
        logger.info("dns stopped")
    }

    private func bind(group: MultiThreadedEventLoopGroup, processor: (Int) -> QueryProcessor, sockets: Int) async throws -> [any Channel] {
        let c = configuration
        var channels: [any Channel] = []
        var port = Int(c.port)
        let limiter = ConnectionLimiter(limit: c.maxTCPConnections)
        let counters = counters
        // Sockets are pinned to loops explicitly so socket i reads zone replica i % loops.
        let loops = Array(group.makeIterator())
        for address in c.listenAddresses {
            let host = address.description
            do {
                for i in 0..<sockets {
                    let shard = processor(i % loops.count)
                    let ch = try await DatagramBootstrap(group: loops[i % loops.count])
                        .channelOption(.socketOption(.so_reuseaddr), value: 1)
                        .channelOption(.socketOption(NIOBSDSocket.Option(rawValue: SO_REUSEPORT)), value: 1)
                        .channelOption(.datagramVectorReadMessageCount, value: 32)
                        // One recvmmsg per readiness event (epoll is level-triggered here): NIO's
                        // default of 4 spends a second syscall per wakeup just to hear EAGAIN.
                        .channelOption(.maxMessagesPerRead, value: 1)
                        .channelOption(.recvAllocator, value: FixedSizeRecvByteBufferAllocator(capacity: 32 * 2048))
                        .channelInitializer { ch in
                            ch.eventLoop.makeCompletedFuture { try ch.pipeline.syncOperations.addHandler(UDPQueryHandler(processor: shard)) }
                        }
                        .bind(host: host, port: port).get()
                    // Port 0: the first socket picks the port, the others share it.
                    if port == 0 { port = ch.localAddress?.port ?? 0 }
                    channels.append(ch)
                }
                let tcpProcessor = processor(0)
                let idle = TimeAmount.milliseconds(c.tcpIdleTimeoutMilliseconds)
                let tcp = try await ServerBootstrap(group: group)
                    .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
                    .serverChannelOption(.backlog, value: 256)
                    .childChannelInitializer { ch in
                        guard limiter.admit() else {
                            counters.bump(counters.tcpConnectionsRejected)
                            return ch.close()
                        }
                        ch.closeFuture.whenComplete { _ in limiter.release() }
                        return ch.eventLoop.makeCompletedFuture {
                            let ops = ch.pipeline.syncOperations
                            try ops.addHandler(IdleStateHandler(readTimeout: idle))
                            try ops.addHandler(ByteToMessageHandler(DNSFrameDecoder()))
                            try ops.addHandler(TCPQueryHandler(processor: tcpProcessor))
                        }
                    }
                    .bind(host: host, port: port).get()
                channels.append(tcp)
            } catch {
                for ch in channels { try? await ch.close() }
                throw ClusterDNSError.bindFailed(address: host, port: port, underlying: error)
            }
        }
        self.port.store(port, ordering: .relaxed)
        return channels
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
