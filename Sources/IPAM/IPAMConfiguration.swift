import IPAddressing

/// The node's pod subnets. Order matters within a family: a later subnet of the same family
/// is used only when the earlier ones are full (e.g. a second podCIDR added to a full node).
public struct IPAMConfiguration: Hashable, Sendable, Codable {
    public var subnets: [IPPrefix]

    public init(subnets: [IPPrefix]) {
        self.subnets = subnets
    }

    /// Checks the subnets and derives the pools: rejects host bits, IPv4 shorter than /30's
    /// host room (/31, /32), IPv6 /127 and /128, and overlaps (one address would belong to two pools).
    func pools() throws(IPAMError) -> [AddressPool] {
        guard !subnets.isEmpty else { throw .noSubnets }
        var pools: [AddressPool] = []
        for subnet in subnets {
            guard subnet.isNetwork else {
                throw .invalidSubnet(subnet, reason: "host bits are set (did you mean \(subnet.network)?)")
            }
            if let other = pools.first(where: { $0.subnet.overlaps(subnet) }) {
                throw .invalidSubnet(subnet, reason: "overlaps \(other.subnet)")
            }
            guard let pool = AddressPool(subnet) else {
                let max = subnet.family == .v4 ? 30 : 126
                throw .invalidSubnet(subnet, reason: "too small for pods (longest usable prefix is /\(max))")
            }
            pools.append(pool)
        }
        return pools
    }
}

/// One subnet's assignable range, as offsets from the network address: offset 0 is the
/// network address, 1 the gateway, and for IPv4 the last offset is the broadcast address.
/// IPv6 subnets wider than /64 use their first /64 (offsets fit in 64 bits; a node never
/// needs more).
struct AddressPool: Hashable, Sendable {
    let subnet: IPPrefix
    let gateway: IPAddress
    let first: UInt64
    let last: UInt64

    init?(_ subnet: IPPrefix) {
        let hostBits = subnet.family.bitWidth - subnet.length
        guard hostBits >= 2 else { return nil }
        self.subnet = subnet
        // address(at: 1) cannot fail: the subnet has at least four addresses.
        gateway = subnet.address(at: 1)!
        first = 2
        switch subnet.family {
        case .v4: last = subnet.size - 2
        case .v6: last = hostBits >= 64 ? UInt64.max : subnet.size - 1
        }
    }

    var family: IPFamily { subnet.family }
    var capacity: UInt64 { last - first + 1 }

    /// Offsets are always within `first...last` here, so this cannot leave the subnet.
    /// (Not `IPPrefix.address(at:)`: its size saturates at 2^64-1, which excludes the last
    /// address of a /64.)
    func address(at offset: UInt64) -> IPAddress {
        switch subnet.address {
        case .v4(let n): .v4(IPv4Address(n.value | UInt32(truncatingIfNeeded: offset)))
        case .v6(let n): .v6(IPv6Address(high: n.high, low: n.low | offset))
        }
    }

    /// The offset of an address inside this pool's assignable range, nil when it is outside
    /// the subnet or outside the range.
    func assignableOffset(of address: IPAddress) -> UInt64? {
        guard let o = subnet.offset(of: address), o >= first, o <= last else { return nil }
        return o
    }

    func allocation(_ address: IPAddress) -> Allocation {
        Allocation(address: IPPrefix(address: address, length: subnet.length), gateway: gateway, subnet: subnet)
    }
}
