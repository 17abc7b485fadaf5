import ClusterState
import IPAddressing

/// Who a PTR answer names: a service (ClusterIP) or one of its endpoints (label set).
struct PTRTarget: Sendable, Hashable {
    var service: NamespacedName
    var label: String?
}

/// Namespace and address, for `pods verified`.
struct PodAddressKey: Sendable, Hashable {
    var namespace: String
    var address: IPAddress
}

/// The cluster zone's lookup tables. Every query is a few hash lookups on these; they are
/// updated per changed service or pod, never rebuilt by scanning the store per query.
struct ZoneData: Sendable {
    var services: [NamespacedName: ServiceEntry] = [:]
    /// Services per namespace: `<ns>.svc.<zone>` exists (NODATA) while this is above zero.
    var servicesPerNamespace: [String: Int] = [:]
    var namespaceObjects: Set<String> = []
    var ptr: [IPAddress: [PTRTarget]] = [:]
    /// `pods verified`: addresses per namespace (counted: two attachments may share one).
    var podAddresses: [PodAddressKey: Int] = [:]
    var podsPerNamespace: [String: Int] = [:]
    var addressesOfPod: [NamespacedName: [IPAddress]] = [:]
    /// A pod address's namespace (autopath: whose search list a query comes from).
    var namespaceOfAddress: [IPAddress: String] = [:]
    var serial: UInt32 = 1
    /// Service A/AAAA answers in wire form (the fast path's table).
    var wire = WireAnswers()

    // MARK: services

    mutating func setService(_ id: NamespacedName, _ entry: ServiceEntry?) {
        let old = services[id]
        guard old != entry else { return }
        wire.set(id, entry)
        if let old { removePTR(id, old) } else if entry != nil { servicesPerNamespace[id.namespace, default: 0] += 1 }
        if let entry {
            services[id] = entry
            addPTR(id, entry)
        } else if old != nil {
            services[id] = nil
            let left = (servicesPerNamespace[id.namespace] ?? 1) - 1
            servicesPerNamespace[id.namespace] = left > 0 ? left : nil
        }
        serial &+= 1
    }

    private func ptrTargets(_ id: NamespacedName, _ e: ServiceEntry) -> [(IPAddress, PTRTarget)] {
        var out: [(IPAddress, PTRTarget)] = []
        if case .clusterIP(let ips) = e.kind { for ip in ips { out.append((ip, PTRTarget(service: id, label: nil))) } }
        for ep in e.endpoints { out.append((ep.address, PTRTarget(service: id, label: ep.label))) }
        return out
    }

    private mutating func addPTR(_ id: NamespacedName, _ e: ServiceEntry) {
        for (ip, t) in ptrTargets(id, e) where !(ptr[ip]?.contains(t) ?? false) { ptr[ip, default: []].append(t) }
    }

    private mutating func removePTR(_ id: NamespacedName, _ e: ServiceEntry) {
        for (ip, _) in ptrTargets(id, e) {
            ptr[ip]?.removeAll { $0.service == id }
            if ptr[ip]?.isEmpty == true { ptr[ip] = nil }
        }
    }

    // MARK: pods (verified mode)

    mutating func setPodAddresses(_ pod: NamespacedName, _ addresses: [IPAddress]) {
        let old = addressesOfPod[pod] ?? []
        guard old != addresses else { return }
        for a in old {
            let k = PodAddressKey(namespace: pod.namespace, address: a)
            let n = (podAddresses[k] ?? 1) - 1
            podAddresses[k] = n > 0 ? n : nil
            if n <= 0, namespaceOfAddress[a] == pod.namespace { namespaceOfAddress[a] = nil }
        }
        for a in addresses {
            podAddresses[PodAddressKey(namespace: pod.namespace, address: a), default: 0] += 1
            namespaceOfAddress[a] = pod.namespace
        }
        addressesOfPod[pod] = addresses.isEmpty ? nil : addresses
        let delta = (addresses.isEmpty ? 0 : 1) - (old.isEmpty ? 0 : 1)
        if delta != 0 {
            let n = (podsPerNamespace[pod.namespace] ?? 0) + delta
            podsPerNamespace[pod.namespace] = n > 0 ? n : nil
        }
        serial &+= 1
    }

    func namespaceExists(_ ns: String) -> Bool {
        servicesPerNamespace[ns] != nil || namespaceObjects.contains(ns)
    }
}
