// Helpers shared by the model types' Kubernetes-shaped Codable conformances.
// Each model type decodes from and encodes to the real API shape
// (apiVersion/kind/metadata/spec/status), keeping only the fields nodenet uses,
// and validates while decoding so a bad manifest fails with the field's path.

import IPAddressing

/// apiVersion and kind, read first to pick the concrete type.
struct TypeMeta: Codable {
    var apiVersion: String?
    var kind: String?
}

/// A validation failure inside a decoder: becomes a DecodingError with the field path.
func invalid(_ decoder: any Decoder, _ field: String, _ message: String) -> DecodingError {
    .dataCorrupted(.init(codingPath: decoder.codingPath + [AnyKey(field)], debugDescription: message))
}

struct AnyKey: CodingKey {
    var stringValue: String
    var intValue: Int?
    init(_ s: String) { stringValue = s }
    init?(stringValue: String) { self.stringValue = stringValue }
    init?(intValue: Int) { stringValue = "\(intValue)"; self.intValue = intValue }
}

/// Kubernetes int-or-string (targetPort).
public enum IntOrString: Hashable, Sendable, Codable, CustomStringConvertible {
    case int(Int)
    case string(String)

    public init(from decoder: any Decoder) throws {
        let c = try decoder.singleValueContainer()
        if let i = try? c.decode(Int.self) { self = .int(i) } else { self = .string(try c.decode(String.self)) }
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.singleValueContainer()
        switch self {
        case .int(let i): try c.encode(i)
        case .string(let s): try c.encode(s)
        }
    }

    public var description: String {
        switch self { case .int(let i): "\(i)"; case .string(let s): s }
    }
}

public enum L4Protocol: String, Hashable, Sendable, Codable, CaseIterable {
    case tcp = "TCP"
    case udp = "UDP"
    case sctp = "SCTP"

    /// IANA protocol number, as nftables and conntrack want it.
    public var number: UInt8 {
        switch self { case .tcp: 6; case .udp: 17; case .sctp: 132 }
    }
}

func parseProtocol(_ s: String?, _ decoder: any Decoder, _ field: String) throws -> L4Protocol {
    guard let s else { return .tcp }
    guard let p = L4Protocol(rawValue: s) else {
        throw invalid(decoder, field, "unsupported protocol \"\(s)\" (want TCP, UDP or SCTP)")
    }
    return p
}

func parsePort(_ v: Int?, _ decoder: any Decoder, _ field: String, allowZero: Bool = false) throws -> UInt16? {
    guard let v else { return nil }
    guard (allowZero ? 0 : 1)...65535 ~= v else {
        throw invalid(decoder, field, "port \(v) is out of range 1-65535")
    }
    return UInt16(v)
}

func parseAddresses(_ list: [String]?, _ decoder: any Decoder, _ field: String) throws -> [IPAddress] {
    try (list ?? []).map { s in
        guard let a = IPAddress(s) else { throw invalid(decoder, field, "\(excerpt(s)) is not an IP address") }
        return a
    }
}

/// RFC 1123 DNS label (namespaces, service names, port names): what the API server enforces.
func isDNSLabel(_ s: String, maxLength: Int = 63) -> Bool {
    let u = Array(s.utf8)
    guard !u.isEmpty, u.count <= maxLength else { return false }
    func alnum(_ c: UInt8) -> Bool { (c >= 97 && c <= 122) || (c >= 48 && c <= 57) }
    guard alnum(u.first!), alnum(u.last!) else { return false }
    return u.allSatisfy { alnum($0) || $0 == 45 }
}

/// RFC 1123 subdomain (node and pod names): dot-separated labels, 253 bytes at most.
func isDNSSubdomain(_ s: String) -> Bool {
    guard !s.isEmpty, s.utf8.count <= 253 else { return false }
    return s.split(separator: ".", omittingEmptySubsequences: false).allSatisfy { isDNSLabel(String($0)) }
}

/// Decodes metadata and checks name (and namespace for namespaced kinds).
func decodeMeta(_ c: KeyedDecodingContainer<AnyKey>, _ decoder: any Decoder, kind: ObjectKind) throws -> ObjectMeta {
    guard c.contains(AnyKey("metadata")) else { throw invalid(decoder, "metadata", "metadata is required") }
    var meta = try c.decode(ObjectMeta.self, forKey: AnyKey("metadata"))
    let nameOK = kind == .node || kind == .pod || kind == .endpointSlice || kind == .networkPolicy || kind == .clusterNetworkPolicy ? isDNSSubdomain(meta.name) : isDNSLabel(meta.name)
    guard nameOK else {
        throw invalid(decoder, "metadata.name", "\"\(meta.name)\" is not a valid \(kind.rawValue) name (lower-case letters, digits and '-')")
    }
    if kind.isNamespaced {
        let ns = meta.namespace ?? "default"
        guard isDNSLabel(ns) else { throw invalid(decoder, "metadata.namespace", "\"\(ns)\" is not a valid namespace name") }
        meta.namespace = ns
    } else {
        meta.namespace = nil
    }
    try checkLabelsAndAnnotations(meta, decoder)
    return meta
}

/// The API server's size of all annotations of an object (keys and values), in bytes.
let maxAnnotationBytes = 256 * 1024

/// Labels and annotations as the API server takes them (apimachinery ValidateObjectMeta):
/// keys are qualified names, label values 63 characters of a small alphabet, all annotations
/// together 256 KiB.
func checkLabelsAndAnnotations(_ meta: ObjectMeta, _ decoder: any Decoder) throws {
    for (key, value) in (meta.labels ?? [:]).sorted(by: { $0.key < $1.key }) {
        guard isQualifiedName(key) else {
            throw invalid(decoder, "metadata.labels", "key \(excerpt(key)) is not a valid label key (an optional DNS subdomain prefix and '/', then 63 letters, digits, '-', '_' or '.' at most)")
        }
        guard isLabelValue(value) else {
            throw invalid(decoder, "metadata.labels", "value of \(excerpt(key)), \(excerpt(value)), is not a valid label value (63 letters, digits, '-', '_' or '.' at most, beginning and ending with a letter or digit)")
        }
    }
    var bytes = 0
    for (key, value) in (meta.annotations ?? [:]).sorted(by: { $0.key < $1.key }) {
        guard isQualifiedName(key) else {
            throw invalid(decoder, "metadata.annotations", "key \(excerpt(key)) is not a valid annotation key")
        }
        bytes += key.utf8.count + value.utf8.count
    }
    guard bytes <= maxAnnotationBytes else {
        throw invalid(decoder, "metadata.annotations", "\(bytes) bytes in all, over the \(maxAnnotationBytes) (256 KiB) Kubernetes allows")
    }
}

/// A qualified name (label and annotation keys): `[prefix/]name`, the prefix a DNS subdomain,
/// the name 63 letters, digits, '-', '_' or '.' at most, beginning and ending alphanumeric.
func isQualifiedName(_ s: String) -> Bool {
    let parts = s.split(separator: "/", omittingEmptySubsequences: false)
    guard parts.count == 1 || (parts.count == 2 && isDNSSubdomain(String(parts[0]))) else { return false }
    let name = parts[parts.count - 1]
    return !name.isEmpty && isLabelValue(String(name))
}

/// A label value: empty, or 63 letters, digits, '-', '_' or '.' at most, beginning and ending
/// with a letter or digit.
func isLabelValue(_ s: String) -> Bool {
    let u = Array(s.utf8)
    guard !u.isEmpty else { return true }
    guard u.count <= 63 else { return false }
    func alnum(_ c: UInt8) -> Bool { (c >= 97 && c <= 122) || (c >= 65 && c <= 90) || (c >= 48 && c <= 57) }
    guard alnum(u.first!), alnum(u.last!) else { return false }
    return u.allSatisfy { alnum($0) || $0 == 45 || $0 == 95 || $0 == 46 }
}

/// A value for an error message: quoted, and cut (with its size) when long.
func excerpt(_ s: String) -> String {
    let n = s.utf8.count
    return n <= 64 ? "\"\(s)\"" : "\"\(s.prefix(40))...\" (\(n) bytes)"
}

func checkKind(_ c: KeyedDecodingContainer<AnyKey>, _ decoder: any Decoder, _ kind: ObjectKind) throws {
    if let k = try c.decodeIfPresent(String.self, forKey: AnyKey("kind")), k != kind.rawValue {
        throw invalid(decoder, "kind", "expected kind \(kind.rawValue), found \(k)")
    }
}

/// Writes apiVersion, kind and metadata; the caller adds spec and status.
func encodeHeader(_ encoder: any Encoder, _ kind: ObjectKind, _ meta: ObjectMeta) throws -> KeyedEncodingContainer<AnyKey> {
    var c = encoder.container(keyedBy: AnyKey.self)
    try c.encode(kind.apiVersion, forKey: AnyKey("apiVersion"))
    try c.encode(kind.rawValue, forKey: AnyKey("kind"))
    try c.encode(meta, forKey: AnyKey("metadata"))
    return c
}
