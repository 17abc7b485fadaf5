import AsyncHTTPClient
import Foundation
import NIOCore
import NIOFoundationCompat

/// The HTTP client every source shares. Process-wide and never shut down (like
/// `HTTPClient.shared`), but with the timeouts a control-plane client needs: a short connect
/// timeout so endpoint failover is quick, and no read timeout because watches are long-lived
/// and idle (the reconciler's stall watchdog bounds them instead).
///
/// The pool does not retry a failed connection itself: its backoff (100 ms growing by 1.25
/// per consecutive failure, up to 60 s, counted across the whole pool) grew so long over a
/// long etcd outage that requests still failed with "connection refused" 13 to 49 s after
/// etcd was serving again, and the node's lease expired meanwhile. A refused connection now
/// fails the request at once and the callers' own bounded backoffs (`Backoff`) decide when
/// to try again.
enum SourceHTTP {
    static let client: HTTPClient = {
        var configuration = HTTPClient.Configuration(
            redirectConfiguration: .disallow,
            timeout: .init(connect: .seconds(3), read: nil),
            decompression: .disabled)
        configuration.connectionPool = .init(idleTimeout: .seconds(60))
        configuration.connectionPool.retryConnectionEstablishment = false
        return HTTPClient(eventLoopGroup: HTTPClient.defaultEventLoopGroup, configuration: configuration)
    }()

    /// Far enough away that only cancellation ends a watch.
    static var watchDeadline: NIODeadline { .now() + .hours(24 * 365) }

    struct NoResponse: Error, CustomStringConvertible {
        var url: String
        var timeout: Duration
        var description: String { "no response from \(url) within \(timeout)" }
    }

    /// Sends a request. `timeout` bounds the wait for the response head (AsyncHTTPClient keeps
    /// retrying a refused connection until the deadline, which for a watch is far away);
    /// the body of a `streaming` response (a watch) then lasts until cancelled.
    static func execute(_ request: HTTPClientRequest, timeout: Duration, streaming: Bool) async throws -> HTTPClientResponse {
        let deadline: NIODeadline = streaming ? watchDeadline : .now() + .nanoseconds(Int64(timeout / .nanoseconds(1)))
        return try await withThrowingTaskGroup(of: HTTPClientResponse?.self) { group in
            group.addTask { try await client.execute(request, deadline: deadline) }
            group.addTask {
                try await Task.sleep(for: timeout)
                return nil
            }
            defer { group.cancelAll() }
            guard let first = try await group.next(), let response = first else {
                throw NoResponse(url: request.url, timeout: timeout)
            }
            return response
        }
    }

    /// Reads a whole body, refusing more than `limit` bytes.
    static func collect(_ response: HTTPClientResponse, limit: Int = 256 << 20) async throws -> Data {
        var buffer = try await response.body.collect(upTo: limit)
        return buffer.readData(length: buffer.readableBytes) ?? Data()
    }

    /// A response body as JSON documents, one at a time, as they complete.
    static func documents(_ response: HTTPClientResponse) -> AsyncThrowingStream<Data, any Error> {
        relay { continuation in
            var splitter = JSONStreamSplitter()
            for try await chunk in response.body {
                for doc in try splitter.feed(chunk.readableBytesView) { try continuation.yield(doc) }
            }
        }
    }
}

/// A stream fed by `body` running in its own task: it finishes when `body` returns, fails
/// with what `body` throws, and a consumer that stops listening cancels `body` (and so the
/// HTTP request beneath it).
///
/// Bounded: at most `limit` elements wait for the consumer. A consumer that falls further
/// behind (a watch delivering faster than the store commits) gets what was queued, then
/// `StreamOverflow`, and the request beneath is cancelled; the reconciler then lists again
/// and applies the difference, as after any lost event, instead of memory growing with the
/// backlog.
func relay<Element: Sendable>(
    limit: Int = relayLimit,
    _ body: @escaping @Sendable (RelaySink<Element>) async throws -> Void
) -> AsyncThrowingStream<Element, any Error> {
    AsyncThrowingStream(bufferingPolicy: .bufferingOldest(max(1, limit))) { continuation in
        let task = Task {
            do {
                try await body(RelaySink(continuation: continuation, limit: limit))
                continuation.finish()
            } catch {
                continuation.finish(throwing: error)
            }
        }
        continuation.onTermination = { _ in task.cancel() }
    }
}

/// Elements a relay holds for a slow consumer, at most (watch responses or documents).
let relayLimit = 1024

/// The producer's end of a `relay`.
struct RelaySink<Element: Sendable>: Sendable {
    let continuation: AsyncThrowingStream<Element, any Error>.Continuation
    let limit: Int

    /// Queues `element`; throws `StreamOverflow` when the consumer is `limit` behind.
    func yield(_ element: Element) throws {
        if case .dropped = continuation.yield(element) { throw StreamOverflow(limit: limit) }
    }
}

/// A watch's consumer fell too far behind: list again (see `relay`).
struct StreamOverflow: Error, CustomStringConvertible {
    var limit: Int
    var description: String { "the store fell \(limit) watch responses behind the stream" }
}
