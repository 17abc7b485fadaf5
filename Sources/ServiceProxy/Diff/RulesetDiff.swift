/// Computes the operations that turn one ruleset into another in one transaction.
///
/// Order matters to the kernel, which checks references at each step of a batch:
///  1. delete whole tables that go away; add new tables;
///  2. flush chains whose rules change or that go away (drops their jumps and set references);
///  3. delete map elements that go away or change value (drops verdict references to chains);
///  4. delete chains, then sets, that go away (nothing refers to them any more);
///  5. add sets, then chains (empty), then map elements (which may goto the new chains),
///     then rules (which may jump to the new chains and look up the new sets).
/// A set whose declaration changes (affinity timeout) is deleted and re-added, and every chain
/// that uses it is rewritten around that.
public enum RulesetDiff {
    /// - Parameters:
    ///   - old: what the kernel holds (nil: nothing, not even the tables).
    ///   - new: what it should hold.
    ///   - scope: when given, only these chains, sets and elements are compared (the parts of
    ///     the services that changed, before and after). Everything else is taken as equal,
    ///     which is what makes a one-service change cost the same with 10 or 10,000 services.
    ///   - recreatingTypeofMaps: a map declared with `typeof` that a rewritten chain uses is
    ///     deleted and declared again (with all its elements) in the same transaction, and every
    ///     chain using it rewritten. For `nft -f`: nft 1.0.6 cannot add a rule that uses such a
    ///     map once the map is in the kernel ("conflicting protocols specified: ip vs. th"), but
    ///     it can when the map is declared in the same script. The netlink backend has no need.
    public static func operations(from old: RulesetModel?, to new: RulesetModel,
                                  scope: [TableFamily: Contribution]? = nil, recreatingTypeofMaps: Bool = false) -> [RulesetOperation] {
        var plan = Plan()
        plan.recreatingTypeofMaps = recreatingTypeofMaps
        for family in TableFamily.allCases {
            let o = old?.tables[family], n = new.tables[family]
            switch (o, n) {
            case (nil, nil): continue
            case (.some, nil):
                // The desired model always holds both families' base chains, so this only
                // happens when the proxy is told to remove everything.
                plan.deleteTables.append(.deleteTable(family))
            case (nil, .some(let n)):
                plan.addTables.append(.addTable(family))
                plan.diff(TableModel(family: family), n, scope: nil)
            case (.some(let o), .some(let n)):
                if let scope { plan.diff(o, n, scope: scope[family] ?? Contribution()) } else { plan.diff(o, n, scope: nil) }
            }
        }
        return plan.ordered
    }
}

private struct Plan {
    var deleteTables: [RulesetOperation] = []
    var addTables: [RulesetOperation] = []
    var flushes: [RulesetOperation] = []
    var deleteElements: [RulesetOperation] = []
    var deleteChains: [RulesetOperation] = []
    var deleteSets: [RulesetOperation] = []
    var addSets: [RulesetOperation] = []
    var addChains: [RulesetOperation] = []
    var addElements: [RulesetOperation] = []
    var addRules: [RulesetOperation] = []
    var recreatingTypeofMaps = false

    var ordered: [RulesetOperation] {
        deleteTables + addTables + flushes + deleteElements + deleteChains + deleteSets + addSets + addChains + addElements + addRules
    }

    mutating func diff(_ o: TableModel, _ n: TableModel, scope: Contribution?) {
        let f = n.family
        let setNames = scope.map { $0.sets.union($0.elements.keys) } ?? Set(o.sets.keys).union(n.sets.keys)
        var recreatedSets = Set<String>()
        for name in setNames.sorted() {
            let os = o.sets[name], ns = n.sets[name]
            if let os, ns == nil || ns!.spec != os.spec {
                deleteSets.append(.deleteSet(f, name: name))
                recreatedSets.insert(name)
            }
            if let ns, os == nil || os!.spec != ns.spec {
                addSets.append(.addSet(f, ns.spec))
                if !ns.elements.isEmpty { addElements.append(.addElements(f, set: name, ns.elements)) }
            }
            guard let os, let ns, os.spec == ns.spec, ns.spec.timeout == nil else { continue }
            diffElements(f, name, os.elements, ns.elements, keys: scope.map { $0.elements[name] ?? [] })
        }

        var chainNames = scope.map(\.chains) ?? Set(o.chains.keys).union(n.chains.keys)
        if !recreatedSets.isEmpty {
            // Chains that use a set being replaced must be emptied before it goes and refilled after.
            for (name, chain) in o.chains where chain.uses(recreatedSets) { chainNames.insert(name) }
        }
        for name in chainNames.sorted() {
            let oc = o.chains[name], nc = n.chains[name]
            let mustRewrite = oc.map { $0.uses(recreatedSets) } ?? false
            switch (oc, nc) {
            case (nil, nil): continue
            case (.some, nil):
                flushes.append(.flushChain(f, name: name))
                deleteChains.append(.deleteChain(f, name: name))
            case (nil, .some(let nc)):
                addChain(f, nc)
            case (.some(let oc), .some(let nc)):
                if oc.base != nc.base {
                    flushes.append(.flushChain(f, name: name))
                    deleteChains.append(.deleteChain(f, name: name))
                    addChain(f, nc)
                } else if mustRewrite || oc.rules == nil || oc.rules != nc.rules {
                    flushes.append(.flushChain(f, name: name))
                    for r in nc.rules ?? [] { addRules.append(.addRule(f, chain: name, r)) }
                }
            }
        }
        if recreatingTypeofMaps { recreateTypeofMaps(f, o, n, recreated: recreatedSets) }
    }

    /// See `RulesetDiff.operations(recreatingTypeofMaps:)`.
    mutating func recreateTypeofMaps(_ f: TableFamily, _ o: TableModel, _ n: TableModel, recreated: Set<String>) {
        let written = Set(addRules.compactMap { op -> String? in
            if case .addRule(let family, let chain, _) = op, family == f { return chain }
            return nil
        })
        let flushed = Set(flushes.compactMap { op -> String? in
            if case .flushChain(let family, let name) = op, family == f { return name }
            return nil
        })
        for (name, set) in n.sets.sorted(by: { $0.key < $1.key }) where set.spec.typeof != nil && !recreated.contains(name) {
            guard o.sets[name]?.spec == set.spec else { continue }
            let users = n.chains.values.filter { $0.uses([name]) }.map(\.name)
            guard users.contains(where: { written.contains($0) }) else { continue }
            // Element changes of this map are replaced by the whole new content.
            func other(_ op: RulesetOperation) -> Bool {
                switch op {
                case .addElements(let family, let s, _), .deleteElements(let family, let s, _): return family != f || s != name
                default: return true
                }
            }
            deleteElements = deleteElements.filter(other)
            addElements = addElements.filter(other)
            for chain in users.sorted() {
                if !flushed.contains(chain) { flushes.append(.flushChain(f, name: chain)) }
                if !written.contains(chain) { for r in n.chains[chain]?.rules ?? [] { addRules.append(.addRule(f, chain: chain, r)) } }
            }
            deleteSets.append(.deleteSet(f, name: name))
            addSets.append(.addSet(f, set.spec))
            if !set.elements.isEmpty { addElements.append(.addElements(f, set: name, set.elements)) }
        }
    }

    private mutating func addChain(_ f: TableFamily, _ c: NFChain) {
        addChains.append(.addChain(f, name: c.name, base: c.base))
        for r in c.rules ?? [] { addRules.append(.addRule(f, chain: c.name, r)) }
    }

    private mutating func diffElements(_ f: TableFamily, _ set: String, _ o: [ElementKey: ElementValue?], _ n: [ElementKey: ElementValue?],
                                       keys: Set<ElementKey>?) {
        var removed: [ElementKey] = []
        var ranges: [ElementKey: ElementKey] = [:]
        var added: [ElementKey: ElementValue?] = [:]
        func compare(_ k: ElementKey) {
            let ov = o[k], nv = n[k]
            if ov == nv { return }
            if case .intervalEnd(let end)?? = ov { ranges[k] = end } else if ov != nil { removed.append(k) }
            if let nv { added[k] = nv }
        }
        if let keys {
            keys.forEach(compare)
        } else {
            if o == n { return }
            for k in o.keys where n[k] == nil { compare(k) }
            for (k, v) in n where o[k] != v { compare(k) }
        }
        if !removed.isEmpty { deleteElements.append(.deleteElements(f, set: set, removed.sorted())) }
        if !ranges.isEmpty { deleteElements.append(.deleteRanges(f, set: set, ranges)) }
        if !added.isEmpty { addElements.append(.addElements(f, set: set, added)) }
    }
}

extension NFChain {
    func uses(_ sets: Set<String>) -> Bool {
        guard !sets.isEmpty, let rules else { return false }
        return rules.contains { $0.expressions.contains { !sets.isDisjoint(with: $0.setReferences) } }
    }
}
