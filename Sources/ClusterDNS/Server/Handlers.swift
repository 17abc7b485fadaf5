import NIOCore
import Synchronization

/// UDP: answers zone queries inline on the event loop (writes flushed once per read burst,
/// so NIO can send them with one sendmmsg), forwarded ones from a task. Inline answers pass the
/// response rate limiter (`ResponseRateLimiter`, owned by this socket's loop).
final class UDPQueryHandler: ChannelInboundHandler, Sendable {
    typealias InboundIn = AddressedEnvelope<ByteBuffer>
    typealias OutboundOut = AddressedEnvelope<ByteBuffer>

    let processor: QueryProcessor
    let limiter: ResponseRateLimiter
    init(processor: QueryProcessor, rateLimit: Int) {
        self.processor = processor
        limiter = ResponseRateLimiter(limit: rateLimit)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let env = Self.unwrapInboundIn(data)
        let remote = env.remoteAddress
        let start = NIODeadline.now()
        let bytes = Array(env.data.readableBytesView)
        let type = processor.count(bytes, overTCP: false, client: remote)
        switch processor.handle(bytes, overTCP: false, client: remote) {
        case .drop: return
        case .reply(var bytes):
            if limiter.limit > 0, !limiter.admit(reply: bytes, to: remote, now: UInt32(truncatingIfNeeded: start.uptimeNanoseconds / 1_000_000_000)) {
                processor.counters.bump(processor.counters.rateLimited)
                bytes = ResponseRateLimiter.slip(bytes)
            }
            context.write(Self.wrapOutboundOut(AddressedEnvelope(remoteAddress: remote, data: context.channel.allocator.buffer(bytes: bytes))), promise: nil)
            processor.counters.observe(nanoseconds: NIODeadline.now().uptimeNanoseconds &- start.uptimeNanoseconds, type: type)
        case .forward(let query, let question, let prefix, let maxSize, let fallback):
            let channel = context.channel
            let processor = processor
            Task {
                let bytes = await processor.forward(query: query, question: question, prefix: prefix, maxSize: maxSize, fallback: fallback)
                channel.writeAndFlush(AddressedEnvelope(remoteAddress: remote, data: channel.allocator.buffer(bytes: bytes)), promise: nil)
                processor.counters.observe(nanoseconds: NIODeadline.now().uptimeNanoseconds &- start.uptimeNanoseconds, type: type)
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
        let start = NIODeadline.now()
        let bytes = Array(frame.readableBytesView)
        let client = context.channel.remoteAddress
        let type = processor.count(bytes, overTCP: true, client: client)
        switch processor.handle(bytes, overTCP: true, client: client) {
        case .drop: context.close(promise: nil)
        case .reply(let bytes):
            context.writeAndFlush(Self.wrapOutboundOut(ByteBuffer.dnsFrame(bytes, allocator: context.channel.allocator)), promise: nil)
            processor.counters.observe(nanoseconds: NIODeadline.now().uptimeNanoseconds &- start.uptimeNanoseconds, type: type)
        case .forward(let query, let question, let prefix, let maxSize, let fallback):
            let channel = context.channel
            let processor = processor
            Task {
                let bytes = await processor.forward(query: query, question: question, prefix: prefix, maxSize: maxSize, fallback: fallback)
                channel.writeAndFlush(ByteBuffer.dnsFrame(bytes, allocator: channel.allocator), promise: nil)
                processor.counters.observe(nanoseconds: NIODeadline.now().uptimeNanoseconds &- start.uptimeNanoseconds, type: type)
            }
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) { context.close(promise: nil) }
}
