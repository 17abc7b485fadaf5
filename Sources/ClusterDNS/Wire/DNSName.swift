/// A domain name kept in uncompressed wire form (length-prefixed labels, final zero byte),
/// with the case the sender used. Comparison and hashing are case-insensitive through
/// `key`, the lower-cased wire bytes, which is also what zone tables are indexed by.
public struct DNSName: Hashable, Sendable, CustomStringConvertible {
    /// Wire bytes, original case, always ending in the root label (0).
    public let wire: [UInt8]

    public static let root = DNSName(uncheckedWire: [0])

    init(uncheckedWire: [UInt8]) { wire = uncheckedWire }

    /// Parses dotted text ("svc.ns.svc.cluster.local", trailing dot optional). Escapes are not
    /// supported: Kubernetes names never need them. Nil for empty labels or over-long names.
    public init?(_ text: some StringProtocol) {
        if text == "." { wire = [0]; return }
        var out: [UInt8] = []
        out.reserveCapacity(text.utf8.count + 2)
        var labelStart = -1
        var seen = false
        for c in text.utf8 {
            seen = true
            if c == UInt8(ascii: ".") {
                guard labelStart >= 0 else { return nil }  // empty label
                labelStart = -1
                continue
            }
            if labelStart < 0 { labelStart = out.count; out.append(0) }
            out.append(c)
            let len = out.count - labelStart - 1
            guard len <= DNSLimits.maxLabelLength else { return nil }
            out[labelStart] = UInt8(len)
        }
        if !seen || out.isEmpty { return nil }
        out.append(0)
        guard out.count <= DNSLimits.maxNameLength else { return nil }
        wire = out
    }

    /// Builds from labels (already valid): used by the zone builder.
    init(labels: [some StringProtocol], under suffix: DNSName) {
        var out: [UInt8] = []
        out.reserveCapacity(suffix.wire.count + labels.reduce(0) { $0 + $1.utf8.count + 1 })
        for l in labels {
            out.append(UInt8(l.utf8.count))
            out.append(contentsOf: l.utf8)
        }
        out.append(contentsOf: suffix.wire)
        wire = out
    }

    /// Lower-cased wire bytes: the identity of the name.
    public var key: [UInt8] { Self.lowercased(wire) }

    static func lowercased(_ bytes: [UInt8]) -> [UInt8] {
        var needs = false
        for b in bytes where b >= 65 && b <= 90 { needs = true; break }
        guard needs else { return bytes }
        return bytes.map { $0 >= 65 && $0 <= 90 ? $0 | 0x20 : $0 }
    }

    /// The labels as strings, left to right.
    public var labels: [String] {
        var out: [String] = []
        var i = 0
        while i < wire.count, wire[i] != 0 {
            let n = Int(wire[i])
            out.append(String(decoding: wire[(i + 1)..<(i + 1 + n)], as: UTF8.self))
            i += 1 + n
        }
        return out
    }

    public var labelCount: Int {
        var i = 0, n = 0
        while i < wire.count, wire[i] != 0 { n += 1; i += 1 + Int(wire[i]) }
        return n
    }

    /// True when `self` equals `zone` or lies under it (case-insensitive).
    public func isSubdomain(of zone: DNSName) -> Bool {
        Self.suffixOffset(key, zone.key) != nil
    }

    /// Where `suffixKey` starts inside `key` at a label boundary, if it is a suffix.
    static func suffixOffset(_ key: [UInt8], _ suffixKey: [UInt8]) -> Int? {
        guard key.count >= suffixKey.count else { return nil }
        let start = key.count - suffixKey.count
        var i = 0
        while i < start { i += 1 + Int(key[i]) }
        guard i == start else { return nil }
        return key[start...].elementsEqual(suffixKey) ? start : nil
    }

    public var description: String {
        let l = labels
        return l.isEmpty ? "." : l.joined(separator: ".") + "."
    }

    public static func == (a: DNSName, b: DNSName) -> Bool { a.key == b.key }
    public func hash(into h: inout Hasher) { h.combine(key) }
}
