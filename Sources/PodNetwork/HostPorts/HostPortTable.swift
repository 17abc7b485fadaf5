// The host ports this node forwards, and the kernel chains that do it. The attachments in the
// store are the record (PodAttachment.portMappings); this table mirrors them in memory so
// that concurrent ADDs claim ports atomically and every rewrite sees every claim.
import CNIProtocol
import ClusterState
import IPAddressing
import Netlink
import Synchronization

/// One attachment's share of the host ports.
public struct HostPortBinding: Sendable, Hashable {
    public var key: String
    /// Empty while the ADD that claimed the ports has not got its addresses yet (no rules).
    public var ips: [IPPrefix]
    public var mappings: [PodAttachment.PortMapping]

    public init(key: String, ips: [IPPrefix], mappings: [PodAttachment.PortMapping]) {
        self.key = key
        self.ips = ips
        self.mappings = mappings
    }

    public init(_ a: PodAttachment) { self.init(key: a.keyName, ips: a.ips, mappings: a.portMappings) }
}

final class HostPortTable: Sendable {
    /// nil: no nftables here (ADDs with port mappings fail, nothing else changes).
    let session: NetlinkSession?
    private struct State {
        var bindings: [String: HostPortBinding] = [:]
        /// Until the table is loaded from the store, a rewrite would delete the rules of pods
        /// attached before a restart: rewrites wait for it.
        var loaded = false
        /// The bindings changed since the chains were last written: what the next rewrite or
        /// pass writes is that change, not a repair of something done behind nodenet's back.
        var unwritten = false
    }
    private let state = Mutex(State())
    /// One rewrite at a time, reading the bindings inside: the last rewrite always sees the
    /// last change (a rewrite from an older view would undo a newer one).
    private let writer = Mutex(())

    init(session: NetlinkSession?) { self.session = session }

    /// Takes the whole record from the store's attachments (start-up).
    func load(_ attachments: [PodAttachment]) {
        state.withLock { s in
            for a in attachments where !a.portMappings.isEmpty { s.bindings[a.keyName] = HostPortBinding(a) }
            s.loaded = true
            s.unwritten = true
        }
    }

    /// Claims `mappings` for `key` unless another attachment holds one of them.
    func claim(key: String, _ mappings: [PodAttachment.PortMapping], version: String) throws(CNIError) {
        let conflict: CNIError? = state.withLock { s in
            let others = s.bindings.filter { $0.key != key }.mapValues(\.mappings)
            if let e = HostPortRequest.conflict(mappings, held: others, version: version) { return e }
            s.bindings[key] = HostPortBinding(key: key, ips: [], mappings: mappings)
            return nil
        }
        if let conflict { throw conflict }
    }

    /// The attachment got its addresses: its rules can be written.
    func bind(key: String, ips: [IPPrefix]) {
        state.withLock { s in
            s.bindings[key]?.ips = ips
            s.unwritten = true
        }
    }

    /// Drops the attachment's claim; true when it had one (a rewrite is due).
    @discardableResult
    func release(key: String) -> Bool {
        state.withLock { s in
            let had = s.bindings.removeValue(forKey: key) != nil
            if had { s.unwritten = true }
            return had
        }
    }

    var bindings: [HostPortBinding] { state.withLock { Array($0.bindings.values) } }

    /// Brings every chain, both families, to the bindings; returns the rules added or removed.
    @discardableResult
    func sync(podCIDRs: [IPPrefix]) throws(NetlinkError) -> Int {
        guard let session else { return 0 }
        return try writer.withLock { (_: inout ()) throws(NetlinkError) -> Int in
            let (bindings, loaded, _) = takeBindings()
            guard loaded else { return 0 }
            var changed = 0
            do throws(NetlinkError) {
                for family in IPFamily.allCases {
                    for role in HostPortRules.Role.allCases {
                        changed += try role.owned.ensure(session: session, family: family,
                                                         wanted: HostPortRules.rules(role, family: family, bindings: bindings, podCIDRs: podCIDRs))
                    }
                }
            } catch {
                // Not written: what the next pass writes is this change, not a repair.
                state.withLock { $0.unwritten = true }
                throw error
            }
            return changed
        }
    }

    /// One full pass for the reconcile loop: every chain, both families, brought to the
    /// bindings (a chain that fails does not keep the others from being repaired). One status
    /// per mapping (kind "hostport"): in error when a chain that should hold one of its rules
    /// failed, with that chain's error; a failing chain no mapping uses is reported as itself.
    /// Also how many rules changed, and how many of those were repairs (changes made behind
    /// nodenet's back, not bindings changed since the last write).
    func reconcile(podCIDRs: [IPPrefix]) -> (objects: [KernelObjectStatus], changed: Int, repaired: Int) {
        writer.withLock { _ in
            let (bindings, loaded, unwritten) = takeBindings()
            guard loaded else { return ([], 0, 0) }
            var chainErrors: [String: String] = [:]
            var changed = 0
            for family in IPFamily.allCases {
                for role in HostPortRules.Role.allCases {
                    guard let session else {
                        chainErrors[Self.objectName(family, role)] = "no nftables netlink session"
                        continue
                    }
                    do {
                        changed += try role.owned.ensure(session: session, family: family,
                                                         wanted: HostPortRules.rules(role, family: family, bindings: bindings, podCIDRs: podCIDRs))
                    } catch {
                        chainErrors[Self.objectName(family, role)] = "\(error)"
                    }
                }
            }
            // A chain that failed keeps the change unwritten for the next pass or rewrite.
            if !chainErrors.isEmpty { state.withLock { $0.unwritten = true } }
            return (Self.mappingStatuses(bindings, podCIDRs: podCIDRs, chainErrors: chainErrors), changed, unwritten ? 0 : changed)
        }
    }

    /// The bindings to write, whether the table is loaded, and whether they changed since the
    /// last write (cleared: the caller writes them now, under `writer`).
    private func takeBindings() -> ([HostPortBinding], Bool, Bool) {
        state.withLock { s in
            defer { s.unwritten = false }
            return (Array(s.bindings.values), s.loaded, s.unwritten)
        }
    }

    /// Per mapping of every bound attachment, its status given the chains that failed
    /// (object name -> error); then every failing chain that holds no mapping's rules.
    static func mappingStatuses(_ bindings: [HostPortBinding], podCIDRs: [IPPrefix], chainErrors: [String: String]) -> [KernelObjectStatus] {
        var objects: [KernelObjectStatus] = []
        var used = Set<String>()
        for b in bindings.sorted(by: { $0.key < $1.key }) where !b.ips.isEmpty {
            for m in b.mappings {
                let one = [HostPortBinding(key: b.key, ips: b.ips, mappings: [m])]
                let chains = IPFamily.allCases.flatMap { family in
                    HostPortRules.Role.allCases.filter { !HostPortRules.rules($0, family: family, bindings: one, podCIDRs: podCIDRs).isEmpty }
                        .map { objectName(family, $0) }
                }
                used.formUnion(chains)
                let errors = chains.compactMap { c in chainErrors[c].map { "\(c): \($0)" } }
                objects.append(KernelObjectStatus(kind: "hostport", name: mappingName(b.key, m),
                                                  error: errors.isEmpty ? nil : errors.joined(separator: "; ")))
            }
        }
        for (chain, error) in chainErrors.sorted(by: { $0.key < $1.key }) where !used.contains(chain) {
            objects.append(KernelObjectStatus(kind: "chain", name: chain, error: error))
        }
        return objects
    }

    /// How status names a mapping: "<containerID>/<ifname> <hostIP>:<hostPort>/<proto>><containerPort>"
    /// ("*" for every address).
    public static func mappingName(_ key: String, _ m: PodAttachment.PortMapping) -> String {
        let host = m.hostIP.map { $0.family == .v4 ? "\($0)" : "[\($0)]" } ?? "*"
        return "\(key) \(host):\(m.hostPort)/\(m.protocol.rawValue.lowercased())>\(m.containerPort)"
    }

    static func objectName(_ family: IPFamily, _ role: HostPortRules.Role) -> String {
        "\(family == .v4 ? "ip" : "ip6") \(HostPortRules.table) \(role.chain)"
    }

    /// The rules of `binding` the kernel lacks, as "chain: comment" lines (CHECK). Rules are
    /// found by digest, as the reconcile writes them (a comment the kernel cut is no key).
    func missing(_ binding: HostPortBinding, podCIDRs: [IPPrefix]) -> [String] {
        guard let session, !binding.mappings.isEmpty else { return [] }
        var out: [String] = []
        for family in IPFamily.allCases {
            for role in HostPortRules.Role.allCases {
                let wanted = HostPortRules.rules(role, family: family, bindings: [binding], podCIDRs: podCIDRs)
                guard !wanted.isEmpty else { continue }
                let existing: [NFTablesRule]
                do {
                    existing = try session.nftablesRules(table: HostPortRules.table, chain: role.chain, family: family)
                } catch {
                    out.append("\(role.chain): cannot be read: \(error)")
                    continue
                }
                out += role.owned.missing(wanted: wanted, existing: existing).map { "\(role.chain): \($0.comment)" }
            }
        }
        return out
    }
}
