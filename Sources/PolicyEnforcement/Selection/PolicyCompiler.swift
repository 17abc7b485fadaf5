import ClusterState
import IPAddressing

/// Pods that look alike to every selector share an identity: same namespace, same labels, same
/// named ports. The kernel sees identities, not pods: an address maps to its pod's identity,
/// and the allow sets hold identity pairs, so a pod that starts with the labels of a running
/// one costs one map element, and the sets grow with the kinds of pods, not their number.
public struct Identity: Hashable, Sendable, Comparable {
    public var namespace: String
    public var labels: [String: String]
    public var ports: [ContainerPort]

    public init(namespace: String, labels: [String: String], ports: [ContainerPort]) {
        self.namespace = namespace
        self.labels = labels
        self.ports = ports.sorted { ($0.name ?? "", $0.containerPort) < ($1.name ?? "", $1.containerPort) }
    }

    var sortKey: String { namespace + "\u{0}" + labels.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: ",") }
    public static func < (a: Self, b: Self) -> Bool { a.sortKey < b.sortKey }

    /// A named port resolved on this identity's pods: every number the name has for `proto`.
    func resolve(_ name: String, _ proto: L4Protocol) -> [UInt16] {
        ports.filter { $0.name == name && ($0.protocol ?? .tcp) == proto }.map { UInt16($0.containerPort) }
    }
}

public enum PolicyDirection: String, Hashable, Sendable, Comparable, CaseIterable {
    case ingress, egress
    public static func < (a: Self, b: Self) -> Bool { a.rawValue < b.rawValue }
}

/// One protocol and an inclusive port range (1-65535: the whole protocol).
public struct PortRange: Hashable, Sendable, Comparable, CustomStringConvertible {
    public var proto: L4Protocol
    public var first: UInt16
    public var last: UInt16

    public init(_ proto: L4Protocol, _ first: UInt16, _ last: UInt16) {
        self.proto = proto
        self.first = first
        self.last = last
    }

    public func contains(_ proto: L4Protocol, _ port: UInt16) -> Bool { proto == self.proto && first <= port && port <= last }
    public var description: String {
        first == last ? "\(first)/\(proto.rawValue)" : first == 1 && last == 65535 ? "*/\(proto.rawValue)" : "\(first)-\(last)/\(proto.rawValue)"
    }
    public static func < (a: Self, b: Self) -> Bool { (a.proto.number, a.first, a.last) < (b.proto.number, b.first, b.last) }
}

/// An inclusive address range of one family (an ipBlock's cidr minus its excepts is a few).
public struct AddressRange: Hashable, Sendable, Comparable, CustomStringConvertible {
    public var first: IPAddress
    public var last: IPAddress

    public init(_ first: IPAddress, _ last: IPAddress) {
        self.first = first
        self.last = last
    }

    public var family: IPFamily { first.family }
    public func contains(_ a: IPAddress) -> Bool { a.family == family && first <= a && a <= last }
    public var description: String { first == last ? first.description : "\(first)-\(last)" }
    public static func < (a: Self, b: Self) -> Bool { a.first == b.first ? a.last < b.last : a.first < b.first }

    public static func everything(_ family: IPFamily) -> AddressRange {
        family == .v4 ? AddressRange(IPAddress("0.0.0.0")!, IPAddress("255.255.255.255")!)
            : AddressRange(IPAddress("::")!, IPAddress("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff")!)
    }

    /// `cidr` minus every `except`, as sorted disjoint ranges.
    public static func subtracting(_ cidr: IPPrefix, _ except: [IPPrefix]) -> [AddressRange] {
        var out = [AddressRange(cidr.network.address, cidr.lastAddress)]
        for e in except where e.family == cidr.family {
            let cut = AddressRange(e.network.address, e.lastAddress)
            out = out.flatMap { r -> [AddressRange] in
                guard cut.first <= r.last, r.first <= cut.last else { return [r] }
                var parts: [AddressRange] = []
                if r.first < cut.first, let before = cut.first.stepped(-1) { parts.append(AddressRange(r.first, before)) }
                if cut.last < r.last, let after = cut.last.stepped(1) { parts.append(AddressRange(after, r.last)) }
                return parts
            }
        }
        return out.sorted()
    }
}

extension IPAddress {
    /// The address one above or below (nil past either end of the family's space).
    func stepped(_ delta: Int) -> IPAddress? {
        var b = bytes
        if delta > 0 {
            for i in b.indices.reversed() { if b[i] == 0xff { b[i] = 0 } else { b[i] += 1; return IPAddress(bytes: b) } }
        } else {
            for i in b.indices.reversed() { if b[i] == 0 { b[i] = 0xff } else { b[i] -= 1; return IPAddress(bytes: b) } }
        }
        return nil
    }
}

/// The rule of a policy an allow element came from: what `nodenet policy check` names.
public struct RuleRef: Hashable, Sendable, Comparable, CustomStringConvertible {
    public var policy: NamespacedName
    public var direction: PolicyDirection
    public var index: Int

    public var description: String { "\(policy) \(direction.rawValue)[\(index)]" }
    public static func < (a: Self, b: Self) -> Bool { (a.policy, a.direction, a.index) < (b.policy, b.direction, b.index) }
}

/// One allowed (local identity, peer, ports) combination of one direction. The local identity
/// is the destination for ingress and the source for egress; `ports` nil means every port and
/// protocol (a rule without `ports`).
public enum AllowKey: Hashable, Sendable {
    case identity(PolicyDirection, local: UInt32, peer: UInt32, ports: PortRange?)
    case namespace(PolicyDirection, local: UInt32, namespace: UInt32, ports: PortRange?)
    case addresses(PolicyDirection, local: UInt32, range: AddressRange, ports: PortRange?)

    public var direction: PolicyDirection {
        switch self { case .identity(let d, _, _, _), .namespace(let d, _, _, _), .addresses(let d, _, _, _): d }
    }

    /// The local identity (destination for ingress, source for egress).
    public var local: UInt32 {
        switch self { case .identity(_, let l, _, _), .namespace(_, let l, _, _), .addresses(_, let l, _, _): l }
    }

    public var ports: PortRange? {
        switch self { case .identity(_, _, _, let p), .namespace(_, _, _, let p), .addresses(_, _, _, let p): p }
    }

    /// Does this key allow the peer (its identity and namespace numbers when it is a pod) at
    /// `address` on `proto`/`port`?
    public func allows(peerIdentity: UInt32?, peerNamespace: UInt32?, address: IPAddress, proto: L4Protocol, port: UInt16) -> Bool {
        if let p = ports, !p.contains(proto, port) { return false }
        switch self {
        case .identity(_, _, let peer, _): return peer == peerIdentity
        case .namespace(_, _, let ns, _): return ns == peerNamespace
        case .addresses(_, _, let range, _): return range.contains(address)
        }
    }
}

/// Stable small numbers for identities and namespaces: kept across compilations while in use,
/// so an unrelated change does not renumber (and rewrite) the kernel's elements.
public struct NumberAllocator<Key: Hashable & Sendable>: Sendable {
    public private(set) var numbers: [Key: UInt32] = [:]
    private var free: [UInt32] = []
    private var next: UInt32 = 1

    public init() {}

    public mutating func number(for key: Key) -> UInt32 {
        if let n = numbers[key] { return n }
        let n = free.popLast() ?? { defer { next += 1 }; return next }()
        numbers[key] = n
        return n
    }

    /// Forgets every key not in `used`, making its number reusable.
    public mutating func keepOnly(_ used: Set<Key>) {
        for (k, n) in numbers where !used.contains(k) {
            numbers[k] = nil
            free.append(n)
        }
    }
}

/// The compiled desired state: what the kernel must hold for the policies to be enforced on
/// this node (or, for `nodenet policy check`, on every node at once).
public struct PolicyDesired: Sendable, Equatable {
    /// Address -> identity number, for every pod of the cluster and the DNS responder.
    public var addressIdentity: [IPAddress: UInt32] = [:]
    /// Address -> namespace number (peers given as whole namespaces).
    public var addressNamespace: [IPAddress: UInt32] = [:]
    /// Local pods' addresses by identity (the kernel's allow sets are keyed by these).
    public var localAddresses: [UInt32: [IPAddress]] = [:]
    /// Local pods' addresses isolated for ingress / egress.
    public var isolated: [PolicyDirection: Set<IPAddress>] = [.ingress: [], .egress: []]
    /// Allowed combinations, each with the rules that allow it.
    public var allows: [AllowKey: Set<RuleRef>] = [:]
    /// Identity number -> identity (for status and explanations).
    public var identities: [UInt32: Identity] = [:]
    public var namespaceNumbers: [String: UInt32] = [:]
    /// Pods by address (explanations).
    public var podsByAddress: [IPAddress: NamespacedName] = [:]
    /// Policies isolating each local pod, per direction (explanations and status).
    public var isolatingPolicies: [NamespacedName: [PolicyDirection: [NamespacedName]]] = [:]
    /// The node's pod subnets: an address there that is no known pod is a pod being created
    /// (its ADD has not returned), and its traffic is dropped until its policies are in.
    public var localSubnets: [IPPrefix] = []
    /// The node's DNS responder addresses (the input chain judges traffic to them).
    public var dnsAddresses: [IPAddress] = []
    /// Named ports a rule asked for that no destination pod has (status lines, not errors).
    public var unresolvedNamedPorts: [RuleRef: Set<String>] = [:]

    public init() {}
}

/// Selection and rule resolution: inputs -> `PolicyDesired`. Pure, apart from the number
/// allocators it is given (kept by the caller across runs).
public struct PolicyCompiler: Sendable {
    public var identityNumbers = NumberAllocator<Identity>()
    public var namespaceNumbers = NumberAllocator<String>()

    public init() {}

    /// - Parameter everyNodeLocal: compile as if every pod ran here (the explain command's view
    ///   of the whole cluster); the agent compiles for its own pods.
    public mutating func compile(_ inputs: PolicyInputs, everyNodeLocal: Bool = false) -> PolicyDesired {
        var d = PolicyDesired()
        d.dnsAddresses = inputs.dnsAddresses
        // Identities of every pod, and of the DNS responder.
        var identityOf: [NamespacedName: Identity] = [:]
        var members: [Identity: [PolicyInputs.PodInfo]] = [:]
        var pods = inputs.pods
        if !inputs.dnsAddresses.isEmpty {
            pods[PolicyInputs.dnsPodID] = PolicyInputs.PodInfo(id: PolicyInputs.dnsPodID, labels: PolicyInputs.dnsPodLabels,
                                                              ips: inputs.dnsAddresses, ports: PolicyInputs.dnsPodPorts, local: false)
        }
        for (id, pod) in pods {
            let identity = Identity(namespace: id.namespace, labels: pod.labels, ports: pod.ports)
            identityOf[id] = identity
            members[identity, default: []].append(pod)
        }
        identityNumbers.keepOnly(Set(members.keys))
        let usedNamespaces = Set(pods.keys.map(\.namespace)).union(inputs.namespaces.keys)
        namespaceNumbers.keepOnly(usedNamespaces)
        var number: [Identity: UInt32] = [:]
        for identity in members.keys.sorted() {
            let n = identityNumbers.number(for: identity)
            number[identity] = n
            d.identities[n] = identity
        }
        for ns in usedNamespaces.sorted() { d.namespaceNumbers[ns] = namespaceNumbers.number(for: ns) }
        for (id, pod) in pods {
            let n = number[identityOf[id]!]!
            let nsNumber = d.namespaceNumbers[id.namespace]!
            for ip in pod.ips {
                d.addressIdentity[ip] = n
                d.addressNamespace[ip] = nsNumber
                d.podsByAddress[ip] = id
            }
        }
        let localPods = pods.values.filter { $0.local || (everyNodeLocal && $0.id != PolicyInputs.dnsPodID) }
        let localIdentities = Set(localPods.map { identityOf[$0.id]! })
        for pod in localPods { d.localAddresses[number[identityOf[pod.id]!]!, default: []] += pod.ips }

        // Which identities each namespace holds (selectors are evaluated per identity).
        var byNamespace: [String: [Identity]] = [:]
        for identity in members.keys { byNamespace[identity.namespace, default: []].append(identity) }

        func namespaces(matching scope: NamespaceScope) -> [String] {
            switch scope {
            case .exact(let ns): [ns]
            case .selector(let sel): usedNamespaces.filter { sel.matches(inputs.labels(ofNamespace: $0)) }.sorted()
            }
        }

        for policy in inputs.policies.values.sorted(by: { $0.id < $1.id }) {
            let targets = (byNamespace[policy.namespace] ?? []).filter { policy.podSelector.matches($0.labels) && localIdentities.contains($0) }
            guard !targets.isEmpty else { continue }
            for direction in PolicyDirection.allCases {
                let isolates = direction == .ingress ? policy.isolatesIngress : policy.isolatesEgress
                guard isolates else { continue }
                for t in targets {
                    for pod in members[t]! where pod.local || everyNodeLocal {
                        for ip in pod.ips { d.isolated[direction]!.insert(ip) }
                        d.isolatingPolicies[pod.id, default: [:]][direction, default: []].append(policy.id)
                    }
                }
                let rules = direction == .ingress ? policy.ingress : policy.egress
                for (index, rule) in rules.enumerated() {
                    let ref = RuleRef(policy: policy.id, direction: direction, index: index)
                    for t in targets {
                        let local = number[t]!
                        func add(_ key: AllowKey) { d.allows[key, default: []].insert(ref) }
                        // Port entries: numbered ones are the same for every destination; named
                        // ones resolve on the destination (the target for ingress, each peer
                        // identity for egress).
                        let peers: [NetworkPolicy.Peer] = rule.peers.isEmpty ? [NetworkPolicy.Peer(ipBlock: nil)] : rule.peers
                        for peer in peers {
                            // Resolved port ranges for a destination identity (nil: all ports).
                            func ports(on destination: Identity?) -> [PortRange]? {
                                guard !rule.ports.isEmpty else { return nil }
                                var out: [PortRange] = []
                                for p in rule.ports {
                                    switch p.port {
                                    case nil: out.append(PortRange(p.protocol, 1, 65535))
                                    case .int(let n)?:
                                        let first = UInt16(clamping: n), last = UInt16(clamping: p.endPort ?? n)
                                        if first >= 1, first <= last { out.append(PortRange(p.protocol, first, last)) }
                                    case .string(let name)?:
                                        let numbers = destination?.resolve(name, p.protocol) ?? []
                                        if numbers.isEmpty { d.unresolvedNamedPorts[ref, default: []].insert(name) }
                                        out += numbers.map { PortRange(p.protocol, $0, $0) }
                                    }
                                }
                                return out
                            }
                            let hasNamedPort = rule.ports.contains { if case .string? = $0.port { true } else { false } }
                            let isAll = rule.peers.isEmpty
                            if isAll || peer.ipBlock != nil {
                                // Addresses: the whole space for an empty peer list, else the block.
                                let ranges: [AddressRange] = isAll
                                    ? [AddressRange.everything(.v4), AddressRange.everything(.v6)]
                                    : AddressRange.subtracting(peer.ipBlock!.cidr, peer.ipBlock!.except)
                                if direction == .egress && hasNamedPort {
                                    // A named port resolves on the destination pod: only pods
                                    // can match, so the rule becomes per-identity elements for
                                    // the pods whose addresses the block holds.
                                    for (identity, pods) in members {
                                        let inside = pods.contains { $0.ips.contains { ip in ranges.contains { $0.contains(ip) } } }
                                        guard inside, let ps = ports(on: identity) else { continue }
                                        for r in ps { add(.identity(direction, local: local, peer: number[identity]!, ports: r)) }
                                    }
                                    continue
                                }
                                let ps = ports(on: direction == .ingress ? t : nil)
                                for range in ranges {
                                    if let ps { for r in ps { add(.addresses(direction, local: local, range: range, ports: r)) } }
                                    else { add(.addresses(direction, local: local, range: range, ports: nil)) }
                                }
                                continue
                            }
                            let scope: NamespaceScope = peer.namespaceSelector.map { .selector($0) } ?? .exact(policy.namespace)
                            let matchingNamespaces = namespaces(matching: scope)
                            let podSelector = peer.podSelector ?? .everything
                            let wholeNamespaces = podSelector.isEmpty && !(direction == .egress && hasNamedPort)
                            if wholeNamespaces {
                                let ps = ports(on: direction == .ingress ? t : nil)
                                for ns in matchingNamespaces {
                                    guard let nsNumber = d.namespaceNumbers[ns] else { continue }
                                    if let ps { for r in ps { add(.namespace(direction, local: local, namespace: nsNumber, ports: r)) } }
                                    else { add(.namespace(direction, local: local, namespace: nsNumber, ports: nil)) }
                                }
                                continue
                            }
                            for ns in matchingNamespaces {
                                for identity in byNamespace[ns] ?? [] where podSelector.matches(identity.labels) {
                                    let peerNumber = number[identity]!
                                    if let ps = ports(on: direction == .ingress ? t : identity) {
                                        for r in ps { add(.identity(direction, local: local, peer: peerNumber, ports: r)) }
                                    } else {
                                        add(.identity(direction, local: local, peer: peerNumber, ports: nil))
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        return d
    }

    enum NamespaceScope {
        case exact(String)
        case selector(LabelSelector)
    }
}
