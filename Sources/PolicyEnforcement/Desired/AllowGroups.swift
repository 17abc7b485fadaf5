import ClusterState
import IPAddressing
import ServiceProxy

/// The allow keys that share kernel elements: one direction, one local identity, one peer (an
/// identity, a namespace, or the address space of one family) and one protocol (nil: every
/// port and protocol). The kernel's interval sets refuse overlapping elements (EEXIST), and
/// rules overlap all the time (a protocol-only entry beside a port, a /8 beside a /16), so a
/// group's ranges are merged into disjoint elements, recomputed whenever one of its keys comes
/// or goes.
struct AllowGroup: Hashable, Sendable {
    enum Peer: Hashable, Sendable {
        case identity(UInt32)
        case namespace(UInt32)
        case addresses(IPFamily)
    }

    var direction: PolicyDirection
    var local: UInt32
    var peer: Peer
    var proto: L4Protocol?
}

extension AllowKey {
    var group: AllowGroup {
        switch self {
        case .identity(let d, let l, let p, let ports): AllowGroup(direction: d, local: l, peer: .identity(p), proto: ports?.proto)
        case .namespace(let d, let l, let n, let ports): AllowGroup(direction: d, local: l, peer: .namespace(n), proto: ports?.proto)
        case .addresses(let d, let l, let r, let ports): AllowGroup(direction: d, local: l, peer: .addresses(r.family), proto: ports?.proto)
        }
    }
}

extension PolicyTables {
    /// The elements of one group for one of its local pod's addresses: the set, each element's
    /// key and, for interval sets, its closing key. Disjoint by construction.
    static func elements(_ group: AllowGroup, _ keys: some Collection<AllowKey>, local: IPAddress) -> [(set: String, start: [NFValue], end: [NFValue]?)] {
        guard !keys.isEmpty else { return [] }
        let l = NFValue.address(local)
        let d = group.direction
        switch group.peer {
        case .identity(let n), .namespace(let n):
            let kind = if case .identity = group.peer { "identity" } else { "namespace" }
            guard let proto = group.proto else { return [(Names.allow(d, kind, ports: false), [l, .slot(n)], nil)] }
            let merged = mergedPorts(keys.compactMap(\.ports))
            if merged.contains(where: { $0.first <= 1 && $0.last == 65535 }) {
                return [(Names.allow(d, kind, suffix: "proto"), [l, .slot(n), .proto(proto)], nil)]
            }
            return merged.map { r in
                r.first == r.last
                    ? (Names.allow(d, kind, ports: true), [l, .slot(n), .proto(proto), .port(r.first)], nil)
                    : (Names.allow(d, kind, suffix: "ranges"), [l, .slot(n), .proto(proto), .port(r.first)], [l, .slot(n), .proto(proto), .port(r.last)])
            }
        case .addresses(let family):
            guard family == local.family else { return [] }
            let rects: [(AddressRange, PortRange?)] = keys.compactMap {
                if case .addresses(_, _, let r, let p) = $0 { (r, p) } else { nil }
            }
            guard let proto = group.proto else {
                return mergedAddresses(rects.map(\.0)).map {
                    (Names.allow(d, "addresses", ports: false), [l, .address($0.first)], [l, .address($0.last)])
                }
            }
            return disjointRectangles(rects.map { ($0.0, $0.1!) }).map { r, p in
                (Names.allow(d, "addresses", ports: true), [l, .address(r.first), .proto(proto), .port(p.first)],
                 [l, .address(r.last), .proto(proto), .port(p.last)])
            }
        }
    }

    /// Port ranges (one protocol) merged: sorted, overlapping and adjacent ones joined.
    static func mergedPorts(_ ranges: [PortRange]) -> [PortRange] {
        var out: [PortRange] = []
        for r in ranges.sorted() {
            if let last = out.last, UInt32(r.first) <= UInt32(last.last) + 1 {
                out[out.count - 1].last = max(last.last, r.last)
            } else {
                out.append(r)
            }
        }
        return out
    }

    static func mergedAddresses(_ ranges: [AddressRange]) -> [AddressRange] {
        var out: [AddressRange] = []
        for r in ranges.sorted() {
            if let last = out.last, last.last.stepped(1).map({ r.first <= $0 }) ?? true {
                if last.last < r.last { out[out.count - 1].last = r.last }
            } else {
                out.append(r)
            }
        }
        return out
    }

    /// Address x port rectangles made disjoint: the address space is cut at every rectangle's
    /// edges; each piece gets the merged port ranges of the rectangles over it; neighbouring
    /// pieces with the same ports are joined again.
    static func disjointRectangles(_ rects: [(AddressRange, PortRange)]) -> [(AddressRange, PortRange)] {
        guard !rects.isEmpty else { return [] }
        // Cut points: every start, and the address after every end.
        var cuts = Set<IPAddress>()
        for (r, _) in rects {
            cuts.insert(r.first)
            if let after = r.last.stepped(1) { cuts.insert(after) }
        }
        let points = cuts.sorted()
        var pieces: [(AddressRange, [PortRange])] = []
        for (i, start) in points.enumerated() {
            let end: IPAddress? = i + 1 < points.count ? points[i + 1].stepped(-1) : rects.map(\.0.last).max()
            guard let end, start <= end else { continue }
            let covering = rects.filter { $0.0.first <= start && end <= $0.0.last }.map(\.1)
            guard !covering.isEmpty else { continue }
            let ports = mergedPorts(covering)
            if let last = pieces.last, last.1 == ports, last.0.last.stepped(1) == start {
                pieces[pieces.count - 1].0.last = end
            } else {
                pieces.append((AddressRange(start, end), ports))
            }
        }
        return pieces.flatMap { piece in piece.1.map { (piece.0, $0) } }
    }
}
