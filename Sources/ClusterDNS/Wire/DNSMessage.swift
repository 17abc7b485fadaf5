import IPAddressing

/// Record data for the types nodenet produces or inspects; anything else stays raw bytes
/// (it is only ever relayed, and carries no names that would need decompression... except
/// the few legacy types handled below, which are decompressed so relaying stays correct).
public enum RData: Hashable, Sendable {
    case a(IPv4Address)
    case aaaa(IPv6Address)
    case cname(DNSName)
    case ns(DNSName)
    case ptr(DNSName)
    case srv(priority: UInt16, weight: UInt16, port: UInt16, target: DNSName)
    case txt([[UInt8]])
    case soa(mname: DNSName, rname: DNSName, serial: UInt32, refresh: UInt32, retry: UInt32, expire: UInt32, minimum: UInt32)
    case hinfo(cpu: [UInt8], os: [UInt8])
    /// MX and other types: raw rdata (MX keeps its name, decompressed, after the preference).
    case mx(preference: UInt16, exchange: DNSName)
    case raw([UInt8])
}

public struct DNSQuestion: Hashable, Sendable {
    public var name: DNSName
    public var type: RRType
    public var qclass: UInt16

    public init(name: DNSName, type: RRType, qclass: UInt16 = DNSClass.internet) {
        self.name = name
        self.type = type
        self.qclass = qclass
    }
}

public struct DNSRecord: Hashable, Sendable {
    public var name: DNSName
    public var type: RRType
    public var rclass: UInt16
    public var ttl: UInt32
    public var data: RData

    public init(name: DNSName, type: RRType, rclass: UInt16 = DNSClass.internet, ttl: UInt32, data: RData) {
        self.name = name
        self.type = type
        self.rclass = rclass
        self.ttl = ttl
        self.data = data
    }
}

/// EDNS0 as carried by the OPT pseudo-record (RFC 6891).
public struct EDNS: Hashable, Sendable {
    public var udpSize: UInt16
    /// Upper 8 bits of the 12-bit response code.
    public var extendedRCode: UInt8 = 0
    public var version: UInt8 = 0
    public var dnssecOK = false
    /// Options, relayed as opaque bytes.
    public var options: [UInt8] = []

    public init(udpSize: UInt16, extendedRCode: UInt8 = 0, version: UInt8 = 0, dnssecOK: Bool = false) {
        self.udpSize = udpSize
        self.extendedRCode = extendedRCode
        self.version = version
        self.dnssecOK = dnssecOK
    }
}

public struct DNSMessage: Hashable, Sendable {
    public var header: DNSHeader
    public var questions: [DNSQuestion]
    public var answers: [DNSRecord]
    public var authority: [DNSRecord]
    /// Additional records other than OPT (which lives in `edns`).
    public var additional: [DNSRecord]
    public var edns: EDNS?

    public init(header: DNSHeader = DNSHeader(), questions: [DNSQuestion] = [], answers: [DNSRecord] = [],
                authority: [DNSRecord] = [], additional: [DNSRecord] = [], edns: EDNS? = nil) {
        self.header = header
        self.questions = questions
        self.answers = answers
        self.authority = authority
        self.additional = additional
        self.edns = edns
    }

    /// The full response code, combining the header and the OPT extension.
    public var rcode: UInt16 {
        UInt16(header.rcode) | UInt16(edns?.extendedRCode ?? 0) << 4
    }

    public mutating func setRCode(_ code: RCode) {
        header.rcode = UInt8(code.rawValue & 0xF)
        if edns != nil { edns!.extendedRCode = UInt8(code.rawValue >> 4) }
    }

    /// A response skeleton for `query`: same id, question and RD/CD bits.
    public static func response(to query: DNSMessage, rcode: RCode) -> DNSMessage {
        var h = DNSHeader()
        h.id = query.header.id
        h.isResponse = true
        h.opcode = query.header.opcode
        h.recursionDesired = query.header.recursionDesired
        h.checkingDisabled = query.header.checkingDisabled
        h.recursionAvailable = true
        var m = DNSMessage(header: h, questions: Array(query.questions.prefix(1)))
        if let e = query.edns { m.edns = EDNS(udpSize: DNSWire.advertisedUDPSize, dnssecOK: e.dnssecOK) }
        m.setRCode(rcode)
        return m
    }
}

public enum DNSWire {
    /// The UDP payload size we advertise (the DNS flag day 2020 value, avoids fragmentation).
    public static let advertisedUDPSize: UInt16 = 1232
}
