// DNS constants and the fixed 12-byte header (RFC 1035 §4.1.1, RFC 6891 for EDNS0).

/// Record types nodenet knows by name; any other value passes through as a number.
public struct RRType: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
    public var rawValue: UInt16
    public init(rawValue: UInt16) { self.rawValue = rawValue }
    public init(_ v: UInt16) { rawValue = v }

    public static let a = RRType(1), ns = RRType(2), cname = RRType(5), soa = RRType(6), ptr = RRType(12)
    public static let hinfo = RRType(13), txt = RRType(16), aaaa = RRType(28), srv = RRType(33)
    public static let opt = RRType(41), ixfr = RRType(251), axfr = RRType(252), any = RRType(255)

    public var description: String {
        switch self {
        case .a: "A"; case .ns: "NS"; case .cname: "CNAME"; case .soa: "SOA"; case .ptr: "PTR"
        case .hinfo: "HINFO"; case .txt: "TXT"; case .aaaa: "AAAA"; case .srv: "SRV"; case .opt: "OPT"
        case .ixfr: "IXFR"; case .axfr: "AXFR"; case .any: "ANY"
        default: "TYPE\(rawValue)"
        }
    }
}

public enum DNSClass {
    public static let internet: UInt16 = 1
}

/// Response codes (the low 4 bits in the header; BADVERS needs the OPT extension).
public enum RCode: UInt16, Sendable, CaseIterable {
    case noError = 0, formErr = 1, servFail = 2, nxDomain = 3, notImp = 4, refused = 5
    case badVers = 16
}

/// The header with its flags unpacked. Counts are what the wire said (parsing checks them).
public struct DNSHeader: Hashable, Sendable {
    public var id: UInt16 = 0
    public var isResponse = false
    public var opcode: UInt8 = 0
    public var authoritative = false
    public var truncated = false
    public var recursionDesired = false
    public var recursionAvailable = false
    public var authenticData = false
    public var checkingDisabled = false
    /// Low 4 bits of the response code.
    public var rcode: UInt8 = 0
    public var qdCount: UInt16 = 0
    public var anCount: UInt16 = 0
    public var nsCount: UInt16 = 0
    public var arCount: UInt16 = 0

    public init() {}

    var flags: UInt16 {
        var f: UInt16 = 0
        if isResponse { f |= 0x8000 }
        f |= UInt16(opcode & 0xF) << 11
        if authoritative { f |= 0x0400 }
        if truncated { f |= 0x0200 }
        if recursionDesired { f |= 0x0100 }
        if recursionAvailable { f |= 0x0080 }
        if authenticData { f |= 0x0020 }
        if checkingDisabled { f |= 0x0010 }
        f |= UInt16(rcode & 0xF)
        return f
    }

    init(id: UInt16, flags f: UInt16, counts: (UInt16, UInt16, UInt16, UInt16)) {
        self.id = id
        isResponse = f & 0x8000 != 0
        opcode = UInt8((f >> 11) & 0xF)
        authoritative = f & 0x0400 != 0
        truncated = f & 0x0200 != 0
        recursionDesired = f & 0x0100 != 0
        recursionAvailable = f & 0x0080 != 0
        authenticData = f & 0x0020 != 0
        checkingDisabled = f & 0x0010 != 0
        rcode = UInt8(f & 0xF)
        (qdCount, anCount, nsCount, arCount) = counts
    }
}

/// Limits from RFC 1035 §2.3.4 and practice.
enum DNSLimits {
    static let maxNameLength = 255
    static let maxLabelLength = 63
    /// Classic UDP payload without EDNS0.
    static let classicUDPSize = 512
    static let maxMessageSize = 65535
}
