import Foundation
import NIOCore
import NIOHTTP1
import NIOPosix
import NIOSSL
import Synchronization

// A STAND-IN for the Kubernetes API server, for the Kubernetes source tests only.
//
// Why: no real API server can run on this machine (no kube-apiserver binary, no container
// images, no network), so the tests serve what the API server would send, over plain HTTP on
// 127.0.0.1 with an ephemeral port: list responses (with limit/continue paging and a
// resourceVersion) built from real Kubernetes JSON objects (Fixtures/), and watch streams of
// ADDED/MODIFIED/DELETED/BOOKMARK/ERROR events, scripted per resource, including a watch ERROR
// 410, an HTTP 410 Gone, a clean end of stream and a connection dropped mid-stream. It is not a
// Kubernetes implementation: it answers GETs from a script and records the requests it saw.

/// What the stand-in answers to one watch request.
struct WatchReply: Sendable {
    enum End: Sendable {
        /// Keep the stream open until the client goes away (a live, idle watch).
        case hold
        /// End the response properly (server-side watch timeout).
        case finish
        /// Close the connection without ending the chunked body (a broken stream).
        case drop
    }
    var status = 200
    var events: [Data] = []
    var end: End = .hold
    /// Applied to the list state when this reply is served (what changed meanwhile).
    var listUpdates: [ListUpdate] = []

    enum ListUpdate: Sendable {
        /// Adds or replaces an item (list-item JSON, keyed "namespace/name").
        case put(Data)
        case delete(String)
        /// The resource stops being served (its CRD deleted): lists answer 404 again.
        case removeResource
    }

    static func gone() -> WatchReply {
        WatchReply(status: 410, events: [Data(#"{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"too old resource version: 1 (120)","reason":"Expired","code":410}"#.utf8)], end: .finish)
    }
}

/// The stand-in's state: objects per resource path (as the API returns them in lists), a
/// resourceVersion counter, scripted watch replies, and the requests seen.
final class APIScript: @unchecked Sendable {
    // @unchecked: every field is only touched under `lock` ([String: Any] is not Sendable).
    private let lock = NSLock()
    private var objects: [String: [String: [String: Any]]] = [:]
    private var watches: [String: [WatchReply]] = [:]
    private var seen: [String] = []
    private var resourceVersion = 100

    func set(_ path: String, _ items: [[String: Any]]) {
        lock.withLock {
            objects[path] = Dictionary(uniqueKeysWithValues: items.map { (Self.name($0), $0) })
        }
    }

    func queueWatch(_ path: String, _ reply: WatchReply) {
        lock.withLock { watches[path, default: []].append(reply) }
    }

    var requests: [String] { lock.withLock { seen } }

    static func name(_ o: [String: Any]) -> String {
        let m = o["metadata"] as? [String: Any]
        return "\(m?["namespace"] as? String ?? "")/\(m?["name"] as? String ?? "")"
    }

    /// Status, body chunks and how to end, for a GET of `uri`.
    func reply(_ uri: String) -> (Int, [Data], WatchReply.End) {
        lock.withLock {
            seen.append(uri)
            let parts = uri.split(separator: "?", maxSplits: 1)
            let path = String(parts[0])
            var query: [String: String] = [:]
            for item in (parts.count > 1 ? parts[1] : "").split(separator: "&") {
                let kv = item.split(separator: "=", maxSplits: 1)
                query[String(kv[0])] = kv.count > 1 ? (String(kv[1]).removingPercentEncoding ?? "") : ""
            }
            if query["watch"] == "1" {
                guard var queue = watches[path], !queue.isEmpty else { return (200, [], .hold) }
                let next = queue.removeFirst()
                watches[path] = queue
                for update in next.listUpdates {
                    switch update {
                    case .put(let data):
                        let item = try! JSONSerialization.jsonObject(with: data) as! [String: Any]
                        objects[path, default: [:]][Self.name(item)] = item
                    case .delete(let key): objects[path]?[key] = nil
                    case .removeResource: objects[path] = nil
                    }
                }
                if !next.listUpdates.isEmpty { resourceVersion += 10 }
                return (next.status, next.events, next.end)
            }
            guard let items = objects[path] else { return (404, [Data(#"{"kind":"Status","code":404,"message":"not found"}"#.utf8)], .finish) }
            var sorted = items.sorted { $0.key < $1.key }.map(\.value)
            if let selector = query["fieldSelector"], selector.hasPrefix("spec.nodeName=") {
                let node = String(selector.dropFirst("spec.nodeName=".count))
                sorted = sorted.filter { ($0["spec"] as? [String: Any])?["nodeName"] as? String == node }
            }
            let offset = Int(query["continue"] ?? "") ?? 0
            let limit = Int(query["limit"] ?? "") ?? sorted.count
            let page = Array(sorted.dropFirst(offset).prefix(limit))
            var meta: [String: Any] = ["resourceVersion": String(resourceVersion)]
            if offset + page.count < sorted.count { meta["continue"] = String(offset + page.count) }
            let body: [String: Any] = ["kind": "List", "apiVersion": "v1", "metadata": meta, "items": page]
            return (200, [try! JSONSerialization.data(withJSONObject: body)], .finish)
        }
    }
}

/// The HTTP server around `APIScript`.
final class StandInAPIServer: Sendable {
    let script = APIScript()
    private let channel: any Channel
    var port: Int { channel.localAddress!.port! }

    let scheme: String
    var url: String { "\(scheme)://127.0.0.1:\(port)" }

    /// - Parameter tls: serve HTTPS with this configuration (e.g. requiring client certificates).
    init(tls: TLSConfiguration? = nil) async throws {
        let script = self.script
        let sslContext = try tls.map { try NIOSSLContext(configuration: $0) }
        scheme = tls == nil ? "http" : "https"
        channel = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    if let sslContext { try channel.pipeline.syncOperations.addHandler(NIOSSLServerHandler(context: sslContext)) }
                    try channel.pipeline.syncOperations.configureHTTPServerPipeline()
                    try channel.pipeline.syncOperations.addHandler(StandInHandler(script: script))
                }
            }
            .bind(host: "127.0.0.1", port: 0).get()
    }

    func stop() async {
        try? await channel.close()
    }
}

private final class StandInHandler: ChannelInboundHandler, Sendable {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart
    let script: APIScript
    private let uri = Mutex<String>("")

    init(script: APIScript) { self.script = script }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let head): uri.withLock { $0 = head.uri }
        case .body: break
        case .end:
            let (status, chunks, end) = script.reply(uri.withLock { $0 })
            var headers = HTTPHeaders([("Content-Type", "application/json")])
            if end == .finish, chunks.count == 1 { headers.add(name: "Content-Length", value: String(chunks[0].count)) }
            context.write(wrapOutboundOut(.head(HTTPResponseHead(version: .http1_1, status: .init(statusCode: status), headers: headers))), promise: nil)
            for chunk in chunks {
                var buffer = context.channel.allocator.buffer(capacity: chunk.count + 1)
                buffer.writeBytes(chunk)
                if end != .finish || chunks.count > 1 { buffer.writeString("\n") }
                context.write(wrapOutboundOut(.body(.byteBuffer(buffer))), promise: nil)
            }
            switch end {
            case .hold: context.flush()
            case .finish: context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: nil)
            case .drop:
                context.flush()
                context.close(promise: nil)
            }
        }
    }
}
