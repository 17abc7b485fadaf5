import ClusterState
import IPAddressing
import Netlink

/// Turns the typed model and its operations into nf_tables netlink messages, the way nft
/// 1.0.6 encodes the equivalent `nft -f` text (the privileged tests compare both through
/// `nft -j list table`). Pure: no socket, so the bytes are unit-tested.
public struct NetlinkRuleEncoder: Sendable {
    public var tableName: String

    public init(tableName: String = "nodenet") { self.tableName = tableName }

    /// The messages of one transaction, and for each message the index of the operation it
    /// came from (to name the operation when the kernel refuses a message).
    ///
    /// `anonymousTag` nil: anonymous sets are named `__set%d` / `__map%d` as nft names them, and
    /// the kernel picks the number, which costs a scan (one sscanf per set of the table) for
    /// each: quadratic with one numgen map per service (10,000 services: most of a full load).
    /// With a tag, anonymous sets get literal names `__map<tag><n>`, unique as long as the tag
    /// is unique per transaction; the kernel then only checks the name is free.
    public func requests(_ ops: [RulesetOperation], anonymousTag: String? = nil) -> (requests: [NetlinkRequest], origin: [Int]) {
        var state = BatchState(tag: anonymousTag)
        var out: [NetlinkRequest] = [], origin: [Int] = []
        out.reserveCapacity(ops.count)
        origin.reserveCapacity(ops.count)
        for (i, op) in ops.enumerated() {
            let rs = requests(op, &state)
            out += rs
            origin += repeatElement(i, count: rs.count)
        }
        return (out, origin)
    }

    /// Batch-local ids for anonymous sets (`__set%d`, `__map%d`), unique within a transaction.
    struct BatchState {
        var tag: String?
        var nextSetID: UInt32 = 1
        mutating func take() -> UInt32 {
            defer { nextSetID += 1 }
            return nextSetID
        }

        func anonymousName(_ kind: String, _ id: UInt32) -> String {
            tag.map { "__\(kind)\($0)\(id)" } ?? "__\(kind)%d"
        }
    }

    func requests(_ op: RulesetOperation, _ state: inout BatchState) -> [NetlinkRequest] {
        let f = op.family.ipFamily
        let t = tableName
        switch op {
        case .addTable: return [NFTablesMessages.newTable(t, family: f)]
        case .deleteTable: return [NFTablesMessages.deleteTable(t, family: f)]
        case .addChain(_, let name, let base?):
            return [NFTablesMessages.newChain(table: t, name: name, family: f, hook: Self.hook(base))]
        case .addChain(_, let name, nil): return [NFTablesMessages.newChain(table: t, name: name, family: f)]
        case .flushChain(_, let name): return [NFTablesMessages.flushChain(table: t, name: name, family: f)]
        case .deleteChain(_, let name): return [NFTablesMessages.deleteChain(table: t, name: name, family: f)]
        case .addSet(let family, let spec):
            // The kernel requires NFTA_SET_ID on every new set, named ones included.
            var set = Self.set(spec, family)
            set.id = state.take()
            return [NFTablesMessages.newSet(table: t, family: f, set)]
        case .deleteSet(_, let name): return [NFTablesMessages.deleteSet(table: t, name: name, family: f)]
        case .addElements(_, let set, let elements):
            let list = elements.sorted { $0.key < $1.key }.map { k, v in Self.element(k, v) }
            return NFTablesMessages.elements(add: true, table: t, set: set, family: f, list)
        case .deleteRanges(_, let set, let ranges):
            // A concatenated range is found by its start and its end.
            return NFTablesMessages.elements(add: false, table: t, set: set, family: f,
                                             ranges.sorted { $0.key < $1.key }.map { NFTablesElement(key: Self.key($0.key), keyEnd: Self.key($0.value)) })
        case .purgeAffinity:
            // Resolved by the backend, which reads the learned entries first.
            return []
        case .deleteElements(_, let set, let keys):
            return NFTablesMessages.elements(add: false, table: t, set: set, family: f, keys.sorted().map { NFTablesElement(key: Self.key($0)) })
        case .addRule(let family, let chain, let rule):
            var pre: [NetlinkRequest] = []
            var exprs: [NFTablesExpression] = []
            for e in rule.expressions { exprs += expressions(e, family, &state, &pre) }
            return pre + [NFTablesMessages.newRule(table: t, chain: chain, family: f, expressions: exprs, comment: rule.comment,
                                                   extraUserData: Self.digestUserData(family, chain, rule))]
        }
    }

    // MARK: rule digests

    /// User data TLV type of nodenet's rule digest (nft ignores TLV types it does not know).
    public static let digestType: UInt8 = NFTablesRuleDigest.userDataType

    /// A digest of the rule as nft text, in its chain: what `NetlinkRulesetBackend` compares
    /// after a restart to leave chains whose rules are already right untouched.
    public static func digest(_ family: TableFamily, _ chain: String, _ rule: NFRule) -> UInt64 {
        var h: UInt64 = 0xcbf2_9ce4_8422_2325  // FNV-1a 64
        for byte in "\(family.rawValue) \(chain) ".utf8 { h = (h ^ UInt64(byte)) &* 0x100_0000_01b3 }
        for byte in NftRenderer().render(rule, family).utf8 { h = (h ^ UInt64(byte)) &* 0x100_0000_01b3 }
        return h
    }

    static func digestUserData(_ family: TableFamily, _ chain: String, _ rule: NFRule) -> [UInt8] {
        [digestType, 8] + withUnsafeBytes(of: digest(family, chain, rule).bigEndian) { Array($0) }
    }

    // MARK: declarations

    static func hook(_ b: BaseChainSpec) -> NFTablesHook {
        let number: UInt32 = switch b.hook {
        case .prerouting: 0
        case .input: 1
        case .forward: 2
        case .output: 3
        case .postrouting: 4
        }
        return NFTablesHook(type: b.type.rawValue, hook: number, priority: Int32(b.priority))
    }

    /// nft's datatype numbers (src/datatype.h) and their sizes in bytes.
    static func typeInfo(_ t: NFDataType) -> (id: UInt32, length: Int) {
        switch t {
        case .verdict: (1, 4)
        case .ipv4Addr: (7, 4)
        case .ipv6Addr: (8, 16)
        case .inetProto: (12, 1)
        case .inetService: (13, 2)
        case .integer: (4, 4)
        case .mark: (19, 4)
        }
    }

    static func dataType(id: UInt32) -> NFDataType? {
        switch id {
        case 1: .verdict
        case 7: .ipv4Addr
        case 8: .ipv6Addr
        case 12: .inetProto
        case 13: .inetService
        case 4: .integer
        case 19: .mark
        default: nil
        }
    }

    static func roundUp4(_ n: Int) -> Int { (n + 3) & ~3 }

    /// Concatenated type: each component shifted in 6 bits at a time (nft's TYPE_BITS).
    static func keyType(_ types: [NFDataType]) -> (id: UInt32, length: UInt32) {
        var id: UInt32 = 0, length = 0
        for t in types {
            let info = typeInfo(t)
            id = id << 6 | info.id
            length += types.count > 1 ? roundUp4(info.length) : info.length
        }
        return (id, UInt32(length))
    }

    static func set(_ spec: SetSpec, _ family: TableFamily) -> NFTablesSet {
        let key = keyType(spec.keyType)
        var s = NFTablesSet(name: spec.name, keyType: key.id, keyLength: key.length)
        if spec.isVerdictMap {
            s.flags |= NFTablesSet.flagMap
            s.dataType = NFTablesSet.verdictData
        }
        if let data = spec.dataType {
            let d = keyType(data)
            s.flags |= NFTablesSet.flagMap
            s.dataType = d.id
            s.dataLength = data.count > 1 ? d.length : UInt32(typeInfo(data[0]).length)
        }
        if spec.interval {
            s.flags |= NFTablesSet.flagInterval
            if spec.keyType.count > 1 {
                s.flags |= NFTablesSet.flagConcat
                s.concatLengths = spec.keyType.map { UInt32(typeInfo($0).length) }
            }
        }
        if let typeof = spec.typeof, let udata = TypeofUserData.bytes[typeof] { s.userData = udata }
        if let timeout = spec.timeout {
            s.flags |= NFTablesSet.flagTimeout | NFTablesSet.flagEval
            s.timeoutMilliseconds = UInt64(timeout) * 1000
        }
        return s
    }

    // MARK: values

    static func bytes(_ v: NFValue) -> [UInt8] {
        switch v {
        case .address(let a): a.bytes
        case .prefix(let p): p.network.address.bytes
        case .proto(let p): [UInt8(p.number)]
        case .port(let p): [UInt8(p >> 8), UInt8(p & 0xff)]
        case .slot(let n): host32(n)
        }
    }

    /// A set key: one field alone as is; a concatenation pads each field to 4 bytes.
    static func key(_ k: ElementKey, concatenated: Bool = false) -> [UInt8] {
        guard k.values.count > 1 || concatenated else { return k.values.first.map(bytes) ?? [] }
        var out: [UInt8] = []
        for v in k.values {
            let b = bytes(v)
            out += b + [UInt8](repeating: 0, count: roundUp4(b.count) - b.count)
        }
        return out
    }

    static func element(_ k: ElementKey, _ v: ElementValue?) -> NFTablesElement {
        switch v {
        case nil: NFTablesElement(key: key(k))
        case .verdict(let verdict)?: NFTablesElement(key: key(k), verdict: Self.verdict(verdict))
        case .data(let d)?: NFTablesElement(key: key(k), data: key(d, concatenated: true))
        case .intervalEnd(let end)?: NFTablesElement(key: key(k), keyEnd: key(end))
        }
    }

    static func verdict(_ v: Verdict) -> NFTablesVerdict {
        switch v {
        case .accept: .accept
        case .drop: .drop
        case .return: .return
        case .jump(let c): .jump(c)
        case .goto(let c): .goto(c)
        }
    }

    /// A host-order u32 as register bytes (meta mark, ct state, fib type, numgen results).
    static func host32(_ v: UInt32) -> [UInt8] { withUnsafeBytes(of: v) { Array($0) } }

    // MARK: expressions

    /// Where a field lives and how long it is.
    static func load(_ field: NFField, _ family: TableFamily, into reg: UInt32) -> NFTablesExpression {
        let v4 = family == .ip
        switch field {
        case .saddr: return .payload(base: .network, offset: v4 ? 12 : 8, length: v4 ? 4 : 16, dreg: reg)
        case .daddr: return .payload(base: .network, offset: v4 ? 16 : 24, length: v4 ? 4 : 16, dreg: reg)
        case .l4proto: return .meta(.l4proto, dreg: reg)
        case .dport: return .payload(base: .transport, offset: 2, length: 2, dreg: reg)
        case .mark: return .meta(.mark, dreg: reg)
        // NFT_CT_DST_IP (20) / NFT_CT_DST_IP6 (22), NFT_CT_PROTO_DST (12); direction original.
        case .ctOriginalDaddr: return .ctDirection(key: v4 ? 20 : 22, dreg: reg, direction: 0)
        case .ctOriginalDport: return .ctDirection(key: 12, dreg: reg, direction: 0)
        case .numgen(let n): return .numgenRandom(modulus: n, dreg: reg)
        case .mapped(let inner, _): return load(inner, family, into: reg)
        case .ctMark: return .ct(key: 3 /* NFT_CT_MARK */, dreg: reg)
        }
    }

    /// The expressions that put a field's value into `reg`: one load, or for a mapped field
    /// the load of its key followed by the map lookup writing the data over it (the key may
    /// spill into the next registers, which later fields overwrite).
    static func loadExpressions(_ field: NFField, _ family: TableFamily, into reg: UInt32) -> [NFTablesExpression] {
        guard case .mapped(let inner, let map) = field else { return [load(field, family, into: reg)] }
        return loadExpressions(inner, family, into: reg) + [.lookup(NFTablesSetReference(map), sreg: reg, dreg: reg, inverted: false)]
    }

    static func length(_ field: NFField, _ family: TableFamily) -> Int {
        switch field {
        case .saddr, .daddr: family == .ip ? 4 : 16
        case .l4proto: 1
        case .dport, .ctOriginalDport: 2
        case .mark, .numgen, .mapped, .ctMark: 4
        case .ctOriginalDaddr: family == .ip ? 4 : 16
        }
    }

    /// 4-byte registers a (concatenated) key takes.
    static func words(_ fields: [NFField], _ family: TableFamily) -> Int {
        fields.reduce(0) { $0 + roundUp4(length($1, family)) / 4 }
    }

    /// Loads of a (concatenated) key into consecutive registers, starting at register 1 (or at
    /// the 4-byte register `startWord`).
    static func loads(_ fields: [NFField], _ family: TableFamily, startWord: Int = 0) -> [NFTablesExpression] {
        var words = startWord
        var out: [NFTablesExpression] = []
        for f in fields {
            let reg = words == 0 ? NFTablesExpression.register1 : NFTablesExpression.register32(words)
            words += roundUp4(length(f, family)) / 4
            out += loadExpressions(f, family, into: reg)
        }
        return out
    }

    func expressions(_ e: NFExpression, _ family: TableFamily, _ state: inout BatchState,
                     _ pre: inout [NetlinkRequest]) -> [NFTablesExpression] {
        let r1 = NFTablesExpression.register1
        switch e {
        case .match(let field, .prefix(let p), let negated) where field == .saddr || field == .daddr:
            return NFTablesExpression.match(p, source: field == .saddr, negated: negated)
        case .match(let field, let value, let negated):
            return Self.loadExpressions(field, family, into: r1) + [.cmp(sreg: r1, equal: !negated, data: Self.bytes(value))]
        case .matchAny(let field, let values, let negated) where values.count == 1:
            // nft turns a one-element anonymous set into a plain match; do the same so both list alike.
            return expressions(.match(field, values[0], negated: negated), family, &state, &pre)
        case .matchAny(let field, let values, let negated):
            let id = state.take()
            let key = Self.keyType([field == .l4proto ? .inetProto : field == .dport ? .inetService : .address(family)])
            let set = NFTablesSet(name: state.anonymousName("set", id), id: id, keyType: key.id, keyLength: key.length,
                                  flags: NFTablesSet.flagAnonymous | NFTablesSet.flagConstant | NFTablesSet.flagInterval)
            pre.append(NFTablesMessages.newSet(table: tableName, family: family.ipFamily, set))
            pre += NFTablesMessages.elements(add: true, table: tableName, set: set.name, setID: id, family: family.ipFamily,
                                             Self.intervals(values))
            return [Self.load(field, family, into: r1), .lookup(NFTablesSetReference(set.name, id: id), sreg: r1, dreg: nil, inverted: negated)]
        case .lookup(let fields, let set, let negated):
            return Self.loads(fields, family) + [.lookup(NFTablesSetReference(set), sreg: r1, dreg: nil, inverted: negated)]
        case .dnatMap(let fields, let map):
            // The map's data (address . port) lands in register 1 onward: the address first,
            // the port in the 4-byte register after it (as nft: `proto_min reg 9` / `reg 2`).
            let portRegister = NFTablesExpression.register32(family == .ip ? 1 : 4)
            return Self.loads(fields, family) + [
                .lookup(NFTablesSetReference(map), sreg: r1, dreg: r1, inverted: false),
                .nat(destination: true, family: family.ipFamily, addressRegister: r1, portRegister: portRegister),
            ]
        case .ctStatusDNAT:
            // IPS_DST_NAT = 1 << 5.
            return [.ct(key: 2 /* NFT_CT_STATUS */, dreg: r1), .bitwise(sreg: r1, dreg: r1, mask: Self.host32(0x20), xor: Self.host32(0)),
                    .cmp(sreg: r1, equal: false, data: Self.host32(0))]
        case .protocolPort(let p):
            return [.meta(.l4proto, dreg: r1), .cmp(sreg: r1, equal: true, data: [UInt8(p.number)]),
                    .payload(base: .transport, offset: 2, length: 2, dreg: r1), .cmp(sreg: r1, equal: false, data: [0, 0])]
        case .recordDestination(let map, let key, let timeout, _):
            // Key from register 1; the data (address . port after DNAT) where nft puts it, at the
            // next 16-byte register, unless that runs past the last register (IPv6: the key is
            // 40 bytes, the data 20, so it follows the key directly; nft 1.0.6 gives up there).
            let keyWords = Self.words(key, family)
            let dataFields: [NFField] = [.daddr, .dport]
            let dataWords = Self.words(dataFields, family)
            let aligned = (keyWords + 3) / 4 * 4
            let dataStart = aligned + dataWords <= 16 ? aligned : keyWords
            let dataRegister = dataStart % 4 == 0 ? UInt32(dataStart / 4) + r1 : NFTablesExpression.register32(dataStart)
            return Self.loads(key, family) + Self.loads(dataFields, family, startWord: dataStart) + [
                .dynsetUpdateMap(NFTablesSetReference(map), keyRegister: r1, dataRegister: dataRegister,
                                 timeoutMilliseconds: UInt64(timeout) * 1000),
            ]
        case .vmap(let fields, let map):
            return Self.loads(fields, family) + [.lookup(NFTablesSetReference(map), sreg: r1, dreg: NFTablesExpression.verdictRegister, inverted: false)]
        case .numgenVmap(let verdicts):
            let id = state.take()
            var map = NFTablesSet(name: state.anonymousName("map", id), id: id, keyType: 4 /* integer */, keyLength: 4,
                                  flags: NFTablesSet.flagAnonymous | NFTablesSet.flagConstant | NFTablesSet.flagMap,
                                  dataType: NFTablesSet.verdictData)
            // numgen yields a host-order integer; tell nft so it prints 1 rather than 16777216.
            map.userData = NFTablesSet.keyByteOrder(hostEndian: true)
            pre.append(NFTablesMessages.newSet(table: tableName, family: family.ipFamily, map))
            let elements = verdicts.enumerated().map { NFTablesElement(key: Self.host32(UInt32($0.offset)), verdict: Self.verdict($0.element)) }
            pre += NFTablesMessages.elements(add: true, table: tableName, set: map.name, setID: id, family: family.ipFamily, elements)
            return [.numgenRandom(modulus: UInt32(verdicts.count), dreg: r1),
                    .lookup(NFTablesSetReference(map.name, id: id), sreg: r1, dreg: NFTablesExpression.verdictRegister, inverted: false)]
        case .fibTypeLocal(let field):
            return [.fibAddressType(source: field == .saddr, dreg: r1), .cmp(sreg: r1, equal: true, data: Self.host32(2 /* RTN_LOCAL */))]
        case .ctMarkSet(let field):
            return Self.loadExpressions(field, family, into: r1) + [.ctSet(key: 3 /* NFT_CT_MARK */, sreg: r1)]
        case .icmpv6Type(let t):
            return [.meta(.l4proto, dreg: r1), .cmp(sreg: r1, equal: true, data: [58]),
                    .payload(base: .transport, offset: 0, length: 1, dreg: r1), .cmp(sreg: r1, equal: true, data: [t])]
        case .ctStateEstablishedRelated:
            // NF_CT_STATE_BIT(IP_CT_ESTABLISHED) = 2, NF_CT_STATE_BIT(IP_CT_RELATED) = 4.
            return [.ct(key: 0 /* NFT_CT_STATE */, dreg: r1), .bitwise(sreg: r1, dreg: r1, mask: Self.host32(6), xor: Self.host32(0)),
                    .cmp(sreg: r1, equal: false, data: Self.host32(0))]
        case .ctStateNew:
            // NF_CT_STATE_BIT(IP_CT_NEW) = 1 << (IP_CT_NEW + 1) = 8.
            return [.ct(key: 0 /* NFT_CT_STATE */, dreg: r1), .bitwise(sreg: r1, dreg: r1, mask: Self.host32(8), xor: Self.host32(0)),
                    .cmp(sreg: r1, equal: false, data: Self.host32(0))]
        case .markClear(let m):
            return [.meta(.mark, dreg: r1), .bitwise(sreg: r1, dreg: r1, mask: Self.host32(m), xor: Self.host32(0)),
                    .cmp(sreg: r1, equal: true, data: Self.host32(0))]
        case .markSetOr(let m):
            return [.meta(.mark, dreg: r1), .bitwise(sreg: r1, dreg: r1, mask: Self.host32(~m), xor: Self.host32(m)), .metaSet(.mark, sreg: r1)]
        case .markSetXor(let m):
            return [.meta(.mark, dreg: r1), .bitwise(sreg: r1, dreg: r1, mask: Self.host32(~0), xor: Self.host32(m)), .metaSet(.mark, sreg: r1)]
        case .counter:
            return [.counter]
        case .updateSet(let set, let field):
            return [Self.load(field, family, into: r1), .dynsetUpdate(NFTablesSetReference(set), sreg: r1)]
        case .dnat(let address, let port):
            let r2 = r1 + 1
            return [.immediate(dreg: r1, data: address.bytes), .immediate(dreg: r2, data: Self.bytes(.port(port))),
                    .nat(destination: true, family: address.family, addressRegister: r1, portRegister: r2)]
        case .masquerade:
            return [.masq(flags: 0x10 /* NF_NAT_RANGE_PROTO_RANDOM_FULLY */)]
        case .reject(.tcpReset):
            return [.reject(tcpReset: true, icmpCode: 0)]
        case .reject(.portUnreachable):
            return [.reject(tcpReset: false, icmpCode: family == .ip ? 3 : 4)]
        case .reject(.adminProhibited):
            // ICMP_PKT_FILTERED (13); ICMPV6_ADM_PROHIBITED (1).
            return [.reject(tcpReset: false, icmpCode: family == .ip ? 13 : 1)]
        case .verdict(let v):
            return [.verdict(Self.verdict(v))]
        }
    }

    /// Interval-set elements for constants and prefixes, as nft sends them: ranges sorted and
    /// merged, each a start element and an end element (first address after the range, flagged
    /// INTERVAL_END); a leading end element at zero when the first range does not start there.
    static func intervals(_ values: [NFValue]) -> [NFTablesElement] {
        var ranges: [(start: [UInt8], end: [UInt8])] = values.map { v in
            switch v {
            case .prefix(let p):
                let start = p.network.address.bytes
                let mask = NFTablesExpression.maskBytes(prefixLength: p.length, byteCount: start.count)
                return (start, zip(start, mask).map { $0 | ~$1 })
            default:
                let b = bytes(v)
                return (b, b)
            }
        }
        ranges.sort { $0.start.lexicographicallyPrecedes($1.start) }
        var merged: [(start: [UInt8], end: [UInt8])] = []
        for r in ranges {
            if let last = merged.last {
                // The previous range runs to the top: it covers this one.
                guard let next = increment(last.end) else { continue }
                // Overlapping or adjacent: extend the previous range.
                if !next.lexicographicallyPrecedes(r.start) {
                    if last.end.lexicographicallyPrecedes(r.end) { merged[merged.count - 1].end = r.end }
                    continue
                }
            }
            merged.append(r)
        }
        var out: [NFTablesElement] = []
        if let first = merged.first, first.start.contains(where: { $0 != 0 }) {
            out.append(NFTablesElement(key: [UInt8](repeating: 0, count: first.start.count), intervalEnd: true))
        }
        for r in merged {
            out.append(NFTablesElement(key: r.start))
            if let next = increment(r.end) { out.append(NFTablesElement(key: next, intervalEnd: true)) }
        }
        return out
    }

    /// Big-endian +1; nil on overflow (the range runs to the top of the space).
    static func increment(_ b: [UInt8]) -> [UInt8]? {
        var out = b
        for i in out.indices.reversed() {
            if out[i] == 0xff { out[i] = 0 } else { out[i] += 1; return out }
        }
        return nil
    }
}

extension NetlinkRuleEncoder {
    static func typeofText(userData: [UInt8]) -> String? { TypeofUserData.typeof(of: userData) }
}

/// The set user data nft 1.0.6 writes for the `typeof` declarations nodenet uses (captured from
/// `nft -f` and read back with NFT_MSG_GETSET): nft prints the set, and the rules that use it,
/// from these expressions, so the netlink path writes the same bytes.
enum TypeofUserData {
    static let bytes: [String: [UInt8]] = [
        TupleTypes(family: .ip).backendsTypeof: hex(
            "000400000000010400000000036000040d00000001580014000407000000010c00040c00000001040c000000010e00040900000001060004100000000214000407000000010c00040b000000010402000000031a0004170000000112000401000000010402000000020400000000043400040d000000012c0014000407000000010c00040c00000001040c0000000114000407000000010c00040b000000010402000000060400000000"),
        TupleTypes(family: .ip6).backendsTypeof: hex(
            "000400000000010400000000036000040d00000001580014000407000000010c00040d000000010409000000010e00040900000001060004100000000214000407000000010c00040b000000010402000000031a0004170000000112000401000000010402000000020400000000043400040d000000012c0014000407000000010c00040d0000000104090000000114000407000000010c00040b000000010402000000060400000000"),
    ]

    /// The typeof text of known user data (reading a set back from the kernel).
    static func typeof(of userData: [UInt8]) -> String? { bytes.first { $0.value == userData }?.key }

    static func hex(_ s: String) -> [UInt8] {
        var out: [UInt8] = []
        var i = s.startIndex
        while i < s.endIndex {
            let j = s.index(i, offsetBy: 2)
            out.append(UInt8(s[i..<j], radix: 16)!)
            i = j
        }
        return out
    }
}
