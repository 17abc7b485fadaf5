// JSON for the CNI path. FoundationEssentials gives JSONEncoder/JSONDecoder without ICU or the
// rest of Foundation, which keeps the per-pod exec of the shim cheap.
#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

enum CNIJSON {
    /// Sorted keys so output is deterministic (golden tests, diffable caches); unescaped
    /// slashes so netns paths read as paths.
    static func encode(_ value: some Encodable) throws(CNIError) -> [UInt8] {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        do {
            return Array(try encoder.encode(value))
        } catch {
            throw CNIError(.ioFailure, "cannot encode the reply", details: "\(error)")
        }
    }

    static func decode<T: Decodable>(_ type: T.Type, from bytes: [UInt8]) throws -> T {
        try JSONDecoder().decode(type, from: Data(bytes))
    }

    /// Sorts a decoding failure into the spec's codes: malformed JSON is 6 (decoding failure);
    /// well-formed JSON with a wrong value type for a known key is 7 (invalid config).
    static func error(_ error: any Error, decoding what: String, version: String?) -> CNIError {
        guard let decoding = error as? DecodingError else {
            return CNIError(.decodingFailure, "cannot decode \(what)", details: "\(error)", version: version)
        }
        switch decoding {
        case .dataCorrupted(let context) where context.codingPath.isEmpty:
            return CNIError(.decodingFailure, "cannot decode \(what): not valid JSON", details: context.debugDescription, version: version)
        case .typeMismatch(_, let context) where context.codingPath.isEmpty:
            return CNIError(.decodingFailure, "cannot decode \(what): not a JSON object", details: context.debugDescription, version: version)
        case .typeMismatch(_, let context), .valueNotFound(_, let context), .keyNotFound(_, let context), .dataCorrupted(let context):
            let key = context.codingPath.map { $0.intValue.map { "[\($0)]" } ?? $0.stringValue }.joined(separator: ".")
            return CNIError(.invalidConfig, "invalid \(what): bad value for \"\(key)\"", details: context.debugDescription, version: version)
        @unknown default:
            return CNIError(.decodingFailure, "cannot decode \(what)", details: "\(error)", version: version)
        }
    }
}
