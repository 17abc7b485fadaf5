// The pure heart: from this node's facts, the kernel topology (underlay, vxlan device) and
// the Node objects, what should be in the kernel, per peer, and which peers are refused and
// why. No effects, so every rule here is tested without privileges.
import ClusterState
import IPAddressing
import Netlink

/// What the kernel told us about this node's interfaces.
public struct Topology: Sendable, Hashable {
    /// The interface holding the node IP.
    public var underlayIndex: Int32
    /// The addresses of the underlay interface with their prefixes (192.168.1.11/24): a peer
    /// inside one of them is on-link.
    public var underlayPrefixes: [IPPrefix]
    /// nodenet's vxlan device, when the mode uses one and it exists.
    public var vxlanIndex: Int32?

    public init(underlayIndex: Int32, underlayPrefixes: [IPPrefix], vxlanIndex: Int32? = nil) {
        self.underlayIndex = underlayIndex
        self.underlayPrefixes = underlayPrefixes
        self.vxlanIndex = vxlanIndex
    }

    public func isOnLink(_ address: IPAddress) -> Bool {
        underlayPrefixes.contains { $0.family == address.family && $0.length < $0.family.bitWidth && $0.contains(address) }
    }
}

public enum PeerMode: String, Sendable, Codable, Hashable {
    case hostGW = "host-gw"
    case vxlan
}

/// One peer node as it will be programmed.
public struct PeerPlan: Sendable, Hashable {
    public var name: String
    public var nodeIP: IPAddress
    public var mode: PeerMode
    public var subnets: [IPPrefix]
    /// The next hop of each subnet's route (the peer's address, or subnet.0 on the vxlan device).
    public var nextHops: [IPAddress]
    public var vtepMAC: MACAddress?
}

/// The full desired state: the kernel entries plus, per peer, its plan or why it was refused.
public struct DesiredState: Sendable {
    public var dataplane = Dataplane()
    public var peers: [String: PeerPlan] = [:]
    /// Peer name to a one-line reason ("has no InternalIP address").
    public var refused: [String: String] = [:]
    /// Problems of this node itself (no own subnet).
    public var nodeErrors: [String] = []
    /// Which peer each kernel entry belongs to, to attribute failures.
    public var ownerOfRoute: [IPPrefix: String] = [:]
    public var ownerOfNeighbour: [IPAddress: String] = [:]
    public var ownerOfFDB: [MACAddress: String] = [:]

    public init() {}

    /// Computes the desired state. `nodes` may include this node (skipped by name).
    public static func compute(configuration c: NodeRoutesConfiguration, topology: Topology, nodes: some Collection<Node>) -> DesiredState {
        var d = DesiredState()
        if c.podCIDRs.isEmpty { d.nodeErrors.append("this node has no pod subnet (config podCIDRs, its Node object or a lease)") }
        let candidates = nodes.filter { $0.name != c.nodeName }.sorted { $0.name < $1.name }

        // First pass: each peer on its own (address, CIDRs).
        var valid: [(node: Node, ip: IPAddress, subnets: [IPPrefix])] = []
        for node in candidates {
            guard !node.podCIDRs.isEmpty else { d.refused[node.name] = "has no pod CIDRs"; continue }
            guard let ip = node.internalIP(c.nodeIP.family) else {
                d.refused[node.name] = "has no \(c.nodeIP.family == .v4 ? "IPv4" : "IPv6") InternalIP address"
                continue
            }
            if ip == c.nodeIP { d.refused[node.name] = "has this node's own address \(ip)"; continue }
            if let bad = node.podCIDRs.first(where: { !$0.isNetwork }) {
                d.refused[node.name] = "pod CIDR \(bad) is not a network address"; continue
            }
            if let own = c.podCIDRs.first(where: { o in node.podCIDRs.contains { $0.overlaps(o) } }) {
                d.refused[node.name] = "pod CIDR overlaps this node's own subnet \(own)"; continue
            }
            if !c.clusterCIDRs.isEmpty, let outside = node.podCIDRs.first(where: { p in !c.clusterCIDRs.contains { $0.contains(p) } }) {
                d.refused[node.name] = "pod CIDR \(outside) is outside the cluster CIDR \(c.clusterCIDRs.map(\.description).joined(separator: ", "))"
                continue
            }
            valid.append((node, ip, node.podCIDRs))
        }
        // Second pass: peers whose CIDRs overlap each other are all refused; routing to
        // either could be wrong, and the others keep working.
        let overlapping = overlaps(valid.map { ($0.node.name, $0.subnets) })
        for (name, reason) in overlapping { d.refused[name] = reason }

        for peer in valid where overlapping[peer.node.name] == nil {
            let onLink = topology.isOnLink(peer.ip)
            let mode: PeerMode
            switch c.mode {
            case .hostGW:
                guard onLink else {
                    d.refused[peer.node.name] = "\(peer.ip) is not on-link (outside \(topology.underlayPrefixes.map(\.description).joined(separator: ", "))): host-gw cannot reach it; use routing vxlan or auto"
                    continue
                }
                mode = .hostGW
            case .vxlan: mode = .vxlan
            case .auto: mode = onLink ? .hostGW : .vxlan
            }
            if mode == .vxlan, topology.vxlanIndex == nil {
                d.refused[peer.node.name] = "the vxlan device \(c.vxlanDeviceName) is missing"
                continue
            }
            d.add(peer: peer.node, ip: peer.ip, subnets: peer.subnets, mode: mode, topology: topology)
        }
        return d
    }

    /// Overlaps among all peers' subnets in one sort and sweep (n log n: 5,000 peers must not
    /// cost 12.5 million pair checks). Prefixes either nest or are disjoint, so after sorting
    /// by first address a subnet overlaps an earlier one exactly when it starts before the
    /// furthest end seen so far.
    static func overlaps(_ subnets: [(name: String, subnets: [IPPrefix])]) -> [String: String] {
        var all: [(prefix: IPPrefix, owner: String)] = []
        for (name, list) in subnets { for p in list { all.append((p.network, name)) } }
        all.sort { ($0.prefix.address, $0.prefix.length) < ($1.prefix.address, $1.prefix.length) }
        var out: [String: String] = [:]
        var widest: (prefix: IPPrefix, owner: String)?
        for entry in all {
            if let w = widest, w.prefix.family == entry.prefix.family, w.prefix.contains(entry.prefix.address), w.owner != entry.owner {
                out[entry.owner] = "pod CIDR \(entry.prefix) overlaps \(w.owner)'s \(w.prefix)"
                out[w.owner] = out[w.owner] ?? "pod CIDR \(w.prefix) overlaps \(entry.owner)'s \(entry.prefix)"
                continue
            }
            if widest == nil || widest!.prefix.family != entry.prefix.family || !widest!.prefix.contains(entry.prefix.address) {
                widest = entry
            }
        }
        return out
    }

    private mutating func add(peer node: Node, ip: IPAddress, subnets: [IPPrefix], mode: PeerMode, topology: Topology) {
        var plan = PeerPlan(name: node.name, nodeIP: ip, mode: mode, subnets: [], nextHops: [], vtepMAC: nil)
        var problems: [String] = []
        switch mode {
        case .hostGW:
            for s in subnets {
                // A subnet of the other family needs the peer's address of that family.
                guard let gw = s.family == ip.family ? ip : node.internalIP(s.family) else {
                    problems.append("no InternalIP of \(s)'s family"); continue
                }
                route(Route(destination: s, gateway: gw, outputIndex: topology.underlayIndex), owner: node.name, into: &plan)
            }
        case .vxlan:
            let vx = topology.vxlanIndex!
            let mac = VTEPAddress.mac(for: ip)
            plan.vtepMAC = mac
            dataplane.fdb[mac] = FDBEntry(index: vx, mac: mac, destination: ip)
            ownerOfFDB[mac] = node.name
            for s in subnets {
                let gw = s.address
                dataplane.neighbours[gw] = Neighbour(index: vx, address: gw, mac: mac)
                ownerOfNeighbour[gw] = node.name
                route(Route(destination: s, gateway: gw, outputIndex: vx, scope: .universe, onlink: true), owner: node.name, into: &plan)
            }
        }
        if !problems.isEmpty { refused[node.name] = problems.joined(separator: "; ") }
        if !plan.subnets.isEmpty { peers[node.name] = plan }
    }

    private mutating func route(_ r: Route, owner: String, into plan: inout PeerPlan) {
        dataplane.routes[r.destination] = r
        ownerOfRoute[r.destination] = owner
        plan.subnets.append(r.destination)
        plan.nextHops.append(r.gateway!)
    }

    /// The peer a kernel entry belongs to.
    func owner(of step: DataplanePlan.Step) -> String? {
        switch step {
        case .setNeighbour(let n), .deleteNeighbour(let n): ownerOfNeighbour[n.address]
        case .setFDB(let f), .deleteFDB(let f): ownerOfFDB[f.mac]
        case .route(let change): ownerOfRoute[change.route.destination]
        }
    }
}
