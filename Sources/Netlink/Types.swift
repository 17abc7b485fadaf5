// Value types for what rtnetlink reads and writes: links, addresses, routes, neighbours.
// Plain data, no socket state, so desired-state code can build and compare them freely.
import IPAddressing

/// An Ethernet hardware address.
public struct MACAddress: Hashable, Sendable, CustomStringConvertible {
    public let bytes: [UInt8]

    public init?(bytes: some Collection<UInt8>) {
        guard bytes.count == 6 else { return nil }
        self.bytes = Array(bytes)
    }

    /// "aa:bb:cc:dd:ee:ff" (either case; ':' or '-').
    public init?(_ text: some StringProtocol) {
        let parts = text.split(omittingEmptySubsequences: false) { $0 == ":" || $0 == "-" }
        guard parts.count == 6 else { return nil }
        var out: [UInt8] = []
        for p in parts {
            guard p.count == 2, let b = UInt8(p, radix: 16) else { return nil }
            out.append(b)
        }
        bytes = out
    }

    public var description: String {
        bytes.map { b in (b < 16 ? "0" : "") + String(b, radix: 16) }.joined(separator: ":")
    }
}

/// A kernel interface name, checked the way the kernel's dev_valid_name does: 1 to 15 bytes,
/// not "." or "..", no '/', ':' or whitespace. Checked before sending so the error names it.
public enum InterfaceName {
    public static let maxLength = 15

    public static func validate(_ name: String, operation: String) throws(NetlinkError) {
        let bytes = Array(name.utf8)
        let why: String? =
            if bytes.isEmpty { "interface name is empty" }
            else if bytes.count > maxLength { "interface name is \(bytes.count) bytes, the limit is \(maxLength)" }
            else if name == "." || name == ".." { "interface name cannot be \".\" or \"..\"" }
            else if bytes.contains(where: { $0 == UInt8(ascii: "/") || $0 == UInt8(ascii: ":") }) { "interface name contains '/' or ':'" }
            else if bytes.contains(where: { $0 == 0 || $0 == 0x20 || ($0 >= 0x09 && $0 <= 0x0d) }) { "interface name contains whitespace or NUL" }
            else { nil }
        if let why { throw .invalid(operation, "\"\(name)\"", why) }
    }
}

/// A network interface as the kernel reports it.
public struct Link: Sendable, Equatable {
    public var index: Int32
    public var name: String
    /// IFLA_INFO_KIND ("veth", "bridge", "vxlan"); nil for physical devices and loopback.
    public var kind: String?
    public var mtu: UInt32
    public var mac: MACAddress?
    /// IFF_* flags (IFF_UP = 1).
    public var flags: UInt32
    public var masterIndex: Int32?
    /// IFLA_LINK: the peer's index for veth, the underlay for vxlan (may be in another namespace).
    public var parentIndex: Int32?
    /// IF_OPER_* (6 is up).
    public var operState: UInt8
    /// vxlan settings, when `kind == "vxlan"`.
    public var vxlan: VxlanSettings?

    public var isUp: Bool { flags & Netlink.iffUp != 0 }
}

/// The vxlan settings nodenet programs and reads back.
public struct VxlanSettings: Sendable, Equatable {
    public var vni: UInt32
    /// UDP destination port; 0 leaves the kernel default (8472).
    public var port: UInt16
    public var local: IPAddress?
    /// The underlay device's index.
    public var underlayIndex: Int32?
    public var learning: Bool

    public init(vni: UInt32, port: UInt16 = 8472, local: IPAddress? = nil, underlayIndex: Int32? = nil, learning: Bool = false) {
        self.vni = vni
        self.port = port
        self.local = local
        self.underlayIndex = underlayIndex
        self.learning = learning
    }
}

/// Changes to an existing link; nil fields are left alone.
public struct LinkChange: Sendable, Equatable {
    public var up: Bool?
    public var mtu: UInt32?
    public var mac: MACAddress?
    /// The bridge to enslave to; 0 releases it from its master.
    public var masterIndex: Int32?
    public var newName: String?
    /// net.ipv4.conf.<link>.arp_notify, set over netlink (IFLA_AF_SPEC/AF_INET/IFLA_INET_CONF)
    /// rather than through /proc/sys, which needs a thread inside the link's namespace.
    public var arpNotify: Bool?

    public init(up: Bool? = nil, mtu: UInt32? = nil, mac: MACAddress? = nil, masterIndex: Int32? = nil, newName: String? = nil,
                arpNotify: Bool? = nil) {
        self.arpNotify = arpNotify
        self.up = up
        self.mtu = mtu
        self.mac = mac
        self.masterIndex = masterIndex
        self.newName = newName
    }
}

/// An address on an interface (10.244.1.5/24 on eth0).
public struct InterfaceAddress: Sendable, Hashable {
    public var index: Int32
    public var prefix: IPPrefix
    /// IPv6: usable at once, without duplicate address detection (IFA_F_NODAD), which is what
    /// `accept_dad = 0` gives without a trip through /proc/sys inside the namespace.
    public var noDAD: Bool

    public init(index: Int32, prefix: IPPrefix, noDAD: Bool = false) {
        self.index = index
        self.prefix = prefix
        self.noDAD = noDAD
    }
}

/// Route scope (RT_SCOPE_*).
public enum RouteScope: UInt8, Sendable {
    case universe = 0
    case link = 253
    case host = 254
}

/// A unicast route. `protocol` defaults to nodenet's own id so every route the agent installs
/// can be found (and garbage-collected) by a filtered dump.
public struct Route: Sendable, Hashable {
    public var destination: IPPrefix
    public var gateway: IPAddress?
    public var outputIndex: Int32?
    public var table: UInt32
    public var `protocol`: UInt8
    public var scope: RouteScope
    /// RTNH_F_ONLINK: the gateway is on the link even if no address says so (vxlan next hops).
    public var onlink: Bool
    public var priority: UInt32?
    public var preferredSource: IPAddress?

    public init(destination: IPPrefix, gateway: IPAddress? = nil, outputIndex: Int32? = nil, table: UInt32 = Route.mainTable,
                protocol: UInt8 = RouteProtocol.nodenet, scope: RouteScope? = nil, onlink: Bool = false,
                priority: UInt32? = nil, preferredSource: IPAddress? = nil) {
        self.destination = destination.network
        self.gateway = gateway
        self.outputIndex = outputIndex
        self.table = table
        self.protocol = `protocol`
        // Like ip(8): an IPv4 route without a gateway is directly connected (scope link). The
        // kernel keeps every IPv6 route at scope universe, so that is what reads back.
        self.scope = scope ?? (gateway == nil && destination.family == .v4 ? .link : .universe)
        self.onlink = onlink
        self.priority = priority
        self.preferredSource = preferredSource
    }

    public static let mainTable: UInt32 = 254
}

/// One step of a route batch.
public enum RouteChange: Sendable, Hashable {
    /// Create; fails with EEXIST when a route with the same key exists.
    case add(Route)
    /// Create or overwrite (NLM_F_CREATE | NLM_F_REPLACE): the idempotent form reconcilers use.
    case replace(Route)
    /// Delete; matches on destination, table, protocol and priority (not gateway or device, so
    /// it also removes a route installed through a nexthop object).
    case delete(Route)

    public var route: Route {
        switch self { case .add(let r), .replace(let r), .delete(let r): r }
    }
}

/// A neighbour (ARP/NDP) entry.
public struct Neighbour: Sendable, Hashable {
    public var index: Int32
    public var address: IPAddress
    public var mac: MACAddress?
    /// NUD_* state (NUD_PERMANENT = 0x80).
    public var state: UInt16

    public init(index: Int32, address: IPAddress, mac: MACAddress?, state: UInt16 = Neighbour.permanent) {
        self.index = index
        self.address = address
        self.mac = mac
        self.state = state
    }

    public static let permanent: UInt16 = 0x80
}

/// A bridge forwarding database entry (AF_BRIDGE). On a vxlan device with NTF_SELF it says
/// "frames for `mac` go to the VTEP at `destination`".
public struct FDBEntry: Sendable, Hashable {
    public var index: Int32
    public var mac: MACAddress
    public var destination: IPAddress?
    public var state: UInt16
    /// NTF_SELF: the entry belongs to the device itself (vxlan), not to a bridge master.
    public var isSelf: Bool

    public init(index: Int32, mac: MACAddress, destination: IPAddress?, state: UInt16 = Neighbour.permanent, isSelf: Bool = true) {
        self.index = index
        self.mac = mac
        self.destination = destination
        self.state = state
        self.isSelf = isSelf
    }
}
