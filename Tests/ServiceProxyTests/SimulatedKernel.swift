import Testing
@testable import ServiceProxy

/// A stand-in for nf_tables that applies operations to a model and refuses what the kernel
/// refuses: duplicates, missing objects, dangling references, deleting what is still in use.
struct SimulatedKernel {
    struct Refused: Error, CustomStringConvertible { var description: String }

    var model = RulesetModel()

    mutating func apply(_ ops: [RulesetOperation]) throws {
        var next = model  // all or nothing, like one batch
        for op in ops { try Self.step(op, &next) }
        model = next
    }

    private static func step(_ op: RulesetOperation, _ m: inout RulesetModel) throws {
        let f = op.family
        func refuse(_ why: String) -> Refused { Refused(description: "\(op): \(why)") }
        if case .addTable = op { if m.tables[f] == nil { m.tables[f] = TableModel(family: f) }; return }
        if case .deleteTable = op {
            guard m.tables.removeValue(forKey: f) != nil else { throw refuse("no table") }
            return
        }
        // Moved out and back so each step does not copy the table.
        guard var t = m.tables.removeValue(forKey: f) else { throw refuse("no table") }
        defer { m.tables[f] = t }
        func chainUsers(_ name: String) -> Bool {
            t.chains.values.contains { $0.rules?.contains { $0.expressions.contains { $0.chainReferences.contains(name) } } ?? false }
                || t.sets.values.contains { $0.elements.values.contains { v in if case .verdict(let x)?? = v { x.chain == name } else { false } } }
        }
        switch op {
        case .addTable, .deleteTable: break
        case .addChain(_, let name, let base):
            guard t.chains[name] == nil else { throw refuse("chain exists") }
            t.chains[name] = NFChain(name, base: base, rules: [])
        case .flushChain(_, let name):
            guard t.chains[name] != nil else { throw refuse("no chain") }
            t.chains[name]!.rules = []
        case .deleteChain(_, let name):
            guard let c = t.chains[name] else { throw refuse("no chain") }
            guard c.rules?.isEmpty ?? true else { throw refuse("chain not empty") }
            guard !chainUsers(name) else { throw refuse("chain in use") }
            t.chains[name] = nil
        case .addRule(_, let chain, let rule):
            guard t.chains[chain] != nil else { throw refuse("no chain") }
            for e in rule.expressions {
                for c in e.chainReferences where t.chains[c] == nil { throw refuse("jump to missing chain \(c)") }
                for s in e.setReferences where t.sets[s] == nil { throw refuse("missing set \(s)") }
            }
            t.chains[chain]!.rules!.append(rule)
        case .addSet(_, let spec):
            guard t.sets[spec.name] == nil else { throw refuse("set exists") }
            t.sets[spec.name] = NFSet(spec)
        case .deleteSet(_, let name):
            guard t.sets[name] != nil else { throw refuse("no set") }
            let used = t.chains.values.contains { $0.rules?.contains { $0.expressions.contains { $0.setReferences.contains(name) } } ?? false }
            guard !used else { throw refuse("set in use") }
            t.sets[name] = nil
        case .addElements(_, let set, let elements):
            guard t.sets[set] != nil else { throw refuse("no set") }
            for (k, v) in elements {
                guard t.sets[set]!.elements[k] == nil else { throw refuse("element \(k) exists") }
                if case .verdict(let verdict)?? = v, let c = verdict.chain, t.chains[c] == nil { throw refuse("element goes to missing chain \(c)") }
                t.sets[set]!.elements[k] = .some(v)
            }
        case .deleteElements(_, let set, let keys):
            guard t.sets[set] != nil else { throw refuse("no set") }
            for k in keys {
                guard t.sets[set]!.elements.removeValue(forKey: k) != nil else { throw refuse("no element \(k)") }
            }
        case .deleteRanges(_, let set, let ranges):
            guard t.sets[set] != nil else { throw refuse("no set") }
            for (k, end) in ranges {
                guard case .intervalEnd(end)?? = t.sets[set]!.elements[k] else { throw refuse("no range \(k)") }
                t.sets[set]!.elements[k] = nil
            }
        case .purgeAffinity:
            break  // the model keeps no learned entries
        }
    }
}

/// Tables equal, ignoring bookkeeping.
func sameTables(_ a: RulesetModel, _ b: RulesetModel) -> Bool { a.tables == b.tables }
