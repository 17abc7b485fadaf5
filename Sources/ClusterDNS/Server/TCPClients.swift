import IPAddressing
import NIOCore
import Synchronization

/// TCP connection bookkeeping against slow-client denial (issue #14 item 5): one pod holding a
/// thousand connections that trickle a byte every few seconds must not lock everyone else out.
/// - at most `perClient` connections per client address (more are closed at accept);
/// - at most `total` connections; at the cap a new one sheds the connection that has gone
///   longest without completing a query (trickling or silent), instead of being refused;
/// - the whole-message and idle deadlines are `DNSTCPFramer`'s.
/// Shared by every loop; touched at accept, per completed query and at close (not per byte).
final class TCPClients: Sendable {
    struct Connection: Sendable {
        var client: IPAddress?
        var channel: any Channel
        var lastProgress: Int64
    }

    struct State: Sendable {
        var connections: [ObjectIdentifier: Connection] = [:]
        var perClient: [IPAddress: Int] = [:]
    }

    enum Admission {
        case admitted(shed: (any Channel)?)
        case tooManyFromClient
    }

    let total: Int
    let perClient: Int
    private let state = Mutex(State())

    init(total: Int, perClient: Int) {
        self.total = max(1, total)
        self.perClient = max(1, perClient)
    }

    var current: Int { state.withLock { $0.connections.count } }

    func admit(_ channel: any Channel, client: IPAddress?, now: Int64 = monotonicMilliseconds()) -> Admission {
        state.withLock { s in
            if let c = client, s.perClient[c, default: 0] >= perClient { return .tooManyFromClient }
            var victim: (any Channel)?
            if s.connections.count >= total,
               let oldest = s.connections.min(by: { $0.value.lastProgress < $1.value.lastProgress }) {
                victim = oldest.value.channel
                s.remove(oldest.key)
            }
            s.connections[ObjectIdentifier(channel)] = Connection(client: client, channel: channel, lastProgress: now)
            if let c = client { s.perClient[c, default: 0] += 1 }
            return .admitted(shed: victim)
        }
    }

    /// A query was completed on this connection.
    func progressed(_ channel: any Channel, now: Int64 = monotonicMilliseconds()) {
        state.withLock { $0.connections[ObjectIdentifier(channel)]?.lastProgress = now }
    }

    func closed(_ channel: any Channel) {
        state.withLock { $0.remove(ObjectIdentifier(channel)) }
    }
}

extension TCPClients.State {
    mutating func remove(_ id: ObjectIdentifier) {
        guard let c = connections.removeValue(forKey: id) else { return }
        if let a = c.client {
            let left = (perClient[a] ?? 1) - 1
            perClient[a] = left > 0 ? left : nil
        }
    }
}

/// DNS over TCP framing (RFC 1035 §4.2.2: each message behind a 16-bit length) with deadlines:
/// a message must arrive whole within `messageTimeout` of its first byte (a byte every few
/// seconds does not keep a connection alive, unlike a per-read idle timer), and a connection
/// with no message started is closed after `idleTimeout`. One timer per connection, re-armed
/// only when it fires.
final class DNSTCPFramer: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer

    let messageTimeout: TimeAmount
    let idleTimeout: TimeAmount
    let onMessage: (any Channel) -> Void
    private var buffer: ByteBuffer?
    private var messageStarted: NIODeadline?
    private var lastComplete = NIODeadline.now()
    private var timer: Scheduled<Void>?
    private var armedFor = NIODeadline.distantFuture

    init(messageTimeout: TimeAmount, idleTimeout: TimeAmount, onMessage: @escaping (any Channel) -> Void) {
        self.messageTimeout = messageTimeout
        self.idleTimeout = idleTimeout
        self.onMessage = onMessage
    }

    private var deadline: NIODeadline { messageStarted.map { $0 + messageTimeout } ?? lastComplete + idleTimeout }

    func channelActive(context: ChannelHandlerContext) {
        lastComplete = .now()
        arm(context)
        context.fireChannelActive()
    }

    func channelInactive(context: ChannelHandlerContext) {
        timer?.cancel()
        timer = nil
        context.fireChannelInactive()
    }

    private func arm(_ context: ChannelHandlerContext) {
        let loopBound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
        armedFor = deadline
        timer = context.eventLoop.scheduleTask(deadline: armedFor) {
            let (framer, ctx) = loopBound.value
            framer.timer = nil
            if NIODeadline.now() >= framer.deadline {
                ctx.close(promise: nil)
            } else {
                framer.arm(ctx)
            }
        }
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var incoming = Self.unwrapInboundIn(data)
        if buffer == nil { buffer = incoming } else { buffer!.writeBuffer(&incoming) }
        if messageStarted == nil, buffer!.readableBytes > 0 { messageStarted = .now() }
        while let length = buffer!.getInteger(at: buffer!.readerIndex, as: UInt16.self), buffer!.readableBytes >= 2 + Int(length) {
            buffer!.moveReaderIndex(forwardBy: 2)
            let frame = buffer!.readSlice(length: Int(length))!
            lastComplete = .now()
            messageStarted = buffer!.readableBytes > 0 ? lastComplete : nil
            onMessage(context.channel)
            context.fireChannelRead(Self.wrapInboundOut(frame))
        }
        if buffer!.readableBytes == 0 { buffer = nil } else if buffer!.readerIndex > 4096 { buffer!.discardReadBytes() }
        // A message under way has a sooner deadline than the idle one the timer may wait for.
        if deadline < armedFor, timer != nil { timer?.cancel(); arm(context) }
    }
}
