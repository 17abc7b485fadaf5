// The effects: reading the underlay, keeping nodenet's vxlan device, dumping what nodenet owns,
// and running a plan through batched netlink. Everything goes through one RouteClient whose
// socket lives in the node's namespace.
import Glibc
import IPAddressing
import Netlink

/// Errors of this node's own setup (not of one peer).
public struct NodeRoutesError: Error, CustomStringConvertible, Sendable {
    public var description: String
    init(_ description: String) { self.description = description }
}

struct Kernel: Sendable {
    let client: RouteClient
    let configuration: NodeRoutesConfiguration

    /// The interface holding the node IP and its addresses.
    func topology() throws -> (Topology, Link) {
        let addresses = try client.addresses()
        guard let own = addresses.first(where: { $0.prefix.address == configuration.nodeIP }) else {
            throw NodeRoutesError("no interface holds the node IP \(configuration.nodeIP)")
        }
        guard let link = try client.link(index: own.index) else { throw NodeRoutesError("the interface with \(configuration.nodeIP) disappeared") }
        let prefixes = addresses.filter { $0.index == own.index }.map(\.prefix)
        return (Topology(underlayIndex: own.index, underlayPrefixes: prefixes), link)
    }

    var wantsVxlan: Bool { configuration.mode != .hostGW }

    /// Creates nodenet's vxlan device or brings it back to the wanted settings, up, with
    /// `<subnet>.0/32` (flannel's rule) for each own subnet. Returns its index; nil in host-gw
    /// mode (where a leftover device of an earlier vxlan run is removed). `recreated` is true
    /// when the device had to be created.
    /// The vxlan device as wanted; `addressErrors` names each of its addresses that could not
    /// be put right (the device still serves: peers do not depend on them, pod traffic to the
    /// node's own subnet address does).
    func ensureVxlan(underlay: Link) throws -> (index: Int32?, created: Bool, addressErrors: [IPPrefix: String]) {
        let name = configuration.vxlanDeviceName
        let existing = try client.link(named: name)
        guard wantsVxlan else {
            if existing?.kind == "vxlan" { try client.deleteLink(named: name) }
            return (nil, false, [:])
        }
        let settings = VxlanSettings(vni: configuration.vxlanVNI, port: configuration.vxlanPort, local: configuration.nodeIP,
                                     underlayIndex: underlay.index, learning: false)
        let mtu = VTEPAddress.overlayMTU(underlayMTU: underlay.mtu, underlayFamily: configuration.nodeIP.family)
        let mac = VTEPAddress.mac(for: configuration.nodeIP)
        var created = false
        let device: Link
        if let l = existing, Self.matches(l, settings, underlayIndex: underlay.index) {
            device = l
        } else {
            // Ours by name but built differently (another VNI, port or address): rebuild it.
            if existing != nil { try client.deleteLink(named: name) }
            device = try client.createVxlan(name: name, settings: settings, mtu: mtu, mac: mac)
            created = true
        }
        if !device.isUp || device.mtu != mtu || device.mac != mac {
            let change = LinkChange(up: true, mtu: device.mtu == mtu ? nil : mtu, mac: device.mac == mac ? nil : mac)
            try client.setLink(index: device.index, change)
        }
        let addressErrors = try ensureAddresses(deviceIndex: device.index)
        return (device.index, created, addressErrors)
    }

    static func matches(_ l: Link, _ wanted: VxlanSettings, underlayIndex: Int32) -> Bool {
        guard l.kind == "vxlan", let s = l.vxlan else { return false }
        return s.vni == wanted.vni && s.port == wanted.port && s.local == wanted.local && !s.learning
            && (s.underlayIndex == nil || s.underlayIndex == underlayIndex)
    }

    /// The addresses the vxlan device holds: `<subnet>.0` of each own pod subnet, host length.
    var vxlanAddresses: [IPPrefix] {
        configuration.podCIDRs.map { IPPrefix(address: $0.network.address, length: $0.family.bitWidth) }
    }

    /// `<subnet>.0/32` per own subnet on the device; other addresses there (an old subnet's) go.
    /// Returns what failed per address that could not be added or removed (they used to be
    /// swallowed, leaving a device without its address and nothing in status).
    private func ensureAddresses(deviceIndex: Int32) throws -> [IPPrefix: String] {
        let have = Set(try client.addresses(index: deviceIndex).map(\.prefix))
        let want = Set(vxlanAddresses)
        var errors: [IPPrefix: String] = [:]
        for p in want.subtracting(have).sorted(by: { $0.description < $1.description }) {
            do {
                try client.addAddress(InterfaceAddress(index: deviceIndex, prefix: p), replace: true)
            } catch {
                errors[p] = "cannot add: \(error)"
            }
        }
        for p in have.subtracting(want).sorted(by: { $0.description < $1.description }) where p.family == .v4 || !isLinkLocal(p.address) {
            do {
                try client.deleteAddress(InterfaceAddress(index: deviceIndex, prefix: p))
            } catch {
                errors[p] = "cannot remove this stale address: \(error)"
            }
        }
        return errors
    }

    private func isLinkLocal(_ a: IPAddress) -> Bool { a.bytes.count == 16 && a.bytes[0] == 0xfe && a.bytes[1] & 0xc0 == 0x80 }

    /// What nodenet owns in the kernel now: routes with its protocol in the main table, and
    /// permanent neighbour/FDB entries on its vxlan device.
    func current(families: Set<IPFamily>, vxlanIndex: Int32?) throws(NetlinkError) -> Dataplane {
        var routes: [Route] = []
        for f in families.sorted(by: { $0.rawValue < $1.rawValue }) {
            routes += try client.routes(family: f, table: Route.mainTable, protocol: RouteProtocol.nodenet)
        }
        var neighbours: [Neighbour] = []
        var fdb: [FDBEntry] = []
        if let vx = vxlanIndex {
            for f in families.sorted(by: { $0.rawValue < $1.rawValue }) {
                neighbours += try client.neighbours(family: f, index: vx).filter { $0.state & Neighbour.permanent != 0 }
            }
            fdb = try client.fdbEntries(index: vx).filter { $0.isSelf && $0.state & Neighbour.permanent != 0 && $0.destination != nil }
        }
        return Dataplane(routes: routes, neighbours: neighbours, fdb: fdb)
    }

    /// Runs the plan phase by phase (each phase one batch). Returns failures by step index
    /// into `plan.steps`.
    func apply(_ plan: DataplanePlan) throws(NetlinkError) -> [Int: NetlinkError] {
        var failures: [Int: NetlinkError] = [:]
        var offset = 0
        func linkLayer(_ steps: [DataplanePlan.Step], delete: Bool) throws(NetlinkError) {
            guard !steps.isEmpty else { return }
            var neighbours: [Neighbour] = [], fdb: [FDBEntry] = [], order: [Int] = [], fdbOrder: [Int] = []
            for (i, s) in steps.enumerated() {
                switch s {
                case .setNeighbour(let n), .deleteNeighbour(let n): neighbours.append(n); order.append(i)
                case .setFDB(let f), .deleteFDB(let f): fdb.append(f); fdbOrder.append(i)
                case .route: break
                }
            }
            let r = try client.apply(neighbours: neighbours, fdb: fdb, delete: delete)
            let indices = order + fdbOrder
            for (i, e) in r.failures {
                // Deleting what is already gone is what we wanted.
                if delete, e.isNotFound || e.errno == ENOENT { continue }
                failures[offset + indices[i]] = e
            }
            offset += steps.count
        }
        func routes(_ changes: [RouteChange]) throws(NetlinkError) {
            guard !changes.isEmpty else { return }
            for (i, e) in try client.apply(changes).failures {
                if case .delete = changes[i], e.isNotFound || e.errno == ESRCH { continue }
                failures[offset + i] = e
            }
            offset += changes.count
        }
        try linkLayer(plan.setLinkLayer, delete: false)
        try routes(plan.setRoutes)
        try routes(plan.deleteRoutes)
        try linkLayer(plan.deleteLinkLayer, delete: true)
        return failures
    }
}
