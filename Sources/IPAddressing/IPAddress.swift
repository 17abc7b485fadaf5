// IP addresses as plain values: parsed once at the edge (config, manifests, CNI),
// then compared, hashed and encoded without strings. No Foundation on purpose: the
// CNI path links this and process start-up cost matters there.

/// An IPv4 address, stored in host order so arithmetic (next address, subnet math) is plain integer math.
public struct IPv4Address: Hashable, Sendable, Comparable, CustomStringConvertible {
    public var value: UInt32

    public init(_ value: UInt32) { self.value = value }
    public init(_ a: UInt8, _ b: UInt8, _ c: UInt8, _ d: UInt8) {
        value = UInt32(a) << 24 | UInt32(b) << 16 | UInt32(c) << 8 | UInt32(d)
    }

    /// Dotted quad, exactly four decimal octets (no leading-zero octal, no shorthand).
    public init?(_ text: some StringProtocol) {
        var octets: [UInt32] = []
        var current: UInt32 = 0
        var digits = 0
        for ch in text.utf8 {
            if ch == UInt8(ascii: ".") {
                guard digits > 0, octets.count < 3 else { return nil }
                octets.append(current); current = 0; digits = 0
            } else if ch >= UInt8(ascii: "0"), ch <= UInt8(ascii: "9") {
                if digits == 1, current == 0 { return nil }  // "01" is ambiguous (octal in some parsers)
                current = current * 10 + UInt32(ch - UInt8(ascii: "0"))
                digits += 1
                guard digits <= 3, current <= 255 else { return nil }
            } else {
                return nil
            }
        }
        guard digits > 0, octets.count == 3 else { return nil }
        octets.append(current)
        value = octets[0] << 24 | octets[1] << 16 | octets[2] << 8 | octets[3]
    }

    /// Network byte order bytes, as the kernel and DNS want them.
    public var bytes: [UInt8] {
        [UInt8(truncatingIfNeeded: value >> 24), UInt8(truncatingIfNeeded: value >> 16),
         UInt8(truncatingIfNeeded: value >> 8), UInt8(truncatingIfNeeded: value)]
    }

    public init?(bytes: some Collection<UInt8>) {
        guard bytes.count == 4 else { return nil }
        var v: UInt32 = 0
        for b in bytes { v = v << 8 | UInt32(b) }
        value = v
    }

    public var description: String {
        "\(value >> 24).\((value >> 16) & 0xff).\((value >> 8) & 0xff).\(value & 0xff)"
    }

    public static func < (lhs: Self, rhs: Self) -> Bool { lhs.value < rhs.value }
}

/// An IPv6 address as two 64-bit halves in host order.
public struct IPv6Address: Hashable, Sendable, Comparable, CustomStringConvertible {
    public var high: UInt64
    public var low: UInt64

    public init(high: UInt64, low: UInt64) { self.high = high; self.low = low }

    public init?(bytes: some Collection<UInt8>) {
        guard bytes.count == 16 else { return nil }
        var h: UInt64 = 0, l: UInt64 = 0
        for (i, b) in bytes.enumerated() {
            if i < 8 { h = h << 8 | UInt64(b) } else { l = l << 8 | UInt64(b) }
        }
        high = h; low = l
    }

    public var bytes: [UInt8] {
        var out = [UInt8](repeating: 0, count: 16)
        for i in 0..<8 {
            out[i] = UInt8(truncatingIfNeeded: high >> (56 - 8 * UInt64(i)))
            out[8 + i] = UInt8(truncatingIfNeeded: low >> (56 - 8 * UInt64(i)))
        }
        return out
    }

    /// The 16-bit groups, most significant first.
    public var groups: [UInt16] {
        (0..<8).map { i in
            let half = i < 4 ? high : low
            return UInt16(truncatingIfNeeded: half >> (48 - 16 * UInt64(i % 4)))
        }
    }

    public init(groups g: [UInt16]) {
        precondition(g.count == 8)
        var h: UInt64 = 0, l: UInt64 = 0
        for i in 0..<4 { h = h << 16 | UInt64(g[i]) }
        for i in 4..<8 { l = l << 16 | UInt64(g[i]) }
        high = h; low = l
    }

    /// RFC 4291 text forms, including `::` compression and a trailing dotted IPv4 part.
    public init?(_ text: some StringProtocol) {
        let s = String(text)
        guard !s.isEmpty, s.utf8.count <= 45 else { return nil }
        var head: [UInt16] = []
        var tail: [UInt16] = []
        var sawGap = false
        let parts = s.split(separator: ":", omittingEmptySubsequences: false)
        guard parts.count >= 3 || (parts.count >= 2 && s.contains("::")) else { return nil }
        var i = 0
        while i < parts.count {
            let part = parts[i]
            if part.isEmpty {
                // "::" appears as one or two empty parts (two at the very start or end).
                if sawGap {
                    let atEdge = (i == 1 && parts[0].isEmpty) || (i == parts.count - 1 && parts[i - 1].isEmpty)
                    guard atEdge else { return nil }
                } else {
                    guard i + 1 < parts.count || i > 0 else { return nil }
                    if i == 0 { guard parts.count > 1, parts[1].isEmpty else { return nil } }
                    sawGap = true
                }
                i += 1
                continue
            }
            if i == parts.count - 1, part.contains(".") {
                guard let v4 = IPv4Address(part) else { return nil }
                let words = [UInt16(v4.value >> 16), UInt16(v4.value & 0xffff)]
                if sawGap { tail += words } else { head += words }
                i += 1
                continue
            }
            guard part.utf8.count <= 4, let word = UInt16(part, radix: 16) else { return nil }
            if sawGap { tail.append(word) } else { head.append(word) }
            i += 1
        }
        let total = head.count + tail.count
        if sawGap {
            guard total <= 7 else { return nil }
        } else {
            guard total == 8 else { return nil }
        }
        self.init(groups: head + Array(repeating: 0, count: 8 - total) + tail)
    }

    /// Canonical RFC 5952 text: lower case, longest run of two or more zero groups as `::`.
    public var description: String {
        let g = groups
        var bestStart = -1, bestLen = 0, runStart = -1
        for i in 0...8 {
            if i < 8, g[i] == 0 {
                if runStart < 0 { runStart = i }
            } else if runStart >= 0 {
                let len = i - runStart
                if len > bestLen, len >= 2 { bestStart = runStart; bestLen = len }
                runStart = -1
            }
        }
        func hex(_ range: Range<Int>) -> String {
            range.map { String(g[$0], radix: 16) }.joined(separator: ":")
        }
        if bestStart < 0 { return hex(0..<8) }
        return hex(0..<bestStart) + "::" + hex((bestStart + bestLen)..<8)
    }

    public static func < (lhs: Self, rhs: Self) -> Bool {
        (lhs.high, lhs.low) < (rhs.high, rhs.low)
    }
}

/// Either family; what most of nodenet passes around.
public enum IPAddress: Hashable, Sendable, Comparable, CustomStringConvertible, Codable {
    case v4(IPv4Address)
    case v6(IPv6Address)

    public init?(_ text: some StringProtocol) {
        if let a = IPv4Address(text) { self = .v4(a) } else if let a = IPv6Address(text) { self = .v6(a) } else { return nil }
    }

    public init?(bytes: some Collection<UInt8>) {
        if let a = IPv4Address(bytes: bytes) { self = .v4(a) } else if let a = IPv6Address(bytes: bytes) { self = .v6(a) } else { return nil }
    }

    public var family: IPFamily {
        switch self { case .v4: .v4; case .v6: .v6 }
    }

    public var bytes: [UInt8] {
        switch self { case .v4(let a): a.bytes; case .v6(let a): a.bytes }
    }

    public var isV4: Bool { if case .v4 = self { true } else { false } }

    public var description: String {
        switch self { case .v4(let a): a.description; case .v6(let a): a.description }
    }

    public static func < (lhs: Self, rhs: Self) -> Bool {
        switch (lhs, rhs) {
        case (.v4(let a), .v4(let b)): a < b
        case (.v6(let a), .v6(let b)): a < b
        case (.v4, .v6): true
        case (.v6, .v4): false
        }
    }

    public init(from decoder: any Decoder) throws {
        let text = try decoder.singleValueContainer().decode(String.self)
        guard let a = IPAddress(text) else {
            throw DecodingError.dataCorrupted(.init(codingPath: decoder.codingPath, debugDescription: "invalid IP address \"\(text)\""))
        }
        self = a
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.singleValueContainer()
        try c.encode(description)
    }
}

public enum IPFamily: String, Hashable, Sendable, Codable, CaseIterable {
    case v4 = "IPv4"
    case v6 = "IPv6"

    /// Address length in bits.
    public var bitWidth: Int { self == .v4 ? 32 : 128 }
}
