import IPAddressing
import NIOCore
import NIOPosix
import Synchronization

enum UpstreamError: Error, Equatable, Sendable {
    case timeout(UpstreamServer)
    case closed(UpstreamServer)
}

/// Sends queries to upstream servers: UDP on one shared socket per family, matched back by
/// id and source address, and TCP (one connection per query) for truncated answers.
final class UpstreamTransport: Sendable {
    private struct Pending {
        var promise: EventLoopPromise<[UInt8]>
        var server: SocketAddress
    }

    let group: any EventLoopGroup
    private let channels: Mutex<[IPFamily: any Channel]> = Mutex([:])
    private let pending = Mutex<[UInt16: Pending]>([:])

    init(group: any EventLoopGroup) { self.group = group }

    private func channel(for family: IPFamily) async throws -> any Channel {
        if let c = channels.withLock({ $0[family] }) { return c }
        let bootstrap = DatagramBootstrap(group: group)
            .channelOption(.socketOption(.so_reuseaddr), value: 1)
            .channelInitializer { ch in
                ch.eventLoop.makeCompletedFuture { try ch.pipeline.syncOperations.addHandler(ResponseHandler(transport: self)) }
            }
        let c = try await bootstrap.bind(host: family == .v4 ? "0.0.0.0" : "::", port: 0).get()
        let winner = channels.withLock { d -> (any Channel, Bool) in
            if let existing = d[family] { return (existing, false) }
            d[family] = c
            return (c, true)
        }
        if !winner.1 { try? await c.close() }
        return winner.0
    }

    func close() async {
        let all = channels.withLock { d in defer { d = [:] }; return Array(d.values) }
        for c in all { try? await c.close() }
        let waiting = pending.withLock { p in defer { p = [:] }; return Array(p.values) }
        for w in waiting { w.promise.fail(ChannelError.ioOnClosedChannel) }
    }

    static func socketAddress(_ s: UpstreamServer) throws -> SocketAddress {
        try SocketAddress(ipAddress: s.address.description, port: Int(s.port))
    }

    /// One UDP exchange. The query's id is replaced by a fresh random one not in flight.
    func udp(_ query: [UInt8], to server: UpstreamServer, timeoutMilliseconds: Int64) async throws -> [UInt8] {
        let ch = try await channel(for: server.address.family)
        let address = try Self.socketAddress(server)
        let promise = ch.eventLoop.makePromise(of: [UInt8].self)
        let id: UInt16 = pending.withLock { p in
            var id = UInt16.random(in: .min ... .max)
            while p[id] != nil { id = UInt16.random(in: .min ... .max) }
            p[id] = Pending(promise: promise, server: address)
            return id
        }
        var bytes = query
        bytes[0] = UInt8(id >> 8); bytes[1] = UInt8(id & 0xFF)
        let timeout = ch.eventLoop.scheduleTask(in: .milliseconds(timeoutMilliseconds)) {
            if self.take(id) != nil { promise.fail(UpstreamError.timeout(server)) }
        }
        var buffer = ch.allocator.buffer(capacity: bytes.count)
        buffer.writeBytes(bytes)
        ch.writeAndFlush(AddressedEnvelope(remoteAddress: address, data: buffer)).whenFailure { error in
            if self.take(id) != nil { promise.fail(error) }
        }
        defer { timeout.cancel() }
        return try await promise.futureResult.get()
    }

    private func take(_ id: UInt16) -> Pending? { pending.withLock { $0.removeValue(forKey: id) } }

    fileprivate func received(_ bytes: [UInt8], from address: SocketAddress) {
        guard bytes.count >= 12 else { return }
        let id = UInt16(bytes[0]) << 8 | UInt16(bytes[1])
        // A reply from anyone else than the server asked is ignored (spoofing, stray packets).
        let match: Pending? = pending.withLock { p in
            guard let w = p[id], w.server == address else { return nil }
            p[id] = nil
            return w
        }
        match?.promise.succeed(bytes)
    }

    /// One TCP exchange on a fresh connection, bounded by the timeout as a whole.
    func tcp(_ query: [UInt8], to server: UpstreamServer, timeoutMilliseconds: Int64) async throws -> [UInt8] {
        let address = try Self.socketAddress(server)
        let loop = group.next()
        let promise = loop.makePromise(of: [UInt8].self)
        let bootstrap = ClientBootstrap(group: loop)
            .connectTimeout(.milliseconds(timeoutMilliseconds))
            .channelInitializer { ch in
                ch.eventLoop.makeCompletedFuture {
                    try ch.pipeline.syncOperations.addHandler(ByteToMessageHandler(DNSFrameDecoder()))
                    try ch.pipeline.syncOperations.addHandler(TCPResponseHandler(promise: promise, server: server))
                }
            }
        let ch = try await bootstrap.connect(to: address).get()
        let timeout = loop.scheduleTask(in: .milliseconds(timeoutMilliseconds)) {
            promise.fail(UpstreamError.timeout(server))
            ch.close(promise: nil)
        }
        defer { timeout.cancel(); ch.close(promise: nil) }
        try await ch.writeAndFlush(ByteBuffer.dnsFrame(query, allocator: ch.allocator)).get()
        return try await promise.futureResult.get()
    }

    private final class ResponseHandler: ChannelInboundHandler, Sendable {
        typealias InboundIn = AddressedEnvelope<ByteBuffer>
        let transport: UpstreamTransport
        init(transport: UpstreamTransport) { self.transport = transport }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            let env = Self.unwrapInboundIn(data)
            transport.received(Array(env.data.readableBytesView), from: env.remoteAddress)
        }
    }

    private final class TCPResponseHandler: ChannelInboundHandler, Sendable {
        typealias InboundIn = ByteBuffer
        let promise: EventLoopPromise<[UInt8]>
        let server: UpstreamServer
        init(promise: EventLoopPromise<[UInt8]>, server: UpstreamServer) { self.promise = promise; self.server = server }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            promise.succeed(Array(Self.unwrapInboundIn(data).readableBytesView))
            context.close(promise: nil)
        }

        func channelInactive(context: ChannelHandlerContext) {
            promise.fail(UpstreamError.closed(server))
        }
    }
}
