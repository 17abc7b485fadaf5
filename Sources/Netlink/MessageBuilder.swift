// The one attribute writer. Every request (rtnetlink, nfnetlink) is built here: a 16-byte
// nlmsghdr, the family's fixed header, then type-length-value attributes padded to 4 bytes.
// Integers in fixed headers and most attributes are host order (little endian here); the few
// attributes the kernel wants in network order (ports, nf_tables data) say so at the call site.

import IPAddressing

/// Builds one netlink message. The length field is written by `finish()`; the sequence number
/// and the ACK flag are set by the session that sends it.
public struct MessageBuilder: Sendable {
    public private(set) var bytes: [UInt8]

    public init(type: UInt16, flags: UInt16, capacity: Int = 128) {
        bytes = []
        bytes.reserveCapacity(capacity)
        appendInteger(UInt32(0))  // nlmsg_len, set by finish()
        appendInteger(type)
        appendInteger(flags)
        appendInteger(UInt32(0))  // nlmsg_seq, set by the session
        appendInteger(UInt32(0))  // nlmsg_pid: 0, the kernel fills in our port id
    }

    // MARK: raw payload (fixed family headers)

    public mutating func appendInteger<T: FixedWidthInteger>(_ value: T) {
        withUnsafeBytes(of: value.littleEndian) { bytes.append(contentsOf: $0) }
    }

    public mutating func appendBytes(_ data: some Collection<UInt8>) {
        bytes.append(contentsOf: data)
    }

    /// Zero bytes up to the next 4-byte boundary (NLMSG_ALIGN / NLA_ALIGN are both 4).
    public mutating func pad() {
        while bytes.count % 4 != 0 { bytes.append(0) }
    }

    // MARK: attributes

    /// An attribute with a raw payload, padded to 4 bytes. nla_len is 16 bits: a longer payload
    /// is a programming error (split it), not something to send truncated.
    public mutating func attribute(_ type: UInt16, bytes payload: some Collection<UInt8>) {
        precondition(payload.count <= Int(UInt16.max) - 4, "netlink attribute \(type) longer than 65531 bytes")
        appendInteger(UInt16(4 + payload.count))
        appendInteger(type)
        bytes.append(contentsOf: payload)
        pad()
    }

    /// An attribute without payload (a flag such as NHA_GROUPS or NFTA_*_FLAGS-less markers).
    public mutating func flagAttribute(_ type: UInt16) {
        appendInteger(UInt16(4))
        appendInteger(type)
    }

    public mutating func attribute(_ type: UInt16, u8 value: UInt8) {
        appendInteger(UInt16(5)); appendInteger(type); bytes.append(value); pad()
    }

    public mutating func attribute(_ type: UInt16, u16 value: UInt16) {
        appendInteger(UInt16(6)); appendInteger(type); appendInteger(value); pad()
    }

    public mutating func attribute(_ type: UInt16, u32 value: UInt32) {
        appendInteger(UInt16(8)); appendInteger(type); appendInteger(value)
    }

    public mutating func attribute(_ type: UInt16, s32 value: Int32) {
        appendInteger(UInt16(8)); appendInteger(type); appendInteger(value)
    }

    public mutating func attribute(_ type: UInt16, u64 value: UInt64) {
        appendInteger(UInt16(12)); appendInteger(type); appendInteger(value)
    }

    /// A 16-bit value in network byte order (vxlan port, nf_tables port data).
    public mutating func attribute(_ type: UInt16, be16 value: UInt16) {
        appendInteger(UInt16(6)); appendInteger(type); appendInteger(value.byteSwapped); pad()
    }

    /// A 32-bit value in network byte order (nf_tables data, NFTA_*_FLAGS and friends).
    public mutating func attribute(_ type: UInt16, be32 value: UInt32) {
        appendInteger(UInt16(8)); appendInteger(type); appendInteger(value.byteSwapped)
    }

    /// A NUL-terminated string (IFLA_IFNAME, IFLA_INFO_KIND, nf_tables names).
    public mutating func attribute(_ type: UInt16, string: String) {
        var utf8 = Array(string.utf8)
        utf8.append(0)
        attribute(type, bytes: utf8)
    }

    /// An address in network byte order: 4 bytes for IPv4, 16 for IPv6.
    public mutating func attribute(_ type: UInt16, address: IPAddress) {
        attribute(type, bytes: address.bytes)
    }

    /// A nested attribute: the body's attributes go inside; its length is patched afterwards.
    /// NLA_F_NESTED is not set by default because rtnetlink's older policies (IFLA_LINKINFO)
    /// predate it; nf_tables callers pass `nestedFlag: true`.
    public mutating func nested(_ type: UInt16, nestedFlag: Bool = false, _ body: (inout MessageBuilder) throws -> Void) rethrows {
        let start = bytes.count
        appendInteger(UInt16(0))
        appendInteger(nestedFlag ? type | Netlink.nlaNested : type)
        try body(&self)
        precondition(bytes.count - start <= Int(UInt16.max), "nested netlink attribute \(type) longer than 65535 bytes")
        let length = UInt16(bytes.count - start)
        bytes[start] = UInt8(truncatingIfNeeded: length)
        bytes[start + 1] = UInt8(truncatingIfNeeded: length >> 8)
    }

    /// The finished message with nlmsg_len set.
    public func finish() -> [UInt8] {
        var out = bytes
        let length = UInt32(out.count)
        out.withUnsafeMutableBytes { $0.storeBytes(of: length.littleEndian, toByteOffset: 0, as: UInt32.self) }
        return out
    }
}

/// A request ready to send: one netlink message in wire form. The session patches sequence
/// number and flags in place, so building stays free of socket state.
public struct NetlinkRequest: Sendable, Equatable {
    public var bytes: [UInt8]
    /// What the request does, for error messages ("add route", "create link").
    public var operation: String
    /// The object it acts on, for error messages ("10.244.2.0/24", "veth0").
    public var object: String

    public init(bytes: [UInt8], operation: String, object: String) {
        self.bytes = bytes
        self.operation = operation
        self.object = object
    }

    public var type: UInt16 { UInt16(bytes[4]) | UInt16(bytes[5]) << 8 }
    public var flags: UInt16 {
        get { UInt16(bytes[6]) | UInt16(bytes[7]) << 8 }
        set { bytes[6] = UInt8(truncatingIfNeeded: newValue); bytes[7] = UInt8(truncatingIfNeeded: newValue >> 8) }
    }
    public var seq: UInt32 {
        get { UInt32(bytes[8]) | UInt32(bytes[9]) << 8 | UInt32(bytes[10]) << 16 | UInt32(bytes[11]) << 24 }
        set { for i in 0..<4 { bytes[8 + i] = UInt8(truncatingIfNeeded: newValue >> (8 * UInt32(i))) } }
    }
}
