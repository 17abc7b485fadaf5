import IPAddressing

public enum EndpointAddressType: String, Hashable, Sendable, Codable {
    case ipv4 = "IPv4"
    case ipv6 = "IPv6"
    case fqdn = "FQDN"
}

/// Endpoint conditions with the API's defaults already applied:
/// ready unset means ready; serving unset means "same as ready"; terminating unset means false.
public struct EndpointConditions: Hashable, Sendable {
    public var ready: Bool
    public var serving: Bool
    public var terminating: Bool

    public init(ready: Bool = true, serving: Bool? = nil, terminating: Bool = false) {
        self.ready = ready
        self.serving = serving ?? ready
        self.terminating = terminating
    }
}

public struct ObjectReference: Hashable, Sendable, Codable {
    public var kind: String?
    public var namespace: String?
    public var name: String?
    public var uid: String?

    public init(kind: String? = nil, namespace: String? = nil, name: String? = nil, uid: String? = nil) {
        self.kind = kind
        self.namespace = namespace
        self.name = name
        self.uid = uid
    }
}

public struct Endpoint: Hashable, Sendable {
    /// Parsed addresses (empty for FQDN slices, which nodenet does not serve).
    public var addresses: [IPAddress]
    public var conditions: EndpointConditions
    public var hostname: String?
    public var nodeName: String?
    public var targetRef: ObjectReference?
    /// The zone the endpoint runs in (endpoints[].zone).
    public var zone: String?
    /// hints.forZones: the zones whose nodes should send traffic here (topology-aware routing).
    /// Empty: no hints.
    public var zoneHints: [String]

    public init(addresses: [IPAddress], conditions: EndpointConditions = .init(), hostname: String? = nil,
                nodeName: String? = nil, targetRef: ObjectReference? = nil, zone: String? = nil, zoneHints: [String] = []) {
        self.addresses = addresses
        self.conditions = conditions
        self.hostname = hostname
        self.nodeName = nodeName
        self.targetRef = targetRef
        self.zone = zone
        self.zoneHints = zoneHints
    }
}

public struct EndpointPort: Hashable, Sendable {
    public var name: String
    public var `protocol`: L4Protocol
    public var port: UInt16?

    public init(name: String = "", protocol: L4Protocol = .tcp, port: UInt16?) {
        self.name = name
        self.protocol = `protocol`
        self.port = port
    }
}

/// discovery.k8s.io/v1 EndpointSlice, validated.
public struct EndpointSlice: Hashable, Sendable, Codable {
    public var metadata: ObjectMeta
    public var addressType: EndpointAddressType
    public var endpoints: [Endpoint]
    public var ports: [EndpointPort]

    public static let serviceNameLabel = "kubernetes.io/service-name"
    public static let managedByLabel = "endpointslice.kubernetes.io/managed-by"

    public init(metadata: ObjectMeta, addressType: EndpointAddressType, endpoints: [Endpoint], ports: [EndpointPort]) {
        self.metadata = metadata
        self.addressType = addressType
        self.endpoints = endpoints
        self.ports = ports
    }

    public var namespace: String { metadata.namespace ?? "default" }
    /// The owning service, from the kubernetes.io/service-name label.
    public var serviceName: String? { metadata.label(Self.serviceNameLabel) }
    public var service: NamespacedName? { serviceName.map { NamespacedName(namespace, $0) } }

    private struct RawConditions: Codable { var ready: Bool?; var serving: Bool?; var terminating: Bool? }
    private struct ForZone: Codable { var name: String }
    private struct RawHints: Codable { var forZones: [ForZone]? }
    private struct RawEndpoint: Codable {
        var addresses: [String]
        var conditions: RawConditions?
        var hostname: String?
        var nodeName: String?
        var targetRef: ObjectReference?
        var zone: String?
        var hints: RawHints?
    }
    private struct RawPort: Codable { var name: String?; var `protocol`: String?; var port: Int? }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: AnyKey.self)
        try checkKind(c, decoder, .endpointSlice)
        metadata = try decodeMeta(c, decoder, kind: .endpointSlice)
        guard let at = try c.decodeIfPresent(String.self, forKey: AnyKey("addressType")) else {
            throw invalid(decoder, "addressType", "addressType is required (IPv4, IPv6 or FQDN)")
        }
        guard let parsed = EndpointAddressType(rawValue: at) else {
            throw invalid(decoder, "addressType", "unknown addressType \"\(at)\" (want IPv4, IPv6 or FQDN)")
        }
        addressType = parsed
        let raw = try c.decodeIfPresent([RawEndpoint].self, forKey: AnyKey("endpoints")) ?? []
        endpoints = try raw.enumerated().map { i, e in
            let field = "endpoints[\(i)]"
            var addrs: [IPAddress] = []
            if parsed == .fqdn {
                // Not served (no IPs), but kept: an address must still be a DNS subdomain.
                if let bad = e.addresses.first(where: { !isDNSSubdomain($0) }) {
                    throw invalid(decoder, field + ".addresses", "\(excerpt(bad)) is not a valid FQDN (a DNS subdomain: 253 characters at most)")
                }
            } else {
                addrs = try parseAddresses(e.addresses, decoder, field + ".addresses")
                let want: IPFamily = parsed == .ipv4 ? .v4 : .v6
                guard addrs.allSatisfy({ $0.family == want }) else {
                    throw invalid(decoder, field + ".addresses", "address family does not match addressType \(at)")
                }
            }
            if let h = e.hostname, !isDNSLabel(h) {
                throw invalid(decoder, field + ".hostname", "\"\(h)\" is not a valid hostname label")
            }
            let rc = e.conditions ?? RawConditions()
            let hints = e.hints?.forZones?.map(\.name) ?? []
            return Endpoint(addresses: addrs,
                            conditions: EndpointConditions(ready: rc.ready ?? true, serving: rc.serving, terminating: rc.terminating ?? false),
                            hostname: e.hostname, nodeName: e.nodeName, targetRef: e.targetRef, zone: e.zone, zoneHints: hints)
        }
        let rawPorts = try c.decodeIfPresent([RawPort].self, forKey: AnyKey("ports")) ?? []
        ports = try rawPorts.enumerated().map { i, p in
            if let name = p.name, !name.isEmpty, !isDNSLabel(name) {
                throw invalid(decoder, "ports[\(i)].name", "\(excerpt(name)) is not a valid port name (a DNS label: 63 lower-case letters, digits or '-' at most)")
            }
            return EndpointPort(name: p.name ?? "", protocol: try parseProtocol(p.protocol, decoder, "ports[\(i)].protocol"),
                                port: try parsePort(p.port, decoder, "ports[\(i)].port"))
        }
    }

    public func encode(to encoder: any Encoder) throws {
        var c = try encodeHeader(encoder, .endpointSlice, metadata)
        try c.encode(addressType.rawValue, forKey: AnyKey("addressType"))
        try c.encode(endpoints.map { e in
            RawEndpoint(addresses: e.addresses.map(\.description),
                        conditions: RawConditions(ready: e.conditions.ready, serving: e.conditions.serving, terminating: e.conditions.terminating),
                        hostname: e.hostname, nodeName: e.nodeName, targetRef: e.targetRef, zone: e.zone,
                        hints: e.zoneHints.isEmpty ? nil : RawHints(forZones: e.zoneHints.map { ForZone(name: $0) }))
        }, forKey: AnyKey("endpoints"))
        try c.encode(ports.map { RawPort(name: $0.name, protocol: $0.protocol.rawValue, port: $0.port.map(Int.init)) }, forKey: AnyKey("ports"))
    }
}
