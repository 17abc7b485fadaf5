// nf_tables messages: tables, chains, rules (expressions in NFTablesExpression.swift); sets,
// maps and elements are in NFTablesSets.swift. Messages go out through
// `NetlinkSession.nftablesTransaction` (or `transaction` for small ones); rule dumps come
// back as `NFTablesRule` values.
import CNetlink
import Glibc
import IPAddressing

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
    /// `type filter hook prerouting priority raw`: before connection tracking.
    public static let rawPrerouting = NFTablesHook(type: "filter", hook: UInt32(NF_INET_PRE_ROUTING.rawValue), priority: -300)
    /// `type filter hook output priority raw`.
    public static let rawOutput = NFTablesHook(type: "filter", hook: UInt32(NF_INET_LOCAL_OUT.rawValue), priority: -300)
}

/// A rule read back from the kernel: its handle, the comment nft shows and nodenet's digest
/// (both user data; see `NFTablesRuleDigest`).
public struct NFTablesRule: Sendable, Hashable {
    public var handle: UInt64
    public var comment: String?
    public var digest: UInt64?

    public init(handle: UInt64, comment: String?, digest: UInt64? = nil) {
        self.handle = handle
        self.comment = comment
        self.digest = digest
    }
}

/// A rule of a table-wide dump: its chain, handle and raw user data TLVs.
public struct NFTablesRuleRecord: Sendable, Hashable {
    public var chain: String
    public var handle: UInt64
    public var userData: [UInt8]
    /// The packets of the rule's first `counter` expression (nil: the rule has none).
    public var counterPackets: UInt64? = nil

    /// The value of user data TLV `type` (nft's comment is type 0).
    public func userDataValue(type: UInt8) -> ArraySlice<UInt8>? {
        var i = 0
        while i + 2 <= userData.count {
            let t = userData[i], end = i + 2 + Int(userData[i + 1])
            guard end <= userData.count else { return nil }
            if t == type { return userData[(i + 2)..<end] }
            i = end
        }
        return nil
    }
}

public enum NFTablesMessages {
    /// NFPROTO_IPV4 / NFPROTO_IPV6: the table families nodenet uses.
    public static func family(_ f: IPFamily) -> UInt8 {
        f == .v4 ? UInt8(NFPROTO_IPV4) : UInt8(NFPROTO_IPV6)
    }

    static func message(_ type: nf_tables_msg_types) -> UInt16 { UInt16(type.rawValue) }

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

    /// NFT_MSG_DELTABLE: the table and everything in it.
    public static func deleteTable(_ name: String, family f: IPFamily) -> NetlinkRequest {
        var b = NfnetlinkMessages.builder(message: message(NFT_MSG_DELTABLE), family: family(f))
        b.attribute(UInt16(NFTA_TABLE_NAME.rawValue), string: name)
        return NetlinkRequest(bytes: b.finish(), operation: "delete nftables table", object: "\(f == .v4 ? "ip" : "ip6") \(name)")
    }

    /// NFT_MSG_NEWCHAIN of a regular chain (no hook), NLM_F_CREATE: an existing one is kept.
    public static func newChain(table: String, name: String, family f: IPFamily) -> NetlinkRequest {
        var b = NfnetlinkMessages.builder(message: message(NFT_MSG_NEWCHAIN), family: family(f), flags: Netlink.fCreate)
        b.attribute(UInt16(NFTA_CHAIN_TABLE.rawValue), string: table)
        b.attribute(UInt16(NFTA_CHAIN_NAME.rawValue), string: name)
        return NetlinkRequest(bytes: b.finish(), operation: "add nftables chain", object: "\(table) \(name)")
    }

    /// NFT_MSG_DELCHAIN (the chain must be empty and unreferenced at commit).
    public static func deleteChain(table: String, name: String, family f: IPFamily) -> NetlinkRequest {
        var b = NfnetlinkMessages.builder(message: message(NFT_MSG_DELCHAIN), family: family(f))
        b.attribute(UInt16(NFTA_CHAIN_TABLE.rawValue), string: table)
        b.attribute(UInt16(NFTA_CHAIN_NAME.rawValue), string: name)
        return NetlinkRequest(bytes: b.finish(), operation: "delete nftables chain", object: "\(table) \(name)")
    }

    /// NFT_MSG_DELRULE without a handle: every rule of the chain (`nft flush chain`).
    public static func flushChain(table: String, name: String, family f: IPFamily) -> NetlinkRequest {
        var b = NfnetlinkMessages.builder(message: message(NFT_MSG_DELRULE), family: family(f))
        b.attribute(UInt16(NFTA_RULE_TABLE.rawValue), string: table)
        b.attribute(UInt16(NFTA_RULE_CHAIN.rawValue), string: name)
        return NetlinkRequest(bytes: b.finish(), operation: "flush nftables chain", object: "\(table) \(name)")
    }

    /// NFT_MSG_GETCHAIN dump of one family (filtered to `table` here: older kernels ignore a
    /// table attribute on chain dumps).
    public static func dumpChains(family f: IPFamily) -> NetlinkRequest {
        let b = NfnetlinkMessages.builder(message: message(NFT_MSG_GETCHAIN), family: family(f), flags: Netlink.fDump)
        return NetlinkRequest(bytes: b.finish(), operation: "list nftables chains", object: f == .v4 ? "ip" : "ip6")
    }

    /// NFT_MSG_NEWRULE appending a rule at the end of the chain. `comment` becomes the user
    /// data nft shows as `comment "..."` (and what `rules` reads back to find it again).
    /// `extraUserData`: more TLVs after the comment (nft ignores types it does not know).
    public static func newRule(table: String, chain: String, family f: IPFamily, expressions: [NFTablesExpression],
                               comment: String?, extraUserData: [UInt8] = []) -> NetlinkRequest {
        var b = NfnetlinkMessages.builder(message: message(NFT_MSG_NEWRULE), family: family(f),
                                          flags: Netlink.fCreate | UInt16(NLM_F_APPEND))
        b.attribute(UInt16(NFTA_RULE_TABLE.rawValue), string: table)
        b.attribute(UInt16(NFTA_RULE_CHAIN.rawValue), string: chain)
        b.nested(UInt16(NFTA_RULE_EXPRESSIONS.rawValue), nestedFlag: true) { list in
            for e in expressions {
                list.nested(UInt16(NFTA_LIST_ELEM.rawValue), nestedFlag: true) { elem in e.encode(into: &elem) }
            }
        }
        let udata = (comment.map(userData(comment:)) ?? []) + extraUserData
        if !udata.isEmpty { b.attribute(UInt16(NFTA_RULE_USERDATA.rawValue), bytes: udata) }
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

    /// NFT_MSG_GETRULE dump of every rule of a table.
    public static func dumpRules(table: String, family f: IPFamily) -> NetlinkRequest {
        var b = NfnetlinkMessages.builder(message: message(NFT_MSG_GETRULE), family: family(f), flags: Netlink.fDump)
        b.attribute(UInt16(NFTA_RULE_TABLE.rawValue), string: table)
        return NetlinkRequest(bytes: b.finish(), operation: "list nftables rules", object: table)
    }

    /// NFT_MSG_GETRULE dump of one chain (the kernel filters by table and chain).
    public static func dumpRules(table: String, chain: String, family f: IPFamily) -> NetlinkRequest {
        var b = NfnetlinkMessages.builder(message: message(NFT_MSG_GETRULE), family: family(f), flags: Netlink.fDump)
        b.attribute(UInt16(NFTA_RULE_TABLE.rawValue), string: table)
        b.attribute(UInt16(NFTA_RULE_CHAIN.rawValue), string: chain)
        return NetlinkRequest(bytes: b.finish(), operation: "list nftables rules", object: "\(table) \(chain)")
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
        let userData = attrs.bytes(UInt16(NFTA_RULE_USERDATA.rawValue))
        return NFTablesRule(handle: handle, comment: userData.flatMap { comment(userData: $0) },
                            digest: userData.flatMap { NFTablesRuleDigest.read(userData: $0) })
    }

    /// Decodes one NFT_MSG_NEWRULE message of a table-wide dump.
    public static func ruleRecord(_ m: NetlinkMessage) throws(NetlinkError) -> NFTablesRuleRecord? {
        guard m.payload.count >= 4 else { throw .malformed("parse", "nftables rule", "nfgenmsg needs 4 bytes, have \(m.payload.count)") }
        let attrs = try Attributes(m.payload.dropFirst(4))
        guard let raw = attrs.bytes(UInt16(NFTA_RULE_HANDLE.rawValue)), raw.count == 8,
              let chain = attrs.bytes(UInt16(NFTA_RULE_CHAIN.rawValue)) else { return nil }
        var record = NFTablesRuleRecord(chain: String(decoding: chain.prefix { $0 != 0 }, as: UTF8.self),
                                        handle: raw.reduce(UInt64(0)) { $0 << 8 | UInt64($1) },
                                        userData: attrs.bytes(UInt16(NFTA_RULE_USERDATA.rawValue)).map(Array.init) ?? [])
        // Best effort: a rule whose expressions do not parse still has its handle and user data.
        record.counterPackets = try? counterPackets(attrs.bytes(UInt16(NFTA_RULE_EXPRESSIONS.rawValue)))
        return record
    }

    /// NFTA_RULE_EXPRESSIONS: a list of NFTA_LIST_ELEM { NFTA_EXPR_NAME, NFTA_EXPR_DATA }; a
    /// "counter" expression's data holds NFTA_COUNTER_PACKETS (u64, big endian).
    static func counterPackets(_ expressions: ArraySlice<UInt8>?) throws(NetlinkError) -> UInt64? {
        guard let expressions else { return nil }
        for element in try Attributes(expressions).entries where element.type == UInt16(NFTA_LIST_ELEM.rawValue) {
            let e = try Attributes(element.value)
            guard let name = e.bytes(UInt16(NFTA_EXPR_NAME.rawValue)),
                  String(decoding: name.prefix { $0 != 0 }, as: UTF8.self) == "counter",
                  let data = e.bytes(UInt16(NFTA_EXPR_DATA.rawValue)) else { continue }
            guard let packets = try Attributes(data).bytes(UInt16(NFTA_COUNTER_PACKETS.rawValue)), packets.count == 8 else { return nil }
            return packets.reduce(UInt64(0)) { $0 << 8 | UInt64($1) }
        }
        return nil
    }
}

extension NetlinkSession {
    /// The NEWRULE messages of a rule dump; none when the table or chain does not exist (yet).
    func ruleMessages(_ request: NetlinkRequest) throws(NetlinkError) -> [NetlinkMessage] {
        let messages: [NetlinkMessage]
        do {
            messages = try dump(request)
        } catch let e where e.errno == ENOENT {
            return []
        }
        let newRule = Netlink.nfnlSubsysNFTables << 8 | UInt16(NFT_MSG_NEWRULE.rawValue)
        return messages.filter { $0.type == newRule }
    }

    /// Every rule of a table, chain by chain in rule order; empty when the table does not exist.
    public func nftablesRules(table: String, family: IPFamily) throws(NetlinkError) -> [NFTablesRuleRecord] {
        var out: [NFTablesRuleRecord] = []
        for m in try ruleMessages(NFTablesMessages.dumpRules(table: table, family: family)) {
            if let r = try NFTablesMessages.ruleRecord(m) { out.append(r) }
        }
        return out
    }

    /// The rules of one chain; empty when the table or chain does not exist (yet).
    public func nftablesRules(table: String, chain: String, family: IPFamily) throws(NetlinkError) -> [NFTablesRule] {
        var out: [NFTablesRule] = []
        for m in try ruleMessages(NFTablesMessages.dumpRules(table: table, chain: chain, family: family)) {
            if let r = try NFTablesMessages.rule(m) { out.append(r) }
        }
        return out
    }
}
