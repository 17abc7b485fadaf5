import IPAddressing

public struct ContainerPort: Hashable, Sendable, Codable {
    public var name: String?
    public var containerPort: Int
    public var `protocol`: L4Protocol?

    public init(name: String? = nil, containerPort: Int, protocol: L4Protocol? = nil) {
        self.name = name
        self.containerPort = containerPort
        self.protocol = `protocol`
    }
}

/// A Pod: identity, labels (in metadata), placement, addresses and readiness.
public struct Pod: Hashable, Sendable, Codable {
    public var metadata: ObjectMeta
    public var nodeName: String?
    public var hostname: String?
    public var subdomain: String?
    public var hostNetwork: Bool
    /// Named container ports, for services whose targetPort is a name.
    public var ports: [ContainerPort]
    public var podIPs: [IPAddress]
    public var phase: String?
    /// The Ready condition; nil when the pod has no conditions yet (embedded manifests):
    /// treated as ready once it has an address.
    public var ready: Bool?

    public init(metadata: ObjectMeta, nodeName: String? = nil, hostname: String? = nil, subdomain: String? = nil,
                hostNetwork: Bool = false, ports: [ContainerPort] = [], podIPs: [IPAddress] = [], phase: String? = nil, ready: Bool? = nil) {
        self.metadata = metadata
        self.nodeName = nodeName
        self.hostname = hostname
        self.subdomain = subdomain
        self.hostNetwork = hostNetwork
        self.ports = ports
        self.podIPs = podIPs
        self.phase = phase
        self.ready = ready
    }

    public var name: String { metadata.name }
    public var namespace: String { metadata.namespace ?? "default" }
    public var id: NamespacedName { NamespacedName(namespace, name) }
    public var isTerminating: Bool { metadata.deletionTimestamp != nil }
    public var isFinished: Bool { phase == "Succeeded" || phase == "Failed" }

    private struct Container: Codable { var name: String?; var ports: [RawPort]? }
    private struct RawPort: Codable { var name: String?; var containerPort: Int; var `protocol`: String? }
    private struct Spec: Codable {
        var nodeName: String?
        var hostname: String?
        var subdomain: String?
        var hostNetwork: Bool?
        var containers: [Container]?
    }
    private struct PodIP: Codable { var ip: String }
    private struct Condition: Codable { var type: String; var status: String }
    private struct Status: Codable {
        var phase: String?
        var podIP: String?
        var podIPs: [PodIP]?
        var conditions: [Condition]?
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: AnyKey.self)
        try checkKind(c, decoder, .pod)
        metadata = try decodeMeta(c, decoder, kind: .pod)
        let spec = try c.decodeIfPresent(Spec.self, forKey: AnyKey("spec")) ?? Spec()
        let status = try c.decodeIfPresent(Status.self, forKey: AnyKey("status")) ?? Status()
        nodeName = spec.nodeName
        hostname = spec.hostname
        subdomain = spec.subdomain
        for (field, v) in [("spec.hostname", hostname), ("spec.subdomain", subdomain)] {
            if let v, !isDNSLabel(v) { throw invalid(decoder, field, "\"\(v)\" is not a valid DNS label") }
        }
        hostNetwork = spec.hostNetwork ?? false
        ports = try (spec.containers ?? []).flatMap { $0.ports ?? [] }.map { p in
            guard 1...65535 ~= p.containerPort else {
                throw invalid(decoder, "spec.containers.ports", "containerPort \(p.containerPort) is out of range")
            }
            return ContainerPort(name: p.name, containerPort: p.containerPort,
                                 protocol: try p.protocol.map { try parseProtocol($0, decoder, "spec.containers.ports.protocol") })
        }
        let ipTexts = status.podIPs?.map(\.ip) ?? status.podIP.map { [$0] } ?? []
        podIPs = try parseAddresses(ipTexts, decoder, "status.podIPs")
        phase = status.phase
        ready = status.conditions?.first { $0.type == "Ready" }.map { $0.status == "True" }
    }

    public func encode(to encoder: any Encoder) throws {
        var c = try encodeHeader(encoder, .pod, metadata)
        let container = ports.isEmpty ? nil : [Container(name: "main", ports: ports.map { RawPort(name: $0.name, containerPort: $0.containerPort, protocol: $0.protocol?.rawValue) })]
        try c.encode(Spec(nodeName: nodeName, hostname: hostname, subdomain: subdomain, hostNetwork: hostNetwork ? true : nil, containers: container), forKey: AnyKey("spec"))
        let status = Status(phase: phase, podIP: podIPs.first?.description,
                            podIPs: podIPs.isEmpty ? nil : podIPs.map { PodIP(ip: $0.description) },
                            conditions: ready.map { [Condition(type: "Ready", status: $0 ? "True" : "False")] })
        try c.encode(status, forKey: AnyKey("status"))
    }
}
