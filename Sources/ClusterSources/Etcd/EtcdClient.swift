import AsyncHTTPClient
import Foundation
import Logging
import NIOSSL
import NIOCore
import NIOFoundationCompat
import Synchronization

/// A key and value as etcd stores them.
public struct EtcdKeyValue: Sendable, Hashable {
    public var key: String
    public var value: Data
    public var createRevision: Int64
    public var modRevision: Int64
    public var lease: Int64

    init(_ w: WireKeyValue) {
        key = String(decoding: w.key, as: UTF8.self)
        value = w.value ?? Data()
        createRevision = w.create_revision?.value ?? 0
        modRevision = w.mod_revision?.value ?? 0
        lease = w.lease?.value ?? 0
    }
}

public struct EtcdError: Error, CustomStringConvertible, Sendable {
    public var operation: String
    public var endpoint: String
    public var message: String
    /// gRPC status code from the gateway when it gave one (e.g. 5 lease not found, 11 compacted).
    public var code: Int?
    public var description: String { "etcd \(operation) at \(endpoint): \(message)" }
}

/// One condition of a transaction.
public struct EtcdCompare: Sendable {
    var wire: WireCompare

    /// The key does not exist (its create revision is 0).
    public static func absent(_ key: String) -> EtcdCompare {
        EtcdCompare(wire: WireCompare(key: Data(key.utf8), target: "CREATE", result: "EQUAL", create_revision: EtcdInt(0)))
    }

    /// The key was last modified at `revision` (optimistic concurrency).
    public static func modRevision(_ key: String, equals revision: Int64) -> EtcdCompare {
        EtcdCompare(wire: WireCompare(key: Data(key.utf8), target: "MOD", result: "EQUAL", mod_revision: EtcdInt(revision)))
    }

    /// The key is attached to `lease` (false when the key does not exist).
    public static func lease(_ key: String, equals lease: Int64) -> EtcdCompare {
        EtcdCompare(wire: WireCompare(key: Data(key.utf8), target: "LEASE", result: "EQUAL", lease: EtcdInt(lease)))
    }

    /// The key holds exactly `value`.
    public static func value(_ key: String, equals value: Data) -> EtcdCompare {
        EtcdCompare(wire: WireCompare(key: Data(key.utf8), target: "VALUE", result: "EQUAL", value: value))
    }
}

/// One operation of a transaction.
public enum EtcdOperation: Sendable {
    case put(String, Data, lease: Int64 = 0)
    case delete(String)
    case get(String)

    var wire: WireRequestOp {
        switch self {
        case .put(let k, let v, let lease):
            WireRequestOp(request_put: PutRequest(key: Data(k.utf8), value: v, lease: lease == 0 ? nil : EtcdInt(lease)))
        case .delete(let k): WireRequestOp(request_delete_range: DeleteRangeRequest(key: Data(k.utf8)))
        case .get(let k): WireRequestOp(request_range: RangeRequest(key: Data(k.utf8)))
        }
    }
}

public struct EtcdTxnResult: Sendable {
    public var succeeded: Bool
    public var revision: Int64
    /// The key-values read by `.get` operations of the branch that ran, in order.
    public var values: [EtcdKeyValue]
}

/// One event of a watch.
public enum EtcdWatchEvent: Sendable {
    case put(EtcdKeyValue)
    case delete(key: String, revision: Int64)
}

/// What a watch stream delivers.
public enum EtcdWatchResponse: Sendable {
    /// Events, and the header revision after them.
    case events([EtcdWatchEvent], revision: Int64)
    /// A progress notification (or the creation confirmation): nothing changed up to `revision`.
    case progress(revision: Int64)
    /// The start revision was compacted away: list again.
    case compacted(compactRevision: Int64)
}

/// A small client for the etcd v3 JSON gateway (`/v3/...`) over HTTP/1.1 with endpoint failover:
/// requests go to the endpoint that last worked and move on to the next on a connection error.
public final class EtcdClient: Sendable {
    public let endpoints: [String]
    private let preferred = Mutex(0)
    private let requestTimeout: Duration
    private let logger: Logger
    private let tls: TLSConfiguration?

    /// - Parameters:
    ///   - endpoints: base URLs such as `http://127.0.0.1:2379` (or `https://` with `tls`).
    ///   - tls: CA and client certificate for `https://` endpoints (etcd `--client-cert-auth`).
    public init(endpoints: [String], tls: TLSMaterial? = nil, requestTimeout: Duration = .seconds(5),
                logger: Logger = Logger(label: "nodenet.etcd")) throws {
        guard !endpoints.isEmpty else { throw EtcdError(operation: "connect", endpoint: "", message: "no endpoints configured") }
        self.endpoints = endpoints.map { $0.hasSuffix("/") ? String($0.dropLast()) : $0 }
        self.requestTimeout = requestTimeout
        self.logger = logger
        self.tls = try tls?.configuration(server: endpoints.joined(separator: ","))
    }

    /// The endpoint requests currently go to.
    public var currentEndpoint: String { endpoints[preferred.withLock { $0 } % endpoints.count] }

    // MARK: KV

    /// Every key under `prefix` (in pages, at one revision) and that revision.
    public func range(prefix: String) async throws -> (kvs: [EtcdKeyValue], revision: Int64) {
        var out: [EtcdKeyValue] = []
        let revision = try await rangePages(prefix: prefix) { page, _ in out += page }
        return (out, revision)
    }

    /// Every key under `prefix`, handed to `body` one page of at most `pageSize` keys at a time,
    /// all pages read at the revision of the first (one consistent snapshot, however long the
    /// caller takes). The next page is fetched while `body` works on this one, so at most two
    /// pages are in memory. Returns the revision, to watch from revision + 1.
    @discardableResult
    public func rangePages(prefix: String, pageSize: Int = 1000,
                           _ body: ([EtcdKeyValue], _ revision: Int64) async throws -> Void) async throws -> Int64 {
        let end = Self.prefixEnd(prefix)
        let limit = EtcdInt(Int64(max(1, pageSize)))
        var response: RangeResponse = try await call("range", RangeRequest(key: Data(prefix.utf8), range_end: end, limit: limit))
        let revision = response.header?.revision?.value ?? 0
        while true {
            var prefetch: Task<RangeResponse, any Error>?
            if response.more == true, let last = response.kvs?.last?.key {
                // From the key after the last one (key + 0x00), at the first page's revision.
                let request = RangeRequest(key: last + [0], range_end: end, limit: limit, revision: EtcdInt(revision))
                prefetch = Task { try await self.call("range", request) }
            }
            do {
                try await body((response.kvs ?? []).map(EtcdKeyValue.init), revision)
            } catch {
                prefetch?.cancel()
                throw error
            }
            guard let next = prefetch else { return revision }
            response = try await withTaskCancellationHandler { try await next.value } onCancel: { next.cancel() }
        }
    }

    public func get(_ key: String) async throws -> EtcdKeyValue? {
        let r: RangeResponse = try await call("range", RangeRequest(key: Data(key.utf8)))
        return r.kvs?.first.map(EtcdKeyValue.init)
    }

    @discardableResult
    public func put(_ key: String, _ value: Data, lease: Int64 = 0) async throws -> Int64 {
        let r: HeaderResponse = try await call("put", PutRequest(key: Data(key.utf8), value: value, lease: lease == 0 ? nil : EtcdInt(lease)))
        return r.header?.revision?.value ?? 0
    }

    /// Deletes one key; returns how many were deleted (0 or 1).
    @discardableResult
    public func delete(_ key: String) async throws -> Int64 {
        let r: HeaderResponse = try await call("deleterange", DeleteRangeRequest(key: Data(key.utf8)))
        return r.deleted?.value ?? 0
    }

    /// If every comparison holds, runs `success`, else `failure`: atomically.
    public func txn(if compare: [EtcdCompare], then success: [EtcdOperation], else failure: [EtcdOperation] = []) async throws -> EtcdTxnResult {
        let r: TxnResponse = try await call("txn", TxnRequest(compare: compare.map(\.wire), success: success.map(\.wire), failure: failure.map(\.wire)))
        let values = (r.responses ?? []).flatMap { ($0.response_range?.kvs ?? []).map(EtcdKeyValue.init) }
        return EtcdTxnResult(succeeded: r.succeeded ?? false, revision: r.header?.revision?.value ?? 0, values: values)
    }

    /// Discards history up to `revision` (tests and operators; etcd also auto-compacts).
    public func compact(revision: Int64, physical: Bool = true) async throws {
        let _: HeaderResponse = try await call("compaction", CompactionRequest(revision: EtcdInt(revision), physical: physical), path: "/v3/kv/compaction")
    }

    // MARK: Leases

    /// A new lease of `ttl` seconds; returns its id.
    public func grantLease(ttl: Int64) async throws -> Int64 {
        let r: LeaseGrantResponse = try await call("lease grant", LeaseGrantRequest(TTL: EtcdInt(ttl), ID: EtcdInt(0)), path: "/v3/lease/grant")
        if let e = r.error, !e.isEmpty { throw EtcdError(operation: "lease grant", endpoint: currentEndpoint, message: e) }
        guard let id = r.ID?.value, id != 0 else { throw EtcdError(operation: "lease grant", endpoint: currentEndpoint, message: "no lease id in the answer") }
        return id
    }

    /// Renews a lease once; returns its new TTL in seconds, 0 when the lease no longer exists.
    public func keepAlive(lease: Int64) async throws -> Int64 {
        let r: LeaseKeepAliveResponse = try await call("lease keepalive", LeaseIDRequest(ID: EtcdInt(lease)), path: "/v3/lease/keepalive")
        return r.result?.TTL?.value ?? 0
    }

    /// Ends a lease now, deleting every key attached to it.
    public func revokeLease(_ lease: Int64) async throws {
        let _: HeaderResponse = try await call("lease revoke", LeaseIDRequest(ID: EtcdInt(lease)), path: "/v3/lease/revoke")
    }

    // MARK: Watch

    /// Changes under `prefix` from `revision` on, as they happen. Asks etcd for progress
    /// notifications so an idle but healthy watch still shows signs of life.
    public func watch(prefix: String, from revision: Int64) async throws -> AsyncThrowingStream<EtcdWatchResponse, any Error> {
        let body = WatchCreate(create_request: .init(key: Data(prefix.utf8), range_end: Self.prefixEnd(prefix),
                                                     start_revision: EtcdInt(revision), progress_notify: true, prev_kv: false))
        let (response, endpoint) = try await send("watch", path: "/v3/watch", body: try JSONEncoder().encode(body), streaming: true)
        guard response.status == .ok else {
            let data = try await SourceHTTP.collect(response, limit: 1 << 20)
            throw Self.httpError("watch", endpoint: endpoint, status: response.status.code, data)
        }
        let docs = SourceHTTP.documents(response)
        return relay { continuation in
            for try await doc in docs {
                let message = try JSONDecoder().decode(WatchMessage.self, from: doc)
                if let e = message.error {
                    throw EtcdError(operation: "watch", endpoint: endpoint, message: e.message ?? "stream error", code: e.http_code)
                }
                guard let result = message.result else { continue }
                if result.canceled == true {
                    if let c = result.compact_revision?.value, c > 0 {
                        try continuation.yield(.compacted(compactRevision: c))
                        return
                    }
                    throw EtcdError(operation: "watch", endpoint: endpoint, message: "canceled: \(result.cancel_reason ?? "no reason given")")
                }
                let rev = result.header?.revision?.value ?? 0
                let events = (result.events ?? []).map { e -> EtcdWatchEvent in
                    e.type == "DELETE" ? .delete(key: String(decoding: e.kv.key, as: UTF8.self), revision: e.kv.mod_revision?.value ?? rev)
                        : .put(EtcdKeyValue(e.kv))
                }
                try continuation.yield(events.isEmpty ? .progress(revision: rev) : .events(events, revision: rev))
            }
        }
    }

    // MARK: Plumbing

    /// The end of the range that holds every key starting with `prefix`.
    static func prefixEnd(_ prefix: String) -> Data {
        var bytes = Array(prefix.utf8)
        while let last = bytes.last {
            if last < 0xff { bytes[bytes.count - 1] = last + 1; return Data(bytes) }
            bytes.removeLast()
        }
        return Data([0])  // every key
    }

    private func call<Request: Encodable, Response: Decodable>(_ operation: String, _ request: Request, path: String? = nil) async throws -> Response {
        let body = try JSONEncoder().encode(request)
        let (response, endpoint) = try await send(operation, path: path ?? "/v3/kv/\(operation)", body: body, streaming: false)
        let data = try await SourceHTTP.collect(response, limit: 256 << 20)
        guard response.status == .ok else { throw Self.httpError(operation, endpoint: endpoint, status: response.status.code, data) }
        do {
            return try JSONDecoder().decode(Response.self, from: data)
        } catch {
            throw EtcdError(operation: operation, endpoint: endpoint, message: "unexpected answer: \(error)")
        }
    }

    /// POSTs to the preferred endpoint, then each other in turn when a connection fails.
    private func send(_ operation: String, path: String, body: Data, streaming: Bool) async throws -> (HTTPClientResponse, String) {
        let first = preferred.withLock { $0 }
        var lastError: (any Error)?
        for offset in 0..<endpoints.count {
            let index = (first + offset) % endpoints.count
            let endpoint = endpoints[index]
            var request = HTTPClientRequest(url: endpoint + path)
            request.method = .POST
            request.headers.add(name: "Content-Type", value: "application/json")
            request.body = .bytes(ByteBuffer(data: body))
            if endpoint.hasPrefix("https://") { request.tlsConfiguration = tls }
            do {
                let response = try await SourceHTTP.execute(request, timeout: requestTimeout, streaming: streaming)
                if offset > 0 {
                    preferred.withLock { $0 = index }
                    logger.info("etcd: now using \(endpoint)")
                }
                return (response, endpoint)
            } catch is CancellationError {
                throw CancellationError()
            } catch {
                lastError = error
                if Task.isCancelled { throw CancellationError() }
            }
        }
        throw EtcdError(operation: operation, endpoint: endpoints.joined(separator: ","), message: "unreachable: \(lastError.map { "\($0)" } ?? "no endpoint")")
    }

    static func httpError(_ operation: String, endpoint: String, status: UInt, _ data: Data) -> EtcdError {
        let e = try? JSONDecoder().decode(GatewayError.self, from: data)
        let text = e?.message ?? e?.error ?? String(decoding: data.prefix(300), as: UTF8.self)
        return EtcdError(operation: operation, endpoint: endpoint, message: "HTTP \(status): \(text)", code: e?.code)
    }
}
