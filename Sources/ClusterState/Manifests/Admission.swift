import IPAddressing

/// What the API server would do to a manifest before storing it, for sources where nodenet
/// is the only writer (embedded, etcd): cross-object checks and the allocations a Service
/// expects (a cluster IP from serviceCIDR, node ports from the node port range).
public struct Admission: Sendable {
    public var serviceCIDRs: [IPPrefix]
    public var nodePortRange: ClosedRange<UInt16>

    public init(serviceCIDRs: [IPPrefix], nodePortRange: ClosedRange<UInt16>) {
        self.serviceCIDRs = serviceCIDRs
        self.nodePortRange = nodePortRange
    }

    /// Checks and completes `objects` (in document order, numbered from 1) against `snapshot`.
    public func admit(_ objects: [ClusterObject], in snapshot: ClusterSnapshot) throws(ManifestError) -> [ClusterObject] {
        var usedIPs: [IPAddress: NamespacedName] = [:]
        var usedNodePorts: [String: NamespacedName] = [:]
        func portKey(_ p: ServicePort) -> String { "\(p.protocol.rawValue)/\(p.nodePort ?? 0)" }
        let incomingServices = Set(objects.compactMap { o -> NamespacedName? in
            if case .service(let s) = o { return s.id } else { return nil }
        })
        // Only Services take addresses and ports: a manifest without one (an EndpointSlice
        // change) skips this walk of every Service in the store.
        if !incomingServices.isEmpty {
            for s in snapshot.services.values where !incomingServices.contains(s.id) {
                for ip in s.clusterIPs { usedIPs[ip] = s.id }
                for p in s.ports where p.nodePort != nil { usedNodePorts[portKey(p)] = s.id }
                if let hc = s.healthCheckNodePort { usedNodePorts["TCP/\(hc)"] = s.id }
            }
        }

        var seenKeys = Set<ObjectKey>()
        var out: [ClusterObject] = []
        for (index, object) in objects.enumerated() {
            let doc = index + 1
            guard seenKeys.insert(object.key).inserted else {
                throw ManifestError(document: doc, object: object.key.description, message: "appears twice in one manifest")
            }
            guard case .service(var service) = object else {
                out.append(object)
                continue
            }
            let label = "Service \(service.id)"
            let previous = snapshot.services[service.id]
            if service.type == .externalName {
                out.append(object)
                continue
            }
            let families = try self.families(for: service, doc: doc, label: label)
            service.ipFamilyPolicy = service.ipFamilyPolicy ?? (families.count == 2 ? .requireDualStack : .singleStack)
            if service.isHeadless {
                service.ipFamilies = families
            } else {
                // The addresses given, else the ones the service already has (the API server keeps
                // them on update), then one more from each family's range that still lacks one.
                var ips = service.clusterIPs
                if ips.isEmpty, let kept = previous?.clusterIPs, kept.first?.family == families.first {
                    ips = kept.filter { families.contains($0.family) }
                }
                for family in families where !ips.contains(where: { $0.family == family }) {
                    guard let cidr = serviceCIDRs.first(where: { $0.family == family }) else { continue }
                    guard let ip = freeAddress(in: cidr, used: usedIPs) else {
                        throw ManifestError(document: doc, object: label, field: "spec.clusterIPs",
                                            message: "no free address left in serviceCIDR \(cidr)")
                    }
                    ips.append(ip)
                    usedIPs[ip] = service.id
                }
                service.clusterIPs = ips
                service.ipFamilies = ips.map(\.family)
                for ip in service.clusterIPs {
                    guard serviceCIDRs.contains(where: { $0.contains(ip) }) else {
                        throw ManifestError(document: doc, object: label, field: "spec.clusterIPs",
                                            message: "\(ip) is outside serviceCIDR \(serviceCIDRs.map(\.description).joined(separator: ","))")
                    }
                    if let owner = usedIPs[ip], owner != service.id {
                        throw ManifestError(document: doc, object: label, field: "spec.clusterIPs",
                                            message: "\(ip) is already allocated to Service \(owner)")
                    }
                    usedIPs[ip] = service.id
                }
            }
            if service.type == .nodePort || service.type == .loadBalancer {
                for i in service.ports.indices {
                    var port = service.ports[i]
                    if port.nodePort == nil {
                        port.nodePort = previous?.ports.first { $0.name == port.name && $0.protocol == port.protocol }?.nodePort
                    }
                    if port.nodePort == nil {
                        guard let free = nodePortRange.first(where: { usedNodePorts["\(port.protocol.rawValue)/\($0)"] == nil }) else {
                            throw ManifestError(document: doc, object: label, field: "spec.ports[\(i)].nodePort",
                                                message: "no free node port left in \(nodePortRange.lowerBound)-\(nodePortRange.upperBound)")
                        }
                        port.nodePort = free
                    }
                    guard let np = port.nodePort, nodePortRange.contains(np) else {
                        throw ManifestError(document: doc, object: label, field: "spec.ports[\(i)].nodePort",
                                            message: "\(port.nodePort ?? 0) is outside the node port range \(nodePortRange.lowerBound)-\(nodePortRange.upperBound)")
                    }
                    if let owner = usedNodePorts[portKey(port)], owner != service.id {
                        throw ManifestError(document: doc, object: label, field: "spec.ports[\(i)].nodePort",
                                            message: "\(np)/\(port.protocol.rawValue) is already allocated to Service \(owner)")
                    }
                    usedNodePorts[portKey(port)] = service.id
                    service.ports[i] = port
                }
                try admitHealthCheckPort(&service, previous: previous, used: &usedNodePorts, doc: doc, label: label)
            }
            out.append(.service(service))
        }
        return out
    }

    /// spec.healthCheckNodePort, as the API server allocates it: a LoadBalancer service with
    /// externalTrafficPolicy Local gets one from the node port range when it has none (the one
    /// it had before, on update); a given one (also on a NodePort service) must be in the range
    /// and free. It is a TCP port taken from the same pool as the service ports' node ports.
    func admitHealthCheckPort(_ service: inout Service, previous: Service?, used: inout [String: NamespacedName],
                              doc: Int, label: String) throws(ManifestError) {
        guard service.externalTrafficPolicy == .local else { return }
        if service.healthCheckNodePort == nil, service.type == .loadBalancer {
            let kept = previous?.healthCheckNodePort
            if let kept, used["TCP/\(kept)"] == nil {
                service.healthCheckNodePort = kept
            } else {
                guard let free = nodePortRange.first(where: { used["TCP/\($0)"] == nil }) else {
                    throw ManifestError(document: doc, object: label, field: "spec.healthCheckNodePort",
                                        message: "no free node port left in \(nodePortRange.lowerBound)-\(nodePortRange.upperBound)")
                }
                service.healthCheckNodePort = free
            }
        }
        guard let hc = service.healthCheckNodePort else { return }
        guard nodePortRange.contains(hc) else {
            throw ManifestError(document: doc, object: label, field: "spec.healthCheckNodePort",
                                message: "\(hc) is outside the node port range \(nodePortRange.lowerBound)-\(nodePortRange.upperBound)")
        }
        if let owner = used["TCP/\(hc)"] {
            let what = owner == service.id ? "one of this Service's own node ports" : "already allocated to Service \(owner)"
            throw ManifestError(document: doc, object: label, field: "spec.healthCheckNodePort", message: "\(hc)/TCP is \(what)")
        }
        used["TCP/\(hc)"] = service.id
    }

    /// The families a Service gets, in order, as the API server decides them: the families it
    /// names (or its cluster IPs'), else the cluster's primary; SingleStack keeps one,
    /// PreferDualStack adds the other family where the cluster has a range for it,
    /// RequireDualStack needs both. A family without a service range is refused, naming it.
    func families(for service: Service, doc: Int, label: String) throws(ManifestError) -> [IPFamily] {
        let configured = serviceCIDRs.map(\.family).reduce(into: [IPFamily]()) { if !$0.contains($1) { $0.append($1) } }
        let ranges = serviceCIDRs.map(\.description).joined(separator: ",")
        let asked = service.ipFamilies
        for (i, family) in asked.enumerated() where !configured.contains(family) {
            // PreferDualStack may name a secondary family the cluster lacks: it is dropped.
            if service.ipFamilyPolicy == .preferDualStack, i > 0, service.clusterIPs.count <= i { continue }
            throw ManifestError(document: doc, object: label, field: "spec.ipFamilies[\(i)]",
                                message: "\(family.rawValue) has no service range on this cluster (serviceCIDR \(ranges))")
        }
        let primary = asked.first ?? configured.first ?? .v4
        let policy = service.ipFamilyPolicy ?? (asked.count == 2 ? .requireDualStack : .singleStack)
        switch policy {
        case .singleStack:
            return [primary]
        case .preferDualStack, .requireDualStack:
            let both = [primary] + configured.filter { $0 != primary }
            if policy == .requireDualStack, both.count < 2 {
                throw ManifestError(document: doc, object: label, field: "spec.ipFamilyPolicy",
                                    message: "RequireDualStack needs an IPv4 and an IPv6 service range; this cluster has \(ranges)")
            }
            return both
        }
    }

    /// The lowest free address, skipping the network address and the first ten (kept for
    /// well-known services such as the DNS address .10, as kubeadm clusters do).
    func freeAddress(in cidr: IPPrefix, used: [IPAddress: NamespacedName]) -> IPAddress? {
        let limit = min(cidr.size, 1 << 20)
        var offset: UInt64 = 11
        while offset < limit - (cidr.family == .v4 ? 1 : 0) {
            if let a = cidr.address(at: offset), used[a] == nil { return a }
            offset += 1
        }
        return nil
    }
}
