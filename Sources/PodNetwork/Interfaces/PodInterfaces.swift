import IPAddressing
import Netlink

/// What one pod interface should look like.
public struct PodInterfaceSpec: Sendable {
    public var netnsPath: String
    /// The pod's namespace already open (handed over by the plugin); nil: opened from `netnsPath`.
    public var namespace: NetworkNamespace?
    /// CNI_IFNAME: the container side's name.
    public var ifname: String
    /// The host side's name (`HostInterfaceName`).
    public var hostName: String
    /// Addresses with their subnet length, each with the gateway its default route uses.
    public var addresses: [(address: IPPrefix, gateway: IPAddress)]
    public var mtu: UInt32
    public var mac: MACAddress?
    public var hairpin: Bool

    public init(netnsPath: String, ifname: String, hostName: String, addresses: [(address: IPPrefix, gateway: IPAddress)],
                mtu: UInt32, mac: MACAddress? = nil, hairpin: Bool = true, namespace: NetworkNamespace? = nil) {
        self.netnsPath = netnsPath
        self.namespace = namespace
        self.ifname = ifname
        self.hostName = hostName
        self.addresses = addresses
        self.mtu = mtu
        self.mac = mac
        self.hairpin = hairpin
    }
}

extension PodInterfaceSpec {
    /// The namespace handed over with the request, else the one at `netnsPath`.
    func openNamespace() throws(PodInterfaceError) -> NetworkNamespace {
        if let namespace { return namespace }
        do {
            return try NetworkNamespace(path: netnsPath)
        } catch {
            throw .namespaceMissing(netnsPath, error)
        }
    }
}

/// The interfaces as created: what the CNI result lists.
public struct PodInterfaceResult: Sendable, Equatable {
    public var bridge: Link
    public var host: Link
    public var container: Link
}

public enum PodInterfaceError: Error, CustomStringConvertible, Sendable {
    case namespaceMissing(String, NetlinkError)
    case interfaceExists(ifname: String, netns: String)
    case bridgeConflict(name: String, kind: String?)
    case kernel(step: String, NetlinkError)
    case other(step: String, String)

    public var description: String {
        switch self {
        case .namespaceMissing(let path, let e):
            // Reached only when the plugin did not hand the namespace over (it opens CNI_NETNS
            // itself and passes the descriptor): an older plugin, or one that could not open it.
            "network namespace \(path) cannot be opened by the agent (\(e.errnoName)) and the CNI plugin did not pass it: "
                + "if the runtime created it, the agent does not see the runtime's namespace mounts; install the nodenet-cni plugin "
                + "of this version (it hands the namespace over), or run the agent in the host's mount namespace "
                + "(as a DaemonSet: mount /run/netns with mountPropagation: HostToContainer)"
        case .interfaceExists(let name, let ns): "interface \(name) already exists in \(ns)"
        case .bridgeConflict(let name, let kind): "\(name) exists but is a \(kind ?? "plain") link, not a bridge: rename or remove it, or set \"bridge\" in the CNI config"
        case .kernel(let step, let e): "\(step): \(e)"
        case .other(let step, let message): "\(step): \(message)"
        }
    }
}

/// Creates, checks and removes pod interfaces: the node bridge, a veth pair created straight
/// into the pod's namespace, addresses, routes and sysctls. Nothing here is ever flushed: the
/// bridge is created once and only ever gains the gateway addresses it lacks.
public final class PodInterfaces: Sendable {
    public let host: RouteClient
    public let bridgeName: String
    /// Set: `release(hostName:)` deletes in the background (see LinkReaper).
    let reaper: LinkReaper?

    /// `reaperClient`, a second client in the same namespace as `host`, makes interface
    /// removal on DEL asynchronous; without it removal happens before `release` returns.
    public init(host: RouteClient, bridgeName: String, reaperClient: RouteClient? = nil) {
        self.host = host
        self.bridgeName = bridgeName
        reaper = reaperClient.map(LinkReaper.init(client:))
    }

    /// The node bridge with the gateway address of every pod subnet, up.
    @discardableResult
    public func ensureBridge(gateways: [IPPrefix], mtu: UInt32?) throws -> Link {
        do {
            var bridge: Link
            if let existing = try host.link(named: bridgeName) {
                guard existing.kind == "bridge" else { throw PodInterfaceError.bridgeConflict(name: bridgeName, kind: existing.kind) }
                bridge = existing
            } else {
                do {
                    bridge = try host.createBridge(name: bridgeName, mtu: mtu)
                } catch {
                    guard error.isExists else { throw error }
                    bridge = try host.requireLink(named: bridgeName, for: "create bridge")  // another ADD won the race
                }
            }
            let have = Set(try host.addresses(index: bridge.index).map(\.prefix))
            for gw in gateways where !have.contains(gw) {
                do {
                    try host.addAddress(InterfaceAddress(index: bridge.index, prefix: gw, noDAD: gw.family == .v6))  // gateways serve at once
                } catch {
                    guard error.isExists else { throw error }
                }
            }
            if !bridge.isUp {
                try host.setLink(index: bridge.index, LinkChange(up: true))
                bridge = try host.link(index: bridge.index) ?? bridge
            }
            return bridge
        } catch let e as PodInterfaceError {
            throw e
        } catch let e as NetlinkError {
            throw PodInterfaceError.kernel(step: "bridge \(bridgeName)", e)
        } catch {
            throw PodInterfaceError.other(step: "bridge \(bridgeName)", "\(error)")
        }
    }

    /// Creates the pod's interface. On any failure everything this call created is removed.
    ///
    /// Every request here is on a pod's critical path, so the sequence is as short as the
    /// kernel allows: the veth is created straight into the pod's namespace already enslaved,
    /// up and with its MAC; `arp_notify` rides on the container side's "up" request; IPv6
    /// addresses skip DAD by flag; the loopback is brought up by its fixed index. The only
    /// thread that enters the namespace is the one opening the pod's netlink socket.
    public func setUp(_ spec: PodInterfaceSpec, bridge: Link) throws -> PodInterfaceResult {
        let ns = try spec.openNamespace()
        let pod = try wrap("open \(spec.netnsPath)") { try RouteClient(namespace: ns) }
        let hostLink = try createVeth(spec, ns, pod: pod, bridge: bridge)
        do {
            return try configure(spec, pod: pod, hostLink: hostLink, bridge: bridge)
        } catch {
            _ = try? host.deleteLink(named: spec.hostName)
            throw error
        }
    }

    private func createVeth(_ spec: PodInterfaceSpec, _ ns: NetworkNamespace, pod: RouteClient, bridge: Link) throws -> Link {
        func create() throws(NetlinkError) -> Link {
            try host.createVeth(name: spec.hostName, peerName: spec.ifname, peerNamespace: ns, mtu: spec.mtu, peerMAC: spec.mac,
                                masterIndex: bridge.index, up: true)
        }
        let step = "create veth \(spec.hostName)"
        do {
            return try create()
        } catch {
            guard error.isExists else { throw PodInterfaceError.kernel(step: step, error) }
        }
        // EEXIST: either the host name or the pod's ifname is taken.
        if try wrap("look up \(spec.hostName)", { try host.link(named: spec.hostName) }) != nil {
            // A leftover of an attachment whose DEL never came: its name is derived from the
            // same (container, ifname), so it is ours to replace.
            return try wrap(step) {
                _ = try host.deleteLink(named: spec.hostName)
                return try create()
            }
        } else if let reaper, reaper.hasPending {
            // A DEL in this namespace may still have its interface in the reaper's queue (DEL
            // then ADD again, as a runtime retrying a sandbox does): let the queue finish first.
            reaper.drain()
            do {
                return try create()
            } catch {
                guard error.isExists else { throw PodInterfaceError.kernel(step: step, error) }
            }
        }
        throw PodInterfaceError.interfaceExists(ifname: spec.ifname, netns: spec.netnsPath)
    }

    private func configure(_ spec: PodInterfaceSpec, pod: RouteClient, hostLink: Link, bridge: Link) throws -> PodInterfaceResult {
        if spec.hairpin {
            try wrap("hairpin on \(spec.hostName)") { try host.setHairpin(portIndex: hostLink.index, enabled: true) }
        }
        return try wrap("set up \(spec.ifname) in \(spec.netnsPath)") {
            let container = try pod.requireLink(named: spec.ifname, for: "configure pod interface")
            // One datagram for the rest, processed in order by the kernel: up with arp_notify
            // (a gratuitous ARP when it comes up tells the bridge and neighbours about a reused
            // address at once), addresses, loopback, default routes.
            var requests = [try RouteMessages.setLink(index: container.index, LinkChange(up: true, arpNotify: true), object: spec.ifname)]
            for (address, _) in spec.addresses {
                requests.append(RouteMessages.address(InterfaceAddress(index: container.index, prefix: address, noDAD: address.family == .v6), add: true))
            }
            requests.append(try RouteMessages.setLink(index: Self.loopbackIndex, LinkChange(up: true), object: "lo"))
            for (address, gateway) in spec.addresses {
                let any = IPPrefix(address: address.family == .v4 ? IPAddress("0.0.0.0")! : IPAddress("::")!, length: 0)
                requests.append(RouteMessages.route(.replace(Route(destination: any, gateway: gateway, outputIndex: container.index,
                                                                   protocol: RouteProtocol.boot))))
            }
            try pod.session.batch(requests).check()
            return PodInterfaceResult(bridge: bridge, host: hostLink, container: container)
        }
    }

    /// The loopback device is index 1 in every network namespace (LOOPBACK_IFINDEX).
    static let loopbackIndex: Int32 = 1

    /// Runs a kernel step, turning its error into a PodInterfaceError that names the step.
    private func wrap<T>(_ step: String, _ body: () throws -> T) throws -> T {
        do {
            return try body()
        } catch let e as PodInterfaceError {
            throw e
        } catch let e as NetlinkError {
            throw PodInterfaceError.kernel(step: step, e)
        } catch {
            throw PodInterfaceError.other(step: step, "\(error)")
        }
    }

    /// Removes the pod's interface by its host side (the peer goes with it). Idempotent: false
    /// when it was already gone (the namespace was deleted, or an earlier DEL did it).
    @discardableResult
    public func tearDown(hostName: String) throws -> Bool {
        do {
            return try host.deleteLink(named: hostName)
        } catch let e as NetlinkError {
            throw PodInterfaceError.kernel(step: "delete \(hostName)", e)
        }
    }

    /// Removes the pod's interface for a DEL: in the background when there is a reaper, else
    /// as `tearDown`. True when there was an interface to remove.
    @discardableResult
    public func release(hostName: String) throws -> Bool {
        guard let reaper else { return try tearDown(hostName: hostName) }
        let link: Link?
        do {
            link = try host.link(named: hostName)
        } catch {
            throw PodInterfaceError.kernel(step: "look up \(hostName)", error)
        }
        guard let link else { return false }
        reaper.delete(index: link.index)
        return true
    }

    /// Waits for background removals queued so far (agent shutdown, tests).
    public func drainReleases() {
        reaper?.drain()
    }

    /// What CHECK verifies: the host side on the bridge, the container side up with its
    /// addresses and a default route per family. Returns the problems found (empty: fine).
    public func check(_ spec: PodInterfaceSpec) -> [String] {
        var problems: [String] = []
        do {
            guard let h = try host.link(named: spec.hostName) else { return ["host interface \(spec.hostName) is missing"] }
            let bridge = try host.link(named: bridgeName)
            if h.masterIndex != bridge?.index { problems.append("\(spec.hostName) is not attached to \(bridgeName)") }
            let pod = try RouteClient(namespace: try spec.openNamespace())
            guard let c = try pod.link(named: spec.ifname) else { return problems + ["\(spec.ifname) is missing in \(spec.netnsPath)"] }
            if !c.isUp { problems.append("\(spec.ifname) is down") }
            let have = Set(try pod.addresses(index: c.index).map(\.prefix))
            for (address, gateway) in spec.addresses {
                if !have.contains(address) { problems.append("\(spec.ifname) lacks \(address)") }
                let routes = try pod.routes(family: address.family, table: Route.mainTable, protocol: nil)
                if !routes.contains(where: { $0.destination.length == 0 && $0.gateway == gateway }) {
                    problems.append("no default route via \(gateway) in \(spec.netnsPath)")
                }
            }
        } catch {
            problems.append("\(error)")
        }
        return problems
    }
}
