import Foundation
import Logging
import NIOCore
import NIOHTTP1
import NIOPosix

/// A request to the control API, with its body fully read.
public struct ControlRequest: Sendable {
    public var method: HTTPMethod
    public var path: String
    public var query: [String: String]
    public var body: [UInt8]
}

public struct ControlReply: Sendable {
    public var status: HTTPResponseStatus
    public var body: [UInt8]
    public var contentType: String
    /// More response headers (the health endpoints' `X-Content-Type-Options`, endpoint weight).
    public var headers: [(String, String)]

    public init(status: HTTPResponseStatus = .ok, body: [UInt8], contentType: String = "application/json",
                headers: [(String, String)] = []) {
        self.status = status
        self.body = body
        self.contentType = contentType
        self.headers = headers
    }

    /// `{"error": message}` with the given status: every error the API returns has this shape.
    public static func error(_ status: HTTPResponseStatus, _ message: String) -> ControlReply {
        struct Body: Encodable { var error: String }
        return json(Body(error: message), status: status)
    }

    public static func json(_ value: some Encodable, status: HTTPResponseStatus = .ok) -> ControlReply {
        let e = JSONEncoder()
        e.outputFormatting = [.sortedKeys, .prettyPrinted, .withoutEscapingSlashes]
        do {
            return ControlReply(status: status, body: Array(try e.encode(value)) + [10])
        } catch {
            return ControlReply(status: .internalServerError, body: Array("{\"error\":\"encoding failed\"}\n".utf8))
        }
    }
}

public typealias ControlHandler = @Sendable (ControlRequest) async -> ControlReply

public struct ControlServerError: Error, CustomStringConvertible {
    public var message: String
    public var description: String { message }
}

/// HTTP/1.1 + JSON on the unix control socket (`runDir/nodenet.sock`). The socket is mode 0600
/// in a 0700 directory, and each connection's peer credentials are checked: only root (or the
/// agent's own user) may drive the agent, because the API creates interfaces and writes state.
public final class ControlServer: Sendable {
    public let socketPath: String
    private let handler: ControlHandler
    private let logger: Logger
    private let group: MultiThreadedEventLoopGroup
    private let maxBody: Int

    /// The largest request body the API takes (`nodenet apply` of a manifest file): bounded so
    /// that memory is, and refused from the Content-Length before any of the body is read.
    public static let defaultMaxBody = 8 << 20

    public init(socketPath: String, group: MultiThreadedEventLoopGroup, logger: Logger, maxBody: Int = ControlServer.defaultMaxBody,
                handler: @escaping ControlHandler) {
        self.socketPath = socketPath
        self.group = group
        self.logger = logger
        self.maxBody = maxBody
        self.handler = handler
    }

    /// Binds the socket. The caller holds the agent lock, so a stale socket file is ours to replace.
    public func bind() async throws -> any Channel {
        let dir = (socketPath as NSString).deletingLastPathComponent
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        let oldMask = umask(0o177)  // the socket is created 0600, with no window where others could connect
        defer { umask(oldMask) }
        let channel = try await bootstrap(allowedUID: getuid())
            .serverChannelOption(.backlog, value: 256)
            .bind(unixDomainSocketPath: socketPath, cleanupExistingSocketFile: true)
            .get()
        chmod(socketPath, 0o600)
        return channel
    }

    /// Binds a TCP listener with the same request handling, no peer check (metrics).
    public func bind(host: String, port: Int) async throws -> any Channel {
        try await bootstrap(allowedUID: nil)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .bind(host: host, port: port)
            .get()
    }

    /// One HTTP pipeline for both listeners; `allowedUID` nil skips the peer check.
    private func bootstrap(allowedUID: uid_t?) -> ServerBootstrap {
        let handler = self.handler
        let logger = self.logger
        let maxBody = self.maxBody
        return ServerBootstrap(group: group)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.configureHTTPServerPipeline(withErrorHandling: true)
                    try channel.pipeline.syncOperations.addHandler(
                        ControlHTTPHandler(handler: handler, logger: logger, maxBody: maxBody, allowedUID: allowedUID))
                }
            }
    }
}

/// Layout of Linux `struct ucred` (pid, uid, gid), read through SO_PEERCRED.
struct PeerCredentials: Sendable {
    var pid: Int32 = 0
    var uid: UInt32 = 0
    var gid: UInt32 = 0
}

final class ControlHTTPHandler: ChannelInboundHandler, @unchecked Sendable {
    // @unchecked: NIO confines a handler to its channel's event loop; the mutable request
    // state below is only touched from there.
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    /// Reads the connection's peer credentials; nil when the channel has none to read.
    typealias PeerCredentialLookup = @Sendable (any Channel) -> EventLoopFuture<PeerCredentials>?

    /// SO_PEERCRED of a socket channel.
    static let socketPeerCredentials: PeerCredentialLookup = { channel in
        guard let provider = channel as? any SocketOptionProvider else { return nil }
        return provider.unsafeGetSocketOption(level: .init(SOL_SOCKET), name: .init(SO_PEERCRED))
    }

    /// Where the peer check stands. Requests run only once it is `.allowed`: one that arrives
    /// while the check is `.pending` waits for it, and nothing runs on a `.refused` connection.
    enum Peer { case pending, allowed, refused }

    private let handler: ControlHandler
    private let logger: Logger
    private let maxBody: Int
    /// nil: no peer credential check (TCP listeners).
    private let allowedUID: uid_t?
    private let peerCredentials: PeerCredentialLookup
    private var head: HTTPRequestHead?
    private var body: [UInt8] = []
    /// The request was refused for its size; its remaining parts are dropped unread.
    private var tooLarge = false
    private(set) var peer: Peer
    /// Complete requests that arrived before the peer check finished.
    private var waiting: [(HTTPRequestHead, ControlRequest)] = []

    init(handler: @escaping ControlHandler, logger: Logger, maxBody: Int, allowedUID: uid_t?,
         peerCredentials: @escaping PeerCredentialLookup = ControlHTTPHandler.socketPeerCredentials) {
        self.handler = handler
        self.logger = logger
        self.maxBody = maxBody
        self.allowedUID = allowedUID
        self.peerCredentials = peerCredentials
        peer = allowedUID == nil ? .allowed : .pending
    }

    func channelActive(context: ChannelHandlerContext) {
        if allowedUID != nil {
            guard let future = peerCredentials(context.channel) else {
                refuse(context, "control connection refused: no peer credentials on this channel", [:])
                return
            }
            let loopBound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
            future.whenComplete { result in
                let (me, context) = loopBound.value
                switch result {
                case .success(let cred) where cred.uid == 0 || cred.uid == me.allowedUID:
                    me.peer = .allowed
                    let waiting = me.waiting
                    me.waiting = []
                    for (head, request) in waiting { me.run(context: context, head: head, request: request) }
                case .success(let cred):
                    me.refuse(context, "control connection refused", ["uid": "\(cred.uid)", "pid": "\(cred.pid)"])
                case .failure(let error):
                    me.refuse(context, "control connection refused: no peer credentials", ["error": "\(error)"])
                }
            }
        }
        context.fireChannelActive()
    }

    private func refuse(_ context: ChannelHandlerContext, _ message: Logger.Message, _ metadata: Logger.Metadata) {
        peer = .refused
        waiting = []
        body = []
        logger.warning(message, metadata: metadata)
        context.close(promise: nil)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let h):
            head = h
            body = []
            tooLarge = false
            // Refused from the header, before a byte of the body is read or buffered.
            if let declared = h.headers.first(name: "content-length").flatMap({ Int($0) }), declared > maxBody {
                refuseTooLarge(context: context, head: h, size: "\(declared) bytes")
            }
        case .body(var buf):
            guard !tooLarge, let head else { return }
            if body.count + buf.readableBytes > maxBody {
                body = []
                refuseTooLarge(context: context, head: head, size: "more than \(maxBody) bytes")  // no Content-Length (chunked)
            } else if let bytes = buf.readBytes(length: buf.readableBytes) {
                body += bytes
            }
        case .end:
            guard let head else { return }
            self.head = nil
            if peer == .refused || tooLarge { context.close(promise: nil); return }
            let (path, query) = Self.split(head.uri)
            let request = ControlRequest(method: head.method, path: path, query: query, body: body)
            body = []
            guard peer == .allowed else {
                waiting.append((head, request))  // runs when (and if) the peer check allows it
                return
            }
            run(context: context, head: head, request: request)
        }
    }

    private func run(context: ChannelHandlerContext, head: HTTPRequestHead, request: ControlRequest) {
        let handler = self.handler
        let loopBound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
        let promise = context.eventLoop.makePromise(of: ControlReply.self)
        promise.completeWithTask { await handler(request) }
        promise.futureResult.whenSuccess { reply in
            let (me, context) = loopBound.value
            me.write(context: context, head: head, reply: reply)
        }
    }

    /// 413 at once, and the connection closed: the rest of the body is never read.
    private func refuseTooLarge(context: ChannelHandlerContext, head: HTTPRequestHead, size: String) {
        tooLarge = true
        logger.warning("control request refused: body too large", metadata: ["uri": "\(head.uri)", "size": "\(size)"])
        write(context: context, head: head, reply: .error(.payloadTooLarge,
              "request body of \(size) is over the \(maxBody) bytes the agent takes; split the manifest into several files"), close: true)
    }

    private func write(context: ChannelHandlerContext, head: HTTPRequestHead, reply: ControlReply, close: Bool = false) {
        var headers = HTTPHeaders()
        headers.add(name: "Content-Type", value: reply.contentType)
        headers.add(name: "Content-Length", value: "\(reply.body.count)")
        for (name, value) in reply.headers { headers.add(name: name, value: value) }
        let keepAlive = head.isKeepAlive && !close
        if !keepAlive { headers.add(name: "Connection", value: "close") }
        context.write(wrapOutboundOut(.head(HTTPResponseHead(version: head.version, status: reply.status, headers: headers))), promise: nil)
        var buffer = context.channel.allocator.buffer(capacity: reply.body.count)
        buffer.writeBytes(reply.body)
        context.write(wrapOutboundOut(.body(.byteBuffer(buffer))), promise: nil)
        let done = context.writeAndFlush(wrapOutboundOut(.end(nil)))
        if !keepAlive {
            let channel = context.channel
            done.whenComplete { _ in channel.close(promise: nil) }
        }
    }

    static func split(_ uri: String) -> (String, [String: String]) {
        guard let q = uri.firstIndex(of: "?") else { return (uri, [:]) }
        var query: [String: String] = [:]
        for pair in uri[uri.index(after: q)...].split(separator: "&") {
            let kv = pair.split(separator: "=", maxSplits: 1)
            let key = String(kv[0]).removingPercentEncoding ?? String(kv[0])
            query[key] = kv.count > 1 ? (String(kv[1]).removingPercentEncoding ?? String(kv[1])) : ""
        }
        return (String(uri[..<q]), query)
    }
}
