// Which kernel events mean "something changed nodenet's entries behind its back". Pure: the
// actor asks with what it wants and believes, and runs a full reconcile on `true`. Our own
// changes read back as wanted and answer `false`, which keeps repairs from looping.
import IPAddressing
import Netlink

struct DriftWatch {
    struct DeviceShape: Sendable, Hashable {
        var mtu: UInt32
        var mac: MACAddress
    }

    var topology: Topology
    var wanted: Dataplane
    var believed: Dataplane
    var vxlanDevice: String
    var vxlanShape: DeviceShape?
    var nodeIP: IPAddress

    func isDrift(_ e: NetlinkEvent) -> Bool {
        switch e {
        case .overrun:
            return true
        case .route(let r, let removed):
            guard r.protocol == RouteProtocol.nodenet, r.table == Route.mainTable else { return false }
            // A route we wanted but never got in (a failed add) vanishing again is no news.
            if removed { return wanted.routes[r.destination] != nil && believed.routes[r.destination] != nil }
            return wanted.routes[r.destination].map { !Dataplane.same(r, $0) } ?? true
        case .neighbour(let n, let removed):
            guard n.index == topology.vxlanIndex else { return false }
            if removed { return wanted.neighbours[n.address] != nil }
            // Entries the kernel learns itself (not permanent) are not ours.
            guard n.state & Neighbour.permanent != 0 else { return false }
            return wanted.neighbours[n.address].map { !Dataplane.same(n, $0) } ?? true
        case .fdb(let f, let removed):
            guard f.index == topology.vxlanIndex, f.isSelf else { return false }
            if removed { return wanted.fdb[f.mac] != nil }
            guard f.state & Neighbour.permanent != 0 else { return false }
            return wanted.fdb[f.mac].map { !Dataplane.same(f, $0) } ?? true
        case .link(let l, let removed):
            if l.index == topology.vxlanIndex || l.name == vxlanDevice {
                return removed || !l.isUp || topology.vxlanIndex == nil || l.name != vxlanDevice
                    || (vxlanShape.map { l.mtu != $0.mtu || l.mac != $0.mac } ?? false)
            }
            // Down and up: the kernel flushes routes through the device without telling.
            return l.index == topology.underlayIndex
        case .address(let a, _):
            // The vxlan device's own addresses (one per pod subnet) are nodenet's too.
            return a.index == topology.underlayIndex || a.prefix.address == nodeIP
                || (topology.vxlanIndex != nil && a.index == topology.vxlanIndex)
        }
    }
}
