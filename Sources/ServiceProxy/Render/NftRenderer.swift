import IPAddressing

/// Renders the model and operations in `nft -f` syntax: one command per line, all chains and
/// sets declared before the rules and elements that refer to them (like knftables does).
/// Used by `nodenet status --rules`, by the `nft` fallback backend and by tests as the oracle.
public struct NftRenderer: Sendable {
    public var tableName: String
    /// Elements per `add element` line (one huge line is valid too, but unreadable).
    public var elementsPerLine = 1000

    public init(tableName: String = "nodenet") { self.tableName = tableName }

    /// The commands that build `model` from nothing.
    public func ruleset(_ model: RulesetModel) -> String {
        script(RulesetDiff.operations(from: nil, to: model))
    }

    /// One script for the whole transaction (`nft -f` applies a file atomically).
    public func script(_ ops: [RulesetOperation]) -> String {
        var out = ""
        for op in ops {
            for line in lines(op) {
                out += line
                out += "\n"
            }
        }
        return out
    }

    public func lines(_ op: RulesetOperation) -> [String] {
        let t = "\(op.family.rawValue) \(tableName)"
        switch op {
        case .addTable: return ["add table \(t)"]
        case .deleteTable: return ["delete table \(t)"]
        case .addChain(_, let name, let base):
            guard let base else { return ["add chain \(t) \(name)"] }
            return ["add chain \(t) \(name) { type \(base.type.rawValue) hook \(base.hook.rawValue) priority \(base.priority) ; policy accept ; }"]
        case .flushChain(_, let name): return ["flush chain \(t) \(name)"]
        case .deleteChain(_, let name): return ["delete chain \(t) \(name)"]
        case .addRule(let f, let chain, let rule): return ["add rule \(t) \(chain) \(render(rule, f))"]
        case .addSet(_, let spec):
            var body: String
            if let typeof = spec.typeof {
                body = "typeof " + typeof
            } else {
                body = "type " + spec.keyType.map(\.rawValue).joined(separator: " . ")
                if spec.isVerdictMap { body += " : verdict" }
                if let data = spec.dataType { body += " : " + data.map(\.rawValue).joined(separator: " . ") }
            }
            if spec.interval { body += " ; flags interval" }
            if let timeout = spec.timeout { body += " ; flags dynamic,timeout ; timeout \(timeout)s" }
            let isMap = spec.isVerdictMap || spec.dataType != nil
            return ["add \(isMap ? "map" : "set") \(t) \(spec.name) { \(body) ; }"]
        case .deleteSet(_, let name): return ["delete set \(t) \(name)"]
        case .addElements(_, let set, let elements):
            let items = elements.sorted { $0.key < $1.key }.map { k, v in Self.element(k, v) }
            return chunks(items).map { "add element \(t) \(set) { \($0) }" }
        case .deleteElements(_, let set, let keys):
            return chunks(keys.map(\.description)).map { "delete element \(t) \(set) { \($0) }" }
        case .deleteRanges(_, let set, let ranges):
            let items = ranges.sorted { $0.key < $1.key }.map { Self.element($0.key, .intervalEnd($0.value)) }
            return chunks(items).map { "delete element \(t) \(set) { \($0) }" }
        case .purgeAffinity(_, let map, let keep, let strict):
            // Not an nft command: the backend reads the map and deletes the entries it finds.
            return ["# purge \(strict ? "all but " : "")learned entries of \(t) \(map) for \(keep.count) tuples"]
        }
    }

    /// `key`, `key : value`, or for a concatenated range `a . b . start-end`.
    static func element(_ k: ElementKey, _ v: ElementValue?) -> String {
        switch v {
        case nil: return k.description
        case .intervalEnd(let end)?:
            let shared = zip(k.values, end.values).prefix { $0 == $1 }.count
            guard shared == k.values.count - 1, let first = k.values.last, let last = end.values.last else { return k.description }
            let prefix = k.values.prefix(shared).map(\.description).joined(separator: " . ")
            return prefix + " . " + Self.range(first, last)
        case let value?: return "\(k) : \(value)"
        }
    }

    /// An address range as nft prints it: a prefix when it is one.
    static func range(_ a: NFValue, _ b: NFValue) -> String {
        guard case .address(let start) = a, case .address(let end) = b else { return "\(a)-\(b)" }
        let bits = start.isV4 ? 32 : 128
        for length in 0...bits {
            let p = IPPrefix(address: start, length: length)
            if p.network.address == start, p.lastAddress == end { return p.description }
        }
        return "\(start)-\(end)"
    }

    private func chunks(_ items: [String]) -> [String] {
        stride(from: 0, to: items.count, by: elementsPerLine).map {
            items[$0..<min($0 + elementsPerLine, items.count)].joined(separator: ", ")
        }
    }

    public func render(_ rule: NFRule, _ f: TableFamily) -> String {
        var parts = rule.expressions.map { render($0, f) }
        if let c = rule.comment { parts.append("comment \"\(c)\"") }
        return parts.joined(separator: " ")
    }

    public func render(_ e: NFExpression, _ f: TableFamily) -> String {
        func fields(_ fs: [NFField]) -> String { fs.map { field($0, f) }.joined(separator: " . ") }
        func set(_ vs: [NFValue]) -> String { "{ " + vs.map(\.description).joined(separator: ", ") + " }" }
        let mark = { (m: UInt32) in "0x" + String(m, radix: 16) }
        switch e {
        case .match(let fl, let v, let neg): return "\(field(fl, f)) \(neg ? "!= " : "")\(v)"
        case .matchAny(let fl, let vs, let neg): return "\(field(fl, f)) \(neg ? "!= " : "")\(set(vs))"
        case .lookup(let fs, let s, let neg): return "\(fields(fs)) \(neg ? "!= " : "")@\(s)"
        case .vmap(let fs, let m): return "\(fields(fs)) vmap @\(m)"
        case .numgenVmap(let vs):
            let items = vs.enumerated().map { "\($0.offset) : \($0.element)" }.joined(separator: ", ")
            return "numgen random mod \(vs.count) vmap { \(items) }"
        case .fibTypeLocal(let fl): return "fib \(fl == .saddr ? "saddr" : "daddr") type local"
        case .ctStateNew: return "ct state new"
        case .ctStateEstablishedRelated: return "ct state established,related"
        case .icmpv6Type(let t): return "icmpv6 type \(t)"
        case .ctMarkSet(let fl): return "ct mark set \(field(fl, f))"
        case .markClear(let m): return "meta mark & \(mark(m)) == 0"
        case .markSetOr(let m): return "meta mark set meta mark or \(mark(m))"
        case .markSetXor(let m): return "meta mark set meta mark xor \(mark(m))"
        case .counter: return "counter"
        case .updateSet(let s, let fl): return "update @\(s) { \(field(fl, f)) }"
        case .dnat(let a, let p): return a.isV4 ? "dnat to \(a):\(p)" : "dnat to [\(a)]:\(p)"
        case .dnatMap(let fs, let m): return "dnat \(f.rawValue) to \(fields(fs)) map @\(m)"
        case .ctStatusDNAT: return "ct status dnat"
        case .protocolPort(let p): return "\(p.nftName) dport != 0"
        case .recordDestination(let m, let key, let timeout, let p):
            return "update @\(m) { \(fields(key)) timeout \(timeout)s : \(f.rawValue) daddr . \(p.nftName) dport }"
        case .masquerade: return "masquerade fully-random"
        case .reject(.tcpReset): return "reject with tcp reset"
        case .reject(.portUnreachable): return f == .ip ? "reject with icmp port-unreachable" : "reject with icmpv6 port-unreachable"
        case .reject(.adminProhibited): return f == .ip ? "reject with icmp admin-prohibited" : "reject with icmpv6 admin-prohibited"
        case .verdict(let v): return v.description
        }
    }

    func field(_ fl: NFField, _ f: TableFamily) -> String {
        switch fl {
        case .saddr: "\(f.rawValue) saddr"
        case .daddr: "\(f.rawValue) daddr"
        case .l4proto: "meta l4proto"
        case .dport: "th dport"
        case .mark: "meta mark"
        case .ctOriginalDaddr: "ct original \(f.rawValue) daddr"
        case .ctOriginalDport: "ct original proto-dst"
        case .numgen(let n): "numgen random mod \(n)"
        case .mapped(let inner, let m): "\(field(inner, f)) map @\(m)"
        case .ctMark: "ct mark"
        }
    }
}
