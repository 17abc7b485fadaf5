// nf_tables expressions: the kernel's rule bytecode, one case per expression kind, with the
// registers spelled out. Encoding follows what nft(8) 1.0.6 emits (see `nft --debug=netlink`);
// the golden tests in Tests/NetlinkTests/NFTablesExpressionTests.swift annotate the bytes.
import CNetlink
import IPAddressing

/// A verdict as the kernel encodes it (NFTA_VERDICT_CODE, and the chain for jump/goto).
public enum NFTablesVerdict: Sendable, Hashable {
    case accept, drop, `return`, `continue`
    case jump(String)
    case goto(String)

    /// The NF_* / NFT_* verdict code (signed, sent big endian).
    public var code: Int32 {
        switch self {
        case .accept: Int32(NF_ACCEPT)
        case .drop: Int32(NF_DROP)
        case .return: NFT_RETURN.rawValue
        case .continue: NFT_CONTINUE.rawValue
        case .jump: NFT_JUMP.rawValue
        case .goto: NFT_GOTO.rawValue
        }
    }

    public var chain: String? {
        switch self {
        case .jump(let c), .goto(let c): c
        default: nil
        }
    }
}

/// A set referred to by an expression: by name, plus the batch-local id when the set is
/// created in the same transaction (anonymous sets always are; the kernel resolves the id).
public struct NFTablesSetReference: Sendable, Hashable {
    public var name: String
    public var id: UInt32?
    public init(_ name: String, id: UInt32? = nil) {
        self.name = name
        self.id = id
    }
}

/// One nf_tables expression. Registers: `NFTablesExpression.register1` is the first 16-byte
/// register (NFT_REG_1, the same storage as NFT_REG32_00); `register32(i)` is the i-th 4-byte
/// register, used for the later fields of a concatenation.
public enum NFTablesExpression: Sendable, Hashable {
    public enum PayloadBase: UInt32, Sendable { case link = 0, network = 1, transport = 2 }
    public enum MetaKey: UInt32, Sendable {
        case mark = 3, nfproto = 15, l4proto = 16
    }

    /// payload load `length` bytes at `offset` of `base` into `dreg`.
    case payload(base: PayloadBase, offset: UInt32, length: UInt32, dreg: UInt32)
    /// meta load `key` into `dreg`.
    case meta(MetaKey, dreg: UInt32)
    /// meta set `key` from `sreg`.
    case metaSet(MetaKey, sreg: UInt32)
    /// cmp `sreg` with `data` (eq or neq).
    case cmp(sreg: UInt32, equal: Bool, data: [UInt8])
    /// dreg = (sreg & mask) ^ xor.
    case bitwise(sreg: UInt32, dreg: UInt32, mask: [UInt8], xor: [UInt8])
    /// lookup `sreg` in a set; with `dreg`, the map's data goes there (NFT_REG_VERDICT for a vmap).
    case lookup(NFTablesSetReference, sreg: UInt32, dreg: UInt32?, inverted: Bool)
    /// immediate data into `dreg`.
    case immediate(dreg: UInt32, data: [UInt8])
    /// immediate verdict (into NFT_REG_VERDICT).
    case verdict(NFTablesVerdict)
    /// numgen random mod `modulus` into `dreg`.
    case numgenRandom(modulus: UInt32, dreg: UInt32)
    /// nat dnat (or snat) of `family` taking the address from `addressRegister` and the port
    /// from `portRegister` (flags NF_NAT_RANGE_PROTO_SPECIFIED when a port is given).
    case nat(destination: Bool, family: IPFamily, addressRegister: UInt32, portRegister: UInt32?)
    /// masq with NF_NAT_RANGE_* flags (0x10: fully random).
    case masq(flags: UInt32)
    /// ct load `key` (0: state) into `dreg`.
    case ct(key: UInt32, dreg: UInt32)
    /// fib (saddr or daddr) type into `dreg`.
    case fibAddressType(source: Bool, dreg: UInt32)
    /// reject: TCP reset, or ICMP(v6) unreachable with `code`.
    case reject(tcpReset: Bool, icmpCode: UInt8)
    case counter
    /// dynset update of the key in `sreg` (the set's own timeout applies).
    case dynsetUpdate(NFTablesSetReference, sreg: UInt32)
    /// dynset update of a map: key from `keyRegister`, data from `dataRegister`, with its own
    /// timeout. On a hit the kernel only refreshes the expiry, never the data (nft_dynset_eval).
    case dynsetUpdateMap(NFTablesSetReference, keyRegister: UInt32, dataRegister: UInt32, timeoutMilliseconds: UInt64)
    /// ct load `key` of one direction (NFTA_CT_DIRECTION: 0 original, 1 reply) into `dreg`.
    case ctDirection(key: UInt32, dreg: UInt32, direction: UInt8)
    /// `notrack`: the packet skips connection tracking (raw-priority chains only).
    case notrack
    /// ct set `key` (3: mark) of the packet's connection from `sreg`.
    case ctSet(key: UInt32, sreg: UInt32)

    public static let register1 = UInt32(NFT_REG_1.rawValue)
    public static let verdictRegister = UInt32(NFT_REG_VERDICT.rawValue)
    /// The i-th 4-byte register (NFT_REG32_00 + i).
    public static func register32(_ i: Int) -> UInt32 { UInt32(NFT_REG32_00.rawValue) + UInt32(i) }

    // MARK: shorthands (register 1), as the masquerade rule of NodeRoutes uses them

    /// Loads `length` bytes at `offset` of the network header into register 1.
    public static func loadNetworkHeader(offset: UInt32, length: UInt32) -> Self {
        .payload(base: .network, offset: offset, length: length, dreg: register1)
    }

    /// register 1 = (register 1 & mask) ^ 0.
    public static func mask(_ mask: [UInt8]) -> Self {
        .bitwise(sreg: register1, dreg: register1, mask: mask, xor: [UInt8](repeating: 0, count: mask.count))
    }

    /// Compares register 1 with `data`; the rule ends here unless it holds.
    public static func compare(equal: Bool, data: [UInt8]) -> Self { .cmp(sreg: register1, equal: equal, data: data) }

    /// "meta l4proto P th dport|sport PORT", as nft encodes it.
    public static func transportPort(_ l4proto: UInt8, port: UInt16, destination: Bool) -> [Self] {
        [.meta(.l4proto, dreg: register1), .compare(equal: true, data: [l4proto]),
         .payload(base: .transport, offset: destination ? 2 : 0, length: 2, dreg: register1),
         .compare(equal: true, data: [UInt8(port >> 8), UInt8(port & 0xff)])]
    }

    /// Plain masquerade (no flags).
    public static let masquerade = Self.masq(flags: 0)

    /// The expressions for "source (or destination) address in `prefix`" (or not in it), the
    /// way nft encodes `ip saddr 10.244.0.0/16`: load only the bytes the prefix covers and
    /// compare; when the prefix ends inside a byte, load the whole address and mask it first.
    /// A /0 prefix matches everything and yields no expressions.
    public static func match(_ prefix: IPPrefix, source: Bool, negated: Bool = false) -> [Self] {
        let v4 = prefix.family == .v4
        let offset: UInt32 = v4 ? (source ? 12 : 16) : (source ? 8 : 24)
        let field = v4 ? 4 : 16
        let bytes = (prefix.length + 7) / 8
        guard bytes > 0 else { return [] }
        let network = prefix.network.address.bytes
        // Byte-aligned: load and compare just the prefix bytes. Otherwise the whole field,
        // masked, compared whole (nft reads a shorter compare back as another prefix).
        guard prefix.length % 8 != 0 else {
            return [.loadNetworkHeader(offset: offset, length: UInt32(bytes)), .compare(equal: !negated, data: Array(network.prefix(bytes)))]
        }
        return [.loadNetworkHeader(offset: offset, length: UInt32(field)), .mask(maskBytes(prefixLength: prefix.length, byteCount: field)),
                .compare(equal: !negated, data: network)]
    }

    public static func maskBytes(prefixLength: Int, byteCount: Int) -> [UInt8] {
        (0..<byteCount).map { i in
            let bits = max(0, min(8, prefixLength - i * 8))
            return bits == 0 ? 0 : UInt8(truncatingIfNeeded: 0xff << (8 - bits))
        }
    }

    // MARK: encoding

    /// Writes NFTA_EXPR_NAME and NFTA_EXPR_DATA of this expression (the caller opens the
    /// NFTA_LIST_ELEM around it).
    func encode(into b: inout MessageBuilder) {
        b.attribute(UInt16(NFTA_EXPR_NAME.rawValue), string: name)
        // Expressions without attributes still carry an empty data nest in nft's encoding
        // only when they have something to say; masq with no flags has none.
        if case .masq(0) = self { return }
        if case .notrack = self { return }
        b.nested(UInt16(NFTA_EXPR_DATA.rawValue), nestedFlag: true) { d in encodeData(into: &d) }
    }

    var name: String {
        switch self {
        case .payload: "payload"
        case .meta, .metaSet: "meta"
        case .cmp: "cmp"
        case .bitwise: "bitwise"
        case .lookup: "lookup"
        case .immediate, .verdict: "immediate"
        case .numgenRandom: "numgen"
        case .nat: "nat"
        case .masq: "masq"
        case .ct, .ctDirection, .ctSet: "ct"
        case .fibAddressType: "fib"
        case .reject: "reject"
        case .counter: "counter"
        case .dynsetUpdate, .dynsetUpdateMap: "dynset"
        case .notrack: "notrack"
        }
    }

    private func encodeData(into d: inout MessageBuilder) {
        func a(_ t: some RawRepresentable<UInt32>) -> UInt16 { UInt16(t.rawValue) }
        switch self {
        case .payload(let base, let offset, let length, let dreg):
            d.attribute(a(NFTA_PAYLOAD_DREG), be32: dreg)
            d.attribute(a(NFTA_PAYLOAD_BASE), be32: base.rawValue)
            d.attribute(a(NFTA_PAYLOAD_OFFSET), be32: offset)
            d.attribute(a(NFTA_PAYLOAD_LEN), be32: length)
        case .meta(let key, let dreg):
            d.attribute(a(NFTA_META_DREG), be32: dreg)
            d.attribute(a(NFTA_META_KEY), be32: key.rawValue)
        case .metaSet(let key, let sreg):
            d.attribute(a(NFTA_META_KEY), be32: key.rawValue)
            d.attribute(a(NFTA_META_SREG), be32: sreg)
        case .cmp(let sreg, let equal, let data):
            d.attribute(a(NFTA_CMP_SREG), be32: sreg)
            d.attribute(a(NFTA_CMP_OP), be32: (equal ? NFT_CMP_EQ : NFT_CMP_NEQ).rawValue)
            Self.value(&d, a(NFTA_CMP_DATA), data)
        case .bitwise(let sreg, let dreg, let mask, let xor):
            d.attribute(a(NFTA_BITWISE_SREG), be32: sreg)
            d.attribute(a(NFTA_BITWISE_DREG), be32: dreg)
            d.attribute(a(NFTA_BITWISE_LEN), be32: UInt32(mask.count))
            Self.value(&d, a(NFTA_BITWISE_MASK), mask)
            Self.value(&d, a(NFTA_BITWISE_XOR), xor)
        case .lookup(let set, let sreg, let dreg, let inverted):
            d.attribute(a(NFTA_LOOKUP_SET), string: set.name)
            d.attribute(a(NFTA_LOOKUP_SREG), be32: sreg)
            if let dreg { d.attribute(a(NFTA_LOOKUP_DREG), be32: dreg) }
            if let id = set.id { d.attribute(a(NFTA_LOOKUP_SET_ID), be32: id) }
            if inverted { d.attribute(a(NFTA_LOOKUP_FLAGS), be32: NFT_LOOKUP_F_INV.rawValue) }
        case .immediate(let dreg, let data):
            d.attribute(a(NFTA_IMMEDIATE_DREG), be32: dreg)
            Self.value(&d, a(NFTA_IMMEDIATE_DATA), data)
        case .verdict(let v):
            d.attribute(a(NFTA_IMMEDIATE_DREG), be32: Self.verdictRegister)
            d.nested(a(NFTA_IMMEDIATE_DATA), nestedFlag: true) { Self.verdictData(&$0, v) }
        case .numgenRandom(let modulus, let dreg):
            d.attribute(a(NFTA_NG_DREG), be32: dreg)
            d.attribute(a(NFTA_NG_MODULUS), be32: modulus)
            d.attribute(a(NFTA_NG_TYPE), be32: NFT_NG_RANDOM.rawValue)
            d.attribute(a(NFTA_NG_OFFSET), be32: 0)
        case .nat(let destination, let family, let addressRegister, let portRegister):
            d.attribute(a(NFTA_NAT_TYPE), be32: (destination ? NFT_NAT_DNAT : NFT_NAT_SNAT).rawValue)
            d.attribute(a(NFTA_NAT_FAMILY), be32: UInt32(NFTablesMessages.family(family)))
            d.attribute(a(NFTA_NAT_REG_ADDR_MIN), be32: addressRegister)
            if let portRegister {
                d.attribute(a(NFTA_NAT_REG_PROTO_MIN), be32: portRegister)
                d.attribute(a(NFTA_NAT_FLAGS), be32: 2 /* NF_NAT_RANGE_PROTO_SPECIFIED */)
            }
        case .masq(let flags):
            d.attribute(a(NFTA_MASQ_FLAGS), be32: flags)
        case .ct(let key, let dreg):
            d.attribute(a(NFTA_CT_DREG), be32: dreg)
            d.attribute(a(NFTA_CT_KEY), be32: key)
        case .ctSet(let key, let sreg):
            d.attribute(a(NFTA_CT_KEY), be32: key)
            d.attribute(a(NFTA_CT_SREG), be32: sreg)
        case .ctDirection(let key, let dreg, let direction):
            d.attribute(a(NFTA_CT_DREG), be32: dreg)
            d.attribute(a(NFTA_CT_KEY), be32: key)
            d.attribute(a(NFTA_CT_DIRECTION), u8: direction)
        case .fibAddressType(let source, let dreg):
            d.attribute(a(NFTA_FIB_DREG), be32: dreg)
            d.attribute(a(NFTA_FIB_RESULT), be32: NFT_FIB_RESULT_ADDRTYPE.rawValue)
            d.attribute(a(NFTA_FIB_FLAGS), be32: (source ? NFTA_FIB_F_SADDR : NFTA_FIB_F_DADDR).rawValue)
        case .reject(let tcpReset, let code):
            d.attribute(a(NFTA_REJECT_TYPE), be32: (tcpReset ? NFT_REJECT_TCP_RST : NFT_REJECT_ICMP_UNREACH).rawValue)
            d.attribute(a(NFTA_REJECT_ICMP_CODE), u8: tcpReset ? 0 : code)
        case .counter:
            d.attribute(a(NFTA_COUNTER_BYTES), u64: 0)
            d.attribute(a(NFTA_COUNTER_PACKETS), u64: 0)
        case .dynsetUpdate(let set, let sreg):
            d.attribute(a(NFTA_DYNSET_SET_NAME), string: set.name)
            if let id = set.id { d.attribute(a(NFTA_DYNSET_SET_ID), be32: id) }
            d.attribute(a(NFTA_DYNSET_OP), be32: NFT_DYNSET_OP_UPDATE.rawValue)
            d.attribute(a(NFTA_DYNSET_SREG_KEY), be32: sreg)
        case .dynsetUpdateMap(let set, let keyRegister, let dataRegister, let timeout):
            d.attribute(a(NFTA_DYNSET_SET_NAME), string: set.name)
            if let id = set.id { d.attribute(a(NFTA_DYNSET_SET_ID), be32: id) }
            d.attribute(a(NFTA_DYNSET_OP), be32: NFT_DYNSET_OP_UPDATE.rawValue)
            d.attribute(a(NFTA_DYNSET_SREG_KEY), be32: keyRegister)
            d.attribute(a(NFTA_DYNSET_SREG_DATA), be32: dataRegister)
            d.attribute(a(NFTA_DYNSET_TIMEOUT), u64: timeout.bigEndian)
        case .notrack:
            break
        }
    }

    /// NFTA_DATA_VALUE inside the nest `type`.
    static func value(_ b: inout MessageBuilder, _ type: UInt16, _ bytes: [UInt8]) {
        b.nested(type, nestedFlag: true) { $0.attribute(UInt16(NFTA_DATA_VALUE.rawValue), bytes: bytes) }
    }

    /// NFTA_DATA_VERDICT { code, chain } (inside an NFTA_*_DATA nest).
    static func verdictData(_ b: inout MessageBuilder, _ v: NFTablesVerdict) {
        b.nested(UInt16(NFTA_DATA_VERDICT.rawValue), nestedFlag: true) { n in
            n.attribute(UInt16(NFTA_VERDICT_CODE.rawValue), be32: UInt32(bitPattern: v.code))
            if let c = v.chain { n.attribute(UInt16(NFTA_VERDICT_CHAIN.rawValue), string: c) }
        }
    }
}
