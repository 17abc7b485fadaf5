import ClusterState
import IPAddressing
import Netlink
import Synchronization

/// Programs nodenet's tables over nfnetlink, with no `nft` process: each `apply` is one
/// nf_tables batch (atomic, however large), `currentState` dumps chains, sets and elements
/// (rules are not decoded: chains come back with `rules == nil`, so after a restart the actor
/// rewrites chains atomically; the table is never flushed and traffic keeps flowing), and
/// `deleteConntrack` deletes flows over ctnetlink.
public final class NetlinkRulesetBackend: RulesetBackend {
    public let tableName: String
    private let session: NetlinkSession
    private let conntrack: NetlinkSession
    private let encoder: NetlinkRuleEncoder
    /// Makes anonymous set names unique: a random per-instance part (another process, or an
    /// earlier run, may have left sets in the table) and a per-transaction counter.
    private let instanceTag = String(UInt32.random(in: 0...UInt32.max), radix: 36)
    private let transactions = Atomic<Int>(0)

    /// Sockets open in `namespace` (the current one when nil) and keep acting on it from any thread.
    /// - Parameter rewriteCheckFrom: how many chain rewrites a transaction needs before the
    ///   backend reads the kernel's rule digests to drop the unchanged ones (a rule dump costs
    ///   about what rewriting a few chains does; the policy tables, with a handful of fixed
    ///   chains, check always so that a restart writes nothing).
    public init(namespace: NetworkNamespace? = nil, tableName: String = "nodenet", additionBatchLimit: Int = 10_000,
                rewriteCheckFrom: Int = 16) throws {
        self.tableName = tableName
        self.rewriteCheckFrom = max(1, rewriteCheckFrom)
        self.additionBatchLimit = max(1, additionBatchLimit)
        encoder = NetlinkRuleEncoder(tableName: tableName)
        if let namespace {
            session = try NetlinkSession(protocol: Netlink.netfilter, namespace: namespace)
            conntrack = try NetlinkSession(protocol: Netlink.netfilter, namespace: namespace)
        } else {
            session = try NetlinkSession(protocol: Netlink.netfilter)
            conntrack = try NetlinkSession(protocol: Netlink.netfilter)
        }
    }

    /// In the namespace /var/run/netns/`name` (tools and benchmarks that do not import Netlink).
    public convenience init(namespaceNamed name: String, tableName: String = "nodenet", additionBatchLimit: Int = 10_000) throws {
        try self.init(namespace: NetworkNamespace(named: name), tableName: tableName, additionBatchLimit: additionBatchLimit)
    }

    /// Messages per nf_tables batch when a transaction only adds (see `apply`).
    public let additionBatchLimit: Int
    public let rewriteCheckFrom: Int

    /// One transaction, one nf_tables batch: all or nothing.
    ///
    /// The one exception, for speed: a transaction of only additions larger than
    /// `additionBatchLimit` messages (a first full load) goes as several consecutive batches.
    /// The kernel binds each anonymous set (one numgen map per service) by walking the whole
    /// batch so far (`__nft_set_trans_bind`), which makes one 200k-message batch quadratic
    /// (10,000 services: most of a minute). Splitting only additions is safe: every
    /// intermediate state is a subset of the final one in which a new service is either not
    /// yet reachable or reachable with its chains complete up to that point, and nothing that
    /// already carried traffic is touched. Transactions that flush or delete are never split.
    public func apply(_ ops: [RulesetOperation]) async throws(BackendError) {
        let ops = try resolvingAffinityPurges(try skippingUnchangedRewrites(ops))
        guard !ops.isEmpty else { return }
        let n = transactions.add(1, ordering: .relaxed).newValue
        let (requests, origin) = encoder.requests(ops, anonymousTag: "\(instanceTag)_\(String(n, radix: 36))_")
        let onlyAdditions = ops.allSatisfy {
            switch $0 {
            case .addTable, .addChain, .addRule, .addSet, .addElements: true
            default: false
            }
        }
        guard onlyAdditions, requests.count > additionBatchLimit else {
            return try transaction(requests, origin, ops)
        }
        var start = 0
        while start < requests.count {
            var end = min(start + additionBatchLimit, requests.count)
            // Cut between operations: a rule and its anonymous sets stay together.
            while end < requests.count, origin[end] == origin[end - 1] { end += 1 }
            try transaction(Array(requests[start..<end]), Array(origin[start..<end]), ops)
            start = end
        }
    }

    /// Chains the diff flushes and rewrites because it could not know their rules (after a
    /// restart `currentState` returns `rules == nil`): when the rules the kernel holds carry the
    /// same digests, in order, as the ones about to be written, the flush and the rewrite are
    /// dropped. Without this a restart rewrites every chain in one batch, which the kernel makes
    /// quadratic (5,000 services: 17 s). Only worth a rule dump for large rewrites.
    private func skippingUnchangedRewrites(_ ops: [RulesetOperation]) throws(BackendError) -> [RulesetOperation] {
        let candidates = Self.skippableRewrites(ops)
        guard candidates.count >= rewriteCheckFrom else { return ops }
        var held: [ChainKey: [UInt64]] = [:]
        for family in Set(candidates.keys.map(\.family)) {
            let records: [NFTablesRuleRecord]
            do {
                records = try session.nftablesRules(table: tableName, family: family.ipFamily)
            } catch {
                throw BackendError(operation: "list rules of \(family.rawValue) \(tableName)", message: "\(error)")
            }
            for r in records {
                let d = r.userDataValue(type: NetlinkRuleEncoder.digestType).map { $0.reduce(UInt64(0)) { $0 << 8 | UInt64($1) } } ?? 0
                held[ChainKey(family: family, chain: r.chain), default: []].append(d)
            }
        }
        let unchanged = Set(candidates.filter { held[$0.key] ?? [] == $0.value }.keys)
        guard !unchanged.isEmpty else { return ops }
        return ops.filter { op in
            switch op {
            case .flushChain(let f, let name): !unchanged.contains(ChainKey(family: f, chain: name))
            case .addRule(let f, let chain, _): !unchanged.contains(ChainKey(family: f, chain: chain))
            default: true
            }
        }
    }

    struct ChainKey: Hashable { var family: TableFamily; var chain: String }

    /// Every kernel feature the shape uses, tried in one transaction on a throwaway table that
    /// the same transaction deletes again (nothing stays): the first refused message names the
    /// missing feature, so an old kernel is an error at start, not a half-programmed table.
    public func checkKernelFeatures() async throws(BackendError) {
        let probe = NetlinkRuleEncoder(tableName: tableName + "-probe")
        for family in TableFamily.allCases {
            // A table already holding the shape proves the kernel takes it (an agent restart):
            // nothing is written then, not even the throwaway table.
            if (try? setExists(family, SharedName.backends)) == true,
               (try? setExists(family, SharedName.firewallAllow)) == true {
                continue
            }
            let types = TupleTypes(family: family)
            let tuple = types.tupleFields
            let features: [(String, [RulesetOperation])] = [
                ("nf_tables tables and chains", [.addTable(family), .addChain(family, name: "c", base: nil)]),
                ("concatenated set keys", [.addSet(family, SetSpec("t", key: types.tuple))]),
                ("data maps with a concatenated key and data (typeof)", [.addSet(family, types.backendsSpec("b"))]),
                ("concatenated ranges (kernel 5.6)", [.addSet(family, SetSpec("r", key: [types.address, .inetService, types.address], interval: true))]),
                ("dynamic maps with timeouts", [.addSet(family, SetSpec("a", key: [types.address] + types.tuple, data: types.endpoint, timeout: 60))]),
                ("numgen in a map key and DNAT from map data", [.addRule(family, chain: "c", NFRule([.lookup(tuple, set: "t"), .dnatMap(tuple + [.numgen(2)], map: "b")]))]),
                ("ct original tuples and dynset updates with data", [.addRule(family, chain: "c", NFRule([
                    .ctStatusDNAT, .protocolPort(.tcp), .recordDestination(map: "a", key: [.saddr, .ctOriginalDaddr, .l4proto, .ctOriginalDport], timeout: 60, proto: .tcp),
                ]))]),
                ("inverted lookups in concatenated ranges", [.addRule(family, chain: "c", NFRule([.lookup([.daddr, .dport, .saddr], set: "r", negated: true), .verdict(.drop)]))]),
                ("", [.deleteTable(family)]),
            ]
            let ops = features.flatMap(\.1)
            var owner: [Int] = []
            for (i, f) in features.enumerated() { owner += repeatElement(i, count: f.1.count) }
            let (requests, origin) = probe.requests(ops, anonymousTag: "probe")
            guard let (index, e) = try firstFailure(requests, what: "kernel feature check")?.first else { continue }
            let feature = features[owner[origin[index]]].0
            throw BackendError(operation: "kernel feature check (\(family.rawValue))",
                               message: "the kernel lacks \(feature.isEmpty ? "table deletion" : feature), which the service rules need: \(e)")
        }
    }

    /// Turns each `purgeAffinity` into the deletes it means: the learned entries are read from
    /// the kernel (one dump of the map) and those pointing at an endpoint their tuple no longer
    /// has are deleted in the same transaction as the rest.
    private func resolvingAffinityPurges(_ ops: [RulesetOperation]) throws(BackendError) -> [RulesetOperation] {
        guard ops.contains(where: { if case .purgeAffinity = $0 { true } else { false } }) else { return ops }
        var out: [RulesetOperation] = []
        for op in ops {
            guard case .purgeAffinity(let family, let map, let keep, let strict) = op else {
                out.append(op)
                continue
            }
            let entries: [NFTablesElement]
            do {
                entries = try session.nftablesElements(table: tableName, set: map, family: family.ipFamily)
            } catch {
                throw BackendError(operation: "list \(family.rawValue) \(tableName) \(map)", message: "\(error)")
            }
            let types = TupleTypes(family: family)
            var doomed: [ElementKey] = []
            for e in entries {
                guard let key = Self.elementKey(e.key, [types.address] + types.tuple), let d = e.data,
                      let data = Self.elementKey(d, types.endpoint, concatenated: true) else { continue }
                let tuple = ElementKey(Array(key.values.dropFirst()))
                if let allowed = keep[tuple] {
                    if !allowed.contains(data) { doomed.append(key) }
                } else if strict {
                    doomed.append(key)
                }
            }
            if !doomed.isEmpty { out.append(.deleteElements(family, set: map, doomed)) }
        }
        return out
    }

    /// The chains `ops` flushes and refills whose rewrite may be dropped when the kernel already
    /// holds rules with these digests (in order). Not a chain the transaction deletes (re-created
    /// with another hook: its rules must be written again), nor one whose rules use a set the
    /// transaction deletes (an affinity set re-created with a new timeout: the rules' text is
    /// the same, but the kernel refuses to delete a set that rules still use, EBUSY).
    static func skippableRewrites(_ ops: [RulesetOperation]) -> [ChainKey: [UInt64]] {
        var flushed = Set<ChainKey>(), forced = Set<ChainKey>(), deletedSets: [TableFamily: Set<String>] = [:]
        for op in ops {
            switch op {
            case .flushChain(let f, let name): flushed.insert(ChainKey(family: f, chain: name))
            case .deleteChain(let f, let name): forced.insert(ChainKey(family: f, chain: name))
            case .deleteSet(let f, let name): deletedSets[f, default: []].insert(name)
            default: continue
            }
        }
        var wanted: [ChainKey: [UInt64]] = [:]
        for f in flushed.subtracting(forced) { wanted[f] = [] }
        for case .addRule(let f, let chain, let rule) in ops {
            let key = ChainKey(family: f, chain: chain)
            guard wanted[key] != nil else { continue }
            if let deleted = deletedSets[f], rule.expressions.contains(where: { !deleted.isDisjoint(with: $0.setReferences) }) {
                forced.insert(key)
            }
            wanted[key]?.append(NetlinkRuleEncoder.digest(f, chain, rule))
        }
        for key in forced { wanted[key] = nil }
        return wanted
    }

    /// Sends one batch; nil when the kernel took every message, else the refused messages by
    /// index (`first`: the lowest, the one that names the cause).
    private func firstFailure(_ requests: [NetlinkRequest], what: String) throws(BackendError) -> Refusals? {
        let result: BatchResult
        do {
            result = try session.nftablesTransaction(requests)
        } catch {
            throw BackendError(operation: what, message: "\(error)")
        }
        return result.failures.isEmpty ? nil : Refusals(failures: result.failures)
    }

    struct Refusals {
        var failures: [Int: NetlinkError]
        var first: (Int, NetlinkError)? { failures.keys.min().map { ($0, failures[$0]!) } }
    }

    private func transaction(_ requests: [NetlinkRequest], _ origin: [Int], _ ops: [RulesetOperation]) throws(BackendError) {
        // The first failing message names the operation; later ones are often consequences.
        guard let result = try firstFailure(requests, what: "nf_tables transaction (\(ops.count) operations, \(requests.count) messages)"),
              let (index, e) = result.first else { return }
        let render = NftRenderer(tableName: tableName)
        let text = render.lines(ops[origin[index]]).first ?? "\(ops[origin[index]])"
        let others = result.failures.keys.sorted().dropFirst().prefix(3).map { i in
            "\(render.lines(ops[origin[i]]).first?.prefix(120) ?? ""): \(result.failures[i]?.errnoName ?? "")"
        }
        throw BackendError(operation: String(text.prefix(300)), message: "\(e)",
                           context: "transaction of \(ops.count) operations aborted; \(result.failures.count) messages refused"
                               + (others.isEmpty ? "" : "; also: " + others.joined(separator: "; ")))
    }

    public func currentState() async throws(BackendError) -> RulesetModel? {
        var model = RulesetModel()
        for family in TableFamily.allCases {
            do {
                if let t = try readTable(family) { model.tables[family] = t }
            } catch {
                throw BackendError(operation: "read \(family.rawValue) \(tableName)", message: "\(error)")
            }
        }
        return model.tables.isEmpty ? nil : model
    }

    private func readTable(_ family: TableFamily) throws -> TableModel? {
        let f = family.ipFamily
        let chains = try session.nftablesChains(table: tableName, family: f)
        let sets = try session.nftablesSets(table: tableName, family: f)
        // Chain and set dumps of a missing table are just empty: ask for the table itself.
        if chains.isEmpty, sets.isEmpty, try !tableExists(f) { return nil }
        var t = TableModel(family: family)
        for c in chains {
            t.chains[c.name] = NFChain(c.name, base: c.hook.flatMap(Self.baseChain), rules: nil)
        }
        for s in sets {
            guard let spec = Self.spec(s) else { throw BackendError(operation: "read set \(s.name)", message: "unknown key type \(s.keyType)") }
            var set = NFSet(spec)
            // Dynamic (affinity) sets: the kernel owns the elements, the model keeps none.
            if spec.timeout == nil {
                for e in try session.nftablesElements(table: tableName, set: s.name, family: f) {
                    guard let key = Self.elementKey(e.key, spec.keyType) else {
                        throw BackendError(operation: "read set \(s.name)", message: "element of \(e.key.count) bytes does not match its type")
                    }
                    var value: ElementValue?
                    if let v = e.verdict.flatMap(Self.verdict) {
                        value = .verdict(v)
                    } else if let d = e.data, let types = spec.dataType {
                        guard let data = Self.elementKey(d, types, concatenated: true) else {
                            throw BackendError(operation: "read set \(s.name)", message: "element data of \(d.count) bytes does not match its type")
                        }
                        value = .data(data)
                    } else if let end = e.keyEnd {
                        guard let endKey = Self.elementKey(end, spec.keyType) else {
                            throw BackendError(operation: "read set \(s.name)", message: "range end of \(end.count) bytes does not match its type")
                        }
                        value = .intervalEnd(endKey)
                    }
                    set.elements[key] = .some(value)
                }
            }
            t.sets[s.name] = set
        }
        return t
    }

    /// NFT_MSG_GETSET of one named set of nodenet's table (not a dump).
    private func setExists(_ family: TableFamily, _ name: String) throws(NetlinkError) -> Bool {
        var b = NfnetlinkMessages.builder(message: 10 /* NFT_MSG_GETSET */, family: NFTablesMessages.family(family.ipFamily))
        b.attribute(1 /* NFTA_SET_TABLE */, string: tableName)
        b.attribute(2 /* NFTA_SET_NAME */, string: name)
        let request = NetlinkRequest(bytes: b.finish(), operation: "get nftables set", object: "\(tableName) \(name)")
        do {
            _ = try session.execute(request)
            return true
        } catch {
            if error.isNotFound { return false }
            throw error
        }
    }

    private func tableExists(_ f: IPFamily) throws(NetlinkError) -> Bool {
        var b = NfnetlinkMessages.builder(message: 1 /* NFT_MSG_GETTABLE */, family: NFTablesMessages.family(f))
        b.attribute(1 /* NFTA_TABLE_NAME */, string: tableName)
        let request = NetlinkRequest(bytes: b.finish(), operation: "get nftables table", object: tableName)
        // (`catch let e where ...` here crashes swift-frontend 6.3.1 in AllocBoxToStack.)
        do {
            _ = try session.execute(request)
            return true
        } catch {
            if error.isNotFound { return false }
            throw error
        }
    }

    static func baseChain(_ h: NFTablesHook) -> BaseChainSpec? {
        let hooks: [ChainHook] = [.prerouting, .input, .forward, .output, .postrouting]
        guard let type = ChainType(rawValue: h.type), Int(h.hook) < hooks.count else { return nil }
        return BaseChainSpec(type, hooks[Int(h.hook)], priority: Int(h.priority))
    }

    static func spec(_ s: NFTablesSetInfo) -> SetSpec? {
        var types: [NFDataType] = []
        var id = s.keyType
        while id != 0 {
            guard let t = NetlinkRuleEncoder.dataType(id: id & 63) else { return nil }
            types.insert(t, at: 0)
            id >>= 6
        }
        guard !types.isEmpty else { return nil }
        let timeout = s.flags & NFTablesSet.flagTimeout != 0 ? Int((s.timeoutMilliseconds ?? 0) / 1000) : nil
        var data: [NFDataType]?
        if let d = s.dataType, d != NFTablesSet.verdictData {
            var id = d, types: [NFDataType] = []
            while id != 0 {
                guard let t = NetlinkRuleEncoder.dataType(id: id & 63) else { return nil }
                types.insert(t, at: 0)
                id >>= 6
            }
            data = types
        }
        return SetSpec(s.name, key: types, verdictMap: s.dataType == NFTablesSet.verdictData, data: data,
                       interval: s.flags & NFTablesSet.flagInterval != 0, timeout: timeout,
                       typeof: NetlinkRuleEncoder.typeofText(userData: s.userData))
    }

    static func elementKey(_ bytes: [UInt8], _ types: [NFDataType], concatenated: Bool = false) -> ElementKey? {
        var values: [NFValue] = []
        var offset = 0
        for t in types {
            let length = NetlinkRuleEncoder.typeInfo(t).length
            guard offset + length <= bytes.count else { return nil }
            let b = Array(bytes[offset..<offset + length])
            switch t {
            case .ipv4Addr, .ipv6Addr:
                guard let a = IPAddress(bytes: b) else { return nil }
                values.append(.address(a))
            case .inetProto:
                guard let p = L4Protocol.allCases.first(where: { $0.number == b[0] }) else { return nil }
                values.append(.proto(p))
            case .inetService: values.append(.port(UInt16(b[0]) << 8 | UInt16(b[1])))
            case .integer, .mark: values.append(.slot(b.withUnsafeBytes { $0.loadUnaligned(as: UInt32.self) }))
            case .verdict: return nil
            }
            offset += types.count > 1 || concatenated ? NetlinkRuleEncoder.roundUp4(length) : length
        }
        return offset == bytes.count ? ElementKey(values) : nil
    }

    static func verdict(_ v: NFTablesVerdict) -> Verdict? {
        switch v {
        case .accept: .accept
        case .drop: .drop
        case .return: .return
        case .jump(let c): .jump(c)
        case .goto(let c): .goto(c)
        case .continue: nil
        }
    }

    @discardableResult
    public func deleteConntrack(_ filters: [ConntrackFilter]) async throws(BackendError) -> Int {
        guard !filters.isEmpty else { return 0 }
        do {
            return try ConntrackDeleter(session: conntrack).delete(filters)
        } catch {
            throw BackendError(operation: "delete conntrack entries (\(filters.count) filters)", message: "\(error)")
        }
    }
}
