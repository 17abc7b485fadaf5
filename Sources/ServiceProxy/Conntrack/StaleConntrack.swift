import ClusterState
import IPAddressing

/// The UDP-relevant facts of one service port in one family: where clients send, and which
/// endpoints currently receive. UDP has no connection close, so conntrack entries outlive
/// rule changes and keep steering packets to a gone endpoint (or to nowhere): they are deleted.
public struct UDPServicePort: Hashable, Sendable {
    /// ClusterIP, externalIPs and LoadBalancer ingress IPs of this family.
    public var destinations: [IPAddress]
    public var port: UInt16
    public var nodePort: UInt16?
    /// Endpoint addresses traffic may be DNATed to now.
    public var endpoints: Set<IPAddress>

    public init(destinations: [IPAddress], port: UInt16, nodePort: UInt16? = nil, endpoints: Set<IPAddress>) {
        self.destinations = destinations
        self.port = port
        self.nodePort = nodePort
        self.endpoints = endpoints
    }
}

/// One `conntrack -D` selection (all UDP). The netlink backend turns it into a ctnetlink
/// dump-and-delete with the same filter.
public struct ConntrackFilter: Hashable, Sendable, Comparable, CustomStringConvertible {
    public var family: IPFamily
    /// Original destination address (the service IP); nil for NodePorts (any local address).
    public var originalDestination: IPAddress?
    public var originalDestinationPort: UInt16
    /// Reply source: the endpoint the flow was DNATed to; nil for every flow to the destination.
    public var replySource: IPAddress?
    /// When set (and `replySource` nil): only flows whose reply source is none of these, the
    /// endpoints the port has now. Without a destination (NodePorts), only flows that were
    /// DNATed (reply source other than the original destination), so unrelated traffic to
    /// the same port number elsewhere is left alone.
    public var keepingReplySources: Set<IPAddress>?

    public init(family: IPFamily, originalDestination: IPAddress?, originalDestinationPort: UInt16, replySource: IPAddress?,
                keepingReplySources: Set<IPAddress>? = nil) {
        self.family = family
        self.originalDestination = originalDestination
        self.originalDestinationPort = originalDestinationPort
        self.replySource = replySource
        self.keepingReplySources = keepingReplySources
    }

    /// `conntrack` selection arguments (without `keepingReplySources`, which the tool cannot
    /// express: the caller lists and checks each entry with `matches`).
    public var conntrackArguments: [String] {
        var a = ["-f", family == .v4 ? "ipv4" : "ipv6", "-p", "udp"]
        if let d = originalDestination { a += ["--orig-dst", d.description] }
        a += ["--orig-port-dst", String(originalDestinationPort)]
        if let r = replySource { a += ["--reply-src", r.description] }
        return a
    }

    /// Whether a UDP entry of this family with these original destination and reply source is selected.
    public func matches(originalDestination d: IPAddress?, port: UInt16?, replySource r: IPAddress?) -> Bool {
        if let o = originalDestination, o != d { return false }
        if originalDestinationPort != port { return false }
        if let want = replySource, want != r { return false }
        if let keep = keepingReplySources {
            guard let r, !keep.contains(r) else { return false }
            if originalDestination == nil, r == d { return false }
        }
        return true
    }

    public var description: String {
        let keep = keepingReplySources.map { " --reply-src-not " + ($0.isEmpty ? "-" : $0.map(\.description).sorted().joined(separator: ",")) }
        return conntrackArguments.joined(separator: " ") + (keep ?? "")
    }

    public static func < (a: Self, b: Self) -> Bool { a.description < b.description }
}

/// Filters of one family, looked up by what an entry carries: checking a dumped table against
/// a start's filters (two per UDP service port) costs one or two dictionary lookups per entry,
/// not a scan of every filter.
public struct ConntrackFilterIndex: Sendable {
    private struct Key: Hashable { var destination: IPAddress?; var port: UInt16 }
    private var filters: [Key: [ConntrackFilter]] = [:]

    public init(_ filters: [ConntrackFilter]) {
        for f in filters { self.filters[Key(destination: f.originalDestination, port: f.originalDestinationPort), default: []].append(f) }
    }

    public var isEmpty: Bool { filters.isEmpty }

    public func matches(originalDestination d: IPAddress?, port: UInt16?, replySource r: IPAddress?) -> Bool {
        guard let port else { return false }
        let candidates = (d.flatMap { filters[Key(destination: $0, port: port)] } ?? []) + (filters[Key(destination: nil, port: port)] ?? [])
        return candidates.contains { $0.matches(originalDestination: d, port: port, replySource: r) }
    }
}

public enum StaleConntrack {
    /// Filters for flows that the change from `old` to `new` (one service's UDP ports, keyed
    /// by port identity) leaves pointing the wrong way:
    ///  - an endpoint went away: flows to the service that were DNATed to it;
    ///  - a port went from no endpoints to some: every flow to it (those were never DNATed and
    ///    would otherwise keep bypassing the new rules until they time out).
    public static func filters(old: [String: UDPServicePort], new: [String: UDPServicePort]) -> [ConntrackFilter] {
        var out = Set<ConntrackFilter>()
        for key in Set(old.keys).union(new.keys) {
            let o = old[key], n = new[key]
            if let n, !n.endpoints.isEmpty, o?.endpoints.isEmpty ?? true {
                for d in n.destinations { out.insert(filter(d.family, d, n.port, nil)) }
                if let np = n.nodePort, let fam = n.destinations.first?.family { out.insert(filter(fam, nil, np, nil)) }
            }
            guard let o else { continue }
            for ep in o.endpoints.subtracting(n?.endpoints ?? []) {
                for d in o.destinations { out.insert(filter(d.family, d, o.port, ep)) }
                if let np = o.nodePort { out.insert(filter(ep.family, nil, np, ep)) }
            }
        }
        return out.sorted()
    }

    /// Filters that compare flows with the present rather than with a previous state (full
    /// syncs; the first after a start, when what steered the existing flows is unknown and
    /// endpoints may have gone while no agent ran): flows to each UDP port whose reply source is
    /// not one of its endpoints now. Flows to current endpoints are kept, so a restart does not
    /// cut every UDP flow (kubernetes#122740), and none stays stuck on a gone endpoint
    /// (kubernetes#126468).
    public static func offEndpointFilters(_ ports: [String: UDPServicePort]) -> [ConntrackFilter] {
        var out = Set<ConntrackFilter>()
        for p in ports.values {
            for d in p.destinations { out.insert(filter(d.family, d, p.port, nil, keeping: p.endpoints)) }
            if let np = p.nodePort, let fam = p.destinations.first?.family { out.insert(filter(fam, nil, np, nil, keeping: p.endpoints)) }
        }
        return out.sorted()
    }

    private static func filter(_ f: IPFamily, _ d: IPAddress?, _ port: UInt16, _ reply: IPAddress?,
                               keeping: Set<IPAddress>? = nil) -> ConntrackFilter {
        ConntrackFilter(family: f, originalDestination: d, originalDestinationPort: port, replySource: reply, keepingReplySources: keeping)
    }
}
