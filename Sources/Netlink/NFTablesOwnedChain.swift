import CNetlink
import IPAddressing

/// A base chain that one actor owns alone, holding exactly a wanted list of rules. Each rule
/// is identified by a digest of its comment and expressions, carried in its user data (TLV
/// `NFTablesRuleDigest.userDataType`, which nft ignores), not by the comment itself: the
/// comment the kernel keeps is cut at 127 bytes, and a rule whose expressions changed under the
/// same comment must be replaced. Reconciling never flushes: rules that are missing are added,
/// rules nobody wants (or duplicates, or without a digest) are deleted by handle, and a chain
/// already right costs one dump and no transaction. NodeRoutes' masquerade, the agent's DNS
/// notrack chains and the host port chains use it.
public struct NFTablesOwnedChain: Sendable {
    public typealias Rule = (comment: String, expressions: [NFTablesExpression])

    public var table: String
    public var chain: String
    public var hook: NFTablesHook

    public init(table: String, chain: String, hook: NFTablesHook) {
        self.table = table
        self.chain = chain
        self.hook = hook
    }

    /// The requests that turn `existing` into `wanted`; empty when right.
    public func plan(family: IPFamily, wanted: [Rule], existing: [NFTablesRule]) -> [NetlinkRequest] {
        let keyed = wanted.map { (rule: $0, digest: NFTablesRuleDigest.of($0)) }
        let wantedDigests = Set(keyed.map(\.digest))
        var seen = Set<UInt64>()
        var requests: [NetlinkRequest] = []
        for r in existing {
            if let d = r.digest, wantedDigests.contains(d), seen.insert(d).inserted { continue }
            requests.append(NFTablesMessages.deleteRule(table: table, chain: chain, family: family, handle: r.handle))
        }
        for w in keyed where seen.insert(w.digest).inserted {
            requests.append(NFTablesMessages.newRule(table: table, chain: chain, family: family, expressions: w.rule.expressions,
                                                     comment: w.rule.comment, extraUserData: NFTablesRuleDigest.userData(w.digest)))
        }
        return requests
    }

    /// The wanted rules the chain lacks (as `existing` shows it): what CHECK reports.
    public func missing(wanted: [Rule], existing: [NFTablesRule]) -> [Rule] {
        let present = Set(existing.compactMap(\.digest))
        return wanted.filter { !present.contains(NFTablesRuleDigest.of($0)) }
    }

    /// Makes the chain hold `wanted` in `family`; returns how many rules it added or removed.
    /// A chain that cannot be read fails the call and changes nothing: taken for empty, every
    /// rule it holds would be added a second time.
    @discardableResult
    public func ensure(session: NetlinkSession, family: IPFamily, wanted: [Rule]) throws(NetlinkError) -> Int {
        let existing = try session.nftablesRules(table: table, chain: chain, family: family)
        let rules = plan(family: family, wanted: wanted, existing: existing)
        if rules.isEmpty { return 0 }
        let setup = [NFTablesMessages.newTable(table, family: family),
                     NFTablesMessages.newChain(table: table, name: chain, family: family, hook: hook)]
        try session.transaction(setup + rules).check()
        return rules.count
    }
}

/// nodenet's rule digest: FNV-1a 64 over what identifies a rule, kept in the rule's user data.
public enum NFTablesRuleDigest {
    /// User data TLV type of the digest (nft ignores TLV types it does not know).
    public static let userDataType: UInt8 = 0x4e

    public static func fnv1a(_ bytes: some Sequence<UInt8>, seed: UInt64 = 0xcbf2_9ce4_8422_2325) -> UInt64 {
        var h = seed
        for byte in bytes { h = (h ^ UInt64(byte)) &* 0x100_0000_01b3 }
        return h
    }

    /// The digest of an owned chain's rule: its whole comment and its expressions as encoded.
    public static func of(_ rule: NFTablesOwnedChain.Rule) -> UInt64 {
        var b = MessageBuilder(type: 0, flags: 0)
        b.attribute(UInt16(NFTA_RULE_USERDATA.rawValue), string: rule.comment)
        b.nested(UInt16(NFTA_RULE_EXPRESSIONS.rawValue), nestedFlag: true) { list in
            for e in rule.expressions {
                list.nested(UInt16(NFTA_LIST_ELEM.rawValue), nestedFlag: true) { elem in e.encode(into: &elem) }
            }
        }
        return fnv1a(b.finish())
    }

    /// The TLV that carries `digest` (big-endian).
    public static func userData(_ digest: UInt64) -> [UInt8] {
        [userDataType, 8] + withUnsafeBytes(of: digest.bigEndian) { Array($0) }
    }

    /// The digest in a rule's user data TLVs, if it has one.
    public static func read(userData: ArraySlice<UInt8>) -> UInt64? {
        var i = userData.startIndex
        while i + 2 <= userData.endIndex {
            let type = userData[i], start = i + 2, end = start + Int(userData[i + 1])
            guard end <= userData.endIndex else { return nil }
            if type == userDataType, end - start == 8 { return userData[start..<end].reduce(UInt64(0)) { $0 << 8 | UInt64($1) } }
            i = end
        }
        return nil
    }
}
