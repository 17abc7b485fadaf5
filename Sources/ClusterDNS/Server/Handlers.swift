import NIOCore
import Synchronization

/// UDP: answers zone queries inline on the event loop (writes flushed once per read burst,
/// so NIO can send them with one sendmmsg), forwarded ones from a task.
final class UDPQueryHandler: ChannelInboundHandler, Sendable {
    typealias InboundIn = AddressedEnvelope<ByteBuffer>
    typealias OutboundOut = AddressedEnvelope<ByteBuffer>

    let processor: QueryProcessor
    init(processor: QueryProcessor) { self.processor = processor }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let env = Self.unwrapInboundIn(data)
        let remote = env.remoteAddress
        switch processor.handle(Array(env.data.readableBytesView), overTCP: false) {
        case .drop: return
        case .reply(let bytes):
            context.write(Self.wrapOutboundOut(AddressedEnvelope(remoteAddress: remote, data: context.channel.allocator.buffer(bytes: bytes))), promise: nil)
        case .forward(let query, let question, let prefix, let maxSize):
            let channel = context.channel
            let processor = processor
            Task {
                let bytes = await processor.forward(query: query, question: question, prefix: prefix, maxSize: maxSize)
                channel.writeAndFlush(AddressedEnvelope(remoteAddress: remote, data: channel.allocator.buffer(bytes: bytes)), promise: nil)
            }
        }
    }

    func channelReadComplete(context: ChannelHandlerContext) { context.flush() }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        // ICMP errors for earlier replies surface here; a UDP server keeps going.
    }
}

/// TCP: one length-prefixed message per frame; replies may go out of order (RFC 7766).
final class TCPQueryHandler: ChannelInboundHandler, Sendable {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    let processor: QueryProcessor
    init(processor: QueryProcessor) { self.processor = processor }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let frame = Self.unwrapInboundIn(data)
        switch processor.handle(Array(frame.readableBytesView), overTCP: true) {
        case .drop: context.close(promise: nil)
        case .reply(let bytes):
            context.writeAndFlush(Self.wrapOutboundOut(ByteBuffer.dnsFrame(bytes, allocator: context.channel.allocator)), promise: nil)
        case .forward(let query, let question, let prefix, let maxSize):
            let channel = context.channel
            let processor = processor
            Task {
                let bytes = await processor.forward(query: query, question: question, prefix: prefix, maxSize: maxSize)
                channel.writeAndFlush(ByteBuffer.dnsFrame(bytes, allocator: channel.allocator), promise: nil)
            }
        }
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        // Idle (no complete query within the timeout): close, so silent clients are bounded.
        if event is IdleStateHandler.IdleStateEvent { context.close(promise: nil) }
        context.fireUserInboundEventTriggered(event)
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) { context.close(promise: nil) }
}

/// Counts open TCP connections so a flood of idle clients cannot exhaust descriptors.
final class ConnectionLimiter: Sendable {
    let limit: Int
    private let open = Atomic<Int>(0)
    init(limit: Int) { self.limit = limit }

    func admit() -> Bool {
        let now = open.wrappingAdd(1, ordering: .relaxed).newValue
        if now > limit { open.wrappingSubtract(1, ordering: .relaxed); return false }
        return true
    }

    func release() { open.wrappingSubtract(1, ordering: .relaxed) }
    var current: Int { open.load(ordering: .relaxed) }
}
