import IPAddressing

// The CNI_* environment: which variables each command needs, and how their values are checked
// (the same rules as containernetworking/cni's pkg/utils, so a runtime that works with the
// reference plugins works with nodenet).

public enum CNICommand: String, CaseIterable, Sendable, Codable {
    case add = "ADD", del = "DEL", check = "CHECK", version = "VERSION", gc = "GC", status = "STATUS"

    /// The spec's required variables per command, plus CNI_PATH for every command but
    /// VERSION as skel requires it.
    var requiredVariables: [String] {
        switch self {
        case .add, .check: ["CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME", "CNI_PATH"]
        case .del: ["CNI_CONTAINERID", "CNI_IFNAME", "CNI_PATH"]
        case .gc, .status: ["CNI_PATH"]
        case .version: []
        }
    }
}

/// CNI_ARGS (`K=V;K=V`), the legacy per-invocation arguments. Kubernetes runtimes send
/// `IgnoreUnknown=1;K8S_POD_NAMESPACE=..;K8S_POD_NAME=..;K8S_POD_INFRA_CONTAINER_ID=..;K8S_POD_UID=..`.
public struct CNIArgs: Hashable, Sendable {
    /// Every pair in order, known or not.
    public var pairs: [(key: String, value: String)]
    public var raw: String

    public static let knownKeys: Set<String> = [
        "IgnoreUnknown", "K8S_POD_NAMESPACE", "K8S_POD_NAME", "K8S_POD_UID", "K8S_POD_INFRA_CONTAINER_ID", "IP", "MAC",
    ]

    public init() { pairs = []; raw = "" }

    /// Parses and checks the pairs. An unknown key is an error unless `IgnoreUnknown` is true,
    /// as in the reference plugins' LoadArgs.
    public init(parsing raw: String) throws(CNIError) {
        self.raw = raw
        pairs = []
        for item in raw.split(separator: ";", omittingEmptySubsequences: true) {
            let kv = item.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            guard kv.count == 2, !kv[0].isEmpty else {
                throw CNIError(.invalidEnvironment, "CNI_ARGS: invalid pair \"\(item)\" (want KEY=VALUE)")
            }
            pairs.append((String(kv[0]), String(kv[1])))
        }
        if let bad = pairs.first(where: { !Self.knownKeys.contains($0.key) }), !ignoreUnknown {
            throw CNIError(.invalidEnvironment, "CNI_ARGS: unknown key \"\(bad.key)\" (add IgnoreUnknown=1 to allow it)")
        }
        if let flag = self["IgnoreUnknown"], Self.bool(flag) == nil {
            throw CNIError(.invalidEnvironment, "CNI_ARGS: IgnoreUnknown=\"\(flag)\" is not a boolean")
        }
        for address in self["IP"].map(Self.list) ?? [] where IPAddress(address) == nil {
            throw CNIError(.invalidEnvironment, "CNI_ARGS: IP=\"\(address)\" is not an IP address")
        }
    }

    /// The last value for a key (later pairs win, as with environment variables).
    public subscript(key: String) -> String? { pairs.last(where: { $0.key == key })?.value }

    public var ignoreUnknown: Bool { self["IgnoreUnknown"].flatMap(Self.bool) ?? false }
    public var podNamespace: String? { self["K8S_POD_NAMESPACE"] }
    public var podName: String? { self["K8S_POD_NAME"] }
    public var podUID: String? { self["K8S_POD_UID"] }
    public var infraContainerID: String? { self["K8S_POD_INFRA_CONTAINER_ID"] }
    /// `IP=10.1.2.3` or `IP=10.1.2.3,fd00::3` (host-local's convention).
    public var requestedIPs: [IPAddress] { (self["IP"].map(Self.list) ?? []).compactMap { IPAddress($0) } }
    public var mac: String? { self["MAC"] }

    private static func list(_ s: String) -> [String] { s.split(separator: ",").map(String.init) }

    private static func bool(_ s: String) -> Bool? {
        switch s.lowercased() {
        case "1", "true": true
        case "0", "false": false
        default: nil
        }
    }

    public static func == (a: Self, b: Self) -> Bool { a.raw == b.raw }
    public func hash(into h: inout Hasher) { h.combine(raw) }
}

/// Identifier rules from the spec's libcni utils.
public enum CNIValidation {
    /// Container ids and network names: `[a-zA-Z0-9][a-zA-Z0-9_.\-]*`.
    public static func isValidIdentifier(_ s: String) -> Bool {
        guard let first = s.utf8.first, isAlnum(first) else { return false }
        return s.utf8.allSatisfy { isAlnum($0) || $0 == UInt8(ascii: "_") || $0 == UInt8(ascii: ".") || $0 == UInt8(ascii: "-") }
    }

    /// Why an interface name is unusable, or nil when it is fine: at most 15 bytes (IFNAMSIZ-1),
    /// not `.` or `..`, no `/`, `:` or whitespace.
    public static func interfaceNameProblem(_ s: String) -> String? {
        if s.isEmpty { return "is empty" }
        if s.utf8.count > 15 { return "is longer than 15 bytes" }
        if s == "." || s == ".." { return "is \"\(s)\"" }
        if s.contains(where: { $0 == "/" || $0 == ":" || $0.isWhitespace }) { return "contains '/', ':' or whitespace" }
        return nil
    }

    private static func isAlnum(_ c: UInt8) -> Bool {
        (c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x5a) || (c >= 0x61 && c <= 0x7a)
    }
}
