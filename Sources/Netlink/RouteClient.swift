// The rtnetlink API the actors use: links, addresses, routes, neighbours, FDB, bridge ports.
// Calls are synchronous (the kernel answers rtnetlink requests within the syscall) and
// thread-safe; a client opened "in" a namespace keeps acting on that namespace from any thread.
import Glibc
import IPAddressing
import Synchronization

public final class RouteClient: Sendable {
    public let session: NetlinkSession
    /// Whether `apply` installs gateway routes through nexthop objects (much faster at scale).
    public let useNexthopObjects: Bool
    /// The nexthop objects `apply` last knew of (nil: read them from the kernel first).
    let nexthopCache = Mutex<NexthopCache?>(nil)

    /// A client for the calling thread's current namespace.
    public init(useNexthopObjects: Bool = true) throws(NetlinkError) {
        session = try NetlinkSession(protocol: Netlink.route)
        self.useNexthopObjects = useNexthopObjects
    }

    /// A client whose socket lives in `namespace`.
    public convenience init(namespace: NetworkNamespace, useNexthopObjects: Bool = true) throws {
        self.init(session: try NetlinkSession(protocol: Netlink.route, namespace: namespace), useNexthopObjects: useNexthopObjects)
    }

    /// A client over any transport (recorded bytes in tests).
    public init(session: NetlinkSession, useNexthopObjects: Bool = true) {
        self.session = session
        self.useNexthopObjects = useNexthopObjects
    }

    // MARK: links

    public func links() throws(NetlinkError) -> [Link] {
        try session.dump(RouteMessages.dumpLinks()).filter { $0.type == Netlink.newLink }.map(RouteDecoding.link)
    }

    /// The link called `name`, or nil when there is none.
    public func link(named name: String) throws(NetlinkError) -> Link? {
        try findLink(RouteMessages.getLink(name: name))
    }

    public func link(index: Int32) throws(NetlinkError) -> Link? {
        try findLink(RouteMessages.getLink(index: index))
    }

    private func findLink(_ request: NetlinkRequest) throws(NetlinkError) -> Link? {
        do {
            return try session.execute(request).first { $0.type == Netlink.newLink }.map(RouteDecoding.link)
        } catch let e where e.errno == ENODEV {
            return nil
        }
    }

    /// The link called `name`; throws `.notFound` naming the operation when it is missing.
    public func requireLink(named name: String, for operation: String) throws(NetlinkError) -> Link {
        guard let l = try link(named: name) else { throw NetlinkError(operation: operation, object: name, kind: .notFound) }
        return l
    }

    /// Creates a veth pair. With `peerNamespace` the peer is created directly inside it.
    @discardableResult
    public func createVeth(name: String, peerName: String, peerNamespace: NetworkNamespace? = nil, mtu: UInt32? = nil,
                           mac: MACAddress? = nil, peerMAC: MACAddress? = nil, masterIndex: Int32? = nil, up: Bool = false) throws(NetlinkError) -> Link {
        let replies = try session.execute(RouteMessages.createVeth(name: name, peerName: peerName, peerNamespaceFD: peerNamespace?.fileDescriptor,
                                                                   mtu: mtu, mac: mac, peerMAC: peerMAC, masterIndex: masterIndex, up: up))
        if let link = try created(name, replies, masterIndex: masterIndex) { return link }
        return try requireLink(named: name, for: "create veth")
    }

    /// The link a create request echoed back (NLM_F_ECHO), if the kernel sent it. The echo is
    /// built when the link comes up, before the kernel enslaves it; the request succeeded, so
    /// the master asked for is set.
    private func created(_ name: String, _ replies: [NetlinkMessage], masterIndex: Int32?) throws(NetlinkError) -> Link? {
        for m in replies where m.type == Netlink.newLink {
            var link = try RouteDecoding.link(m)
            guard link.name == name else { continue }
            if let masterIndex { link.masterIndex = masterIndex }
            return link
        }
        return nil
    }

    @discardableResult
    public func createBridge(name: String, mtu: UInt32? = nil, mac: MACAddress? = nil) throws(NetlinkError) -> Link {
        try session.execute(RouteMessages.createBridge(name: name, mtu: mtu, mac: mac))
        return try requireLink(named: name, for: "create bridge")
    }

    @discardableResult
    public func createVxlan(name: String, settings: VxlanSettings, mtu: UInt32? = nil, mac: MACAddress? = nil) throws(NetlinkError) -> Link {
        try session.execute(RouteMessages.createVxlan(name: name, settings: settings, mtu: mtu, mac: mac))
        return try requireLink(named: name, for: "create vxlan")
    }

    public func setLink(index: Int32, _ change: LinkChange) throws(NetlinkError) {
        try session.execute(RouteMessages.setLink(index: index, change))
    }

    public func setLink(named name: String, _ change: LinkChange) throws(NetlinkError) {
        let l = try requireLink(named: name, for: "set link")
        try session.execute(RouteMessages.setLink(index: l.index, change, object: name))
    }

    /// Moves a link into another namespace.
    public func moveLink(index: Int32, to namespace: NetworkNamespace) throws(NetlinkError) {
        try session.execute(RouteMessages.moveLink(index: index, toNamespaceFD: namespace.fileDescriptor))
    }

    /// Hairpin mode on a bridge port (a pod reaching itself through a service).
    public func setHairpin(portIndex: Int32, enabled: Bool) throws(NetlinkError) {
        try session.execute(RouteMessages.setHairpin(portIndex: portIndex, enabled: enabled))
    }

    public func deleteLink(index: Int32) throws(NetlinkError) {
        try session.execute(RouteMessages.deleteLink(index: index))
    }

    /// Deletes the link called `name`. Returns false when it was already gone.
    @discardableResult
    public func deleteLink(named name: String) throws(NetlinkError) -> Bool {
        guard let l = try link(named: name) else { return false }
        do {
            try session.execute(RouteMessages.deleteLink(index: l.index, object: name))
        } catch let e where e.isNotFound {
            return false  // deleted by someone else in between
        }
        return true
    }

    // MARK: addresses

    public func addAddress(_ a: InterfaceAddress, replace: Bool = false) throws(NetlinkError) {
        try session.execute(RouteMessages.address(a, add: true, replace: replace))
    }

    public func deleteAddress(_ a: InterfaceAddress) throws(NetlinkError) {
        try session.execute(RouteMessages.address(a, add: false))
    }

    public func addresses(family: IPFamily? = nil, index: Int32 = 0) throws(NetlinkError) -> [InterfaceAddress] {
        try session.dump(RouteMessages.dumpAddresses(family: family, index: index))
            .filter { $0.type == Netlink.newAddr }
            .map(RouteDecoding.address)
            .filter { index == 0 || $0.index == index }
    }

    // MARK: routes

    /// Unicast routes of one family, filtered by table and protocol (in the kernel with strict
    /// checking, and again here). A table that does not exist yet has no routes.
    public func routes(family: IPFamily = .v4, table: UInt32? = Route.mainTable, protocol proto: UInt8? = nil) throws(NetlinkError) -> [Route] {
        let messages: [NetlinkMessage]
        do {
            messages = try session.dump(RouteMessages.dumpRoutes(family: family, table: table, protocol: proto))
        } catch let e where e.errno == ENOENT && table != nil {
            return []
        }
        var routes: [Route] = []
        var nexthopIDs: [UInt32?] = []
        for m in messages where m.type == Netlink.newRoute {
            guard let r = try RouteDecoding.route(m), table == nil || r.table == table, proto == nil || r.protocol == proto else { continue }
            routes.append(r)
            nexthopIDs.append(RouteDecoding.routeNexthopID(m))
        }
        try resolveNexthops(&routes, ids: nexthopIDs)
        return routes
    }

    /// Single route changes, sent as plain routes (no nexthop object).
    public func addRoute(_ r: Route) throws(NetlinkError) { try session.execute(RouteMessages.route(.add(r))) }
    public func replaceRoute(_ r: Route) throws(NetlinkError) { try session.execute(RouteMessages.route(.replace(r))) }
    public func deleteRoute(_ r: Route) throws(NetlinkError) { try session.execute(RouteMessages.route(.delete(r))) }

    /// Applies many route changes in batches (few sendmsg calls, ACKs drained together).
    /// Failures come back per change, by index; the other changes still apply.
    /// Gateway routes go through nexthop objects (see Nexthops.swift) unless
    /// `useNexthopObjects` is false; either way they read back as the same `Route` values.
    public func apply(_ changes: [RouteChange]) throws(NetlinkError) -> BatchResult {
        let result: BatchResult
        if useNexthopObjects, let r = try applyWithNexthops(changes) {
            result = r
            // Deletes and replaces can leave nexthop objects unused; removing them costs a dump.
            if changes.contains(where: { if case .add = $0 { false } else { true } }) { _ = try? pruneNexthops() }
        } else {
            result = try session.batch(changes.map { RouteMessages.route($0) })
        }
        return result
    }

    // MARK: neighbours and FDB

    /// Creates or replaces a neighbour entry (permanent by default).
    public func setNeighbour(_ n: Neighbour) throws(NetlinkError) { try session.execute(RouteMessages.neighbour(n, add: true)) }
    public func deleteNeighbour(_ n: Neighbour) throws(NetlinkError) { try session.execute(RouteMessages.neighbour(n, add: false)) }

    public func neighbours(family: IPFamily = .v4, index: Int32 = 0) throws(NetlinkError) -> [Neighbour] {
        try decode(session.dump(RouteMessages.dumpNeighbours(family: family, index: index)), Netlink.newNeigh, RouteDecoding.neighbour)
            .filter { index == 0 || $0.index == index }
    }

    public func setFDB(_ e: FDBEntry) throws(NetlinkError) { try session.execute(RouteMessages.fdb(e, add: true)) }
    public func deleteFDB(_ e: FDBEntry) throws(NetlinkError) { try session.execute(RouteMessages.fdb(e, add: false)) }

    public func fdbEntries(index: Int32 = 0) throws(NetlinkError) -> [FDBEntry] {
        try decode(session.dump(RouteMessages.dumpFDB(index: index)), Netlink.newNeigh, RouteDecoding.fdb)
            .filter { index == 0 || $0.index == index }
    }

    /// Neighbour and FDB changes for many peers in one batch (vxlan: ARP + FDB per peer).
    public func apply(neighbours: [Neighbour] = [], fdb: [FDBEntry] = [], delete: Bool = false) throws(NetlinkError) -> BatchResult {
        try session.batch(neighbours.map { RouteMessages.neighbour($0, add: !delete) } + fdb.map { RouteMessages.fdb($0, add: !delete) })
    }

    /// Decodes the messages of one type, skipping those the decoder does not model (nil).
    private func decode<T>(_ messages: [NetlinkMessage], _ type: UInt16,
                           _ decoder: (NetlinkMessage) throws(NetlinkError) -> T?) throws(NetlinkError) -> [T] {
        var out: [T] = []
        out.reserveCapacity(messages.count)
        for m in messages where m.type == type {
            if let v = try decoder(m) { out.append(v) }
        }
        return out
    }
}
