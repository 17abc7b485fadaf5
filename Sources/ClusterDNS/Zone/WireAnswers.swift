import ClusterState
import IPAddressing

/// Positive A/AAAA answers for service names, kept in wire form (issue #15: cluster answers
/// from a precomputed wire form). The answer records are encoded once, when the service
/// changes, with the owner name as a pointer to the question (0xC00C), so the fast path
/// answers the commonest query (`<svc>.<ns>.svc.<zone>` A or AAAA) with one hash lookup and
/// two copies: no name splitting, no strings, no record values.
struct WireAnswers: Sendable {
    struct Key: Hashable, Sendable {
        /// The lower-cased wire name.
        var name: [UInt8]
        var type: UInt16

        /// The name's bytes in one call: `[UInt8]`'s own hashing feeds the hasher byte by
        /// byte, which showed as the fast path's largest user-space cost.
        func hash(into h: inout Hasher) {
            name.withUnsafeBytes { h.combine(bytes: $0) }
            h.combine(type)
        }
    }

    struct Answer: Sendable {
        var count: Int
        /// Answer records, owner 0xC00C.
        var records: [UInt8]
    }

    /// Set by the zone (`ClusterZone.rebuild`); empty apex: nothing is precomputed.
    var apex: [UInt8] = []
    var ttl: UInt32 = 5
    private(set) var answers: [Key: Answer] = [:]

    /// `<name>.<ns>.svc.<apex>`, lower case.
    func name(_ id: NamespacedName) -> [UInt8] {
        var out: [UInt8] = []
        for label in [id.name, id.namespace, "svc"] {
            out.append(UInt8(label.utf8.count))
            out += label.utf8.map { $0 >= 65 && $0 <= 90 ? $0 | 0x20 : $0 }
        }
        return out + apex
    }

    mutating func set(_ id: NamespacedName, _ entry: ServiceEntry?) {
        guard !apex.isEmpty else { return }
        let owner = name(id)
        answers[Key(name: owner, type: RRType.a.rawValue)] = nil
        answers[Key(name: owner, type: RRType.aaaa.rawValue)] = nil
        guard let entry, entry.nameExists else { return }
        var v4 = Answer(count: 0, records: []), v6 = Answer(count: 0, records: [])
        for address in entry.addresses {
            switch address {
            case .v4(let a):
                v4.count += 1
                v4.records += [0xC0, 0x0C, 0, 1, 0, 1] + u32(ttl) + [0, 4] + a.bytes
            case .v6(let a):
                v6.count += 1
                v6.records += [0xC0, 0x0C, 0, 28, 0, 1] + u32(ttl) + [0, 16] + a.bytes
            }
        }
        // Large answers (headless services with many endpoints) may need truncation: the
        // general path does that.
        if v4.count > 0, v4.records.count <= 400 { answers[Key(name: owner, type: RRType.a.rawValue)] = v4 }
        if v6.count > 0, v6.records.count <= 400 { answers[Key(name: owner, type: RRType.aaaa.rawValue)] = v6 }
    }

    private func u32(_ v: UInt32) -> [UInt8] { [UInt8(v >> 24), UInt8((v >> 16) & 0xFF), UInt8((v >> 8) & 0xFF), UInt8(v & 0xFF)] }
}
