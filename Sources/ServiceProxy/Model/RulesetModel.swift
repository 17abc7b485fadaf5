import ClusterState
import IPAddressing

public enum ChainType: String, Hashable, Sendable { case nat, filter }
public enum ChainHook: String, Hashable, Sendable { case prerouting, input, forward, output, postrouting }

/// What makes a chain a base chain: where the kernel calls it.
public struct BaseChainSpec: Hashable, Sendable {
    public var type: ChainType
    public var hook: ChainHook
    /// Numeric priority: dstnat is -100, srcnat 100.
    public var priority: Int

    public init(_ type: ChainType, _ hook: ChainHook, priority: Int) {
        self.type = type
        self.hook = hook
        self.priority = priority
    }
}

public struct NFChain: Hashable, Sendable {
    public var name: String
    public var base: BaseChainSpec?
    /// nil when the rules are not known (read back from the kernel by a backend that cannot
    /// decode rules): the diff then rewrites the chain, which is always correct.
    public var rules: [NFRule]?

    public init(_ name: String, base: BaseChainSpec? = nil, rules: [NFRule]? = []) {
        self.name = name
        self.base = base
        self.rules = rules
    }
}

/// A set element key: one value per component of the set's concatenated type.
///
/// Stored packed (one small allocation: per value a tag byte, then its bytes big endian), not as
/// `[NFValue]`: a cluster's rules are hundreds of thousands of keys, and the packed form is a
/// third of the size. The tags and byte order make `<` on the packed bytes the same order as
/// comparing the values one by one (addresses before prefixes, protocols, ports, slots).
public struct ElementKey: Hashable, Sendable, Comparable, CustomStringConvertible {
    private var packed: [UInt8]

    public init(_ values: [NFValue]) {
        var out: [UInt8] = []
        out.reserveCapacity(values.count * 5)
        for v in values {
            switch v {
            case .address(let a):
                out.append(a.isV4 ? 0 : 1)
                out += a.bytes
            case .prefix(let p):
                out.append(p.address.isV4 ? 2 : 3)
                out += p.address.bytes
                out.append(UInt8(p.length))
            case .proto(let p):
                out += [4, UInt8(p.number)]
            case .port(let p):
                out += [5, UInt8(p >> 8), UInt8(p & 0xff)]
            case .slot(let n):
                out += [6, UInt8(n >> 24), UInt8((n >> 16) & 0xff), UInt8((n >> 8) & 0xff), UInt8(n & 0xff)]
            }
        }
        packed = out
    }

    public var values: [NFValue] {
        var out: [NFValue] = []
        var i = packed.startIndex
        while i < packed.endIndex {
            let tag = packed[i]
            i += 1
            switch tag {
            case 0, 1:
                let n = tag == 0 ? 4 : 16
                out.append(.address(IPAddress(bytes: packed[i..<i + n])!))
                i += n
            case 2, 3:
                let n = tag == 2 ? 4 : 16
                out.append(.prefix(IPPrefix(address: IPAddress(bytes: packed[i..<i + n])!, length: Int(packed[i + n]))))
                i += n + 1
            case 4:
                out.append(.proto(L4Protocol.allCases.first { $0.number == packed[i] } ?? .tcp))
                i += 1
            case 5:
                out.append(.port(UInt16(packed[i]) << 8 | UInt16(packed[i + 1])))
                i += 2
            default:
                out.append(.slot(packed[i..<i + 4].reduce(UInt32(0)) { $0 << 8 | UInt32($1) }))
                i += 4
            }
        }
        return out
    }

    public var description: String { values.map(\.description).joined(separator: " . ") }
    public static func < (a: Self, b: Self) -> Bool { a.packed.lexicographicallyPrecedes(b.packed) }
}

/// The declaration of a named set or map (without its elements).
public struct SetSpec: Hashable, Sendable {
    public var name: String
    public var keyType: [NFDataType]
    /// True for verdict maps (`: verdict`).
    public var isVerdictMap: Bool
    /// The data type of a data map (`: ipv4_addr . inet_service`); nil for sets and verdict maps.
    public var dataType: [NFDataType]?
    /// `flags interval` (a concatenation whose last field is a range: source ranges).
    public var interval: Bool
    /// `flags dynamic,timeout` with a default timeout in seconds (the affinity map).
    public var timeout: Int?
    /// Declared with `typeof` (nft prints and parses the set by these expressions); the text
    /// after `typeof`, e.g. `ip daddr . meta l4proto . th dport . numgen random mod 2 : ip daddr . th dport`.
    public var typeof: String?

    public init(_ name: String, key: [NFDataType], verdictMap: Bool = false, data: [NFDataType]? = nil, interval: Bool = false,
                timeout: Int? = nil, typeof: String? = nil) {
        self.name = name
        self.keyType = key
        self.isVerdictMap = verdictMap
        self.dataType = data
        self.interval = interval
        self.timeout = timeout
        self.typeof = typeof
    }

    /// A set whose elements the kernel writes from packets: the model keeps none of them.
    public var isDynamic: Bool { timeout != nil }
}

/// What a map element maps to.
public enum ElementValue: Hashable, Sendable, CustomStringConvertible {
    case verdict(Verdict)
    case data(ElementKey)
    /// The end of a concatenated interval (`a . b . 10.0.0.0-10.0.0.255`): the key holds the
    /// start; this the whole closing key.
    case intervalEnd(ElementKey)

    public var description: String {
        switch self {
        case .verdict(let v): v.description
        case .data(let k): k.description
        case .intervalEnd(let k): k.description
        }
    }
}

public struct NFSet: Hashable, Sendable {
    public var spec: SetSpec
    /// Key -> value (nil for plain sets). Dynamic sets keep no elements in the model: the
    /// kernel fills them from packets and the diff never touches them.
    public var elements: [ElementKey: ElementValue?]

    public init(_ spec: SetSpec, elements: [ElementKey: ElementValue?] = [:]) {
        self.spec = spec
        self.elements = elements
    }

    public var name: String { spec.name }
}

/// What one service contributed to one family's table, so an incremental update can remove
/// exactly that and the diff can look only there.
public struct Contribution: Hashable, Sendable {
    public var chains: Set<String> = []
    public var sets: Set<String> = []
    /// Elements this service owns in shared maps: set name -> keys.
    public var elements: [String: Set<ElementKey>] = [:]

    public init() {}

    public var isEmpty: Bool { chains.isEmpty && sets.isEmpty && elements.isEmpty }

    mutating func formUnion(_ other: Contribution) {
        chains.formUnion(other.chains)
        sets.formUnion(other.sets)
        for (s, keys) in other.elements { elements[s, default: []].formUnion(keys) }
    }
}

/// One `nodenet` table (ip or ip6): its chains and sets.
public struct TableModel: Hashable, Sendable {
    public var family: TableFamily
    public var chains: [String: NFChain] = [:]
    public var sets: [String: NFSet] = [:]

    public init(family: TableFamily) { self.family = family }

    public var ruleCount: Int { chains.values.reduce(0) { $0 + ($1.rules?.count ?? 0) } }
    public var elementCount: Int { sets.values.reduce(0) { $0 + $1.elements.count } }
}

/// The whole desired (or applied) state: one table per family present.
public struct RulesetModel: Hashable, Sendable {
    public var tables: [TableFamily: TableModel] = [:]
    /// Per service, per family: what it added (chains, affinity sets, map elements).
    public var contributions: [NamespacedName: [TableFamily: Contribution]] = [:]

    public init() {}

    public var chainCount: Int { tables.values.reduce(0) { $0 + $1.chains.count } }
    public var ruleCount: Int { tables.values.reduce(0) { $0 + $1.ruleCount } }
    public var elementCount: Int { tables.values.reduce(0) { $0 + $1.elementCount } }
    public var setCount: Int { tables.values.reduce(0) { $0 + $1.sets.count } }

    /// The model without the named chains and sets: what other actors own in the shared tables.
    public func without(_ names: Set<String>) -> RulesetModel {
        guard !names.isEmpty else { return self }
        var out = self
        for family in out.tables.keys {
            for name in names {
                out.tables[family]?.chains[name] = nil
                out.tables[family]?.sets[name] = nil
            }
        }
        return out
    }

    /// The tables with their chains and no sets (what `assumingRules(from:)` reads): O(chains),
    /// and it shares no set storage with `self`.
    public var chainsOnly: RulesetModel {
        var out = RulesetModel()
        for (family, table) in tables {
            var t = TableModel(family: family)
            t.chains = table.chains
            out.tables[family] = t
        }
        return out
    }

    /// Copies the rules of `known` into chains whose rules are unknown here (read back from a
    /// backend that cannot decode rules) and that exist in both: the best available belief.
    public func assumingRules(from known: RulesetModel) -> RulesetModel {
        var out = self
        for (family, table) in tables {
            for (name, chain) in table.chains where chain.rules == nil {
                if let k = known.tables[family]?.chains[name], k.base == chain.base {
                    out.tables[family]?.chains[name]?.rules = k.rules
                }
            }
        }
        return out
    }
}
