import IPAddressing

public enum ServiceType: String, Hashable, Sendable, Codable {
    case clusterIP = "ClusterIP"
    case nodePort = "NodePort"
    case loadBalancer = "LoadBalancer"
    case externalName = "ExternalName"
}

/// spec.ipFamilyPolicy: how many address families a Service asks for.
public enum IPFamilyPolicy: String, Hashable, Sendable, Codable {
    case singleStack = "SingleStack"
    case preferDualStack = "PreferDualStack"
    case requireDualStack = "RequireDualStack"
}

public enum TrafficPolicy: String, Hashable, Sendable, Codable {
    case cluster = "Cluster"
    case local = "Local"
}

public struct ServicePort: Hashable, Sendable {
    public var name: String
    public var `protocol`: L4Protocol
    public var port: UInt16
    public var targetPort: IntOrString
    public var nodePort: UInt16?

    public init(name: String = "", protocol: L4Protocol = .tcp, port: UInt16, targetPort: IntOrString? = nil, nodePort: UInt16? = nil) {
        self.name = name
        self.protocol = `protocol`
        self.port = port
        self.targetPort = targetPort ?? .int(Int(port))
        self.nodePort = nodePort
    }
}

/// A Service, validated: addresses parsed, ports in range, enums known.
public struct Service: Hashable, Sendable, Codable {
    public var metadata: ObjectMeta
    public var type: ServiceType
    /// Primary first, as in spec.clusterIPs. Empty for headless and ExternalName.
    public var clusterIPs: [IPAddress]
    /// spec.clusterIP "None".
    public var isHeadless: Bool
    public var ports: [ServicePort]
    /// nil when the service has no selector (endpoints managed by someone else).
    public var selector: [String: String]?
    /// ClientIP affinity timeout in seconds; nil for no affinity.
    public var sessionAffinityTimeout: Int?
    public var externalTrafficPolicy: TrafficPolicy
    public var internalTrafficPolicy: TrafficPolicy
    public var externalIPs: [IPAddress]
    public var loadBalancerIngress: [IPAddress]
    public var loadBalancerSourceRanges: [IPPrefix]
    public var externalName: String?
    public var publishNotReadyAddresses: Bool
    /// Families in spec order (the primary first): the cluster IPs' families once allocated.
    public var ipFamilies: [IPFamily]
    /// nil until admission (or the API server) defaults it.
    public var ipFamilyPolicy: IPFamilyPolicy?
    /// spec.trafficDistribution: `PreferClose` (or its 1.33 names `PreferSameZone`,
    /// `PreferSameNode`) asks the proxy to follow the EndpointSlices' zone hints.
    public var trafficDistribution: String?
    /// spec.healthCheckNodePort: for externalTrafficPolicy Local, the port on every node that
    /// answers a load balancer's health check (200 with local endpoints, 503 without).
    public var healthCheckNodePort: UInt16?

    public init(metadata: ObjectMeta, type: ServiceType = .clusterIP, clusterIPs: [IPAddress] = [], isHeadless: Bool = false,
                ports: [ServicePort] = [], selector: [String: String]? = nil, sessionAffinityTimeout: Int? = nil,
                externalTrafficPolicy: TrafficPolicy = .cluster, internalTrafficPolicy: TrafficPolicy = .cluster,
                externalIPs: [IPAddress] = [], loadBalancerIngress: [IPAddress] = [], loadBalancerSourceRanges: [IPPrefix] = [],
                externalName: String? = nil, publishNotReadyAddresses: Bool = false,
                trafficDistribution: String? = nil, healthCheckNodePort: UInt16? = nil) {
        self.metadata = metadata
        self.type = type
        self.clusterIPs = clusterIPs
        self.isHeadless = isHeadless
        self.ports = ports
        self.selector = selector
        self.sessionAffinityTimeout = sessionAffinityTimeout
        self.externalTrafficPolicy = externalTrafficPolicy
        self.internalTrafficPolicy = internalTrafficPolicy
        self.externalIPs = externalIPs
        self.loadBalancerIngress = loadBalancerIngress
        self.loadBalancerSourceRanges = loadBalancerSourceRanges
        self.externalName = externalName
        self.publishNotReadyAddresses = publishNotReadyAddresses
        self.ipFamilies = clusterIPs.map(\.family)
        self.trafficDistribution = trafficDistribution
        self.healthCheckNodePort = healthCheckNodePort
    }

    public var name: String { metadata.name }
    public var namespace: String { metadata.namespace ?? "default" }
    public var id: NamespacedName { NamespacedName(namespace, name) }

    /// The label that hands a service to another proxy (kube-proxy skips these too).
    public static let serviceProxyNameLabel = "service.kubernetes.io/service-proxy-name"
    /// The annotation that turned topology-aware routing on before spec.trafficDistribution
    /// (`Auto`); `topologyAwareHintsAnnotation` is its deprecated older name.
    public static let topologyModeAnnotation = "service.kubernetes.io/topology-mode"
    public static let topologyAwareHintsAnnotation = "service.kubernetes.io/topology-aware-hints"
    /// The spec.trafficDistribution values the API server accepts (1.33).
    public static let trafficDistributions: Set<String> = ["PreferClose", "PreferSameZone", "PreferSameNode"]

    /// Whether the service asks for topology-aware routing: trafficDistribution set (every
    /// accepted value prefers the client's zone at least), or the topology-mode annotation
    /// (older: topology-aware-hints) `Auto`, as kube-proxy reads them.
    public var wantsTopologyAwareRouting: Bool {
        if trafficDistribution != nil { return true }
        let mode = metadata.annotations?[Self.topologyModeAnnotation] ?? metadata.annotations?[Self.topologyAwareHintsAnnotation]
        return mode == "Auto" || mode == "auto"
    }

    // MARK: Kubernetes shape

    private struct RawPort: Codable {
        var name: String?
        var `protocol`: String?
        var port: Int?
        var targetPort: IntOrString?
        var nodePort: Int?
    }

    private struct ClientIPConfig: Codable { var timeoutSeconds: Int? }
    private struct AffinityConfig: Codable { var clientIP: ClientIPConfig? }

    private struct Spec: Codable {
        var type: String?
        var clusterIP: String?
        var clusterIPs: [String]?
        var ports: [RawPort]?
        var selector: [String: String]?
        var sessionAffinity: String?
        var sessionAffinityConfig: AffinityConfig?
        var externalTrafficPolicy: String?
        var internalTrafficPolicy: String?
        var externalIPs: [String]?
        var loadBalancerSourceRanges: [String]?
        var externalName: String?
        var publishNotReadyAddresses: Bool?
        var ipFamilies: [String]?
        var ipFamilyPolicy: String?
        var trafficDistribution: String?
        var healthCheckNodePort: Int?
    }

    private struct Ingress: Codable { var ip: String?; var hostname: String? }
    private struct LoadBalancerStatus: Codable { var ingress: [Ingress]? }
    private struct Status: Codable { var loadBalancer: LoadBalancerStatus? }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: AnyKey.self)
        try checkKind(c, decoder, .service)
        metadata = try decodeMeta(c, decoder, kind: .service)
        let spec = try c.decodeIfPresent(Spec.self, forKey: AnyKey("spec")) ?? Spec()
        let status = try c.decodeIfPresent(Status.self, forKey: AnyKey("status")) ?? Status()

        if let t = spec.type {
            guard let parsed = ServiceType(rawValue: t) else {
                throw invalid(decoder, "spec.type", "unknown service type \"\(t)\" (want ClusterIP, NodePort, LoadBalancer or ExternalName)")
            }
            type = parsed
        } else {
            type = .clusterIP
        }

        let ipTexts = spec.clusterIPs ?? spec.clusterIP.map { [$0] } ?? []
        isHeadless = ipTexts.first == "None"
        clusterIPs = isHeadless ? [] : try parseAddresses(ipTexts.filter { !$0.isEmpty }, decoder, "spec.clusterIPs")
        if clusterIPs.count > 2 || Set(clusterIPs.map(\.family)).count != clusterIPs.count {
            throw invalid(decoder, "spec.clusterIPs", "at most one cluster IP per family")
        }

        var seen = Set<String>()
        ports = try (spec.ports ?? []).enumerated().map { i, p in
            let field = "spec.ports[\(i)]"
            guard let port = try parsePort(p.port, decoder, field + ".port") else {
                throw invalid(decoder, field + ".port", "port is required")
            }
            let proto = try parseProtocol(p.protocol, decoder, field + ".protocol")
            let name = p.name ?? ""
            // A DNS label (63 characters), as the API server checks Service port names; the
            // 15-character IANA service name limit is for container ports.
            if !name.isEmpty, !isDNSLabel(name) {
                throw invalid(decoder, field + ".name", "\(excerpt(name)) is not a valid port name (a DNS label: 63 lower-case letters, digits or '-' at most)")
            }
            guard seen.insert("\(name)").inserted || name.isEmpty else {
                throw invalid(decoder, field + ".name", "duplicate port name \"\(name)\"")
            }
            if case .int(let tp) = p.targetPort, !(0...65535 ~= tp) {
                throw invalid(decoder, field + ".targetPort", "targetPort \(tp) is out of range")
            }
            let target = p.targetPort.flatMap { t -> IntOrString? in if case .int(0) = t { return nil } else { return t } }
            return ServicePort(name: name, protocol: proto, port: port, targetPort: target,
                               nodePort: try parsePort(p.nodePort, decoder, field + ".nodePort", allowZero: true).flatMap { $0 == 0 ? nil : $0 })
        }
        if (spec.ports ?? []).count > 1, ports.contains(where: { $0.name.isEmpty }) {
            throw invalid(decoder, "spec.ports", "every port needs a name when a service has more than one")
        }

        selector = (spec.selector?.isEmpty ?? true) ? nil : spec.selector
        switch spec.sessionAffinity ?? "None" {
        case "None": sessionAffinityTimeout = nil
        case "ClientIP":
            let t = spec.sessionAffinityConfig?.clientIP?.timeoutSeconds ?? 10800
            guard 1...86400 ~= t else {
                throw invalid(decoder, "spec.sessionAffinityConfig.clientIP.timeoutSeconds", "\(t) is out of range 1-86400")
            }
            sessionAffinityTimeout = t
        case let other:
            throw invalid(decoder, "spec.sessionAffinity", "unknown session affinity \"\(other)\" (want None or ClientIP)")
        }
        func policy(_ s: String?, _ field: String) throws -> TrafficPolicy {
            guard let s else { return .cluster }
            guard let p = TrafficPolicy(rawValue: s) else { throw invalid(decoder, field, "unknown traffic policy \"\(s)\" (want Cluster or Local)") }
            return p
        }
        externalTrafficPolicy = try policy(spec.externalTrafficPolicy, "spec.externalTrafficPolicy")
        internalTrafficPolicy = try policy(spec.internalTrafficPolicy, "spec.internalTrafficPolicy")
        externalIPs = try parseAddresses(spec.externalIPs, decoder, "spec.externalIPs")
        loadBalancerIngress = try parseAddresses(status.loadBalancer?.ingress?.compactMap(\.ip), decoder, "status.loadBalancer.ingress")
        loadBalancerSourceRanges = try (spec.loadBalancerSourceRanges ?? []).map { s in
            guard let p = IPPrefix(s.trimmingSpaces) else { throw invalid(decoder, "spec.loadBalancerSourceRanges", "\"\(s)\" is not a CIDR") }
            return p.network
        }
        externalName = spec.externalName
        if type == .externalName {
            guard let n = externalName, isDNSSubdomain(n.lowercased().trimmingTrailingDot) else {
                throw invalid(decoder, "spec.externalName", "an ExternalName service needs a valid DNS name in spec.externalName")
            }
        }
        publishNotReadyAddresses = spec.publishNotReadyAddresses ?? false
        let families = try (spec.ipFamilies ?? []).enumerated().map { i, text in
            guard let f = IPFamily(rawValue: text) else { throw invalid(decoder, "spec.ipFamilies[\(i)]", "unknown IP family \"\(text)\" (want IPv4 or IPv6)") }
            return f
        }
        if families.count > 2 || Set(families).count != families.count {
            throw invalid(decoder, "spec.ipFamilies", "at most one entry per family (IPv4, IPv6)")
        }
        for (i, ip) in clusterIPs.enumerated() where i < families.count && families[i] != ip.family {
            throw invalid(decoder, "spec.ipFamilies[\(i)]", "\(families[i].rawValue) does not match spec.clusterIPs[\(i)] \(ip)")
        }
        if let text = spec.ipFamilyPolicy {
            guard let p = IPFamilyPolicy(rawValue: text) else {
                throw invalid(decoder, "spec.ipFamilyPolicy", "unknown policy \"\(text)\" (want SingleStack, PreferDualStack or RequireDualStack)")
            }
            ipFamilyPolicy = p
        } else {
            ipFamilyPolicy = nil
        }
        if ipFamilyPolicy == .singleStack, max(families.count, clusterIPs.count) > 1 {
            throw invalid(decoder, "spec.ipFamilyPolicy", "SingleStack allows one family; this Service lists two (use PreferDualStack or RequireDualStack)")
        }
        if type == .externalName, ipFamilyPolicy != nil || !families.isEmpty {
            throw invalid(decoder, "spec.ipFamilyPolicy", "an ExternalName service has no cluster IPs, so no ipFamilies or ipFamilyPolicy")
        }
        // Families named beyond the cluster IPs given stay requested (admission allocates them).
        let given = clusterIPs.map(\.family)
        ipFamilies = given + families.dropFirst(given.count).filter { !given.contains($0) }
        if let t = spec.trafficDistribution {
            guard Self.trafficDistributions.contains(t) else {
                throw invalid(decoder, "spec.trafficDistribution", "unknown traffic distribution \(excerpt(t)) (want PreferClose, PreferSameZone or PreferSameNode)")
            }
        }
        trafficDistribution = spec.trafficDistribution
        // The API server's rule: a health check port only where a load balancer would probe
        // nodes for local endpoints. NodePort services are accepted too (an external balancer
        // in front of node ports can use it the same way).
        healthCheckNodePort = try parsePort(spec.healthCheckNodePort, decoder, "spec.healthCheckNodePort", allowZero: true).flatMap { $0 == 0 ? nil : $0 }
        if healthCheckNodePort != nil, externalTrafficPolicy != .local || !(type == .loadBalancer || type == .nodePort) {
            throw invalid(decoder, "spec.healthCheckNodePort", "only a LoadBalancer or NodePort service with externalTrafficPolicy Local has a health check node port")
        }
    }

    public func encode(to encoder: any Encoder) throws {
        var c = try encodeHeader(encoder, .service, metadata)
        let ips = isHeadless ? ["None"] : clusterIPs.map(\.description)
        let spec = Spec(
            type: type.rawValue, clusterIP: ips.first, clusterIPs: ips.isEmpty ? nil : ips,
            ports: ports.isEmpty ? nil : ports.map { RawPort(name: $0.name.isEmpty ? nil : $0.name, protocol: $0.protocol.rawValue, port: Int($0.port), targetPort: $0.targetPort, nodePort: $0.nodePort.map(Int.init)) },
            selector: selector, sessionAffinity: sessionAffinityTimeout == nil ? "None" : "ClientIP",
            sessionAffinityConfig: sessionAffinityTimeout.map { AffinityConfig(clientIP: ClientIPConfig(timeoutSeconds: $0)) },
            externalTrafficPolicy: externalTrafficPolicy.rawValue, internalTrafficPolicy: internalTrafficPolicy.rawValue,
            externalIPs: externalIPs.isEmpty ? nil : externalIPs.map(\.description),
            loadBalancerSourceRanges: loadBalancerSourceRanges.isEmpty ? nil : loadBalancerSourceRanges.map(\.description),
            externalName: externalName, publishNotReadyAddresses: publishNotReadyAddresses ? true : nil,
            ipFamilies: ipFamilies.isEmpty ? nil : ipFamilies.map(\.rawValue), ipFamilyPolicy: ipFamilyPolicy?.rawValue,
            trafficDistribution: trafficDistribution, healthCheckNodePort: healthCheckNodePort.map(Int.init))
        try c.encode(spec, forKey: AnyKey("spec"))
        if !loadBalancerIngress.isEmpty {
            try c.encode(Status(loadBalancer: LoadBalancerStatus(ingress: loadBalancerIngress.map { Ingress(ip: $0.description) })), forKey: AnyKey("status"))
        }
    }
}

extension String {
    var trimmingSpaces: String {
        var s = Substring(self)
        while s.first == " " { s.removeFirst() }
        while s.last == " " { s.removeLast() }
        return String(s)
    }

    var trimmingTrailingDot: String { hasSuffix(".") ? String(dropLast()) : self }
}
