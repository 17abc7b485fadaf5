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

    /// Takes over numbers an earlier run gave (read back from the kernel), so a restart
    /// rewrites no element. Only numbers not already taken.
    public mutating func seed(_ hints: [Key: UInt32]) {
        let taken = Set(numbers.values)
        for (key, n) in hints.sorted(by: { $0.value < $1.value }) where numbers[key] == nil && !taken.contains(n) && n > 0 {
            numbers[key] = n
            next = max(next, n + 1)
        }
    }

    /// Frees one key's number.
    public mutating func release(_ key: Key) {
        if let n = numbers.removeValue(forKey: key) { free.append(n) }
    }

    /// Forgets every key not in `used`, making its number reusable.
    public mutating func keepOnly(_ used: Set<Key>) {
        for (k, n) in numbers where !used.contains(k) {
            numbers[k] = nil
            free.append(n)
        }
    }
}


/// A full compile: the engine fed everything at once.
public struct PolicyCompiler: Sendable {
    public init() {}

    /// - Parameter everyNodeLocal: compile as if every pod ran here (the explain command's view
    ///   of the whole cluster); the agent compiles for its own pods.
    public func compile(_ inputs: PolicyInputs, everyNodeLocal: Bool = false) -> PolicyDesired {
        var engine = PolicyEngine(everyNodeLocal: everyNodeLocal)
        engine.load(inputs)
        return engine.desired
    }
}
