import ClusterState
import Foundation
import IPAddressing

/// Decodes `nft -j list table` output into the model: chains (rules unknown), sets and maps
/// with their elements. Only the shapes nodenet itself writes are understood.
struct NftJSONReader {
    let family: TableFamily

    struct DecodeError: Error, CustomStringConvertible {
        var description: String
    }

    func table(_ data: Data) throws -> TableModel {
        guard let root = try JSONSerialization.jsonObject(with: data) as? [String: Any],
              let items = root["nftables"] as? [[String: Any]] else { throw DecodeError(description: "no nftables array") }
        var t = TableModel(family: family)
        for item in items {
            if let c = item["chain"] as? [String: Any], let name = c["name"] as? String {
                var base: BaseChainSpec?
                if let type = (c["type"] as? String).flatMap(ChainType.init(rawValue:)),
                   let hook = (c["hook"] as? String).flatMap(ChainHook.init(rawValue:)), let prio = c["prio"] as? Int {
                    base = BaseChainSpec(type, hook, priority: prio)
                }
                t.chains[name] = NFChain(name, base: base, rules: nil)
            } else if let s = (item["set"] ?? item["map"]) as? [String: Any], let name = s["name"] as? String {
                let set = try decodeSet(name, s, isMap: item["map"] != nil)
                t.sets[name] = set
            }
        }
        return t
    }

    private func decodeSet(_ name: String, _ s: [String: Any], isMap: Bool) throws -> NFSet {
        let typeNames = (s["type"] as? [String]) ?? [(s["type"] as? String) ?? ""]
        let types = try typeNames.map { n -> NFDataType in
            guard let t = NFDataType(rawValue: n) else { throw DecodeError(description: "set \(name): unknown type \(n)") }
            return t
        }
        let isVerdictMap = isMap && (s["map"] as? String) == "verdict"
        var data: [NFDataType]?
        if isMap, !isVerdictMap {
            let names = (s["map"] as? [String]) ?? ((s["map"] as? String) ?? "").components(separatedBy: " . ")
            data = try names.map { n in
                guard let t = NFDataType(rawValue: n) else { throw DecodeError(description: "map \(name): unknown data type \(n)") }
                return t
            }
        }
        let flags = (s["flags"] as? [String]) ?? []
        var spec = SetSpec(name, key: types, verdictMap: isVerdictMap, data: data, interval: flags.contains("interval"),
                           timeout: s["timeout"] as? Int)
        // JSON does not carry `typeof`; nodenet declares exactly one shape that way.
        let shape = TupleTypes(family: family)
        if types == shape.tuple + [.integer], data == shape.endpoint { spec.typeof = shape.backendsTypeof }
        var set = NFSet(spec)
        for raw in (s["elem"] as? [Any]) ?? [] {
            // Dynamic sets carry {"elem": {"val": ..., "timeout": ...}} entries: the model keeps none.
            if spec.timeout != nil { continue }
            var keyJSON: Any = raw, value: ElementValue?
            if isMap, let pair = raw as? [Any], pair.count == 2 {
                keyJSON = pair[0]
                if isVerdictMap {
                    value = .verdict(try decodeVerdict(pair[1], set: name))
                } else {
                    value = .data(try decodeKey(pair[1], data ?? [], set: name))
                }
            }
            if spec.interval {
                // A concatenation whose last field is a prefix or a range.
                let parts: [Any] = ((keyJSON as? [String: Any])?["concat"] as? [Any]) ?? [keyJSON]
                guard parts.count == types.count, let last = parts.last else {
                    throw DecodeError(description: "set \(name): element \(raw) does not match its type")
                }
                let head = try zip(parts.dropLast(), types).map { try decodeValue($0, $1, set: name) }
                let (start, end) = try decodeRange(last, set: name)
                set.elements[ElementKey(head + [.address(start)])] = .some(.intervalEnd(ElementKey(head + [.address(end)])))
                continue
            }
            set.elements[try decodeKey(keyJSON, types, set: name)] = .some(value)
        }
        return set
    }

    private func decodeKey(_ json: Any, _ types: [NFDataType], set: String) throws -> ElementKey {
        let parts: [Any] = ((json as? [String: Any])?["concat"] as? [Any]) ?? [json]
        guard parts.count == types.count else { throw DecodeError(description: "set \(set): element \(json) does not match its type") }
        return ElementKey(try zip(parts, types).map { try decodeValue($0, $1, set: set) })
    }

    /// `{"prefix": {"addr": a, "len": n}}`, `{"range": [a, b]}` or a plain address.
    private func decodeRange(_ json: Any, set: String) throws -> (IPAddress, IPAddress) {
        if let o = json as? [String: Any] {
            if let p = o["prefix"] as? [String: Any], let a = (p["addr"] as? String).flatMap(IPAddress.init), let n = p["len"] as? Int {
                let prefix = IPPrefix(address: a, length: n)
                return (prefix.network.address, prefix.lastAddress)
            }
            if let r = o["range"] as? [Any], r.count == 2, let a = (r[0] as? String).flatMap(IPAddress.init),
               let b = (r[1] as? String).flatMap(IPAddress.init) {
                return (a, b)
            }
        }
        if let s = json as? String, let a = IPAddress(s) { return (a, a) }
        throw DecodeError(description: "set \(set): cannot read \(json) as a range")
    }

    private func decodeValue(_ v: Any, _ type: NFDataType, set: String) throws -> NFValue {
        switch type {
        case .ipv4Addr, .ipv6Addr:
            if let s = v as? String, let a = IPAddress(s) { return .address(a) }
        case .inetProto:
            if let s = v as? String, let p = L4Protocol.allCases.first(where: { $0.nftName == s }) { return .proto(p) }
            if let n = v as? Int, let p = L4Protocol.allCases.first(where: { Int($0.number) == n }) { return .proto(p) }
        case .inetService:
            if let n = v as? Int, let p = UInt16(exactly: n) { return .port(p) }
        case .integer, .mark:
            if let n = v as? Int, let p = UInt32(exactly: n) { return .slot(p) }
        case .verdict: break
        }
        throw DecodeError(description: "set \(set): cannot read \(v) as \(type.rawValue)")
    }

    private func decodeVerdict(_ v: Any, set: String) throws -> Verdict {
        guard let o = v as? [String: Any], let (k, body) = o.first else { throw DecodeError(description: "set \(set): bad verdict \(v)") }
        let target = (body as? [String: Any])?["target"] as? String
        switch (k, target) {
        case ("accept", _): return .accept
        case ("drop", _): return .drop
        case ("return", _): return .return
        case ("jump", let t?): return .jump(t)
        case ("goto", let t?): return .goto(t)
        default: throw DecodeError(description: "set \(set): unknown verdict \(v)")
        }
    }
}
