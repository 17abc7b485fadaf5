import IPAddressing

/// What went wrong, on which address, subnet or attachment. Messages are written for the
/// operator who reads them in a pod event, so each says what to do where it can.
public enum IPAMError: Error, Equatable, Sendable, CustomStringConvertible {
    /// The configuration names no subnet at all.
    case noSubnets
    /// A configured subnet cannot serve pods (host bits set, too small, overlapping another).
    case invalidSubnet(IPPrefix, reason: String)
    /// Every assignable address of the family is taken.
    case exhausted(family: IPFamily, subnets: [IPPrefix], inUse: UInt64)
    /// The attachment already holds addresses: CNI forbids a second ADD without a DEL.
    case alreadyAllocated(AttachmentID, [IPAddress])
    /// A requested address is held by another attachment.
    case requestedTaken(IPAddress, subnet: IPPrefix, holder: AttachmentID)
    /// A requested address lies in no configured subnet of its family.
    case requestedOutside(IPAddress, subnets: [IPPrefix])
    /// A requested address is the subnet's network, gateway or broadcast address.
    case requestedReserved(IPAddress, subnet: IPPrefix)
    /// More than one address of one family was requested; an attachment gets one per family.
    case requestedTwice(IPFamily, [IPAddress])
    /// The container id or ifname is empty.
    case invalidAttachment(AttachmentID)
    /// SQLite failed; `operation` names what the allocator was doing.
    case database(operation: String, message: String)

    public var description: String {
        switch self {
        case .noSubnets:
            return "no pod subnet configured: set podCIDRs or give the node a podCIDR"
        case .invalidSubnet(let s, let reason):
            return "pod subnet \(s) cannot be used: \(reason)"
        case .exhausted(_, let subnets, let inUse):
            let names = subnets.map(\.description).joined(separator: ", ")
            return "no free address in \(names) (\(inUse) in use)"
        case .alreadyAllocated(let a, let addrs):
            let list = addrs.map(\.description).joined(separator: ", ")
            return "attachment \(a) already holds \(list): DEL it before a new ADD"
        case .requestedTaken(let addr, let subnet, let holder):
            return "requested address \(addr) in \(subnet) is already allocated to \(holder)"
        case .requestedOutside(let addr, let subnets):
            let names = subnets.isEmpty ? "none for \(addr.family.rawValue)" : subnets.map(\.description).joined(separator: ", ")
            return "requested address \(addr) is outside this node's pod subnets (\(names))"
        case .requestedReserved(let addr, let subnet):
            return "requested address \(addr) is reserved in \(subnet) (network, gateway or broadcast address)"
        case .requestedTwice(let family, let addrs):
            let list = addrs.map(\.description).joined(separator: ", ")
            return "requested \(addrs.count) \(family.rawValue) addresses (\(list)); an attachment gets one per family"
        case .invalidAttachment(let a):
            return "invalid attachment \"\(a)\": container id and ifname must be non-empty"
        case .database(let op, let message):
            return "IPAM database error while \(op): \(message)"
        }
    }
}
