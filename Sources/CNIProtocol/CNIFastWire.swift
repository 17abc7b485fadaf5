// The shim's fast path to the agent, without Codable. A runtime execs the plugin for every
// pod, and the first use of JSONDecoder/JSONEncoder in a fresh process (runtime metadata,
// conformance lookups) cost about 0.6 ms of the shim's 1 ms of own work. The agent validates
// every request anyway (`CNIRequest.fromEnvelope`), so the shim only needs the socket path
// and the envelope, built here by hand; when anything is unusual (agent down, a config this
// scanner does not follow) the shim takes the full, Codable path, which answers exactly as
// before.

/// Reads top-level string members of a JSON object without building the document.
public enum CNIConfigScan {
    /// The string value of each of `keys` that is a top-level member of the object in `json`;
    /// nil when `json` is not one well-formed object as far as this scanner follows it.
    /// Non-string values of a wanted key are left out (the full parser reports them).
    public static func strings(_ keys: Set<String>, in json: [UInt8]) -> [String: String]? {
        var s = Scanner(bytes: json)
        var found: [String: String] = [:]
        s.skipSpace()
        guard s.take(UInt8(ascii: "{")) else { return nil }
        s.skipSpace()
        if s.take(UInt8(ascii: "}")) { return s.atEndAfterSpace ? found : nil }
        while true {
            s.skipSpace()
            guard let key = s.string() else { return nil }
            s.skipSpace()
            guard s.take(UInt8(ascii: ":")) else { return nil }
            s.skipSpace()
            if keys.contains(key), s.peek == UInt8(ascii: "\"") {
                guard let value = s.string() else { return nil }
                found[key] = value
            } else {
                guard s.skipValue() else { return nil }
            }
            s.skipSpace()
            if s.take(UInt8(ascii: ",")) { continue }
            guard s.take(UInt8(ascii: "}")) else { return nil }
            return s.atEndAfterSpace ? found : nil
        }
    }

    private struct Scanner {
        let bytes: [UInt8]
        var i = 0

        init(bytes: [UInt8]) { self.bytes = bytes }

        var peek: UInt8? { i < bytes.count ? bytes[i] : nil }

        var atEndAfterSpace: Bool {
            mutating get {
                skipSpace()
                return i == bytes.count
            }
        }

        mutating func take(_ b: UInt8) -> Bool {
            guard peek == b else { return false }
            i += 1
            return true
        }

        mutating func skipSpace() {
            while let b = peek, b == 0x20 || b == 0x0a || b == 0x0d || b == 0x09 { i += 1 }
        }

        /// A string token, unescaped. \u escapes outside ASCII are left to the full parser.
        mutating func string() -> String? {
            guard take(UInt8(ascii: "\"")) else { return nil }
            var out: [UInt8] = []
            while let b = peek {
                i += 1
                switch b {
                case UInt8(ascii: "\""): return String(validating: out, as: UTF8.self)
                case UInt8(ascii: "\\"):
                    guard let e = peek else { return nil }
                    i += 1
                    switch e {
                    case UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "/"): out.append(e)
                    case UInt8(ascii: "n"): out.append(0x0a)
                    case UInt8(ascii: "t"): out.append(0x09)
                    case UInt8(ascii: "r"): out.append(0x0d)
                    case UInt8(ascii: "b"): out.append(0x08)
                    case UInt8(ascii: "f"): out.append(0x0c)
                    case UInt8(ascii: "u"):
                        guard i + 4 <= bytes.count, let v = UInt8(String(decoding: bytes[i..<i + 4], as: UTF8.self), radix: 16),
                              v < 0x80 else { return nil }
                        out.append(v)
                        i += 4
                    default: return nil
                    }
                case 0..<0x20: return nil  // raw control characters are not JSON
                default: out.append(b)
                }
            }
            return nil
        }

        /// Skips one value of any kind (nested objects and arrays included).
        mutating func skipValue() -> Bool {
            guard let b = peek else { return false }
            switch b {
            case UInt8(ascii: "\""): return string() != nil
            case UInt8(ascii: "{"), UInt8(ascii: "["):
                var depth = 0
                while let c = peek {
                    if c == UInt8(ascii: "\"") {
                        guard string() != nil else { return false }
                        continue
                    }
                    i += 1
                    if c == UInt8(ascii: "{") || c == UInt8(ascii: "[") { depth += 1 }
                    if c == UInt8(ascii: "}") || c == UInt8(ascii: "]") {
                        depth -= 1
                        if depth == 0 { return true }
                    }
                }
                return false
            default:
                // A number, true, false or null: up to the next delimiter.
                let start = i
                while let c = peek, c != UInt8(ascii: ","), c != UInt8(ascii: "}"), c != UInt8(ascii: "]"),
                      c != 0x20, c != 0x0a, c != 0x0d, c != 0x09 { i += 1 }
                return i > start
            }
        }
    }
}

/// The shim-agent exchange in its Codable-free form: the request envelope written by hand
/// (the same `{"environment", "stdin"}` shape the agent decodes) and the reply as
/// `<exit code>\n<stdout bytes>` from `POST /v1/cni/raw`.
public enum CNIFastWire {
    public static let path = "/v1/cni/raw"

    /// `{"environment":{CNI_* variables},"stdin":"<config text>"}`.
    public static func envelope(environment: [String: String], stdin: [UInt8]) -> [UInt8] {
        var out = Array(#"{"environment":{"#.utf8)
        var first = true
        for (k, v) in environment.sorted(by: { $0.key < $1.key }) where k.hasPrefix("CNI_") {
            if !first { out.append(UInt8(ascii: ",")) }
            first = false
            appendString(Array(k.utf8), to: &out)
            out.append(UInt8(ascii: ":"))
            appendString(Array(v.utf8), to: &out)
        }
        out += Array(#"},"stdin":"#.utf8)
        appendString(stdin, to: &out)
        out.append(UInt8(ascii: "}"))
        return out
    }

    /// The raw reply body for a reply.
    public static func replyBody(_ reply: CNIReply) -> [UInt8] {
        Array("\(reply.exitCode)\n".utf8) + reply.stdout
    }

    /// Exit code and stdout from a raw reply body; nil when it is not one.
    public static func parseReply(_ body: [UInt8]) -> (exitCode: Int32, stdout: [UInt8])? {
        guard let nl = body.firstIndex(of: 0x0a), let code = Int32(String(decoding: body[..<nl], as: UTF8.self)) else { return nil }
        return (code, Array(body[(nl + 1)...]))
    }

    /// The VERSION answer for `stdin`, when it is simple: no config (the latest version), or a
    /// config whose `cniVersion` is one of ours. Nil otherwise (no `cniVersion`, one we do not
    /// support, JSON the scanner does not follow), so the caller answers through the full path.
    public static func versionReply(stdin: [UInt8]) -> [UInt8]? {
        let asked: String
        if stdin.isEmpty {
            asked = CNIVersion.latest.rawValue
        } else {
            guard let v = CNIConfigScan.strings(["cniVersion"], in: stdin)?["cniVersion"] else { return nil }
            asked = v
        }
        guard CNIVersion.supported.contains(where: { $0.rawValue == asked }) else { return nil }
        return versionJSON(asked)
    }

    /// `{"cniVersion":"<version>","supportedVersions":[...]}`: the one encoding of the VERSION
    /// answer, for this path and the full one (`CNILocal.versionReply`).
    static func versionJSON(_ version: String) -> [UInt8] {
        var out = Array(#"{"cniVersion":"#.utf8)
        appendString(Array(version.utf8), to: &out)
        out += Array(#","supportedVersions":["#.utf8)
        for (i, v) in CNIVersion.supported.enumerated() {
            if i > 0 { out.append(UInt8(ascii: ",")) }
            appendString(Array(v.rawValue.utf8), to: &out)
        }
        out += Array("]}".utf8)
        return out
    }

    /// A JSON string literal: quotes, backslashes and control characters escaped; other bytes
    /// (UTF-8) as they are.
    static func appendString(_ bytes: [UInt8], to out: inout [UInt8]) {
        let hex = Array("0123456789abcdef".utf8)
        out.append(UInt8(ascii: "\""))
        for b in bytes {
            switch b {
            case UInt8(ascii: "\""): out += [UInt8(ascii: "\\"), UInt8(ascii: "\"")]
            case UInt8(ascii: "\\"): out += [UInt8(ascii: "\\"), UInt8(ascii: "\\")]
            case 0..<0x20: out += Array("\\u00".utf8) + [hex[Int(b >> 4)], hex[Int(b & 0xf)]]
            default: out.append(b)
            }
        }
        out.append(UInt8(ascii: "\""))
    }
}
