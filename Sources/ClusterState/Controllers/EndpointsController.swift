import IPAddressing

/// Derives EndpointSlices for Services with a selector from the Pods in the store, as
/// Kubernetes' endpointslice controller does, for sources without a control plane
/// (embedded, etcd). Slices it owns carry `endpointslice.kubernetes.io/managed-by: nodenet`
/// and are named `<service>-nodenet-<family>[-<n>]`.
///
/// The computation is pure (`desiredSlices`); `run` applies it incrementally: a pod change
/// recomputes only the services whose selector matches the pod's old or new labels.
public struct EndpointsController: Sendable {
    public static let managerName = "nodenet"

    public init() {}

    /// Runs until cancelled: a full pass, then incremental passes on each change.
    public func run(store: ClusterStore) async {
        let events = await store.subscribe()
        await reconcileAll(store: store)
        for await event in events {
            switch event {
            case .resync, .synced:
                await reconcileAll(store: store)
            case .changed(_, let changes):
                let snapshot = await store.snapshot()
                let affected = Self.affectedServices(changes, in: snapshot)
                guard !affected.isEmpty else { continue }
                await store.apply(Self.changes(for: affected, in: snapshot))
            }
        }
    }

    public func reconcileAll(store: ClusterStore) async {
        let snapshot = await store.snapshot()
        var services = Set(snapshot.services.keys)
        // Services deleted while we were not looking still own slices: include them.
        for slice in snapshot.endpointSlices.values where Self.isManaged(slice) {
            if let s = slice.service { services.insert(s) }
        }
        await store.apply(Self.changes(for: services, in: snapshot))
    }

    static func isManaged(_ slice: EndpointSlice) -> Bool {
        slice.metadata.label(EndpointSlice.managedByLabel) == managerName
    }

    /// Services whose slices may change because of `changes`.
    public static func affectedServices(_ changes: [ObjectChange], in snapshot: ClusterSnapshot) -> Set<NamespacedName> {
        var out = Set<NamespacedName>()
        var podLabelSets: [(String, [String: String])] = []
        var rezoned = Set<String>()
        for change in changes {
            // A node's zone is in its pods' endpoints: a zone change touches the services of its pods.
            if case .node(let old)? = change.old, case .node(let new)? = change.new, old.zone != new.zone { rezoned.insert(new.name) }
            if case .node(let n)? = change.old ?? change.new, (change.old == nil || change.new == nil), n.zone != nil { rezoned.insert(n.name) }
            for object in [change.old, change.new] {
                switch object {
                case .service(let s)?: out.insert(s.id)
                case .pod(let p)?: podLabelSets.append((p.namespace, p.metadata.labels ?? [:]))
                case .attachment(let a)?:
                    if let id = a.pod, let p = snapshot.pods[id] { podLabelSets.append((p.namespace, p.metadata.labels ?? [:])) }
                default: break
                }
            }
        }
        // Through the snapshot's index: O(the node's pods), not a walk of every Pod.
        for node in rezoned {
            for pod in snapshot.pods(on: node) { podLabelSets.append((pod.namespace, pod.metadata.labels ?? [:])) }
        }
        guard !podLabelSets.isEmpty else { return out }
        for service in snapshot.services.values {
            guard let selector = service.selector else { continue }
            if podLabelSets.contains(where: { $0.0 == service.namespace && matches(selector, $0.1) }) { out.insert(service.id) }
        }
        return out
    }

    /// Upserts and deletes that make the managed slices of `services` what they should be.
    public static func changes(for services: Set<NamespacedName>, in snapshot: ClusterSnapshot) -> [StoreChange] {
        var out: [StoreChange] = []
        for id in services.sorted() {
            let existing = snapshot.endpointSlices(for: id).filter(isManaged)
            let desired = snapshot.services[id].map { desiredSlices(for: $0, in: snapshot) } ?? []
            let desiredNames = Set(desired.map(\.metadata.name))
            for slice in existing where !desiredNames.contains(slice.metadata.name) {
                out.append(.delete(ObjectKey(.endpointSlice, namespace: slice.namespace, name: slice.metadata.name)))
            }
            out += desired.map { .upsert(.endpointSlice($0)) }
        }
        return out
    }

    static func matches(_ selector: [String: String], _ labels: [String: String]) -> Bool {
        selector.allSatisfy { labels[$0.key] == $0.value }
    }

    /// The slices a service should have. Empty for services without selector and ExternalName.
    public static func desiredSlices(for service: Service, in snapshot: ClusterSnapshot) -> [EndpointSlice] {
        guard let selector = service.selector, service.type != .externalName else { return [] }
        let pods = snapshot.pods.values
            .filter { $0.namespace == service.namespace && !$0.isFinished && matches(selector, $0.metadata.labels ?? [:]) }
            .sorted { $0.name < $1.name }
        let families: [IPFamily] = service.ipFamilies.isEmpty ? [.v4] : service.ipFamilies
        var slices: [EndpointSlice] = []
        for family in families {
            // Pods whose named target ports resolve differently go into different slices.
            var groups: [[EndpointPort]: [Endpoint]] = [:]
            var order: [[EndpointPort]] = []
            for pod in pods {
                let addresses = snapshot.addresses(of: pod.id).filter { $0.family == family }
                guard let address = addresses.first, !pod.hostNetwork else { continue }
                let ports = service.ports.map { p -> EndpointPort in
                    EndpointPort(name: p.name, protocol: p.protocol, port: resolve(p.targetPort, protocol: p.protocol, in: pod))
                }
                let ready = (pod.ready ?? true) && !pod.isTerminating
                // The zone of the pod's node; with trafficDistribution, the hint is that zone
                // (Kubernetes' controller does the same for PreferClose: traffic stays in the
                // zone of the endpoint, and an endpoint without a zone gets no hint).
                let zone = pod.nodeName.flatMap { snapshot.nodes[$0]?.zone }
                let endpoint = Endpoint(
                    addresses: [address],
                    conditions: EndpointConditions(ready: ready, serving: pod.ready ?? true, terminating: pod.isTerminating),
                    hostname: pod.subdomain == service.name ? pod.hostname : nil,
                    nodeName: pod.nodeName,
                    targetRef: ObjectReference(kind: "Pod", namespace: pod.namespace, name: pod.name, uid: pod.metadata.uid),
                    zone: zone, zoneHints: service.trafficDistribution != nil ? zone.map { [$0] } ?? [] : [])
                if groups[ports] == nil { order.append(ports) }
                groups[ports, default: []].append(endpoint)
            }
            if order.isEmpty {
                // No endpoints yet: numeric target ports are still known (named ones need a pod).
                order = [service.ports.map { p in
                    if case .int(let n) = p.targetPort { return EndpointPort(name: p.name, protocol: p.protocol, port: UInt16(exactly: n)) }
                    return EndpointPort(name: p.name, protocol: p.protocol, port: nil)
                }]
            }
            let familyName = family == .v4 ? "ipv4" : "ipv6"
            for (i, ports) in order.enumerated() {
                let name = "\(service.name)-nodenet-\(familyName)" + (i == 0 ? "" : "-\(i)")
                let meta = ObjectMeta(name: name, namespace: service.namespace, labels: [
                    EndpointSlice.serviceNameLabel: service.name,
                    EndpointSlice.managedByLabel: managerName,
                ])
                slices.append(EndpointSlice(metadata: meta, addressType: family == .v4 ? .ipv4 : .ipv6,
                                            endpoints: groups[ports] ?? [], ports: ports))
            }
        }
        return slices
    }

    static func resolve(_ target: IntOrString, protocol: L4Protocol, in pod: Pod) -> UInt16? {
        switch target {
        case .int(let n): return UInt16(exactly: n)
        case .string(let name):
            let port = pod.ports.first { $0.name == name && ($0.protocol ?? .tcp) == `protocol` }
            return port.flatMap { UInt16(exactly: $0.containerPort) }
        }
    }
}
