import ClusterState
import IPAddressing

/// One health check node port this node serves: the service it answers for and how many of
/// the service's ready endpoints run here.
public struct HealthCheckTarget: Hashable, Sendable {
    public var service: NamespacedName
    public var port: UInt16
    public var localEndpoints: Int

    public init(service: NamespacedName, port: UInt16, localEndpoints: Int) {
        self.service = service
        self.port = port
        self.localEndpoints = localEndpoints
    }
}

/// The health check node ports the store asks for, kept per service so that a store event
/// costs only the services it touches (O(change)).
///
/// A service gets one when it has `spec.healthCheckNodePort` (admission allocates it for a
/// LoadBalancer with externalTrafficPolicy Local; the API server does the same) and nodenet
/// proxies it. `localEndpoints` counts the ready endpoints on this node, as kube-proxy's
/// `LocalReadyEndpoints` does, once per pod: a dual-stack pod is in an IPv4 and an IPv6 slice,
/// so the count is the larger of the two families' counts of distinct addresses.
public struct HealthCheckTargets: Sendable {
    public let nodeName: String
    public private(set) var byService: [NamespacedName: HealthCheckTarget] = [:]

    public init(nodeName: String) { self.nodeName = nodeName }

    /// The target of one service in `snapshot`, nil when it has none.
    public func target(for id: NamespacedName, in snapshot: ClusterSnapshot) -> HealthCheckTarget? {
        guard let service = snapshot.services[id], let port = service.healthCheckNodePort,
              service.externalTrafficPolicy == .local, service.type == .loadBalancer || service.type == .nodePort,
              !service.isHeadless, !service.clusterIPs.isEmpty,
              service.metadata.label(Service.serviceProxyNameLabel) == nil else { return nil }
        var local: [EndpointAddressType: Set<IPAddress>] = [:]
        for slice in snapshot.endpointSlices(for: id) {
            for e in slice.endpoints where e.nodeName == nodeName && e.conditions.ready {
                if let a = e.addresses.first { local[slice.addressType, default: []].insert(a) }
            }
        }
        return HealthCheckTarget(service: id, port: port, localEndpoints: local.values.map(\.count).max() ?? 0)
    }

    /// The services an event may change the target of; nil: all of them (a resync).
    public static func affected(by event: StoreEvent) -> Set<NamespacedName>? {
        switch event {
        case .resync: return nil
        case .synced: return []
        case .changed(_, let changes):
            var out = Set<NamespacedName>()
            for c in changes {
                switch c.key.kind {
                case .service: out.insert(NamespacedName(c.key.namespace, c.key.name))
                case .endpointSlice:
                    for case .endpointSlice(let s)? in [c.old, c.new] { if let owner = s.service { out.insert(owner) } }
                default: continue
                }
            }
            return out
        }
    }

    /// Recomputes `services` (nil: every service in the snapshot and every known one).
    /// Returns the targets that changed: old and new (either nil).
    public mutating func update(_ services: Set<NamespacedName>?, in snapshot: ClusterSnapshot)
        -> [(old: HealthCheckTarget?, new: HealthCheckTarget?)] {
        let ids = services ?? Set(snapshot.services.keys).union(byService.keys)
        var changed: [(old: HealthCheckTarget?, new: HealthCheckTarget?)] = []
        for id in ids.sorted() {
            let new = target(for: id, in: snapshot)
            let old = byService[id]
            guard old != new else { continue }
            byService[id] = new
            changed.append((old, new))
        }
        return changed
    }
}
