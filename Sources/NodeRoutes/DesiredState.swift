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
            switch firstPass(node, c) {
            case .refused(let reason): d.refused[node.name] = reason
            case .valid(let ip):
                valid.append((node, ip, node.podCIDRs))
                d.index(node.name, node.podCIDRs, add: true)
            }
        }
        // Second pass: peers whose CIDRs overlap each other are all refused; routing to
        // either could be wrong, and the others keep working.
        let overlapping = overlaps(valid.map { ($0.node.name, $0.subnets) })
        for (name, reason) in overlapping { d.refused[name] = reason }

        for peer in valid where overlapping[peer.node.name] == nil {
            d.place(peer.node, ip: peer.ip, c, topology)
        }
        return d
    }

    enum FirstPass { case valid(IPAddress), refused(String) }

    /// The checks of one peer on its own (address, CIDRs), independent of the other peers.
    static func firstPass(_ node: Node, _ c: NodeRoutesConfiguration) -> FirstPass {
        guard !node.podCIDRs.isEmpty else { return .refused("has no pod CIDRs") }
        guard let ip = node.internalIP(c.nodeIP.family) else {
            return .refused("has no \(c.nodeIP.family == .v4 ? "IPv4" : "IPv6") InternalIP address")
        }
        if ip == c.nodeIP { return .refused("has this node's own address \(ip)") }
        if let bad = node.podCIDRs.first(where: { !$0.isNetwork }) {
            return .refused("pod CIDR \(bad) is not a network address")
        }
        if let own = c.podCIDRs.first(where: { o in node.podCIDRs.contains { $0.overlaps(o) } }) {
            return .refused("pod CIDR overlaps this node's own subnet \(own)")
        }
        if !c.clusterCIDRs.isEmpty, let outside = node.podCIDRs.first(where: { p in !c.clusterCIDRs.contains { $0.contains(p) } }) {
            return .refused("pod CIDR \(outside) is outside the cluster CIDR \(c.clusterCIDRs.map(\.description).joined(separator: ", "))")
        }
        return .valid(ip)
    }

    /// The mode of a peer that passed every check, and its entries (or why it is refused).
    private mutating func place(_ node: Node, ip: IPAddress, _ c: NodeRoutesConfiguration, _ topology: Topology) {
        let onLink = topology.isOnLink(ip)
        let mode: PeerMode
        switch c.mode {
        case .hostGW:
            guard onLink else {
                refused[node.name] = "\(ip) is not on-link (outside \(topology.underlayPrefixes.map(\.description).joined(separator: ", "))): host-gw cannot reach it; use routing vxlan or auto"
                return
            }
            mode = .hostGW
        case .vxlan: mode = .vxlan
        case .auto: mode = onLink ? .hostGW : .vxlan
        }
        if mode == .vxlan, topology.vxlanIndex == nil {
            refused[node.name] = "the vxlan device \(c.vxlanDeviceName) is missing"
            return
        }
        add(peer: node, ip: ip, subnets: node.podCIDRs, mode: mode, topology: topology)
    }

    // MARK: incremental update (O(change) per Node event)

    /// The pod subnets of the peers that passed the first pass, by network, with their owners:
    /// what the overlap check of an incremental update looks up.
    var subnetOwners: [IPPrefix: Set<String>] = [:]
    /// How many of those subnets have each (family, length): an exact lookup finds every
    /// overlap only while all subnets of a family have one length.
    var subnetLengths: [Int: Int] = [:]
    /// The vxlan peers using each VTEP MAC (two peers with one node IP share it).
    var vtepUsers: [MACAddress: Set<String>] = [:]
    /// Each first-pass peer's indexed subnets.
    var indexedSubnets: [String: [IPPrefix]] = [:]

    private static func lengthKey(_ p: IPPrefix) -> Int { (p.family == .v4 ? 0 : 1000) + p.length }

    private mutating func index(_ name: String, _ subnets: [IPPrefix], add: Bool) {
        if add { indexedSubnets[name] = subnets } else { indexedSubnets[name] = nil }
        for s in subnets {
            let n = s.network
            if add {
                subnetOwners[n, default: []].insert(name)
                subnetLengths[Self.lengthKey(n), default: 0] += 1
            } else {
                subnetOwners[n]?.remove(name)
                if subnetOwners[n]?.isEmpty == true { subnetOwners[n] = nil }
                subnetLengths[Self.lengthKey(n), default: 0] -= 1
                if subnetLengths[Self.lengthKey(n)] == 0 { subnetLengths[Self.lengthKey(n)] = nil }
            }
        }
    }

    /// Whether `p` can overlap no indexed subnet other than `name`'s without an exact match
    /// (every indexed subnet of its family has its length) and has no such exact match.
    private func isAlone(_ p: IPPrefix, besides name: String) -> Bool {
        let other = p.family == .v4 ? 1000 : 0
        for (key, count) in subnetLengths where count > 0 && key / 1000 * 1000 != other && key != Self.lengthKey(p) { return false }
        return (subnetOwners[p.network] ?? []).subtracting([name]).isEmpty
    }

    /// The kernel keys an update touched: the plan is the diff over these alone.
    public struct Touched: Sendable, Hashable {
        public var routes: Set<IPPrefix> = []
        public var neighbours: Set<IPAddress> = []
        public var fdb: Set<MACAddress> = []
    }

    /// Brings the desired state up to date after the Nodes named in `changed` changed (or were
    /// deleted: absent from `nodes`), touching only their entries. Returns nil, having changed
    /// nothing, when the change involves an overlap between peers (it can change other peers'
    /// fate) or subnets of mixed lengths, a shared vxlan MAC: the caller then computes the whole
    /// state. The result equals `compute` over `nodes` (tested with seeded random events).
    public mutating func update(changed: Set<String>, nodes: [String: Node], configuration c: NodeRoutesConfiguration,
                                topology: Topology) -> Touched? {
        var passes: [String: (node: Node, pass: FirstPass)] = [:]
        for name in changed where name != c.nodeName {
            let old = indexedSubnets[name] ?? []
            for s in old where !isAlone(s, besides: name) { return nil }
            if let mac = peers[name]?.vtepMAC, !(vtepUsers[mac] ?? []).subtracting([name]).isEmpty { return nil }
            guard let node = nodes[name] else { continue }
            let pass = Self.firstPass(node, c)
            if case .valid(let ip) = pass {
                for s in node.podCIDRs where !isAlone(s, besides: name) { return nil }
                // Two changed peers may collide with each other: only one changed peer per
                // subnet, checked below against the others of this batch.
                if !(vtepUsers[VTEPAddress.mac(for: ip)] ?? []).subtracting([name]).isEmpty { return nil }
            }
            passes[name] = (node, pass)
        }
        // Changed peers colliding among themselves (a swap of subnets in one batch): full.
        var batchSubnets: [IPPrefix: String] = [:]
        var batchMACs: [MACAddress: String] = [:]
        for (name, p) in passes {
            guard case .valid(let ip) = p.pass else { continue }
            for s in p.node.podCIDRs {
                if let o = batchSubnets[s.network], o != name { return nil }
                batchSubnets[s.network] = name
            }
            let mac = VTEPAddress.mac(for: ip)
            if let o = batchMACs[mac], o != name { return nil }
            batchMACs[mac] = name
        }
        // Mixed lengths within the batch itself.
        var lengths: [Int: Int] = subnetLengths
        for (_, p) in passes { if case .valid = p.pass { for s in p.node.podCIDRs { lengths[Self.lengthKey(s.network), default: 0] += 1 } } }
        if Set(lengths.filter { $0.value > 0 }.keys.map { $0 / 1000 }).count != lengths.filter({ $0.value > 0 }).count { return nil }

        var touched = Touched()
        for name in changed where name != c.nodeName {
            // Out with the old entries of this peer.
            if let plan = peers.removeValue(forKey: name) {
                for s in plan.subnets {
                    touched.routes.insert(s)
                    if ownerOfRoute[s] == name { dataplane.routes[s] = nil; ownerOfRoute[s] = nil }
                    if plan.mode == .vxlan, ownerOfNeighbour[s.address] == name {
                        touched.neighbours.insert(s.address)
                        dataplane.neighbours[s.address] = nil
                        ownerOfNeighbour[s.address] = nil
                    }
                }
                if let mac = plan.vtepMAC {
                    vtepUsers[mac]?.remove(name)
                    if vtepUsers[mac]?.isEmpty == true { vtepUsers[mac] = nil }
                }
                if let mac = plan.vtepMAC, ownerOfFDB[mac] == name {
                    touched.fdb.insert(mac)
                    dataplane.fdb[mac] = nil
                    ownerOfFDB[mac] = nil
                }
            }
            refused[name] = nil
            if let old = indexedSubnets[name] { index(name, old, add: false) }
            // In with the new.
            guard let (node, pass) = passes[name] else { continue }
            switch pass {
            case .refused(let reason): refused[name] = reason
            case .valid(let ip):
                index(name, node.podCIDRs, add: true)
                place(node, ip: ip, c, topology)
                if let plan = peers[name] {
                    touched.routes.formUnion(plan.subnets)
                    if plan.mode == .vxlan { touched.neighbours.formUnion(plan.subnets.map(\.address)) }
                    if let mac = plan.vtepMAC { touched.fdb.insert(mac) }
                }
            }
        }
        return touched
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
            vtepUsers[mac, default: []].insert(node.name)
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
