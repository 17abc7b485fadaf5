// Reading what the kernel sends. Every length is checked against the bytes actually there:
// a truncated or malformed reply throws `malformedReply`, it never traps.
import IPAddressing

/// One received netlink message: the header fields and the payload after nlmsghdr.
public struct NetlinkMessage: Sendable, Equatable {
    public var type: UInt16
    public var flags: UInt16
    public var seq: UInt32
    public var pid: UInt32
    public var payload: ArraySlice<UInt8>

    /// Splits a datagram into its messages.
    public static func parse(_ bytes: [UInt8]) throws(NetlinkError) -> [NetlinkMessage] {
        var out: [NetlinkMessage] = []
        var offset = 0
        while bytes.count - offset >= 16 {
            let r = ByteReader(bytes[offset...])
            let length = Int(try r.u32(0))
            guard length >= 16, length <= bytes.count - offset else {
                throw .malformed("parse", "netlink message", "nlmsg_len \(length) with \(bytes.count - offset) bytes left")
            }
            out.append(NetlinkMessage(type: try r.u16(4), flags: try r.u16(6), seq: try r.u32(8), pid: try r.u32(12),
                                      payload: bytes[(offset + 16)..<(offset + length)]))
            offset += (length + 3) & ~3
        }
        // Trailing bytes shorter than a header are padding at most; anything else is damage.
        if offset < bytes.count, bytes[offset...].contains(where: { $0 != 0 }) {
            throw .malformed("parse", "netlink message", "\(bytes.count - offset) stray bytes after the last message")
        }
        return out
    }
}

/// Bounds-checked little-endian reads from a slice, by offset from the slice's start.
struct ByteReader {
    let bytes: ArraySlice<UInt8>
    init(_ bytes: ArraySlice<UInt8>) { self.bytes = bytes }

    var count: Int { bytes.count }

    private func check(_ offset: Int, _ size: Int) throws(NetlinkError) {
        guard offset >= 0, offset + size <= bytes.count else {
            throw .malformed("parse", "netlink payload", "need \(size) bytes at offset \(offset), have \(bytes.count)")
        }
    }

    func u8(_ offset: Int) throws(NetlinkError) -> UInt8 {
        try check(offset, 1)
        return bytes[bytes.startIndex + offset]
    }

    func u16(_ offset: Int) throws(NetlinkError) -> UInt16 {
        try check(offset, 2)
        let i = bytes.startIndex + offset
        return UInt16(bytes[i]) | UInt16(bytes[i + 1]) << 8
    }

    func u32(_ offset: Int) throws(NetlinkError) -> UInt32 {
        try check(offset, 4)
        let i = bytes.startIndex + offset
        return UInt32(bytes[i]) | UInt32(bytes[i + 1]) << 8 | UInt32(bytes[i + 2]) << 16 | UInt32(bytes[i + 3]) << 24
    }

    func s32(_ offset: Int) throws(NetlinkError) -> Int32 { Int32(bitPattern: try u32(offset)) }

    /// The bytes from `offset` on (empty when offset is at the end).
    func rest(from offset: Int) throws(NetlinkError) -> ArraySlice<UInt8> {
        try check(offset, 0)
        return bytes[(bytes.startIndex + offset)...]
    }
}

/// The attributes of one message or nest, in order. Lookups take the first match, which is
/// what the kernel's own nla_find does.
public struct Attributes: Sendable {
    public struct Entry: Sendable, Equatable {
        /// The type with NLA_F_NESTED and NLA_F_NET_BYTEORDER masked off.
        public var type: UInt16
        public var value: ArraySlice<UInt8>
    }

    public private(set) var entries: [Entry] = []

    public init(_ bytes: ArraySlice<UInt8>) throws(NetlinkError) {
        var offset = bytes.startIndex
        while bytes.endIndex - offset >= 4 {
            let length = Int(UInt16(bytes[offset]) | UInt16(bytes[offset + 1]) << 8)
            let type = (UInt16(bytes[offset + 2]) | UInt16(bytes[offset + 3]) << 8) & 0x3fff
            guard length >= 4, length <= bytes.endIndex - offset else {
                throw .malformed("parse", "attribute \(type)", "nla_len \(length) with \(bytes.endIndex - offset) bytes left")
            }
            entries.append(Entry(type: type, value: bytes[(offset + 4)..<(offset + length)]))
            // The last attribute may omit its padding; never step past the end.
            offset = min(offset + ((length + 3) & ~3), bytes.endIndex)
        }
        guard offset == bytes.endIndex else {
            throw .malformed("parse", "attributes", "\(bytes.endIndex - offset) bytes too short for an attribute header")
        }
    }

    public func bytes(_ type: UInt16) -> ArraySlice<UInt8>? {
        entries.first { $0.type == type }?.value
    }

    public func has(_ type: UInt16) -> Bool { bytes(type) != nil }

    public func u8(_ type: UInt16) -> UInt8? {
        guard let v = bytes(type), v.count >= 1 else { return nil }
        return v[v.startIndex]
    }

    public func u16(_ type: UInt16) -> UInt16? {
        guard let v = bytes(type), v.count >= 2 else { return nil }
        return try? ByteReader(v).u16(0)
    }

    public func be16(_ type: UInt16) -> UInt16? { u16(type)?.byteSwapped }

    public func u32(_ type: UInt16) -> UInt32? {
        guard let v = bytes(type), v.count >= 4 else { return nil }
        return try? ByteReader(v).u32(0)
    }

    public func be32(_ type: UInt16) -> UInt32? { u32(type)?.byteSwapped }

    /// A string attribute without its NUL terminator (and anything after it).
    public func string(_ type: UInt16) -> String? {
        guard let v = bytes(type) else { return nil }
        let end = v.firstIndex(of: 0) ?? v.endIndex
        return String(decoding: v[v.startIndex..<end], as: UTF8.self)
    }

    /// An IPv4 (4 bytes) or IPv6 (16 bytes) address; nil for other lengths.
    public func address(_ type: UInt16) -> IPAddress? {
        bytes(type).flatMap { IPAddress(bytes: $0) }
    }

    public func nested(_ type: UInt16) throws(NetlinkError) -> Attributes? {
        guard let v = bytes(type) else { return nil }
        return try Attributes(v)
    }

    /// Every attribute of this type, in order (repeated attributes such as nf_tables list elements).
    public func all(_ type: UInt16) -> [ArraySlice<UInt8>] {
        entries.filter { $0.type == type }.map(\.value)
    }
}

/// The content of an NLMSG_ERROR message: errno 0 is an ACK.
public struct NetlinkAck: Sendable, Equatable {
    /// Positive errno (the kernel sends it negated); 0 for success.
    public var errno: Int32
    /// The sequence number of the request this answers.
    public var requestSeq: UInt32
    public var requestType: UInt16
    /// NLMSGERR_ATTR_MSG, when the kernel explained itself.
    public var extAck: String?

    public init(_ message: NetlinkMessage) throws(NetlinkError) {
        let r = ByteReader(message.payload)
        let error = try r.s32(0)
        errno = error == Int32.min ? Int32.max : -error
        // The echoed request header follows; with NLM_F_CAPPED its payload is left out.
        let echoedLength = Int(try r.u32(4))
        requestType = try r.u16(8)
        requestSeq = try r.u32(12)
        extAck = nil
        guard message.flags & Netlink.fAckTLVs != 0 else { return }
        let tlvOffset = message.flags & Netlink.fCapped != 0 ? 20 : 4 + ((echoedLength + 3) & ~3)
        guard let tlvs = try? Attributes(r.rest(from: tlvOffset)) else { return }
        extAck = tlvs.string(Netlink.errAttrMsg)
    }
}
