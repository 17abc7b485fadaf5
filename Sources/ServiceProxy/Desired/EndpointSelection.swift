import ClusterState
import IPAddressing

/// One backend of one service port: an address and the port traffic is DNATed to.
public struct ServiceEndpoint: Hashable, Sendable, Comparable {
    public var address: IPAddress
    public var port: UInt16
    public var isLocal: Bool
    public var ready: Bool
    public var serving: Bool
    public var terminating: Bool
    /// The slice's hints.forZones for this endpoint: zones whose nodes should use it. Empty: no hints.
    public var zoneHints: [String]

    public init(address: IPAddress, port: UInt16, isLocal: Bool, ready: Bool, serving: Bool, terminating: Bool,
                zoneHints: [String] = []) {
        self.address = address
        self.port = port
        self.isLocal = isLocal
        self.ready = ready
        self.serving = serving
        self.terminating = terminating
        self.zoneHints = zoneHints
    }

    public static func < (a: Self, b: Self) -> Bool { (a.address, a.port) < (b.address, b.port) }
}

/// The endpoints kube-proxy's CategorizeEndpoints would use: ready ones, or when there are
/// none, serving-and-terminating ones; separately for the cluster-wide and the node-local set.
///
/// Topology-aware routing (kube-proxy's `canUseTopology`) narrows the cluster-wide set only
/// (traffic policy Local already keeps traffic on the node): when the service asks for it
/// (`topologyAware`: spec.trafficDistribution, or the topology-mode annotation `Auto`), the
/// node has a zone, every ready endpoint carries zone hints and at least one is hinted for this
/// node's zone, the cluster set is the ready endpoints hinted for this zone. Otherwise, or when
/// no endpoint is ready (the serving-and-terminating fallback ignores hints, as kube-proxy's
/// does), it is every usable endpoint: a half-hinted slice set (the controller is rolling hints
/// out or back) or a zone without endpoints falls back to the whole cluster rather than black-
/// holing traffic.
public struct EndpointSelection: Hashable, Sendable {
    public var cluster: [ServiceEndpoint]
    public var local: [ServiceEndpoint]
    /// True when the cluster set follows the zone hints.
    public var usesTopology: Bool

    public init(_ all: [ServiceEndpoint]) {
        self.init(all, zone: nil, topologyAware: false)
    }

    /// - Parameters:
    ///   - zone: this node's zone (its `topology.kubernetes.io/zone` label); nil: none.
    ///   - topologyAware: the service asks for topology-aware routing (`Service.wantsTopologyAwareRouting`).
    public init(_ all: [ServiceEndpoint], zone: String?, topologyAware: Bool) {
        usesTopology = topologyAware && Self.canUseTopology(all, zone: zone)
        if usesTopology, let zone {
            cluster = all.filter { $0.ready && $0.zoneHints.contains(zone) }
        } else {
            cluster = Self.usable(all)
        }
        local = Self.usable(all.filter(\.isLocal))
    }

    static func usable(_ eps: [ServiceEndpoint]) -> [ServiceEndpoint] {
        let ready = eps.filter(\.ready)
        if !ready.isEmpty { return ready }
        return eps.filter { $0.serving && $0.terminating }
    }

    /// Every ready endpoint has hints and one of them names `zone`. Endpoints that are not ready
    /// do not count either way.
    static func canUseTopology(_ eps: [ServiceEndpoint], zone: String?) -> Bool {
        guard let zone, !zone.isEmpty else { return false }
        var hasEndpointForZone = false
        for e in eps where e.ready {
            if e.zoneHints.isEmpty { return false }
            if e.zoneHints.contains(zone) { hasEndpointForZone = true }
        }
        return hasEndpointForZone
    }
}

/// Resolves a service port's endpoints from the service's slices of one family.
/// A slice port with the port's name and protocol but no number does not resolve: it is
/// reported (`problems`) and contributes nothing.
func endpoints(for port: ServicePort, family: TableFamily, slices: [EndpointSlice], nodeName: String,
               problems: inout [String]) -> [ServiceEndpoint] {
    let addressType: EndpointAddressType = family == .ip ? .ipv4 : .ipv6
    struct AddressPort: Hashable { var address: IPAddress; var port: UInt16 }
    var seen = Set<AddressPort>()
    var out: [ServiceEndpoint] = []
    for slice in slices where slice.addressType == addressType {
        guard let sp = slice.ports.first(where: { $0.name == port.name && $0.protocol == port.protocol }) else { continue }
        guard let number = sp.port else {
            problems.append("EndpointSlice \(slice.namespace)/\(slice.metadata.name): port \"\(port.name)\" (\(port.protocol.rawValue)) has no number")
            continue
        }
        for e in slice.endpoints {
            guard let address = e.addresses.first else { continue }
            let ep = ServiceEndpoint(address: address, port: number, isLocal: e.nodeName == nodeName,
                                     ready: e.conditions.ready, serving: e.conditions.serving, terminating: e.conditions.terminating,
                                     zoneHints: e.zoneHints)
            // The same address in two slices (a slice being replaced): keep the first.
            guard seen.insert(AddressPort(address: address, port: number)).inserted else { continue }
            out.append(ep)
        }
    }
    return out.sorted()
}
