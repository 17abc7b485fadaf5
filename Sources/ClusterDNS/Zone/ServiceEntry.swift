import ClusterState
import IPAddressing

/// What DNS needs of one service, cut down from Service + EndpointSlices (as CoreDNS's
/// `object` package does): computed once per change, read by every query.
struct ServiceEntry: Sendable, Hashable {
    enum Kind: Sendable, Hashable {
        case clusterIP([IPAddress])
        case headless
        case externalName(DNSName)
    }

    struct NamedPort: Sendable, Hashable {
        /// Lower-cased "_name" and "_proto" labels as they appear in SRV owner names.
        var name: String
        var proto: String
        var port: UInt16
    }

    /// One served endpoint address with its DNS label (hostname, else the dashed address).
    struct EndpointAddress: Sendable, Hashable {
        var label: String
        var address: IPAddress
    }

    var kind: Kind
    var ports: [NamedPort]
    var endpoints: [EndpointAddress]

    static let tolerateUnreadyAnnotation = "service.alpha.kubernetes.io/tolerate-unready-endpoints"

    /// Builds the entry; nil when the service publishes nothing (ClusterIP type without an IP).
    init?(service: Service, slices: [EndpointSlice]) {
        let publishAll = service.publishNotReadyAddresses
            || service.metadata.annotations?[Self.tolerateUnreadyAnnotation] == "true"
        var eps: [EndpointAddress] = []
        var slicePorts: [NamedPort] = []
        for slice in slices where slice.addressType != .fqdn {
            for p in slice.ports where Self.hasSRVLabel(p.name) {
                guard let port = p.port else { continue }
                let np = NamedPort(name: "_" + p.name.lowercased(), proto: "_" + p.protocol.rawValue.lowercased(), port: port)
                if !slicePorts.contains(np) { slicePorts.append(np) }
            }
            for e in slice.endpoints where e.conditions.ready || publishAll {
                for a in e.addresses {
                    let ep = EndpointAddress(label: e.hostname?.lowercased() ?? Self.dashed(a), address: a)
                    if !eps.contains(ep) { eps.append(ep) }
                }
            }
        }
        endpoints = eps
        if service.type == .externalName {
            guard let target = service.externalName.flatMap({ DNSName($0) }) else { return nil }
            kind = .externalName(DNSName(uncheckedWire: target.key))
            ports = []
            endpoints = []
        } else if service.isHeadless || service.clusterIPs.isEmpty {
            kind = .headless
            ports = slicePorts
        } else {
            kind = .clusterIP(service.clusterIPs)
            ports = service.ports.filter { Self.hasSRVLabel($0.name) }.map {
                NamedPort(name: "_" + $0.name.lowercased(), proto: "_" + $0.protocol.rawValue.lowercased(), port: $0.port)
            }
        }
    }

    /// Whether a port of this name has SRV records: named, and "_" + name fits a DNS label
    /// (a 63-character port name, which Kubernetes allows, does not).
    static func hasSRVLabel(_ name: String) -> Bool {
        !name.isEmpty && name.utf8.count < DNSLimits.maxLabelLength
    }

    /// CoreDNS's endpoint label for an address without hostname: dots or colons become dashes.
    static func dashed(_ a: IPAddress) -> String {
        String(a.description.map { $0 == "." || $0 == ":" ? "-" : $0 })
    }

    /// Addresses answered for A/AAAA on the service name.
    var addresses: [IPAddress] {
        switch kind {
        case .clusterIP(let ips): ips
        case .headless:
            endpoints.reduce(into: [IPAddress]()) { acc, e in if !acc.contains(e.address) { acc.append(e.address) } }
        case .externalName: []
        }
    }

    /// Whether the service name exists at all: a headless service without ready endpoints is NXDOMAIN.
    var nameExists: Bool {
        if case .headless = kind { return !endpoints.isEmpty }
        return true
    }
}
