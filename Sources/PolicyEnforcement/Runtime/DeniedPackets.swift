import Dispatch
import IPAddressing
import Metrics
import Netlink

/// Packets the policy tables refused, per family and direction: the counters on the reject
/// rules at the end of the `ingress`, `egress` and `dns` chains (`dns` is egress: a pod's query
/// to the node's DNS responder). A rule counter costs one increment on a packet that is being
/// refused anyway; nothing is counted on the accept path. Per policy counting is not possible
/// this way: a packet is judged by set lookups holding every policy's elements at once, so no
/// rule belongs to one policy (a per-policy count would need per-policy rules, the shape the
/// tables avoid); a denial belongs to no policy anyway (it is what no policy allowed).
public struct DeniedPacketKey: Hashable, Sendable, Comparable {
    public var family: IPFamily
    public var direction: PolicyDirection

    public init(_ family: IPFamily, _ direction: PolicyDirection) {
        self.family = family
        self.direction = direction
    }

    public static let all: [DeniedPacketKey] = IPFamily.allCases.flatMap { f in PolicyDirection.allCases.map { DeniedPacketKey(f, $0) } }

    /// The metric's label values: family ipv4 or ipv6, direction ingress or egress.
    public var dimensions: [(String, String)] { [("family", family == .v4 ? "ipv4" : "ipv6"), ("direction", direction.rawValue)] }
    public static func < (a: Self, b: Self) -> Bool { (a.family.rawValue, a.direction) < (b.family.rawValue, b.direction) }

    /// The chains whose reject rules count for a direction.
    static func direction(ofChain chain: String) -> PolicyDirection? {
        switch chain {
        case PolicyTables.Names.chain(.ingress): .ingress
        case PolicyTables.Names.chain(.egress), PolicyTables.Names.dns: .egress
        default: nil
        }
    }
}

/// Reads the reject rules' counters (kernel totals since the tables were made).
public protocol DeniedPacketReader: Sendable {
    func read() async throws -> [DeniedPacketKey: UInt64]
    /// The rules of both policy tables with their counters, for the ClusterNetworkPolicy Deny
    /// rules' counts (`TierTables.deniedPackets`): one nft rule per CNP rule, so these can be
    /// counted per policy and rule.
    func readRules() async throws -> [NFTablesRuleRecord]
}

extension DeniedPacketReader {
    public func readRules() async throws -> [NFTablesRuleRecord] { [] }
}

/// The counters over nfnetlink: one rule dump of each policy table (a handful of rules), on a
/// queue of its own (a netlink exchange blocks; Swift's cooperative threads must not).
public final class NetlinkDeniedPacketReader: DeniedPacketReader {
    private let session: NetlinkSession
    private let queue = DispatchQueue(label: "nodenet.policy.denied-packets")

    /// A socket in `namespace` (the calling thread's when nil).
    public init(namespace: NetworkNamespace? = nil) throws {
        if let namespace {
            session = try NetlinkSession(protocol: Netlink.netfilter, namespace: namespace)
        } else {
            session = try NetlinkSession(protocol: Netlink.netfilter)
        }
    }

    public func read() async throws -> [DeniedPacketKey: UInt64] {
        let session = self.session
        return try await withCheckedThrowingContinuation { c in
            queue.async {
                do {
                    var totals: [DeniedPacketKey: UInt64] = [:]
                    for family in IPFamily.allCases {
                        for counter in try session.nftablesRuleCounters(table: PolicyTables.tableName, family: family) {
                            guard let d = DeniedPacketKey.direction(ofChain: counter.chain) else { continue }
                            totals[DeniedPacketKey(family, d), default: 0] &+= counter.packets
                        }
                    }
                    c.resume(returning: totals)
                } catch {
                    c.resume(throwing: error)
                }
            }
        }
    }

    public func readRules() async throws -> [NFTablesRuleRecord] {
        let session = self.session
        return try await withCheckedThrowingContinuation { c in
            queue.async {
                do {
                    var records: [NFTablesRuleRecord] = []
                    for family in IPFamily.allCases {
                        records += try session.nftablesRules(table: PolicyTables.tableName, family: family)
                    }
                    c.resume(returning: records)
                } catch {
                    c.resume(throwing: error)
                }
            }
        }
    }
}

/// The same for the ClusterNetworkPolicy Deny rules, per (policy, rule): a rule first seen
/// counts whole (its counter started with it), except at the baseline a starting agent takes.
struct TierDeniedTotals: Sendable {
    private(set) var last: [String: [String: UInt64]] = [:]

    mutating func advance(to counts: [TierDeniedPackets]) -> [TierDeniedPackets] {
        var deltas: [TierDeniedPackets] = []
        var next: [String: [String: UInt64]] = [:]
        for c in counts {
            let was = last[c.policy]?[c.rule] ?? 0
            let delta = c.packets >= was ? c.packets - was : c.packets
            if delta > 0 { deltas.append(TierDeniedPackets(policy: c.policy, rule: c.rule, packets: delta)) }
            next[c.policy, default: [:]][c.rule] = c.packets
        }
        last = next
        return deltas
    }
}

/// Follows the kernel's totals with a Prometheus counter, which only goes up: each read adds
/// what the kernel counted since the previous one. A total below the previous one means the
/// tables were made anew (their counters start at zero), so all of it is new.
struct DeniedPacketTotals: Sendable {
    private(set) var last: [DeniedPacketKey: UInt64] = [:]

    /// The increments for `totals`, remembered as the new baseline.
    mutating func advance(to totals: [DeniedPacketKey: UInt64]) -> [DeniedPacketKey: UInt64] {
        var deltas: [DeniedPacketKey: UInt64] = [:]
        for key in DeniedPacketKey.all {
            let now = totals[key] ?? 0, was = last[key] ?? 0
            deltas[key] = now >= was ? now - was : now
            last[key] = now
        }
        return deltas
    }
}
