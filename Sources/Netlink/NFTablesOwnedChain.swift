import IPAddressing

/// A base chain that one actor owns alone, holding exactly a wanted list of rules, each
/// identified by its comment. Reconciling it never flushes: rules that are missing are added,
/// rules nobody wants (or duplicates) are deleted by handle, and a chain already right costs
/// one dump and no transaction. NodeRoutes' masquerade and the agent's DNS notrack chains use it.
public struct NFTablesOwnedChain: Sendable {
    public var table: String
    public var chain: String
    public var hook: NFTablesHook

    public init(table: String, chain: String, hook: NFTablesHook) {
        self.table = table
        self.chain = chain
        self.hook = hook
    }

    /// The requests that turn `existing` into `wanted` (comment -> expressions); empty when right.
    public func plan(family: IPFamily, wanted: [(comment: String, expressions: [NFTablesExpression])],
                     existing: [NFTablesRule]) -> [NetlinkRequest] {
        var seen = Set<String>()
        var requests: [NetlinkRequest] = []
        for r in existing {
            if let c = r.comment, wanted.contains(where: { $0.comment == c }), seen.insert(c).inserted { continue }
            requests.append(NFTablesMessages.deleteRule(table: table, chain: chain, family: family, handle: r.handle))
        }
        for w in wanted where !seen.contains(w.comment) {
            requests.append(NFTablesMessages.newRule(table: table, chain: chain, family: family, expressions: w.expressions, comment: w.comment))
        }
        return requests
    }

    /// Makes the chain hold `wanted` in `family`; returns how many rules it added or removed.
    @discardableResult
    public func ensure(session: NetlinkSession, family: IPFamily,
                       wanted: [(comment: String, expressions: [NFTablesExpression])]) throws(NetlinkError) -> Int {
        let existing = (try? session.nftablesRules(table: table, chain: chain, family: family)) ?? []
        let rules = plan(family: family, wanted: wanted, existing: existing)
        if rules.isEmpty { return 0 }
        let setup = [NFTablesMessages.newTable(table, family: family),
                     NFTablesMessages.newChain(table: table, name: chain, family: family, hook: hook)]
        try session.transaction(setup + rules).check()
        return rules.count
    }
}
