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

    public static func < (a: Self, b: Self) -> Bool { (a.address, a.port) < (b.address, b.port) }
}

/// The endpoints kube-proxy's CategorizeEndpoints would use: ready ones, or when there are
/// none, serving-and-terminating ones; separately for the cluster-wide and the node-local set.
public struct EndpointSelection: Hashable, Sendable {
    public var cluster: [ServiceEndpoint]
    public var local: [ServiceEndpoint]

    public init(_ all: [ServiceEndpoint]) {
        cluster = Self.usable(all)
        local = Self.usable(all.filter(\.isLocal))
    }

    static func usable(_ eps: [ServiceEndpoint]) -> [ServiceEndpoint] {
        let ready = eps.filter(\.ready)
        if !ready.isEmpty { return ready }
        return eps.filter { $0.serving && $0.terminating }
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
                                     ready: e.conditions.ready, serving: e.conditions.serving, terminating: e.conditions.terminating)
            // The same address in two slices (a slice being replaced): keep the first.
            guard seen.insert(AddressPort(address: address, port: number)).inserted else { continue }
            out.append(ep)
        }
    }
    return out.sorted()
}
