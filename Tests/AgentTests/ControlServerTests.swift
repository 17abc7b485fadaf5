import Foundation
import Logging
import NIOCore
import NIOEmbedded
import NIOHTTP1
import Synchronization
import Testing
@testable import Agent

/// The control API's HTTP handler on a test channel: what it does before and after the peer
/// credential check. No socket, no privileges.
@Suite struct ControlServerTests {
    final class Calls: Sendable {
        let count = Mutex(0)
        var value: Int { count.withLock { $0 } }
    }

    /// What a channel ends with, polled for a bounded time: a reply written, or closed.
    enum Outcome: Equatable { case replied(String), closed, nothing }

    static func request(_ method: String = "GET", _ path: String = "/v1/status", body: String = "") -> ByteBuffer {
        var text = "\(method) \(path) HTTP/1.1\r\nHost: nodenet\r\n"
        if !body.isEmpty { text += "Content-Length: \(body.utf8.count)\r\n" }
        return ByteBuffer(string: text + "\r\n" + body)
    }

    static func channel(calls: Calls, allowedUID: uid_t? = 0, maxBody: Int = 1 << 20,
                        peerCredentials: ControlHTTPHandler.PeerCredentialLookup? = nil) async throws -> NIOAsyncTestingChannel {
        let handler: ControlHandler = { _ in
            calls.count.withLock { $0 += 1 }
            return .json(["served": true])
        }
        let channel = NIOAsyncTestingChannel()
        try await channel.pipeline.configureHTTPServerPipeline(withErrorHandling: true).get()
        let control = peerCredentials.map {
            ControlHTTPHandler(handler: handler, logger: Logger(label: "test"), maxBody: maxBody, allowedUID: allowedUID, peerCredentials: $0)
        } ?? ControlHTTPHandler(handler: handler, logger: Logger(label: "test"), maxBody: maxBody, allowedUID: allowedUID)
        try await channel.pipeline.addHandler(control).get()
        try await channel.connect(to: try SocketAddress(unixDomainSocketPath: "/run/nodenet/nodenet.sock")).get()
        return channel
    }

    /// Polls up to `seconds` for a reply or a close.
    static func outcome(_ channel: NIOAsyncTestingChannel, within seconds: Double = 5) async throws -> Outcome {
        let deadline = ContinuousClock.now + .milliseconds(Int(seconds * 1000))
        var text = ""
        while ContinuousClock.now < deadline {
            while let data = try await channel.readOutbound(as: IOData.self) {
                if case .byteBuffer(let b) = data { text += String(buffer: b) }
            }
            if text.contains("\r\n\r\n") { return .replied(text) }
            if !channel.isActive { return .closed }
            try await Task.sleep(for: .milliseconds(10))
        }
        return .nothing
    }

    /// A connection whose peer cannot be identified (here a channel that is no socket, so has
    /// no SO_PEERCRED) is refused: no request on it runs.
    @Test func connectionWithoutPeerCredentialsIsNeverServed() async throws {
        let calls = Calls()
        let channel = try await Self.channel(calls: calls)
        try await channel.writeInbound(Self.request("POST", "/v1/apply", body: "apiVersion: v1\nkind: Namespace\nmetadata: {name: apps}\n"))
        let outcome = try await Self.outcome(channel)
        #expect(outcome == .closed, "got \(outcome)")
        #expect(calls.value == 0, "the handler ran for an unchecked peer")
    }

    /// The peer check completes after the request has arrived: the request waits for it, then
    /// runs when the peer is allowed, and never when it is not.
    @Test(arguments: [(uid_t(0), true), (uid_t(4242), false)])
    func requestBeforeTheCheckWaitsForIt(uid: uid_t, allowed: Bool) async throws {
        let calls = Calls()
        let pending = Mutex<EventLoopPromise<PeerCredentials>?>(nil)
        let channel = try await Self.channel(calls: calls, allowedUID: 0) { channel in
            let promise = channel.eventLoop.makePromise(of: PeerCredentials.self)
            pending.withLock { $0 = promise }
            return promise.futureResult
        }
        try await channel.writeInbound(Self.request())
        let early = try await Self.outcome(channel, within: 0.2)
        #expect(early == .nothing, "answered before the peer check completed: \(early)")
        #expect(calls.value == 0)
        let promise = try #require(pending.withLock { $0 })
        promise.succeed(PeerCredentials(pid: 4711, uid: uid, gid: uid))
        let outcome = try await Self.outcome(channel)
        if allowed {
            guard case .replied(let text) = outcome else { Issue.record("no reply: \(outcome)"); return }
            #expect(text.hasPrefix("HTTP/1.1 200"), "\(text)")
            #expect(calls.value == 1)
        } else {
            #expect(outcome == .closed, "\(outcome)")
            #expect(calls.value == 0)
        }
    }

    /// A body over the limit is refused from its Content-Length, before any of it is sent or
    /// buffered: 413 and the connection closed at once.
    @Test func bodyOverTheLimitIsRefusedFromItsHeader() async throws {
        let calls = Calls()
        let channel = try await Self.channel(calls: calls, allowedUID: nil, maxBody: 8 << 20)
        // The close while the request is unfinished is an error the HTTP decoder reports.
        _ = try? await channel.writeInbound(ByteBuffer(string: "POST /v1/apply HTTP/1.1\r\nHost: nodenet\r\nContent-Length: 20971520\r\n\r\n"))
        let outcome = try await Self.outcome(channel)
        guard case .replied(let text) = outcome else { Issue.record("no answer before the body: \(outcome)"); return }
        #expect(text.hasPrefix("HTTP/1.1 413"), "\(text)")
        #expect(text.contains("20971520 bytes is over the 8388608 bytes"), "\(text)")
        #expect(calls.value == 0)
        for _ in 0..<200 where channel.isActive { try await Task.sleep(for: .milliseconds(10)) }  // bounded: 2 s
        #expect(!channel.isActive, "closed: the rest of the body is never read")
    }

    /// A chunked body (no Content-Length) is refused as soon as it passes the limit.
    @Test func chunkedBodyOverTheLimitIsRefusedWhenItPassesIt() async throws {
        let calls = Calls()
        let channel = try await Self.channel(calls: calls, allowedUID: nil, maxBody: 4096)
        try await channel.writeInbound(ByteBuffer(string: "POST /v1/apply HTTP/1.1\r\nHost: nodenet\r\nTransfer-Encoding: chunked\r\n\r\n"))
        let chunk = String(repeating: "a", count: 3000)
        _ = try? await channel.writeInbound(ByteBuffer(string: "bb8\r\n\(chunk)\r\nbb8\r\n\(chunk)\r\n"))
        let outcome = try await Self.outcome(channel)
        guard case .replied(let text) = outcome else { Issue.record("no answer: \(outcome)"); return }
        #expect(text.hasPrefix("HTTP/1.1 413"), "\(text)")
        #expect(calls.value == 0)
    }
}
