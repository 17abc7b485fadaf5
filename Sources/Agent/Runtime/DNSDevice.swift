import ClusterState
import IPAddressing
import Netlink
import Synchronization

/// The DNS responder's kernel objects, reconciled like every other kernel object nodenet
/// owns (`KernelReconcileLoop`): the device `nodenet-dns` (up), one host address per listen
/// address on it, and the two notrack chains per family. A pass repairs what is missing or
/// wrong and returns one status per object; the device's link and address events start a
/// pass at once, a periodic pass catches the rules (nftables sends no events we subscribe to).
/// They used to be made once at start and never looked at again.
final class DNSDevice: Sendable {
    static let deviceName = "nodenet-dns"

    private let client: RouteClient
    private let nftables: Mutex<NetlinkSession?>
    private let port: UInt16
    /// The device's index after the last pass (to pick its events out of the node's).
    private let index = Atomic<Int32>(0)

    init(client: RouteClient, port: UInt16) {
        self.client = client
        self.port = port
        nftables = Mutex(try? NetlinkSession(protocol: Netlink.netfilter))
    }

    /// Whether `event` concerns the device or its addresses.
    func isRelevant(_ event: NetlinkEvent) -> Bool {
        let mine = index.load(ordering: .relaxed)
        switch event {
        case .link(let l, _): return l.name == Self.deviceName || (mine != 0 && l.index == mine)
        case .address(let a, _): return mine != 0 && a.index == mine
        case .overrun: return true
        default: return false
        }
    }

    /// One pass: device, addresses, notrack chains. Blocking (netlink): call it off the
    /// cooperative pool.
    func reconcile(addresses: [IPAddress]) -> [KernelObjectStatus] {
        var out: [KernelObjectStatus] = []
        let link: Link
        do {
            let found = try client.link(named: Self.deviceName) ?? client.createBridge(name: Self.deviceName)
            if !found.isUp { try client.setLink(index: found.index, LinkChange(up: true)) }
            link = found
            index.store(found.index, ordering: .relaxed)
            out.append(KernelObjectStatus(kind: "device", name: Self.deviceName))
        } catch {
            out.append(KernelObjectStatus(kind: "device", name: Self.deviceName, error: "\(error)"))
            out += addresses.map { KernelObjectStatus(kind: "address", name: "\($0)", error: "no device \(Self.deviceName)") }
            return out + notrack(addresses)
        }
        // IPv6 addresses skip duplicate address detection (IFA_F_NODAD): a tentative address
        // cannot be bound, and this device has no link for DAD to probe anyway.
        let have: Set<IPAddress>
        do {
            have = Set(try client.addresses(index: link.index).map(\.prefix.address))
        } catch {
            return out + addresses.map { KernelObjectStatus(kind: "address", name: "\($0)", error: "cannot list: \(error)") } + notrack(addresses)
        }
        for a in addresses {
            if have.contains(a) {
                out.append(KernelObjectStatus(kind: "address", name: "\(a)"))
                continue
            }
            do {
                try client.addAddress(InterfaceAddress(index: link.index, prefix: IPPrefix(address: a, length: a.family.bitWidth),
                                                       noDAD: a.family == .v6))
                out.append(KernelObjectStatus(kind: "address", name: "\(a)"))
            } catch {
                out.append(KernelObjectStatus(kind: "address", name: "\(a)", error: "cannot add to \(Self.deviceName): \(error)"))
            }
        }
        return out + notrack(addresses)
    }

    /// The notrack chains of each family the addresses have (DNS works without them, with
    /// conntrack's insertion race; an error here is shown, not fatal).
    private func notrack(_ addresses: [IPAddress]) -> [KernelObjectStatus] {
        let families = IPFamily.allCases.filter { f in addresses.contains { $0.family == f } }
        let names = families.flatMap { f in DNSNotrack.chains.map { "\(f == .v4 ? "ip" : "ip6") \(DNSNotrack.table) \($0.declaration.name)" } }
        return nftables.withLock { session -> [KernelObjectStatus] in
            if session == nil { session = try? NetlinkSession(protocol: Netlink.netfilter) }
            guard let s = session else {
                return names.map { KernelObjectStatus(kind: "chain", name: $0, error: "no nftables netlink session") }
            }
            var out: [KernelObjectStatus] = []
            for family in families {
                for chain in DNSNotrack.chains {
                    let name = "\(family == .v4 ? "ip" : "ip6") \(DNSNotrack.table) \(chain.declaration.name)"
                    do {
                        try chain.declaration.owned.ensure(session: s, family: family,
                                                           wanted: DNSNotrack.rules(addresses: addresses, port: port, family: family,
                                                                                    destination: chain.destination))
                        out.append(KernelObjectStatus(kind: "chain", name: name))
                    } catch {
                        out.append(KernelObjectStatus(kind: "chain", name: name, error: "\(error)"))
                    }
                }
            }
            return out
        }
    }
}
