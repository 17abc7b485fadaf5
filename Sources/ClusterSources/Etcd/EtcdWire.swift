import Foundation

// The etcd v3 JSON gateway's shapes (grpc-gateway with original proto field names): keys and
// values are base64, 64-bit integers are strings, zero values are left out.

/// An int64 that the gateway writes as a string (and accepts as one).
struct EtcdInt: Codable, Sendable, Hashable {
    var value: Int64
    init(_ value: Int64) { self.value = value }
    init(from decoder: any Decoder) throws {
        let c = try decoder.singleValueContainer()
        if let s = try? c.decode(String.self), let v = Int64(s) { value = v } else { value = try c.decode(Int64.self) }
    }
    func encode(to encoder: any Encoder) throws {
        var c = encoder.singleValueContainer()
        try c.encode(String(value))
    }
}

struct EtcdHeader: Decodable, Sendable {
    var revision: EtcdInt?
}

struct WireKeyValue: Decodable, Sendable {
    var key: Data
    var value: Data?
    var create_revision: EtcdInt?
    var mod_revision: EtcdInt?
    var version: EtcdInt?
    var lease: EtcdInt?
}

struct RangeRequest: Encodable {
    var key: Data
    var range_end: Data?
    var limit: EtcdInt?
    var revision: EtcdInt?
}

struct RangeResponse: Decodable {
    var header: EtcdHeader?
    var kvs: [WireKeyValue]?
    var more: Bool?
    var count: EtcdInt?
}

struct PutRequest: Encodable {
    var key: Data
    var value: Data
    var lease: EtcdInt?
}

struct DeleteRangeRequest: Encodable {
    var key: Data
    var range_end: Data?
}

struct HeaderResponse: Decodable {
    var header: EtcdHeader?
    var deleted: EtcdInt?
}

struct WireCompare: Encodable {
    var key: Data
    var target: String
    var result: String
    var create_revision: EtcdInt?
    var mod_revision: EtcdInt?
    var version: EtcdInt?
    var value: Data?
    var lease: EtcdInt?
}

struct WireRequestOp: Encodable {
    var request_range: RangeRequest?
    var request_put: PutRequest?
    var request_delete_range: DeleteRangeRequest?
}

struct TxnRequest: Encodable {
    var compare: [WireCompare]
    var success: [WireRequestOp]
    var failure: [WireRequestOp]
}

struct WireResponseOp: Decodable {
    var response_range: RangeResponse?
}

struct TxnResponse: Decodable {
    var header: EtcdHeader?
    var succeeded: Bool?
    var responses: [WireResponseOp]?
}

struct LeaseGrantRequest: Encodable {
    var TTL: EtcdInt
    var ID: EtcdInt
}

struct LeaseGrantResponse: Decodable {
    var ID: EtcdInt?
    var TTL: EtcdInt?
    var error: String?
}

struct LeaseIDRequest: Encodable {
    var ID: EtcdInt
}

struct LeaseKeepAliveResponse: Decodable {
    struct Result: Decodable {
        var ID: EtcdInt?
        var TTL: EtcdInt?
    }
    var result: Result?
}

struct CompactionRequest: Encodable {
    var revision: EtcdInt
    var physical: Bool
}

struct WatchCreate: Encodable {
    struct Create: Encodable {
        var key: Data
        var range_end: Data
        var start_revision: EtcdInt
        var progress_notify: Bool
        var prev_kv: Bool
    }
    var create_request: Create
}

struct WatchMessage: Decodable {
    struct Event: Decodable {
        var type: String?
        var kv: WireKeyValue
    }
    struct Result: Decodable {
        var header: EtcdHeader?
        var created: Bool?
        var canceled: Bool?
        var compact_revision: EtcdInt?
        var cancel_reason: String?
        var events: [Event]?
    }
    struct StreamError: Decodable {
        var message: String?
        var http_code: Int?
    }
    var result: Result?
    var error: StreamError?
}

/// The gateway's error body: {"error": "...", "code": N, "message": "..."}.
struct GatewayError: Decodable {
    var error: String?
    var message: String?
    var code: Int?
}
