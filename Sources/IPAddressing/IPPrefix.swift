// CIDR prefixes: pod subnets, service ranges, routes. Two forms matter:
// an address with its prefix length as written (a pod's 10.244.1.5/24), and the
// network it names (10.244.1.0/24). `IPPrefix` keeps what was written; `network`
// masks it.

public struct IPPrefix: Hashable, Sendable, CustomStringConvertible, Codable {
    public let address: IPAddress
    public let length: Int

    public enum ParseError: Error, Equatable, CustomStringConvertible {
        case malformed(String)
        case lengthOutOfRange(String)

        public var description: String {
            switch self {
            case .malformed(let s): "\"\(s)\" is not a CIDR (want ADDRESS/LENGTH, e.g. 10.244.1.0/24)"
            case .lengthOutOfRange(let s): "\"\(s)\" has a prefix length out of range for its family"
            }
        }
    }

    public init(address: IPAddress, length: Int) {
        precondition(length >= 0 && length <= address.family.bitWidth, "prefix length out of range")
        self.address = address
        self.length = length
    }

    /// Parses `ADDRESS/LENGTH`. A bare address is not accepted: callers that take one say so.
    public init(parsing text: some StringProtocol) throws(ParseError) {
        let s = String(text)
        let parts = s.split(separator: "/", omittingEmptySubsequences: false)
        guard parts.count == 2, let addr = IPAddress(parts[0]), let len = Int(parts[1]),
              !parts[1].hasPrefix("+"), !parts[1].hasPrefix("-") else { throw .malformed(s) }
        guard len >= 0, len <= addr.family.bitWidth else { throw .lengthOutOfRange(s) }
        self.init(address: addr, length: len)
    }

    public init?(_ text: some StringProtocol) {
        guard let p = try? IPPrefix(parsing: text) else { return nil }
        self = p
    }

    public var family: IPFamily { address.family }

    /// The prefix with host bits cleared.
    public var network: IPPrefix { IPPrefix(address: masked(address), length: length) }

    /// True when no host bits are set (10.244.1.0/24, not 10.244.1.5/24).
    public var isNetwork: Bool { network.address == address }

    public func contains(_ other: IPAddress) -> Bool {
        guard other.family == family else { return false }
        return masked(other) == masked(address)
    }

    /// True when `other` lies entirely inside this prefix.
    public func contains(_ other: IPPrefix) -> Bool {
        other.family == family && other.length >= length && contains(other.address)
    }

    public func overlaps(_ other: IPPrefix) -> Bool {
        contains(other.address) || other.contains(address)
    }

    /// Number of addresses, saturating at UInt64.max for wide IPv6 prefixes.
    public var size: UInt64 {
        let hostBits = family.bitWidth - length
        return hostBits >= 64 ? UInt64.max : (UInt64(1) << UInt64(hostBits))
    }

    /// The address at `offset` from the network address (offset 1 is the usual gateway).
    /// Nil when the offset falls outside the prefix.
    public func address(at offset: UInt64) -> IPAddress? {
        guard offset < size else { return nil }
        switch network.address {
        case .v4(let a):
            return .v4(IPv4Address(a.value &+ UInt32(truncatingIfNeeded: offset)))
        case .v6(let a):
            let (low, carry) = a.low.addingReportingOverflow(offset)
            return .v6(IPv6Address(high: a.high &+ (carry ? 1 : 0), low: low))
        }
    }

    /// Offset of `address` from the network address; nil if outside or too far to count.
    public func offset(of other: IPAddress) -> UInt64? {
        guard contains(other) else { return nil }
        switch (network.address, other) {
        case (.v4(let n), .v4(let a)): return UInt64(a.value - n.value)
        case (.v6(let n), .v6(let a)):
            guard a.high == n.high else { return nil }
            return a.low - n.low
        default: return nil
        }
    }

    /// The last address (IPv4 broadcast).
    public var lastAddress: IPAddress {
        switch address {
        case .v4(let a):
            let hostMask: UInt32 = length == 32 ? 0 : (UInt32.max >> UInt32(length))
            return .v4(IPv4Address(a.value | hostMask))
        case .v6(let a):
            let (hm, lm) = Self.v6HostMask(length)
            return .v6(IPv6Address(high: a.high | hm, low: a.low | lm))
        }
    }

    /// The netmask as an address (255.255.255.0 for /24).
    public var netmask: IPAddress {
        switch address {
        case .v4: return .v4(IPv4Address(length == 0 ? 0 : UInt32.max << UInt32(32 - length)))
        case .v6:
            let (hm, lm) = Self.v6HostMask(length)
            return .v6(IPv6Address(high: ~hm, low: ~lm))
        }
    }

    /// The `index`th subnet of length `newLength` inside this prefix (subnet leasing).
    public func subnet(length newLength: Int, index: UInt64) -> IPPrefix? {
        guard newLength >= length, newLength <= family.bitWidth else { return nil }
        let bits = newLength - length
        guard bits >= 64 || index < (UInt64(1) << UInt64(bits)) else { return nil }
        let shift = family.bitWidth - newLength
        switch network.address {
        case .v4(let a):
            guard shift < 32 || index == 0 else { return nil }
            let step = shift >= 32 ? UInt32(0) : UInt32(truncatingIfNeeded: index) << UInt32(shift)
            return IPPrefix(address: .v4(IPv4Address(a.value | step)), length: newLength)
        case .v6(let a):
            var high = a.high, low = a.low
            if shift >= 64 {
                high |= index << UInt64(shift - 64)
            } else {
                low |= index << UInt64(shift)
                if shift > 0 { high |= index >> UInt64(64 - shift) }
            }
            return IPPrefix(address: .v6(IPv6Address(high: high, low: low)), length: newLength)
        }
    }

    /// Number of subnets of `newLength` in this prefix, saturating.
    public func subnetCount(length newLength: Int) -> UInt64 {
        let bits = newLength - length
        guard bits >= 0 else { return 0 }
        return bits >= 64 ? UInt64.max : UInt64(1) << UInt64(bits)
    }

    public var description: String { "\(address)/\(length)" }

    private func masked(_ a: IPAddress) -> IPAddress {
        switch a {
        case .v4(let v):
            let mask: UInt32 = length == 0 ? 0 : UInt32.max << UInt32(32 - length)
            return .v4(IPv4Address(v.value & mask))
        case .v6(let v):
            let (hm, lm) = Self.v6HostMask(length)
            return .v6(IPv6Address(high: v.high & ~hm, low: v.low & ~lm))
        }
    }

    private static func v6HostMask(_ length: Int) -> (UInt64, UInt64) {
        if length >= 128 { return (0, 0) }
        if length >= 64 { return (0, UInt64.max >> UInt64(length - 64)) }
        return (length == 0 ? UInt64.max : UInt64.max >> UInt64(length), UInt64.max)
    }

    public init(from decoder: any Decoder) throws {
        let text = try decoder.singleValueContainer().decode(String.self)
        do {
            try self.init(parsing: text)
        } catch {
            throw DecodingError.dataCorrupted(.init(codingPath: decoder.codingPath, debugDescription: error.description))
        }
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.singleValueContainer()
        try c.encode(description)
    }
}
