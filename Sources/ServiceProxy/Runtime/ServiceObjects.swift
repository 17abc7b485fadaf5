import ClusterState

/// What building the rules of a service reads: the Service, its EndpointSlices, a slice by name.
public protocol ServiceObjects {
    func service(_ id: NamespacedName) -> Service?
    func slice(_ id: NamespacedName) -> EndpointSlice?
    /// The service's slices, ordered by name.
    func slices(for service: NamespacedName) -> [EndpointSlice]
}

extension ClusterSnapshot: ServiceObjects {
    public func service(_ id: NamespacedName) -> Service? { services[id] }
    public func slice(_ id: NamespacedName) -> EndpointSlice? { endpointSlices[id] }
    public func slices(for service: NamespacedName) -> [EndpointSlice] { endpointSlices(for: service) }
}

/// The proxy's own copy of the store's Services and EndpointSlices, kept up to date from the
/// store's change events (each event carries the objects), so an incremental sync reads them
/// here instead of hopping to the store's thread for a snapshot. That hop waited behind
/// whatever the store's thread was doing (its commits fsync the state database): 5-25 ms, most
/// of the 30,000-service change tail on a loaded machine, for a read of one service.
///
/// Built from a snapshot by every full sync, into storage of its own: sharing the snapshot's
/// dictionaries would make the store copy its whole dictionary on its next commit.
struct ServiceMirror: ServiceObjects {
    /// The store version the mirror holds.
    private(set) var version: UInt64
    private var services: [NamespacedName: Service] = [:]
    private var slices: [NamespacedName: EndpointSlice] = [:]
    private var slicesByService: [NamespacedName: Set<String>] = [:]

    init(_ snapshot: ClusterSnapshot) {
        version = snapshot.version
        services.reserveCapacity(snapshot.services.count)
        for (id, s) in snapshot.services { services[id] = s }
        slices.reserveCapacity(snapshot.endpointSlices.count)
        for (id, s) in snapshot.endpointSlices { insert(s, id) }
    }

    func service(_ id: NamespacedName) -> Service? { services[id] }
    func slice(_ id: NamespacedName) -> EndpointSlice? { slices[id] }
    func slices(for service: NamespacedName) -> [EndpointSlice] {
        (slicesByService[service] ?? []).sorted().compactMap { slices[NamespacedName(service.namespace, $0)] }
    }

    /// Applies one store event: O(its changes). Events at or below the version the mirror was
    /// built from are already in it (the subscription delivers them after the snapshot).
    mutating func record(_ event: StoreEvent) {
        guard case .changed(let v, let changes) = event, v > version else { return }
        version = v
        for c in changes {
            let id = NamespacedName(c.key.namespace, c.key.name)
            switch c.key.kind {
            case .service:
                if case .service(let s)? = c.new { services[id] = s } else { services[id] = nil }
            case .endpointSlice:
                remove(slice: id)
                if case .endpointSlice(let s)? = c.new { insert(s, id) }
            default:
                continue
            }
        }
    }

    private mutating func insert(_ slice: EndpointSlice, _ id: NamespacedName) {
        slices[id] = slice
        if let owner = slice.service { slicesByService[owner, default: []].insert(id.name) }
    }

    private mutating func remove(slice id: NamespacedName) {
        guard let old = slices.removeValue(forKey: id), let owner = old.service else { return }
        slicesByService[owner]?.remove(id.name)
        if slicesByService[owner]?.isEmpty == true { slicesByService[owner] = nil }
    }
}
