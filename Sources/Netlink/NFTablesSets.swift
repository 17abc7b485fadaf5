// nf_tables sets, maps and their elements: declarations (NEWSET/DELSET), element batches
// (NEWSETELEM/DELSETELEM) and the dumps that read chains, sets and elements back.
import CNetlink
import Glibc
import IPAddressing

/// A set or map declaration as the kernel takes it. Key types are nft's datatype numbers
/// (concatenations: `type << 6 | next`), which is what nft reads back to print the set.
public struct NFTablesSet: Sendable, Hashable {
    public var name: String
    /// Batch-local id (NFTA_SET_ID): lets later messages of the same batch refer to the set
    /// before it has a handle, and names anonymous sets (`__set%d`).
    public var id: UInt32?
    public var keyType: UInt32
    /// Key bytes: each concatenated field rounded up to 4 bytes.
    public var keyLength: UInt32
    /// NFT_SET_* flags (MAP, TIMEOUT, EVAL, INTERVAL, ANONYMOUS, CONSTANT).
    public var flags: UInt32
    /// NFT_DATA_VERDICT for verdict maps.
    public var dataType: UInt32?
    public var dataLength: UInt32
    /// Default element timeout (NFT_SET_TIMEOUT sets).
    public var timeoutMilliseconds: UInt64?
    /// Field lengths of a concatenated interval key (NFTA_SET_DESC_CONCAT).
    public var concatLengths: [UInt32]
    /// NFTA_SET_USERDATA: opaque to the kernel; nft reads it to print keys (`keyByteOrder`).
    public var userData: [UInt8] = []

    public init(name: String, id: UInt32? = nil, keyType: UInt32, keyLength: UInt32, flags: UInt32 = 0, dataType: UInt32? = nil,
                dataLength: UInt32 = 0, timeoutMilliseconds: UInt64? = nil, concatLengths: [UInt32] = []) {
        self.name = name
        self.id = id
        self.keyType = keyType
        self.keyLength = keyLength
        self.flags = flags
        self.dataType = dataType
        self.dataLength = dataLength
        self.timeoutMilliseconds = timeoutMilliseconds
        self.concatLengths = concatLengths
    }

    public static let flagAnonymous = NFT_SET_ANONYMOUS.rawValue
    public static let flagConstant = NFT_SET_CONSTANT.rawValue
    public static let flagInterval = NFT_SET_INTERVAL.rawValue
    public static let flagMap = NFT_SET_MAP.rawValue
    public static let flagTimeout = NFT_SET_TIMEOUT.rawValue
    public static let flagEval = NFT_SET_EVAL.rawValue
    /// The key is a concatenation (nft sets it on interval concatenations, with NFTA_SET_DESC_CONCAT).
    public static let flagConcat = NFT_SET_CONCAT.rawValue
    /// nft's set user data saying how to print an integer key: TLV type 0
    /// (NFTNL_UDATA_SET_KEYBYTEORDER), 4 bytes, nft's byteorder (1 host, 2 big endian).
    public static func keyByteOrder(hostEndian: Bool) -> [UInt8] {
        [0, 4] + withUnsafeBytes(of: UInt32(hostEndian ? 1 : 2)) { Array($0) }
    }

    /// NFTA_SET_DATA_TYPE of a verdict map.
    public static let verdictData: UInt32 = 0xffff_ff00
}

/// One set element: key bytes (concatenation padded per field), an optional verdict (verdict
/// maps) or data (data maps), the closing key of a concatenated interval (NFTA_SET_ELEM_KEY_END)
/// and the interval-end flag (single-field interval sets).
public struct NFTablesElement: Sendable, Hashable {
    public var key: [UInt8]
    public var verdict: NFTablesVerdict?
    public var data: [UInt8]?
    public var keyEnd: [UInt8]?
    public var intervalEnd: Bool

    public init(key: [UInt8], verdict: NFTablesVerdict? = nil, data: [UInt8]? = nil, keyEnd: [UInt8]? = nil, intervalEnd: Bool = false) {
        self.key = key
        self.verdict = verdict
        self.data = data
        self.keyEnd = keyEnd
        self.intervalEnd = intervalEnd
    }
}

/// A chain read back from the kernel.
public struct NFTablesChainInfo: Sendable, Hashable {
    public var table: String
    public var name: String
    public var hook: NFTablesHook?
}

/// A set read back from the kernel (with its elements when dumped).
public struct NFTablesSetInfo: Sendable, Hashable {
    public var table: String
    public var name: String
    public var keyType: UInt32
    public var keyLength: UInt32
    public var flags: UInt32
    public var dataType: UInt32?
    public var timeoutMilliseconds: UInt64?
    public var dataLength: UInt32?
    /// NFTA_SET_USERDATA (nft keeps a `typeof` declaration there).
    public var userData: [UInt8] = []

    public init(table: String, name: String, keyType: UInt32, keyLength: UInt32, flags: UInt32, dataType: UInt32?,
                timeoutMilliseconds: UInt64?) {
        self.table = table
        self.name = name
        self.keyType = keyType
        self.keyLength = keyLength
        self.flags = flags
        self.dataType = dataType
        self.timeoutMilliseconds = timeoutMilliseconds
    }
}

extension NFTablesMessages {
    private static func ident(_ s: NFTablesSet, table: String) -> String { "\(table) \(s.name)" }

    /// NFT_MSG_NEWSET with NLM_F_CREATE (no EXCL: an identical existing set is kept).
    public static func newSet(table: String, family f: IPFamily, _ s: NFTablesSet) -> NetlinkRequest {
        var b = NfnetlinkMessages.builder(message: message(NFT_MSG_NEWSET), family: family(f), flags: Netlink.fCreate)
        func a(_ t: some RawRepresentable<UInt32>) -> UInt16 { UInt16(t.rawValue) }
        b.attribute(a(NFTA_SET_TABLE), string: table)
        b.attribute(a(NFTA_SET_NAME), string: s.name)
        b.attribute(a(NFTA_SET_FLAGS), be32: s.flags)
        b.attribute(a(NFTA_SET_KEY_TYPE), be32: s.keyType)
        b.attribute(a(NFTA_SET_KEY_LEN), be32: s.keyLength)
        if let d = s.dataType {
            b.attribute(a(NFTA_SET_DATA_TYPE), be32: d)
            b.attribute(a(NFTA_SET_DATA_LEN), be32: s.dataLength)
        }
        if let id = s.id { b.attribute(a(NFTA_SET_ID), be32: id) }
        if let t = s.timeoutMilliseconds { b.attribute(a(NFTA_SET_TIMEOUT), u64: t.bigEndian) }
        if !s.userData.isEmpty { b.attribute(a(NFTA_SET_USERDATA), bytes: s.userData) }
        if !s.concatLengths.isEmpty {
            b.nested(a(NFTA_SET_DESC), nestedFlag: true) { desc in
                desc.nested(a(NFTA_SET_DESC_CONCAT), nestedFlag: true) { c in
                    for l in s.concatLengths {
                        c.nested(UInt16(NFTA_LIST_ELEM.rawValue), nestedFlag: true) { $0.attribute(a(NFTA_SET_FIELD_LEN), be32: l) }
                    }
                }
            }
        }
        return NetlinkRequest(bytes: b.finish(), operation: "add nftables set", object: ident(s, table: table))
    }

    /// NFT_MSG_DELSET.
    public static func deleteSet(table: String, name: String, family f: IPFamily) -> NetlinkRequest {
        var b = NfnetlinkMessages.builder(message: message(NFT_MSG_DELSET), family: family(f))
        b.attribute(UInt16(NFTA_SET_TABLE.rawValue), string: table)
        b.attribute(UInt16(NFTA_SET_NAME.rawValue), string: name)
        return NetlinkRequest(bytes: b.finish(), operation: "delete nftables set", object: "\(table) \(name)")
    }

    /// Bytes of the element list one message may carry: NFTA_SET_ELEM_LIST_ELEMENTS is one
    /// attribute, and nla_len is 16 bits.
    static let elementListLimit = 60_000

    /// NFT_MSG_NEWSETELEM (or DELSETELEM) messages for `elements`, as many as the 64 KiB
    /// attribute limit needs. `setID` refers to a set created earlier in the same batch.
    public static func elements(add: Bool, table: String, set: String, setID: UInt32? = nil, family f: IPFamily,
                                _ elements: [NFTablesElement]) -> [NetlinkRequest] {
        var out: [NetlinkRequest] = []
        var start = 0
        while start < elements.count {
            var list = MessageBuilder(type: 0, flags: 0)
            let listStart = list.bytes.count
            var end = start
            while end < elements.count, end == start || list.bytes.count - listStart < elementListLimit {
                list.nested(UInt16(NFTA_LIST_ELEM.rawValue), nestedFlag: true) { encode(elements[end], into: &$0) }
                end += 1
            }
            var b = NfnetlinkMessages.builder(message: message(add ? NFT_MSG_NEWSETELEM : NFT_MSG_DELSETELEM), family: family(f),
                                              flags: add ? Netlink.fCreate : 0)
            b.attribute(UInt16(NFTA_SET_ELEM_LIST_TABLE.rawValue), string: table)
            b.attribute(UInt16(NFTA_SET_ELEM_LIST_SET.rawValue), string: set)
            if let setID { b.attribute(UInt16(NFTA_SET_ELEM_LIST_SET_ID.rawValue), be32: setID) }
            b.attribute(UInt16(NFTA_SET_ELEM_LIST_ELEMENTS.rawValue) | Netlink.nlaNested, bytes: list.bytes[listStart...])
            out.append(NetlinkRequest(bytes: b.finish(), operation: add ? "add nftables elements" : "delete nftables elements",
                                      object: "\(table) \(set) (\(end - start))"))
            start = end
        }
        return out
    }

    static func encode(_ e: NFTablesElement, into b: inout MessageBuilder) {
        NFTablesExpression.value(&b, UInt16(NFTA_SET_ELEM_KEY.rawValue), e.key)
        if let end = e.keyEnd { NFTablesExpression.value(&b, UInt16(NFTA_SET_ELEM_KEY_END.rawValue), end) }
        if let d = e.data { NFTablesExpression.value(&b, UInt16(NFTA_SET_ELEM_DATA.rawValue), d) }
        if let v = e.verdict {
            b.nested(UInt16(NFTA_SET_ELEM_DATA.rawValue), nestedFlag: true) { NFTablesExpression.verdictData(&$0, v) }
        }
        if e.intervalEnd { b.attribute(UInt16(NFTA_SET_ELEM_FLAGS.rawValue), be32: NFT_SET_ELEM_INTERVAL_END.rawValue) }
    }

    /// NFT_MSG_GETSET dump of one family.
    public static func dumpSets(family f: IPFamily) -> NetlinkRequest {
        let b = NfnetlinkMessages.builder(message: message(NFT_MSG_GETSET), family: family(f), flags: Netlink.fDump)
        return NetlinkRequest(bytes: b.finish(), operation: "list nftables sets", object: f == .v4 ? "ip" : "ip6")
    }

    /// NFT_MSG_GETSETELEM dump of one set.
    public static func dumpElements(table: String, set: String, family f: IPFamily) -> NetlinkRequest {
        var b = NfnetlinkMessages.builder(message: message(NFT_MSG_GETSETELEM), family: family(f), flags: Netlink.fDump)
        b.attribute(UInt16(NFTA_SET_ELEM_LIST_TABLE.rawValue), string: table)
        b.attribute(UInt16(NFTA_SET_ELEM_LIST_SET.rawValue), string: set)
        return NetlinkRequest(bytes: b.finish(), operation: "list nftables elements", object: "\(table) \(set)")
    }

    // MARK: decoding

    static func attributes(_ m: NetlinkMessage, _ what: String) throws(NetlinkError) -> Attributes {
        guard m.payload.count >= 4 else { throw .malformed("parse", what, "nfgenmsg needs 4 bytes, have \(m.payload.count)") }
        return try Attributes(m.payload.dropFirst(4))
    }

    static func be32(_ a: Attributes, _ t: some RawRepresentable<UInt32>) -> UInt32? {
        guard let v = a.bytes(UInt16(t.rawValue)), v.count == 4 else { return nil }
        return v.reduce(UInt32(0)) { $0 << 8 | UInt32($1) }
    }

    static func be64(_ a: Attributes, _ t: some RawRepresentable<UInt32>) -> UInt64? {
        guard let v = a.bytes(UInt16(t.rawValue)), v.count == 8 else { return nil }
        return v.reduce(UInt64(0)) { $0 << 8 | UInt64($1) }
    }

    static func string(_ a: Attributes, _ t: some RawRepresentable<UInt32>) -> String? {
        a.bytes(UInt16(t.rawValue)).map { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
    }

    public static func chain(_ m: NetlinkMessage) throws(NetlinkError) -> NFTablesChainInfo? {
        let a = try attributes(m, "nftables chain")
        guard let table = string(a, NFTA_CHAIN_TABLE), let name = string(a, NFTA_CHAIN_NAME) else { return nil }
        var hook: NFTablesHook?
        if let h = a.bytes(UInt16(NFTA_CHAIN_HOOK.rawValue)), let type = string(a, NFTA_CHAIN_TYPE) {
            let ha = try Attributes(h)
            if let num = be32(ha, NFTA_HOOK_HOOKNUM), let prio = be32(ha, NFTA_HOOK_PRIORITY) {
                hook = NFTablesHook(type: type, hook: num, priority: Int32(bitPattern: prio))
            }
        }
        return NFTablesChainInfo(table: table, name: name, hook: hook)
    }

    public static func set(_ m: NetlinkMessage) throws(NetlinkError) -> NFTablesSetInfo? {
        let a = try attributes(m, "nftables set")
        guard let table = string(a, NFTA_SET_TABLE), let name = string(a, NFTA_SET_NAME) else { return nil }
        var info = NFTablesSetInfo(table: table, name: name, keyType: be32(a, NFTA_SET_KEY_TYPE) ?? 0, keyLength: be32(a, NFTA_SET_KEY_LEN) ?? 0,
                                   flags: be32(a, NFTA_SET_FLAGS) ?? 0, dataType: be32(a, NFTA_SET_DATA_TYPE),
                                   timeoutMilliseconds: be64(a, NFTA_SET_TIMEOUT))
        info.dataLength = be32(a, NFTA_SET_DATA_LEN)
        info.userData = a.bytes(UInt16(NFTA_SET_USERDATA.rawValue)).map { Array($0) } ?? []
        return info
    }

    /// The elements of one NEWSETELEM message of a dump.
    public static func elements(_ m: NetlinkMessage) throws(NetlinkError) -> [NFTablesElement] {
        let a = try attributes(m, "nftables elements")
        guard let list = a.bytes(UInt16(NFTA_SET_ELEM_LIST_ELEMENTS.rawValue)) else { return [] }
        var out: [NFTablesElement] = []
        for entry in try Attributes(list).entries {
            let e = try Attributes(entry.value)
            guard let k = e.bytes(UInt16(NFTA_SET_ELEM_KEY.rawValue)), let key = try Attributes(k).bytes(UInt16(NFTA_DATA_VALUE.rawValue)) else { continue }
            var verdict: NFTablesVerdict?
            var data: [UInt8]?
            var keyEnd: [UInt8]?
            if let k = e.bytes(UInt16(NFTA_SET_ELEM_KEY_END.rawValue)), let end = try Attributes(k).bytes(UInt16(NFTA_DATA_VALUE.rawValue)) {
                keyEnd = Array(end)
            }
            if let d = e.bytes(UInt16(NFTA_SET_ELEM_DATA.rawValue)), let value = try Attributes(d).bytes(UInt16(NFTA_DATA_VALUE.rawValue)) {
                data = Array(value)
            }
            if let d = e.bytes(UInt16(NFTA_SET_ELEM_DATA.rawValue)), let v = try Attributes(d).bytes(UInt16(NFTA_DATA_VERDICT.rawValue)) {
                let va = try Attributes(v)
                let code = Int32(bitPattern: be32(va, NFTA_VERDICT_CODE) ?? 0)
                let chain = string(va, NFTA_VERDICT_CHAIN) ?? ""
                switch code {
                case Int32(NF_ACCEPT): verdict = .accept
                case Int32(NF_DROP): verdict = .drop
                case NFT_RETURN.rawValue: verdict = .return
                case NFT_JUMP.rawValue: verdict = .jump(chain)
                case NFT_GOTO.rawValue: verdict = .goto(chain)
                default: verdict = .continue
                }
            }
            let flags = be32(e, NFTA_SET_ELEM_FLAGS) ?? 0
            out.append(NFTablesElement(key: Array(key), verdict: verdict, data: data, keyEnd: keyEnd,
                                       intervalEnd: flags & NFT_SET_ELEM_INTERVAL_END.rawValue != 0))
        }
        return out
    }
}

extension NetlinkSession {
    private func dumpOrEmpty(_ r: NetlinkRequest) throws(NetlinkError) -> [NetlinkMessage] {
        do { return try dump(r) } catch let e where e.errno == ENOENT { return [] }
    }

    private func nftType(_ t: nf_tables_msg_types) -> UInt16 { Netlink.nfnlSubsysNFTables << 8 | UInt16(t.rawValue) }

    /// The chains of `table` (empty when it does not exist).
    public func nftablesChains(table: String, family: IPFamily) throws(NetlinkError) -> [NFTablesChainInfo] {
        var out: [NFTablesChainInfo] = []
        for m in try dumpOrEmpty(NFTablesMessages.dumpChains(family: family)) where m.type == nftType(NFT_MSG_NEWCHAIN) {
            if let c = try NFTablesMessages.chain(m), c.table == table { out.append(c) }
        }
        return out
    }

    /// The named sets of `table` (anonymous ones are skipped: they belong to rules).
    public func nftablesSets(table: String, family: IPFamily) throws(NetlinkError) -> [NFTablesSetInfo] {
        var out: [NFTablesSetInfo] = []
        for m in try dumpOrEmpty(NFTablesMessages.dumpSets(family: family)) where m.type == nftType(NFT_MSG_NEWSET) {
            if let s = try NFTablesMessages.set(m), s.table == table, s.flags & NFTablesSet.flagAnonymous == 0 { out.append(s) }
        }
        return out
    }

    public func nftablesElements(table: String, set: String, family: IPFamily) throws(NetlinkError) -> [NFTablesElement] {
        var out: [NFTablesElement] = []
        for m in try dumpOrEmpty(NFTablesMessages.dumpElements(table: table, set: set, family: family)) where m.type == nftType(NFT_MSG_NEWSETELEM) {
            out += try NFTablesMessages.elements(m)
        }
        return out
    }
}
