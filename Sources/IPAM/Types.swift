// Values the allocator hands out and reports. No database types leak into this surface:
// the agent sees attachments, addresses and counts.
import IPAddressing

/// One CNI attachment: the spec makes (container id, ifname) unique per network.
public struct AttachmentID: Hashable, Sendable, Codable, CustomStringConvertible {
    public var containerID: String
    public var ifname: String

    public init(containerID: String, ifname: String) {
        self.containerID = containerID
        self.ifname = ifname
    }

    public var description: String { "\(containerID)/\(ifname)" }
}

/// An address given to an attachment, as the CNI result wants it.
public struct Allocation: Hashable, Sendable, Codable {
    /// The address with its subnet's prefix length (10.244.1.5/24).
    public var address: IPPrefix
    /// The subnet's gateway (its first address), which the node bridge carries.
    public var gateway: IPAddress
    /// The pod subnet the address came from (10.244.1.0/24).
    public var subnet: IPPrefix

    public init(address: IPPrefix, gateway: IPAddress, subnet: IPPrefix) {
        self.address = address
        self.gateway = gateway
        self.subnet = subnet
    }
}

/// A persisted reservation: who holds which address, from which subnet, since when.
public struct Reservation: Hashable, Sendable, Codable {
    public var attachment: AttachmentID
    public var address: IPAddress
    /// The subnet the address was allocated from; it may no longer be configured (see
    /// `AddressAllocator.reservationsOutsideSubnets()`).
    public var subnet: IPPrefix
    /// Unix time (seconds) of the allocation.
    public var createdAt: Int64

    public init(attachment: AttachmentID, address: IPAddress, subnet: IPPrefix, createdAt: Int64) {
        self.attachment = attachment
        self.address = address
        self.subnet = subnet
        self.createdAt = createdAt
    }
}

/// Usage of one configured subnet.
public struct SubnetUsage: Hashable, Sendable, Codable {
    public var subnet: IPPrefix
    /// Addresses the allocator may hand out (the subnet minus network, gateway and IPv4 broadcast).
    public var capacity: UInt64
    public var used: UInt64
    public var free: UInt64 { capacity - min(used, capacity) }

    public init(subnet: IPPrefix, capacity: UInt64, used: UInt64) {
        self.subnet = subnet
        self.capacity = capacity
        self.used = used
    }
}
