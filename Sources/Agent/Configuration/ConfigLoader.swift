import Foundation
import IPAddressing
import Yams

public struct ConfigError: Error, CustomStringConvertible, Sendable, Equatable {
    /// The dotted key ("dns.listen"), when one is to blame.
    public var key: String?
    public var message: String

    public init(key: String? = nil, _ message: String) {
        self.key = key
        self.message = message
    }

    public var description: String {
        key.map { "config key \($0): \(message)" } ?? "config: \(message)"
    }
}

/// Reads the YAML file and flag overrides into an `AgentConfiguration`. Both go through the
/// same key table, so a flag and a file key can never disagree on meaning or validation.
public enum ConfigLoader {
    /// `map`: a mapping of names to lists (`dns.zones`), flattened to "name=v1 v2" items.
    enum Shape { case scalar, list, map }

    /// Every key, dotted, with its shape. Anything else in a file is an error naming the key.
    static let keys: [String: Shape] = [
        "nodeName": .scalar, "source": .scalar, "stateDir": .scalar, "runDir": .scalar,
        "clusterCIDR": .list, "nodeCIDRMaskSize": .scalar, "nodeCIDRMaskSizeIPv4": .scalar, "nodeCIDRMaskSizeIPv6": .scalar, "podCIDRs": .list, "serviceCIDR": .list,
        "clusterDomain": .scalar, "nodeIP": .scalar, "routing": .scalar, "nodePortRange": .scalar,
        "logLevel": .scalar,
        "dns.listen": .list, "dns.listenIPv6": .scalar, "dns.port": .scalar, "dns.upstreams": .list, "dns.pods": .scalar, "dns.ttl": .scalar,
        "dns.enabled": .scalar, "dns.lameDuck": .scalar, "dns.allowedClients": .list, "dns.rateLimit": .scalar, "dns.autopath": .scalar,
        "dns.zones": .map, "dns.serveStale": .scalar, "dns.udpBatchIO": .scalar,
        "etcd.endpoints": .list, "etcd.prefix": .scalar, "etcd.leaseSeconds": .scalar,
        "kubernetes.kubeconfig": .scalar,
        "metrics.listen": .scalar,
        "cni.conflist": .scalar,
        "vxlan.vni": .scalar, "vxlan.port": .scalar,
        "proxyHealth.listen": .scalar, "proxyHealth.grace": .scalar,
        "policy.enabled": .scalar, "policy.addTimeout": .scalar,
    ]
    static let sections: Set<String> = ["dns", "etcd", "kubernetes", "metrics", "vxlan", "proxyHealth", "cni", "policy"]

    /// The flag name of a key: `dns.listen` -> `dns-listen`, `nodeCIDRMaskSize` -> `node-cidr-mask-size`.
    public static func flagName(_ key: String) -> String {
        var s = key.replacingOccurrences(of: ".", with: "-")
        // Acronyms first, so podCIDRs becomes pod-cidrs, not pod-cid-rs.
        for acronym in ["CIDRs", "CIDR", "IPs", "IP", "IO"] {
            s = s.replacingOccurrences(of: acronym, with: "-" + acronym.lowercased())
        }
        var out = ""
        for c in s {
            if c.isUppercase {
                if !out.isEmpty, out.last != "-" { out += "-" }
                out += c.lowercased()
            } else {
                out.append(c)
            }
        }
        return out
    }

    public static var allKeys: [String] { keys.keys.sorted() }

    /// Loads `path` (missing file is fine only when `required` is false) and applies `overrides`
    /// (dotted key -> value; lists comma-separated).
    public static func load(path: String?, required: Bool, overrides: [String: String],
                            defaultNodeName: String) throws(ConfigError) -> AgentConfiguration {
        var text = ""
        if let path {
            if let data = FileManager.default.contents(atPath: path) {
                text = String(decoding: data, as: UTF8.self)
            } else if required || FileManager.default.fileExists(atPath: path) {
                throw ConfigError("cannot read \(path)")
            }
        }
        return try parse(yaml: text, overrides: overrides, defaultNodeName: defaultNodeName)
    }

    public static func parse(yaml: String, overrides: [String: String] = [:], defaultNodeName: String) throws(ConfigError) -> AgentConfiguration {
        var values = try flatten(yaml)
        for (key, value) in overrides {
            guard let shape = keys[key] else { throw ConfigError(key: key, "unknown key") }
            values[key] = shape != .scalar
                ? value.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
                : [value]
        }
        return try build(values, defaultNodeName: defaultNodeName)
    }

    /// YAML -> dotted key -> list of scalar strings.
    static func flatten(_ yaml: String) throws(ConfigError) -> [String: [String]] {
        let root: Yams.Node?
        do {
            root = try Yams.compose(yaml: yaml)
        } catch {
            throw ConfigError("not valid YAML: \(error)")
        }
        guard let root else { return [:] }
        if case .scalar(let s) = root, s.string.isEmpty || s.tag == Tag(.null) { return [:] }
        guard let mapping = root.mapping else { throw ConfigError("the top level must be a mapping of keys") }
        var out: [String: [String]] = [:]
        func visit(_ mapping: Yams.Node.Mapping, prefix: String) throws(ConfigError) {
            for (k, v) in mapping {
                guard let name = k.string else { throw ConfigError("keys must be strings") }
                let key = prefix.isEmpty ? name : prefix + "." + name
                if prefix.isEmpty, sections.contains(name) {
                    if case .scalar(let s) = v, s.tag == Tag(.null) { continue }
                    guard let sub = v.mapping else { throw ConfigError(key: key, "must be a mapping") }
                    try visit(sub, prefix: key)
                    continue
                }
                guard let shape = keys[key] else { throw ConfigError(key: key, "unknown key") }
                if shape == .map {
                    if case .scalar(let s) = v, s.tag == Tag(.null) { out[key] = []; continue }
                    guard let m = v.mapping else { throw ConfigError(key: key, "must be a mapping, e.g. {corp.example: [10.0.0.53]}") }
                    var items: [String] = []
                    for (name, value) in m {
                        guard let n = name.string else { throw ConfigError(key: key, "keys must be strings") }
                        var list: [String] = []
                        switch value {
                        case .scalar(let s): list = [s.string]
                        case .sequence(let seq):
                            for item in seq {
                                guard case .scalar(let s) = item else { throw ConfigError(key: key + "." + n, "list items must be plain values") }
                                list.append(s.string)
                            }
                        default: throw ConfigError(key: key + "." + n, "must be a list of ip[:port]")
                        }
                        items.append(n + "=" + list.joined(separator: " "))
                    }
                    out[key] = items
                    continue
                }
                switch v {
                case .scalar(let s):
                    out[key] = s.tag == Tag(.null) ? [] : [s.string]
                case .sequence(let seq):
                    guard shape == .list else { throw ConfigError(key: key, "takes a single value, not a list") }
                    var items: [String] = []
                    for item in seq {
                        guard case .scalar(let s) = item else { throw ConfigError(key: key, "list items must be plain values") }
                        items.append(s.string)
                    }
                    out[key] = items
                default:
                    throw ConfigError(key: key, "must be a value or a list of values")
                }
            }
        }
        try visit(mapping, prefix: "")
        return out
    }

    static func build(_ v: [String: [String]], defaultNodeName: String) throws(ConfigError) -> AgentConfiguration {
        var c = AgentConfiguration(nodeName: defaultNodeName.lowercased())
        func one(_ key: String) -> String? { v[key]?.first }
        func int(_ key: String, _ range: ClosedRange<Int>) throws(ConfigError) -> Int? {
            guard let s = one(key) else { return nil }
            guard let n = Int(s), range.contains(n) else {
                throw ConfigError(key: key, "\"\(s)\" is not a number in \(range.lowerBound)...\(range.upperBound)")
            }
            return n
        }
        func choice<E: RawRepresentable & CaseIterable>(_ key: String, _: E.Type) throws(ConfigError) -> E? where E.RawValue == String {
            guard let s = one(key) else { return nil }
            guard let e = E(rawValue: s) else {
                throw ConfigError(key: key, "\"\(s)\" is not one of \(E.allCases.map(\.rawValue).joined(separator: ", "))")
            }
            return e
        }
        func prefixes(_ key: String, networkOnly: Bool = true) throws(ConfigError) -> [IPPrefix]? {
            guard let list = v[key] else { return nil }
            var out: [IPPrefix] = []
            for s in list {
                guard let p = IPPrefix(s) else { throw ConfigError(key: key, "\"\(s)\" is not a CIDR (e.g. 10.244.0.0/16)") }
                if networkOnly, !p.isNetwork { throw ConfigError(key: key, "\"\(s)\" has host bits set (did you mean \(p.network)?)") }
                out.append(p)
            }
            if Set(out.map(\.family)).count != out.count { throw ConfigError(key: key, "at most one CIDR per IP family") }
            return out
        }
        func path(_ key: String) throws(ConfigError) -> String? {
            guard let s = one(key) else { return nil }
            guard s.hasPrefix("/") else { throw ConfigError(key: key, "\"\(s)\" must be an absolute path") }
            return s
        }

        if let s = one("nodeName") { c.nodeName = s }
        guard isNodeName(c.nodeName) else {
            throw ConfigError(key: "nodeName", "\"\(c.nodeName)\" is not a valid node name (lower-case letters, digits, '-' and '.')")
        }
        if let s = try choice("source", SourceKind.self) { c.source = s }
        if let s = try path("stateDir") { c.stateDir = s }
        if let s = try path("runDir") { c.runDir = s }
        if let p = try prefixes("clusterCIDR"), !p.isEmpty { c.clusterCIDRs = p }
        // Per-node subnet sizes, one per family, each checked against its family's clusterCIDR.
        // `nodeCIDRMaskSize` is the IPv4 size (older configs), or the IPv6 one on a cluster
        // without an IPv4 clusterCIDR, where kube-controller-manager's single-stack flag means
        // that family (IPv6-only configs written before the per-family keys keep working).
        let v4Cluster = c.clusterCIDRs.first { $0.family == .v4 }, v6Cluster = c.clusterCIDRs.first { $0.family == .v6 }
        let aliasFamily: IPFamily = v4Cluster == nil && v6Cluster != nil ? .v6 : .v4
        let alias = try int("nodeCIDRMaskSize", 1...128)
        for (family, cluster, largest) in [(IPFamily.v4, v4Cluster, 30), (.v6, v6Cluster, 120)] {
            let key = family == .v4 ? "nodeCIDRMaskSizeIPv4" : "nodeCIDRMaskSizeIPv6"
            var named = key
            var size = try int(key, 1...128)
            if let alias, family == aliasFamily {
                if let size, size != alias {
                    throw ConfigError(key: key, "\(size) disagrees with nodeCIDRMaskSize \(alias) (its alias on this cluster): set only one of them")
                }
                if size == nil { named = "nodeCIDRMaskSize" }
                size = alias
            }
            let value = size ?? c.nodeCIDRMaskSize(family)
            if let cluster, value < cluster.length || value > largest {
                throw ConfigError(key: named, "\(value) must be between clusterCIDR \(cluster)'s /\(cluster.length) and /\(largest)")
            }
            if family == .v4 { c.nodeCIDRMaskSizeIPv4 = value } else { c.nodeCIDRMaskSizeIPv6 = value }
        }
        if let p = try prefixes("podCIDRs") { c.podCIDRs = p }
        if let p = try prefixes("serviceCIDR"), !p.isEmpty { c.serviceCIDRs = p }
        for pod in c.podCIDRs where !c.clusterCIDRs.contains(where: { $0.contains(pod) }) {
            throw ConfigError(key: "podCIDRs", "\(pod) is not inside clusterCIDR \(c.clusterCIDRs.map(\.description).joined(separator: ","))")
        }
        if let s = one("clusterDomain") {
            let d = s.hasSuffix(".") ? String(s.dropLast()) : s
            guard !d.isEmpty, d.split(separator: ".", omittingEmptySubsequences: false).allSatisfy({ !$0.isEmpty && $0.utf8.count <= 63 }) else {
                throw ConfigError(key: "clusterDomain", "\"\(s)\" is not a domain name")
            }
            c.clusterDomain = d.lowercased()
        }
        if let s = one("nodeIP") {
            guard let a = IPAddress(s) else { throw ConfigError(key: "nodeIP", "\"\(s)\" is not an IP address") }
            c.nodeIP = a
        }
        if let r = try choice("routing", RoutingMode.self) { c.routing = r }
        if let s = one("nodePortRange") {
            let parts = s.split(separator: "-").map { UInt16($0.trimmingCharacters(in: .whitespaces)) }
            guard parts.count == 2, let lo = parts[0], let hi = parts[1], lo >= 1, lo <= hi else {
                throw ConfigError(key: "nodePortRange", "\"\(s)\" is not a port range like 30000-32767")
            }
            c.nodePortRange = lo...hi
        }
        if let s = one("logLevel") {
            let levels = ["trace", "debug", "info", "notice", "warning", "error", "critical"]
            guard levels.contains(s) else { throw ConfigError(key: "logLevel", "\"\(s)\" is not one of \(levels.joined(separator: ", "))") }
            c.logLevel = s
        }
        if let list = v["dns.listen"] {
            c.dns.listen = try list.map { s throws(ConfigError) in
                guard let a = IPAddress(s) else { throw ConfigError(key: "dns.listen", "\"\(s)\" is not an IP address") }
                return a
            }
        }
        if let s = one("dns.listenIPv6") {
            if s.isEmpty || s == "none" {
                c.dns.listenIPv6 = nil
            } else {
                guard let a = IPAddress(s), a.family == .v6 else {
                    throw ConfigError(key: "dns.listenIPv6", "\"\(s)\" is not an IPv6 address (empty or none: no IPv6 DNS address)")
                }
                c.dns.listenIPv6 = a
            }
        }
        if let n = try int("dns.port", 1...65535) { c.dns.port = UInt16(n) }
        if let list = v["dns.upstreams"] {
            for u in list where !u.hasPrefix("/") && !isUpstream(u) {
                throw ConfigError(key: "dns.upstreams", "\"\(u)\" is neither a resolv.conf path nor IP[:PORT]")
            }
            c.dns.upstreams = list
        }
        if let m = try choice("dns.pods", PodRecordMode.self) { c.dns.pods = m }
        if let n = try int("dns.ttl", 0...3600) { c.dns.ttl = UInt32(n) }
        if let s = one("dns.lameDuck") {
            // Seconds, as a number ("0.5") or with a unit ("500ms", "5s").
            var text = s.trimmingCharacters(in: .whitespaces)
            var scale = 1000.0
            if text.hasSuffix("ms") { text.removeLast(2); scale = 1 } else if text.hasSuffix("s") { text.removeLast() }
            guard let v = Double(text), v.isFinite, v >= 0, v * scale <= 60_000 else {
                throw ConfigError(key: "dns.lameDuck", "\"\(s)\" is not a duration from 0 to 60 seconds (e.g. 5s, 500ms, 0)")
            }
            c.dns.lameDuckMilliseconds = Int64((v * scale).rounded())
        }
        if let s = one("dns.enabled") {
            guard let b = Bool(s) else { throw ConfigError(key: "dns.enabled", "\"\(s)\" is not true or false") }
            c.dns.enabled = b
        }
        if let list = v["dns.allowedClients"] {
            c.dns.allowedClients = try list.map { s throws(ConfigError) in
                guard let p = IPPrefix(s) ?? IPAddress(s).map({ IPPrefix(address: $0, length: $0.family.bitWidth) }) else {
                    throw ConfigError(key: "dns.allowedClients", "\"\(s)\" is not a CIDR or IP address")
                }
                return p.network
            }
        }
        if let n = try int("dns.rateLimit", 0...1_000_000) { c.dns.rateLimit = n }
        if let s = one("dns.autopath") {
            guard let b = Bool(s) else { throw ConfigError(key: "dns.autopath", "\"\(s)\" is not true or false") }
            c.dns.autopath = b
        }
        if let s = one("dns.udpBatchIO") {
            guard let b = Bool(s) else { throw ConfigError(key: "dns.udpBatchIO", "\"\(s)\" is not true or false") }
            c.dns.udpBatchIO = b
        }
        if let s = one("dns.serveStale") {
            guard let d = parseDuration(s), d <= 7 * 86400 else {
                throw ConfigError(key: "dns.serveStale", "\"\(s)\" is not a duration up to 7 days (e.g. 1h, 30m, 90s, 0)")
            }
            c.dns.serveStaleSeconds = UInt32(d)
        }
        if let items = v["dns.zones"] {
            var zones: [String: [String]] = [:]
            for item in items {
                let parts = item.split(separator: "=", maxSplits: 1).map(String.init)
                let zone = (parts.first ?? "").trimmingCharacters(in: .whitespaces).lowercased()
                let name = zone.hasSuffix(".") ? String(zone.dropLast()) : zone
                guard !name.isEmpty, name.utf8.count <= 253,
                      name.split(separator: ".", omittingEmptySubsequences: false).allSatisfy({ !$0.isEmpty && $0.utf8.count <= 63 }) else {
                    throw ConfigError(key: "dns.zones", "\"\(zone)\" is not a domain name")
                }
                let servers = parts.count > 1 ? parts[1].split(separator: " ").map(String.init) : []
                guard !servers.isEmpty else { throw ConfigError(key: "dns.zones.\(name)", "needs at least one upstream ip[:port]") }
                for u in servers where !isUpstream(u) {
                    throw ConfigError(key: "dns.zones.\(name)", "\"\(u)\" is not an IP address or IP:PORT")
                }
                zones[name] = servers
            }
            c.dns.zones = zones
        }
        if let list = v["etcd.endpoints"] {
            for e in list where !(e.hasPrefix("http://") || e.hasPrefix("https://")) {
                throw ConfigError(key: "etcd.endpoints", "\"\(e)\" must start with http:// or https://")
            }
            guard !list.isEmpty else { throw ConfigError(key: "etcd.endpoints", "needs at least one endpoint") }
            c.etcd.endpoints = list
        }
        if let s = one("etcd.prefix") {
            guard s.hasPrefix("/") else { throw ConfigError(key: "etcd.prefix", "\"\(s)\" must start with /") }
            c.etcd.prefix = s
        }
        if let n = try int("etcd.leaseSeconds", 2...3600) { c.etcd.leaseSeconds = n }
        if let s = one("kubernetes.kubeconfig") { c.kubernetes.kubeconfig = s.isEmpty ? nil : s }
        if let n = try int("vxlan.vni", 1...16_777_215) { c.vxlan.vni = UInt32(n) }
        if let n = try int("vxlan.port", 1...65535) { c.vxlan.port = UInt16(n) }
        if let s = one("metrics.listen") {
            if !s.isEmpty, parseHostPort(s) == nil {
                throw ConfigError(key: "metrics.listen", "\"\(s)\" is not HOST:PORT (e.g. 127.0.0.1:9154)")
            }
            c.metrics.listen = s
        }
        if let s = one("proxyHealth.listen") {
            if !s.isEmpty, parseHostPort(s) == nil {
                throw ConfigError(key: "proxyHealth.listen", "\"\(s)\" is not HOST:PORT (e.g. 0.0.0.0:10256)")
            }
            c.proxyHealth.listen = s
        }
        if let n = try int("proxyHealth.grace", 0...86400) { c.proxyHealth.grace = .seconds(n) }
        if let s = one("policy.enabled") {
            guard let b = Bool(s) else { throw ConfigError(key: "policy.enabled", "\"\(s)\" is not true or false") }
            c.policy.enabled = b
        }
        if let n = try int("policy.addTimeout", 1...300) { c.policy.addTimeout = .seconds(n) }
        if let s = one("cni.conflist") {
            guard s.isEmpty || (s.hasPrefix("/") && s.hasSuffix(".conflist")) else {
                throw ConfigError(key: "cni.conflist", "\"\(s)\" must be an absolute path ending in .conflist (runtimes read only those), or empty")
            }
            c.cni.conflist = s.isEmpty ? nil : s
        }
        return c
    }

    /// "90s", "30m", "1h", "2d" or plain seconds.
    static func parseDuration(_ s: String) -> Int? {
        let t = s.trimmingCharacters(in: .whitespaces)
        let units: [Character: Int] = ["s": 1, "m": 60, "h": 3600, "d": 86400]
        if let u = t.last, let mult = units[u], let n = Int(t.dropLast()), n >= 0 { return n * mult }
        if let n = Int(t), n >= 0 { return n }
        return nil
    }

    static func isUpstream(_ s: String) -> Bool {
        if IPAddress(s) != nil { return true }
        if s.hasPrefix("[") { return parseHostPort(s) != nil }
        let parts = s.split(separator: ":")
        return parts.count == 2 && IPv4Address(parts[0]) != nil && UInt16(parts[1]).map { $0 > 0 } == true
    }

    static func isNodeName(_ s: String) -> Bool {
        guard !s.isEmpty, s.utf8.count <= 253 else { return false }
        return s.split(separator: ".", omittingEmptySubsequences: false).allSatisfy { label in
            let u = Array(label.utf8)
            func alnum(_ c: UInt8) -> Bool { (c >= 97 && c <= 122) || (c >= 48 && c <= 57) }
            return !u.isEmpty && u.count <= 63 && alnum(u.first!) && alnum(u.last!) && u.allSatisfy { alnum($0) || $0 == 45 }
        }
    }

    /// "127.0.0.1:9154" or "[::1]:9154" -> (host, port).
    public static func parseHostPort(_ s: String) -> (host: String, port: Int)? {
        if s.hasPrefix("[") {
            guard let close = s.firstIndex(of: "]") else { return nil }
            let host = String(s[s.index(after: s.startIndex)..<close])
            let rest = s[s.index(after: close)...]
            guard rest.hasPrefix(":"), let p = Int(rest.dropFirst()), 1...65535 ~= p, IPAddress(host) != nil else { return nil }
            return (host, p)
        }
        guard let colon = s.lastIndex(of: ":") else { return nil }
        let host = String(s[..<colon])
        guard let p = Int(s[s.index(after: colon)...]), 1...65535 ~= p, IPv4Address(host) != nil || host == "localhost" else { return nil }
        return (host, p)
    }
}
