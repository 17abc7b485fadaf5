// Nexthop objects. The kernel hashes a plain route's nexthop info by device, not gateway, so
// thousands of routes via different gateways on one link land in one hash chain and each
// insert walks it (O(n^2): most of `ip -batch`'s time). Routes that point at a nexthop object
// (RTA_NH_ID) are hashed by the object's id instead. `RouteClient.apply` therefore installs
// gateway routes through nexthop objects it owns (protocol nodenet, ids from `idBase`), and
// reads them back as ordinary gateway routes.
import Glibc
import IPAddressing

/// One gateway on one device, shareable by many routes.
public struct Nexthop: Sendable, Hashable {
    public var id: UInt32
    public var gateway: IPAddress?
    public var outputIndex: Int32?
    public var onlink: Bool
    public var `protocol`: UInt8

    public init(id: UInt32, gateway: IPAddress?, outputIndex: Int32?, onlink: Bool = false, protocol: UInt8 = RouteProtocol.nodenet) {
        self.id = id
        self.gateway = gateway
        self.outputIndex = outputIndex
        self.onlink = onlink
        self.protocol = `protocol`
    }

    /// nodenet's nexthop ids start here ("N" << 24), away from the small ids other daemons use.
    public static let idBase: UInt32 = 0x4e00_0001

    struct Key: Hashable {
        var gateway: IPAddress
        var outputIndex: Int32
        var onlink: Bool
    }

    var key: Key? {
        guard let gateway, let outputIndex else { return nil }
        return Key(gateway: gateway, outputIndex: outputIndex, onlink: onlink)
    }
}

/// The nexthop objects `RouteClient.apply` believes exist: nodenet's by gateway and device,
/// and every id taken (anyone's), so a new id is chosen without a dump.
struct NexthopCache: Sendable {
    var ids: [Nexthop.Key: UInt32] = [:]
    var taken: Set<UInt32> = []

    init(_ existing: [Nexthop], others: Set<UInt32> = []) {
        taken = others
        for n in existing {
            taken.insert(n.id)
            if n.protocol == RouteProtocol.nodenet, let k = n.key { ids[k] = n.id }
        }
    }
}

extension RouteMessages {
    /// struct nhmsg: family, scope (must be 0), protocol, reserved, flags (8 bytes).
    static func nhmsg(_ b: inout MessageBuilder, family: UInt8, protocol proto: UInt8 = 0, flags: UInt32 = 0) {
        b.appendInteger(family); b.appendInteger(UInt8(0)); b.appendInteger(proto); b.appendInteger(UInt8(0))
        b.appendInteger(flags)
    }

    /// RTM_NEWNEXTHOP / RTM_DELNEXTHOP (by id). Creation is exclusive by default: an id taken
    /// meanwhile by someone else fails with EEXIST instead of redirecting their routes.
    public static func nexthop(_ n: Nexthop, add: Bool, replace: Bool = false) -> NetlinkRequest {
        let createFlags = Netlink.fCreate | (replace ? Netlink.fReplace : Netlink.fExcl)
        var b = MessageBuilder(type: add ? Netlink.newNexthop : Netlink.delNexthop, flags: add ? createFlags : 0)
        let f = n.gateway.map { family($0.family) } ?? Netlink.afInet
        nhmsg(&b, family: add ? f : Netlink.afUnspec, protocol: add ? n.protocol : 0, flags: add && n.onlink ? Netlink.rtnhFOnlink : 0)
        b.attribute(Netlink.nhaID, u32: n.id)
        if add {
            if let o = n.outputIndex { b.attribute(Netlink.nhaOif, u32: UInt32(bitPattern: o)) }
            if let g = n.gateway { b.attribute(Netlink.nhaGateway, address: g) }
        }
        let what = n.gateway.map { "\($0)" } ?? "no gateway"
        return NetlinkRequest(bytes: b.finish(), operation: add ? "set nexthop" : "delete nexthop", object: "id \(n.id) (\(what))")
    }

    public static func dumpNexthops() -> NetlinkRequest {
        var b = MessageBuilder(type: Netlink.getNexthop, flags: Netlink.fDump)
        nhmsg(&b, family: Netlink.afUnspec)
        return NetlinkRequest(bytes: b.finish(), operation: "list nexthops", object: "all")
    }
}

extension RouteDecoding {
    public static func nexthop(_ m: NetlinkMessage) throws(NetlinkError) -> Nexthop? {
        let r = ByteReader(m.payload)
        guard r.count >= 8 else { throw .malformed("parse", "nexthop message", "nhmsg needs 8 bytes, have \(r.count)") }
        let attrs = try Attributes(r.rest(from: 8))
        guard let id = attrs.u32(Netlink.nhaID) else { return nil }
        return Nexthop(id: id, gateway: attrs.address(Netlink.nhaGateway), outputIndex: attrs.u32(Netlink.nhaOif).map { Int32(bitPattern: $0) },
                       onlink: try r.u32(4) & Netlink.rtnhFOnlink != 0, protocol: try r.u8(2))
    }

    /// RTA_NH_ID of a route message, when the route uses a nexthop object.
    static func routeNexthopID(_ m: NetlinkMessage) -> UInt32? {
        guard m.payload.count >= 12, let attrs = try? Attributes(m.payload.dropFirst(12)) else { return nil }
        return attrs.u32(Netlink.rtaNexthopID)
    }
}

extension RouteClient {
    public func nexthops() throws(NetlinkError) -> [Nexthop] {
        var out: [Nexthop] = []
        for m in try session.dump(RouteMessages.dumpNexthops()) where m.type == Netlink.newNexthop {
            if let n = try RouteDecoding.nexthop(m) { out.append(n) }
        }
        return out
    }

    /// The batch behind `apply`: nexthop objects for gateway routes (created only when missing,
    /// so re-applying unchanged routes never touches them), then the routes pointing at them.
    /// Nil when the kernel has no nexthop objects. If another writer took a fresh id first
    /// (EEXIST), the affected changes are applied once more with newly chosen ids.
    ///
    /// Which nexthops exist is remembered between calls (`NexthopCache`): dumping all of them
    /// for every change made one new Node cost a read of every other Node's nexthop (5,000 at
    /// cluster scale, most of a route change's time). The memory is dropped whenever the kernel
    /// disagrees with it (any failure in a batch: a nexthop deleted with its device, an id
    /// taken by another writer), and the failed changes are applied once more from a fresh dump.
    func applyWithNexthops(_ changes: [RouteChange], retry: Bool = true) throws(NetlinkError) -> BatchResult? {
        var cache: NexthopCache
        let remembered = nexthopCache.withLock { $0 }
        if let remembered {
            cache = remembered
        } else {
            do {
                cache = NexthopCache(try nexthops())
            } catch let e where e.errno == EOPNOTSUPP || e.errno == EAFNOSUPPORT || e.errno == EINVAL {
                return nil  // a kernel without nexthop objects: plain routes
            }
        }
        var nextID = Nexthop.idBase
        var created: [Nexthop] = []
        var createdIndex: [UInt32: Int] = [:]
        var nexthopOf = [UInt32?](repeating: nil, count: changes.count)
        for (i, change) in changes.enumerated() {
            if case .delete = change { continue }
            let r = change.route
            guard let g = r.gateway, let o = r.outputIndex, g.family == r.destination.family else { continue }
            let key = Nexthop.Key(gateway: g, outputIndex: o, onlink: r.onlink)
            if let id = cache.ids[key] { nexthopOf[i] = id; continue }
            while cache.taken.contains(nextID) { nextID &+= 1 }
            cache.taken.insert(nextID)
            cache.ids[key] = nextID
            createdIndex[nextID] = created.count
            created.append(Nexthop(id: nextID, gateway: g, outputIndex: o, onlink: r.onlink))
            nexthopOf[i] = nextID
        }
        let routeRequests = changes.indices.map { RouteMessages.route(changes[$0], nexthopID: nexthopOf[$0]) }
        let raw = try session.batch(created.map { RouteMessages.nexthop($0, add: true) } + routeRequests)
        nexthopCache.withLock { $0 = raw.failures.isEmpty ? cache : nil }
        var result = BatchResult(count: changes.count)
        for (index, error) in raw.failures where index >= created.count {
            result.failures[index - created.count] = error
        }
        // A route whose nexthop could not be created fails with the nexthop's reason, named
        // after the route.
        var collided: [Int] = []
        for (i, id) in nexthopOf.enumerated() {
            guard let id, let k = createdIndex[id], let e = raw.failures[k] else { continue }
            if e.isExists && retry { collided.append(i); continue }
            result.failures[i] = NetlinkError(operation: routeRequests[i].operation, object: routeRequests[i].object + " (creating its nexthop)",
                                              kind: e.kind, extAck: e.extAck)
        }
        // Remembered nexthops the kernel no longer has: the failed routes once more, from a dump.
        if remembered != nil, retry {
            for i in result.failures.keys where !collided.contains(i) { collided.append(i) }
        }
        if !collided.isEmpty, let again = try applyWithNexthops(collided.map { changes[$0] }, retry: false) {
            for (j, i) in collided.enumerated() {
                if let e = again.failures[j] { result.failures[i] = e } else { result.failures[i] = nil }
            }
        }
        return result
    }

    /// Deletes nodenet's nexthop objects that no route uses any more. Returns how many.
    @discardableResult
    public func pruneNexthops() throws(NetlinkError) -> Int {
        let ours = try nexthops().filter { $0.protocol == RouteProtocol.nodenet }
        guard !ours.isEmpty else { return 0 }
        var used = Set<UInt32>()
        for family in IPFamily.allCases {
            let dump = try session.dump(RouteMessages.dumpRoutes(family: family, table: nil, protocol: RouteProtocol.nodenet))
            for m in dump where m.type == Netlink.newRoute {
                if let id = RouteDecoding.routeNexthopID(m) { used.insert(id) }
            }
        }
        let unused = ours.filter { !used.contains($0.id) }
        guard !unused.isEmpty else { return 0 }
        // Failures here (already deleted with its device) leave nothing to clean.
        _ = try session.batch(unused.map { RouteMessages.nexthop($0, add: false) })
        let gone = Set(unused.map(\.id))
        nexthopCache.withLock { cache in
            guard let kept = cache?.ids.filter({ !gone.contains($0.value) }) else { return }
            cache?.ids = kept
        }
        return unused.count
    }

    /// Fills gateway and device of routes that point at nexthop objects when the kernel did
    /// not include them (net.ipv4.nexthop_compat_mode = 0).
    func resolveNexthops(_ routes: inout [Route], ids: [UInt32?]) throws(NetlinkError) {
        guard zip(routes, ids).contains(where: { $0.gateway == nil && $1 != nil }) else { return }
        var table: [UInt32: Nexthop] = [:]
        for n in try nexthops() { table[n.id] = n }
        for i in routes.indices where routes[i].gateway == nil {
            guard let id = ids[i], let n = table[id] else { continue }
            routes[i].gateway = n.gateway
            routes[i].outputIndex = n.outputIndex
            routes[i].onlink = n.onlink
            routes[i].scope = .universe
        }
    }
}
