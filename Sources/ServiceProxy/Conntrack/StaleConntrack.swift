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

    public init(family: IPFamily, originalDestination: IPAddress?, originalDestinationPort: UInt16, replySource: IPAddress?) {
        self.family = family
        self.originalDestination = originalDestination
        self.originalDestinationPort = originalDestinationPort
        self.replySource = replySource
    }

    public var conntrackArguments: [String] {
        var a = ["-f", family == .v4 ? "ipv4" : "ipv6", "-p", "udp"]
        if let d = originalDestination { a += ["--orig-dst", d.description] }
        a += ["--orig-port-dst", String(originalDestinationPort)]
        if let r = replySource { a += ["--reply-src", r.description] }
        return a
    }

    public var description: String { conntrackArguments.joined(separator: " ") }

    public static func < (a: Self, b: Self) -> Bool { a.description < b.description }
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

    private static func filter(_ f: IPFamily, _ d: IPAddress?, _ port: UInt16, _ reply: IPAddress?) -> ConntrackFilter {
        ConntrackFilter(family: f, originalDestination: d, originalDestinationPort: port, replySource: reply)
    }
}
