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
        for s in snapshot.services.values where !incomingServices.contains(s.id) {
            for ip in s.clusterIPs { usedIPs[ip] = s.id }
            for p in s.ports where p.nodePort != nil { usedNodePorts[portKey(p)] = s.id }
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
            if !service.isHeadless {
                if service.clusterIPs.isEmpty {
                    // Keep the address the service already has, as the API server does on update.
                    if let kept = previous?.clusterIPs, !kept.isEmpty {
                        service.clusterIPs = kept
                    } else {
                        service.clusterIPs = try serviceCIDRs.prefix(1).map { cidr throws(ManifestError) in
                            guard let ip = freeAddress(in: cidr, used: usedIPs) else {
                                throw ManifestError(document: doc, object: label, field: "spec.clusterIP",
                                                    message: "no free address left in serviceCIDR \(cidr)")
                            }
                            return ip
                        }
                    }
                    service.ipFamilies = service.clusterIPs.map(\.family)
                }
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
            }
            out.append(.service(service))
        }
        return out
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
