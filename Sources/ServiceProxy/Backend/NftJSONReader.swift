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
        let spec = SetSpec(name, key: types, verdictMap: isMap && (s["map"] as? String) == "verdict", timeout: s["timeout"] as? Int)
        var set = NFSet(spec)
        for raw in (s["elem"] as? [Any]) ?? [] {
            // Dynamic sets carry {"elem": {"val": ..., "timeout": ...}} entries: the model keeps none.
            if spec.timeout != nil { continue }
            var keyJSON: Any = raw, verdict: Verdict?
            if isMap, let pair = raw as? [Any], pair.count == 2 {
                keyJSON = pair[0]
                verdict = try decodeVerdict(pair[1], set: name)
            }
            let parts: [Any] = ((keyJSON as? [String: Any])?["concat"] as? [Any]) ?? [keyJSON]
            guard parts.count == types.count else { throw DecodeError(description: "set \(name): element \(raw) does not match its type") }
            let values = try zip(parts, types).map { try decodeValue($0, $1, set: name) }
            set.elements[ElementKey(values)] = .some(verdict)
        }
        return set
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
