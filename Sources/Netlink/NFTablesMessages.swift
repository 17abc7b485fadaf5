// A small nf_tables encoder: tables, base chains, and rules made of the few expressions that
// a prefix match needs (payload load, bitwise mask, cmp) plus masquerade. Messages go out
// through `NetlinkSession.transaction`; rule dumps come back as `NFTablesRule` values.
// The full service-rules encoder lives with ServiceProxy; this is the part NodeRoutes needs
// for pod egress masquerade, kept here because it is kernel encoding.
import CNetlink
import Glibc
import IPAddressing

/// One nf_tables expression, as nft(8) would encode it.
public enum NFTablesExpression: Sendable, Hashable {
    /// Loads `length` bytes at `offset` of the network header into register 1.
    case loadNetworkHeader(offset: UInt32, length: UInt32)
    /// register 1 = (register 1 & mask) ^ 0.
    case mask([UInt8])
    /// Compares register 1 with `data`; the rule ends here unless it holds.
    case compare(equal: Bool, data: [UInt8])
    case masquerade

    /// The expressions for "source (or destination) address in `prefix`" (or not in it), the
    /// way nft encodes `ip saddr 10.244.0.0/16`: load only the bytes the prefix covers and
    /// compare; when the prefix ends inside a byte, load the whole address and mask it first. A /0 prefix matches everything
    /// and yields no expressions.
    public static func match(_ prefix: IPPrefix, source: Bool, negated: Bool = false) -> [NFTablesExpression] {
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

    static func maskBytes(prefixLength: Int, byteCount: Int) -> [UInt8] {
        (0..<byteCount).map { i in
            let bits = max(0, min(8, prefixLength - i * 8))
            return bits == 0 ? 0 : UInt8(truncatingIfNeeded: 0xff << (8 - bits))
        }
    }
}

/// A base chain's hook (netfilter hook number and priority).
public struct NFTablesHook: Sendable, Hashable {
    public var type: String
    public var hook: UInt32
    public var priority: Int32

    public init(type: String, hook: UInt32, priority: Int32) {
        self.type = type
        self.hook = hook
        self.priority = priority
    }

    /// `type nat hook postrouting priority srcnat`.
    public static let natPostrouting = NFTablesHook(type: "nat", hook: UInt32(NF_INET_POST_ROUTING.rawValue), priority: 100)
}

/// A rule read back from the kernel: its handle and the comment nft shows (user data).
public struct NFTablesRule: Sendable, Hashable {
    public var handle: UInt64
    public var comment: String?

    public init(handle: UInt64, comment: String?) {
        self.handle = handle
        self.comment = comment
    }
}

public enum NFTablesMessages {
    /// NFPROTO_IPV4 / NFPROTO_IPV6: the table families nodenet uses.
    public static func family(_ f: IPFamily) -> UInt8 {
        f == .v4 ? UInt8(NFPROTO_IPV4) : UInt8(NFPROTO_IPV6)
    }

    private static func message(_ type: nf_tables_msg_types) -> UInt16 { UInt16(type.rawValue) }

    /// NFT_MSG_NEWTABLE with NLM_F_CREATE and no flags attribute: creates the table, or leaves
    /// an existing one (and everything in it) exactly as it is.
    public static func newTable(_ name: String, family f: IPFamily) -> NetlinkRequest {
        var b = NfnetlinkMessages.builder(message: message(NFT_MSG_NEWTABLE), family: family(f), flags: Netlink.fCreate)
        b.attribute(UInt16(NFTA_TABLE_NAME.rawValue), string: name)
        return NetlinkRequest(bytes: b.finish(), operation: "add nftables table", object: "\(f == .v4 ? "ip" : "ip6") \(name)")
    }

    /// NFT_MSG_NEWCHAIN with NLM_F_CREATE (no EXCL): creates the base chain, or keeps an
    /// existing one with the same hook and its rules.
    public static func newChain(table: String, name: String, family f: IPFamily, hook: NFTablesHook) -> NetlinkRequest {
        var b = NfnetlinkMessages.builder(message: message(NFT_MSG_NEWCHAIN), family: family(f), flags: Netlink.fCreate)
        b.attribute(UInt16(NFTA_CHAIN_TABLE.rawValue), string: table)
        b.attribute(UInt16(NFTA_CHAIN_NAME.rawValue), string: name)
        b.nested(UInt16(NFTA_CHAIN_HOOK.rawValue), nestedFlag: true) { h in
            h.attribute(UInt16(NFTA_HOOK_HOOKNUM.rawValue), be32: hook.hook)
            h.attribute(UInt16(NFTA_HOOK_PRIORITY.rawValue), be32: UInt32(bitPattern: hook.priority))
        }
        b.attribute(UInt16(NFTA_CHAIN_POLICY.rawValue), be32: UInt32(NF_ACCEPT))
        b.attribute(UInt16(NFTA_CHAIN_TYPE.rawValue), string: hook.type)
        return NetlinkRequest(bytes: b.finish(), operation: "add nftables chain", object: "\(table) \(name)")
    }

    /// NFT_MSG_NEWRULE appending a rule at the end of the chain. `comment` becomes the user
    /// data nft shows as `comment "..."` (and what `rules` reads back to find it again).
    public static func newRule(table: String, chain: String, family f: IPFamily, expressions: [NFTablesExpression],
                               comment: String?) -> NetlinkRequest {
        var b = NfnetlinkMessages.builder(message: message(NFT_MSG_NEWRULE), family: family(f),
                                          flags: Netlink.fCreate | UInt16(NLM_F_APPEND))
        b.attribute(UInt16(NFTA_RULE_TABLE.rawValue), string: table)
        b.attribute(UInt16(NFTA_RULE_CHAIN.rawValue), string: chain)
        b.nested(UInt16(NFTA_RULE_EXPRESSIONS.rawValue), nestedFlag: true) { list in
            for e in expressions {
                list.nested(UInt16(NFTA_LIST_ELEM.rawValue), nestedFlag: true) { elem in encode(e, into: &elem) }
            }
        }
        if let comment { b.attribute(UInt16(NFTA_RULE_USERDATA.rawValue), bytes: userData(comment: comment)) }
        return NetlinkRequest(bytes: b.finish(), operation: "add nftables rule", object: "\(table) \(chain) \(comment ?? "")")
    }

    /// NFT_MSG_DELRULE by handle.
    public static func deleteRule(table: String, chain: String, family f: IPFamily, handle: UInt64) -> NetlinkRequest {
        var b = NfnetlinkMessages.builder(message: message(NFT_MSG_DELRULE), family: family(f))
        b.attribute(UInt16(NFTA_RULE_TABLE.rawValue), string: table)
        b.attribute(UInt16(NFTA_RULE_CHAIN.rawValue), string: chain)
        b.attribute(UInt16(NFTA_RULE_HANDLE.rawValue), u64: handle.bigEndian)
        return NetlinkRequest(bytes: b.finish(), operation: "delete nftables rule", object: "\(table) \(chain) handle \(handle)")
    }

    /// NFT_MSG_GETRULE dump of one chain (the kernel filters by table and chain).
    public static func dumpRules(table: String, chain: String, family f: IPFamily) -> NetlinkRequest {
        var b = NfnetlinkMessages.builder(message: message(NFT_MSG_GETRULE), family: family(f), flags: Netlink.fDump)
        b.attribute(UInt16(NFTA_RULE_TABLE.rawValue), string: table)
        b.attribute(UInt16(NFTA_RULE_CHAIN.rawValue), string: chain)
        return NetlinkRequest(bytes: b.finish(), operation: "list nftables rules", object: "\(table) \(chain)")
    }

    static func encode(_ e: NFTablesExpression, into b: inout MessageBuilder) {
        let name = UInt16(NFTA_EXPR_NAME.rawValue), data = UInt16(NFTA_EXPR_DATA.rawValue)
        let register1 = UInt32(NFT_REG_1.rawValue)
        func value(_ b: inout MessageBuilder, _ type: UInt16, _ bytes: [UInt8]) {
            b.nested(type, nestedFlag: true) { $0.attribute(UInt16(NFTA_DATA_VALUE.rawValue), bytes: bytes) }
        }
        switch e {
        case .loadNetworkHeader(let offset, let length):
            b.attribute(name, string: "payload")
            b.nested(data, nestedFlag: true) { d in
                d.attribute(UInt16(NFTA_PAYLOAD_DREG.rawValue), be32: register1)
                d.attribute(UInt16(NFTA_PAYLOAD_BASE.rawValue), be32: UInt32(NFT_PAYLOAD_NETWORK_HEADER.rawValue))
                d.attribute(UInt16(NFTA_PAYLOAD_OFFSET.rawValue), be32: offset)
                d.attribute(UInt16(NFTA_PAYLOAD_LEN.rawValue), be32: length)
            }
        case .mask(let mask):
            b.attribute(name, string: "bitwise")
            b.nested(data, nestedFlag: true) { d in
                d.attribute(UInt16(NFTA_BITWISE_SREG.rawValue), be32: register1)
                d.attribute(UInt16(NFTA_BITWISE_DREG.rawValue), be32: register1)
                d.attribute(UInt16(NFTA_BITWISE_LEN.rawValue), be32: UInt32(mask.count))
                value(&d, UInt16(NFTA_BITWISE_MASK.rawValue), mask)
                value(&d, UInt16(NFTA_BITWISE_XOR.rawValue), [UInt8](repeating: 0, count: mask.count))
            }
        case .compare(let equal, let bytes):
            b.attribute(name, string: "cmp")
            b.nested(data, nestedFlag: true) { d in
                d.attribute(UInt16(NFTA_CMP_SREG.rawValue), be32: register1)
                d.attribute(UInt16(NFTA_CMP_OP.rawValue), be32: UInt32((equal ? NFT_CMP_EQ : NFT_CMP_NEQ).rawValue))
                value(&d, UInt16(NFTA_CMP_DATA.rawValue), bytes)
            }
        case .masquerade:
            b.attribute(name, string: "masq")
        }
    }

    /// nft's rule user data: TLVs of (type u8, length u8, value); type 0 is the comment,
    /// NUL-terminated (libnftnl NFTNL_UDATA_RULE_COMMENT).
    static func userData(comment: String) -> [UInt8] {
        let text = Array(comment.utf8.prefix(127)) + [0]
        return [0, UInt8(text.count)] + text
    }

    static func comment(userData: ArraySlice<UInt8>) -> String? {
        var i = userData.startIndex
        while i + 2 <= userData.endIndex {
            let type = userData[i], length = Int(userData[i + 1])
            let start = i + 2, end = start + length
            guard end <= userData.endIndex else { return nil }
            if type == 0 {
                let text = userData[start..<end].prefix { $0 != 0 }
                return String(decoding: text, as: UTF8.self)
            }
            i = end
        }
        return nil
    }

    /// Decodes one NFT_MSG_NEWRULE message of a dump.
    public static func rule(_ m: NetlinkMessage) throws(NetlinkError) -> NFTablesRule? {
        guard m.payload.count >= 4 else { throw .malformed("parse", "nftables rule", "nfgenmsg needs 4 bytes, have \(m.payload.count)") }
        let attrs = try Attributes(m.payload.dropFirst(4))
        guard let raw = attrs.bytes(UInt16(NFTA_RULE_HANDLE.rawValue)), raw.count == 8 else { return nil }
        let handle = raw.reduce(UInt64(0)) { $0 << 8 | UInt64($1) }
        return NFTablesRule(handle: handle, comment: attrs.bytes(UInt16(NFTA_RULE_USERDATA.rawValue)).flatMap { comment(userData: $0) })
    }
}

extension NetlinkSession {
    /// The rules of one chain; empty when the table or chain does not exist (yet).
    public func nftablesRules(table: String, chain: String, family: IPFamily) throws(NetlinkError) -> [NFTablesRule] {
        let messages: [NetlinkMessage]
        do {
            messages = try dump(NFTablesMessages.dumpRules(table: table, chain: chain, family: family))
        } catch let e where e.errno == ENOENT {
            return []
        }
        let newRule = Netlink.nfnlSubsysNFTables << 8 | UInt16(NFT_MSG_NEWRULE.rawValue)
        var out: [NFTablesRule] = []
        for m in messages where m.type == newRule {
            if let r = try NFTablesMessages.rule(m) { out.append(r) }
        }
        return out
    }
}
