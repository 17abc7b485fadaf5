/// One step of a transaction. A list of these is applied atomically by a `RulesetBackend`
/// (one nfnetlink batch, or one `nft -f` script).
public enum RulesetOperation: Hashable, Sendable {
    case addTable(TableFamily)
    case deleteTable(TableFamily)
    /// Creates an empty chain (base chains with their hook).
    case addChain(TableFamily, name: String, base: BaseChainSpec?)
    case flushChain(TableFamily, name: String)
    case deleteChain(TableFamily, name: String)
    case addRule(TableFamily, chain: String, NFRule)
    /// Creates an empty set or map.
    case addSet(TableFamily, SetSpec)
    case deleteSet(TableFamily, name: String)
    case addElements(TableFamily, set: String, [ElementKey: ElementValue?])
    case deleteElements(TableFamily, set: String, [ElementKey])
    /// Deletes concatenated ranges (interval sets): start key -> end key.
    case deleteRanges(TableFamily, set: String, [ElementKey: ElementKey])
    /// Deletes the learned ClientIP affinity entries (`client . tuple -> endpoint`) of `map`
    /// whose tuple is a key of `keep` and whose endpoint is not in that key's set; with
    /// `strict`, also every entry whose tuple is not a key at all. The backend reads the
    /// entries (the kernel writes them from packets) and deletes them in the same transaction.
    case purgeAffinity(TableFamily, map: String, keep: [ElementKey: Set<ElementKey>], strict: Bool)

    public var family: TableFamily {
        switch self {
        case .addTable(let f), .deleteTable(let f), .addChain(let f, _, _), .flushChain(let f, _), .deleteChain(let f, _),
             .addRule(let f, _, _), .addSet(let f, _), .deleteSet(let f, _), .addElements(let f, _, _), .deleteElements(let f, _, _),
             .deleteRanges(let f, _, _), .purgeAffinity(let f, _, _, _):
            f
        }
    }

    /// Kernel messages this operation costs (one per rule or element): transaction size.
    public var weight: Int {
        switch self {
        case .addElements(_, _, let e): e.count
        case .deleteElements(_, _, let e): e.count
        case .deleteRanges(_, _, let e): e.count
        case .purgeAffinity(_, _, let keep, _): keep.count
        default: 1
        }
    }
}
