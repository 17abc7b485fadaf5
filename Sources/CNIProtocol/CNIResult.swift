// The CNI result as one typed value, written in the format of whichever spec version the
// runtime asked for and read from any supported version (prevResult).
//
// Format differences handled here:
//   0.3.0 / 0.3.1 / 0.4.0  ips[].version ("4" or "6") is required; interfaces {name, mac, sandbox};
//                          routes {dst, gw}
//   1.0.0                  no ips[].version; otherwise as 0.4.0
//   1.1.0                  interfaces add mtu, socketPath, pciID; routes add mtu, advmss,
//                          priority, table, scope
// As libcni does, empty lists and fields are omitted and "dns" is always present (Go's
// omitempty never drops a struct).
import IPAddressing

public struct CNIResult: Hashable, Sendable {
    public var interfaces: [Interface]
    public var ips: [IPConfig]
    public var routes: [Route]
    public var dns: DNS

    public init(interfaces: [Interface] = [], ips: [IPConfig] = [], routes: [Route] = [], dns: DNS = DNS()) {
        self.interfaces = interfaces
        self.ips = ips
        self.routes = routes
        self.dns = dns
    }

    public struct Interface: Hashable, Sendable {
        public var name: String
        public var mac: String?
        public var mtu: Int?
        /// The netns path for an interface inside the container; nil on the host.
        public var sandbox: String?
        public var socketPath: String?
        public var pciID: String?

        public init(name: String, mac: String? = nil, mtu: Int? = nil, sandbox: String? = nil, socketPath: String? = nil, pciID: String? = nil) {
            self.name = name
            self.mac = mac
            self.mtu = mtu
            self.sandbox = sandbox
            self.socketPath = socketPath
            self.pciID = pciID
        }
    }

    public struct IPConfig: Hashable, Sendable {
        /// The address with its prefix length (10.244.1.5/24).
        public var address: IPPrefix
        public var gateway: IPAddress?
        /// Index into `interfaces`.
        public var interface: Int?

        public init(address: IPPrefix, gateway: IPAddress? = nil, interface: Int? = nil) {
            self.address = address
            self.gateway = gateway
            self.interface = interface
        }
    }

    public struct Route: Hashable, Sendable {
        public var dst: IPPrefix
        public var gw: IPAddress?
        public var mtu: Int?
        public var advmss: Int?
        public var priority: Int?
        public var table: Int?
        public var scope: Int?

        public init(dst: IPPrefix, gw: IPAddress? = nil, mtu: Int? = nil, advmss: Int? = nil, priority: Int? = nil, table: Int? = nil, scope: Int? = nil) {
            self.dst = dst
            self.gw = gw
            self.mtu = mtu
            self.advmss = advmss
            self.priority = priority
            self.table = table
            self.scope = scope
        }
    }

    public struct DNS: Hashable, Sendable, Codable {
        public var nameservers: [String]?
        public var domain: String?
        public var search: [String]?
        public var options: [String]?

        public init(nameservers: [String]? = nil, domain: String? = nil, search: [String]? = nil, options: [String]? = nil) {
            self.nameservers = nameservers
            self.domain = domain
            self.search = search
            self.options = options
        }

        public func encode(to encoder: any Encoder) throws {
            var c = encoder.container(keyedBy: CodingKeys.self)
            try c.encodeNonEmpty(nameservers, forKey: .nameservers)
            try c.encodeIfPresent(domain.flatMap { $0.isEmpty ? nil : $0 }, forKey: .domain)
            try c.encodeNonEmpty(search, forKey: .search)
            try c.encodeNonEmpty(options, forKey: .options)
        }
    }

    /// The result JSON for `version`, with `cniVersion` set to it.
    public func json(for version: CNIVersion) throws(CNIError) -> [UInt8] {
        guard version.isSupported else {
            throw CNIError(.incompatibleVersion, "cannot write a result for CNI version \(version.rawValue)",
                           details: "supported: \(CNIVersion.supported.map(\.rawValue).joined(separator: ", "))")
        }
        return try CNIJSON.encode(Versioned(result: self, version: version))
    }

    /// Reads a result (a prevResult, or a cached ADD result) written in any supported version.
    /// Unknown keys and a missing or inconsistent `ips[].version` are tolerated, as libcni does.
    public static func parse(_ bytes: [UInt8], version: CNIVersion? = nil) throws(CNIError) -> CNIResult {
        do {
            return try CNIJSON.decode(Wire.self, from: bytes).result
        } catch {
            throw CNIJSON.error(error, decoding: "the result", version: version?.rawValue)
        }
    }
}

// MARK: - Coding

extension CNIResult {
    /// Decoding shape: the union of all supported versions' fields.
    struct Wire: Decodable {
        var result: CNIResult

        enum Keys: String, CodingKey { case interfaces, ips, routes, dns }
        enum InterfaceKeys: String, CodingKey { case name, mac, mtu, sandbox, socketPath, pciID }
        enum IPKeys: String, CodingKey { case address, gateway, interface, version }
        enum RouteKeys: String, CodingKey { case dst, gw, mtu, advmss, priority, table, scope }

        init(from decoder: any Decoder) throws {
            let c = try decoder.container(keyedBy: Keys.self)
            result = CNIResult()
            if var list = try? c.nestedUnkeyedContainer(forKey: .interfaces) {
                while !list.isAtEnd {
                    let i = try list.nestedContainer(keyedBy: InterfaceKeys.self)
                    result.interfaces.append(Interface(
                        name: try i.decode(String.self, forKey: .name), mac: try i.decodeIfPresent(String.self, forKey: .mac),
                        mtu: try i.decodeIfPresent(Int.self, forKey: .mtu), sandbox: try i.decodeIfPresent(String.self, forKey: .sandbox),
                        socketPath: try i.decodeIfPresent(String.self, forKey: .socketPath), pciID: try i.decodeIfPresent(String.self, forKey: .pciID)))
                }
            }
            if var list = try? c.nestedUnkeyedContainer(forKey: .ips) {
                while !list.isAtEnd {
                    let i = try list.nestedContainer(keyedBy: IPKeys.self)
                    result.ips.append(IPConfig(
                        address: try i.decode(IPPrefix.self, forKey: .address), gateway: try i.decodeIfPresent(IPAddress.self, forKey: .gateway),
                        interface: try i.decodeIfPresent(Int.self, forKey: .interface)))
                }
            }
            if var list = try? c.nestedUnkeyedContainer(forKey: .routes) {
                while !list.isAtEnd {
                    let r = try list.nestedContainer(keyedBy: RouteKeys.self)
                    result.routes.append(Route(
                        dst: try r.decode(IPPrefix.self, forKey: .dst), gw: try r.decodeIfPresent(IPAddress.self, forKey: .gw),
                        mtu: try r.decodeIfPresent(Int.self, forKey: .mtu), advmss: try r.decodeIfPresent(Int.self, forKey: .advmss),
                        priority: try r.decodeIfPresent(Int.self, forKey: .priority), table: try r.decodeIfPresent(Int.self, forKey: .table),
                        scope: try r.decodeIfPresent(Int.self, forKey: .scope)))
                }
            }
            result.dns = try c.decodeIfPresent(DNS.self, forKey: .dns) ?? DNS()
        }
    }

    /// Encoding shape for one version.
    struct Versioned: Encodable {
        var result: CNIResult
        var version: CNIVersion

        enum Keys: String, CodingKey { case cniVersion, interfaces, ips, routes, dns }

        func encode(to encoder: any Encoder) throws {
            let modern = version >= .v1_1_0
            var c = encoder.container(keyedBy: Keys.self)
            try c.encode(version.rawValue, forKey: .cniVersion)
            if !result.interfaces.isEmpty {
                var list = c.nestedUnkeyedContainer(forKey: .interfaces)
                for i in result.interfaces {
                    var o = list.nestedContainer(keyedBy: Wire.InterfaceKeys.self)
                    try o.encode(i.name, forKey: .name)
                    try o.encodeNonEmpty(i.mac, forKey: .mac)
                    try o.encodeNonEmpty(i.sandbox, forKey: .sandbox)
                    if modern {
                        try o.encodeNonZero(i.mtu, forKey: .mtu)
                        try o.encodeNonEmpty(i.socketPath, forKey: .socketPath)
                        try o.encodeNonEmpty(i.pciID, forKey: .pciID)
                    }
                }
            }
            if !result.ips.isEmpty {
                var list = c.nestedUnkeyedContainer(forKey: .ips)
                for ip in result.ips {
                    var o = list.nestedContainer(keyedBy: Wire.IPKeys.self)
                    if version < .v1_0_0 { try o.encode(ip.address.family == .v4 ? "4" : "6", forKey: .version) }
                    try o.encode(ip.address, forKey: .address)
                    try o.encodeIfPresent(ip.gateway, forKey: .gateway)
                    try o.encodeIfPresent(ip.interface, forKey: .interface)
                }
            }
            if !result.routes.isEmpty {
                var list = c.nestedUnkeyedContainer(forKey: .routes)
                for r in result.routes {
                    var o = list.nestedContainer(keyedBy: Wire.RouteKeys.self)
                    try o.encode(r.dst, forKey: .dst)
                    try o.encodeIfPresent(r.gw, forKey: .gw)
                    if modern {
                        try o.encodeNonZero(r.mtu, forKey: .mtu)
                        try o.encodeNonZero(r.advmss, forKey: .advmss)
                        try o.encodeIfPresent(r.priority, forKey: .priority)
                        try o.encodeIfPresent(r.table, forKey: .table)
                        try o.encodeIfPresent(r.scope, forKey: .scope)
                    }
                }
            }
            try c.encode(result.dns, forKey: .dns)
        }
    }
}

extension KeyedEncodingContainer {
    mutating func encodeNonEmpty(_ value: String?, forKey key: Key) throws {
        if let value, !value.isEmpty { try encode(value, forKey: key) }
    }

    mutating func encodeNonEmpty(_ value: [String]?, forKey key: Key) throws {
        if let value, !value.isEmpty { try encode(value, forKey: key) }
    }

    mutating func encodeNonZero(_ value: Int?, forKey key: Key) throws {
        if let value, value != 0 { try encode(value, forKey: key) }
    }
}
