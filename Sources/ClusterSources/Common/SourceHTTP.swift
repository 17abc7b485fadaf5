import AsyncHTTPClient
import Foundation
import NIOCore
import NIOFoundationCompat

/// The HTTP client every source shares. Process-wide and never shut down (like
/// `HTTPClient.shared`), but with the timeouts a control-plane client needs: a short connect
/// timeout so endpoint failover is quick, and no read timeout because watches are long-lived
/// and idle (the reconciler's stall watchdog bounds them instead).
enum SourceHTTP {
    static let client: HTTPClient = {
        var configuration = HTTPClient.Configuration(
            redirectConfiguration: .disallow,
            timeout: .init(connect: .seconds(3), read: nil),
            decompression: .disabled)
        configuration.connectionPool = .init(idleTimeout: .seconds(60))
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
                for doc in try splitter.feed(chunk.readableBytesView) { continuation.yield(doc) }
            }
        }
    }
}

/// A stream fed by `body` running in its own task: it finishes when `body` returns, fails
/// with what `body` throws, and a consumer that stops listening cancels `body` (and so the
/// HTTP request beneath it).
func relay<Element: Sendable>(
    _ body: @escaping @Sendable (AsyncThrowingStream<Element, any Error>.Continuation) async throws -> Void
) -> AsyncThrowingStream<Element, any Error> {
    AsyncThrowingStream { continuation in
        let task = Task {
            do {
                try await body(continuation)
                continuation.finish()
            } catch {
                continuation.finish(throwing: error)
            }
        }
        continuation.onTermination = { _ in task.cancel() }
    }
}
