// Rule counters read back from a rule dump: the packets and bytes of each rule's `counter`
// expressions (nft shows them as `counter packets N bytes M`).
import CNetlink
import IPAddressing

/// The counter of one rule (the sum when a rule has several `counter` expressions).
public struct NFTablesRuleCounter: Sendable, Hashable {
    public var chain: String
    public var handle: UInt64
    public var packets: UInt64
    public var bytes: UInt64

    public init(chain: String, handle: UInt64, packets: UInt64, bytes: UInt64) {
        self.chain = chain
        self.handle = handle
        self.packets = packets
        self.bytes = bytes
    }
}

extension NFTablesMessages {
    /// The counter of one NFT_MSG_NEWRULE message of a dump; nil for a rule without one.
    public static func ruleCounter(_ m: NetlinkMessage) throws(NetlinkError) -> NFTablesRuleCounter? {
        guard m.payload.count >= 4 else { throw .malformed("parse", "nftables rule", "nfgenmsg needs 4 bytes, have \(m.payload.count)") }
        let attrs = try Attributes(m.payload.dropFirst(4))
        guard let raw = attrs.bytes(UInt16(NFTA_RULE_HANDLE.rawValue)), raw.count == 8,
              let chain = attrs.string(UInt16(NFTA_RULE_CHAIN.rawValue)),
              let expressions = attrs.bytes(UInt16(NFTA_RULE_EXPRESSIONS.rawValue)) else { return nil }
        var found = false
        var packets: UInt64 = 0, bytes: UInt64 = 0
        for element in try Attributes(expressions).entries where element.type == UInt16(NFTA_LIST_ELEM.rawValue) {
            let e = try Attributes(element.value)
            guard e.string(UInt16(NFTA_EXPR_NAME.rawValue)) == "counter", let data = e.bytes(UInt16(NFTA_EXPR_DATA.rawValue)) else { continue }
            let d = try Attributes(data)
            found = true
            packets &+= be64(d.bytes(UInt16(NFTA_COUNTER_PACKETS.rawValue)))
            bytes &+= be64(d.bytes(UInt16(NFTA_COUNTER_BYTES.rawValue)))
        }
        guard found else { return nil }
        return NFTablesRuleCounter(chain: chain, handle: raw.reduce(UInt64(0)) { $0 << 8 | UInt64($1) }, packets: packets, bytes: bytes)
    }

    /// A 64-bit attribute in network byte order (the kernel's nla_put_be64); 0 when absent.
    private static func be64(_ v: ArraySlice<UInt8>?) -> UInt64 {
        guard let v, v.count == 8 else { return 0 }
        return v.reduce(UInt64(0)) { $0 << 8 | UInt64($1) }
    }
}

extension NetlinkSession {
    /// The counters of a table's rules that have one; empty when the table does not exist.
    public func nftablesRuleCounters(table: String, family: IPFamily) throws(NetlinkError) -> [NFTablesRuleCounter] {
        var out: [NFTablesRuleCounter] = []
        for m in try ruleMessages(NFTablesMessages.dumpRules(table: table, family: family)) {
            if let c = try NFTablesMessages.ruleCounter(m) { out.append(c) }
        }
        return out
    }
}
