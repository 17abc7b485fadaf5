// The state database's own encoding of the cluster kinds: a compact binary form written and
// read by hand, field by field, with no Codable machinery in between.
//
// Why: the store persisted each object as Kubernetes JSON through JSONEncoder and read it back
// through JSONDecoder. At 175,000 objects that was most of an apply's CPU (encoding) and most
// of a restart (5.3 s decoding before the control socket opened). This form is several times
// smaller than the JSON and decodes at memory speed; addresses are stored as integers, so a
// restart parses no text at all.
//
// Rows written before it (JSON, first byte `{`) still load: `StateDatabase` tells the two apart
// by the first byte. Node-local kinds (attachments, leases) stay JSON: few, and IPAM-adjacent.
//
// Every stored property of every kind is written; `StoredCodingTests` counts each type's
// properties, so a field added to a model without being added here fails a test instead of
// being silently lost across a restart.

import Foundation
import IPAddressing

struct StoredCodingError: Error, CustomStringConvertible {
    var message: String
    var description: String { "stored object: \(message)" }
}

enum StoredCoding {
    /// The first byte of a binary row (a JSON row starts with `{`). 0xB2 added the topology
    /// fields (Service trafficDistribution and healthCheckNodePort, endpoint zone and hints);
    /// rows of 0xB1 still load, without them.
    static let marker: UInt8 = 0xB2
    static let markerWithoutTopology: UInt8 = 0xB1

    /// True for kinds this form covers.
    static func covers(_ kind: ObjectKind) -> Bool {
        switch kind {
        case .node, .service, .endpointSlice, .pod, .namespace, .networkPolicy, .clusterNetworkPolicy: true
        case .attachment, .lease: false
        }
    }

    static func isBinary(_ bytes: some Collection<UInt8>) -> Bool { bytes.first == marker || bytes.first == markerWithoutTopology }

    static func encode(_ object: ClusterObject) -> [UInt8]? {
        var w = Writer()
        w.u8(marker)
        switch object {
        case .node(let o):
            w.u8(1)
            w.meta(o.metadata)
            w.array(o.podCIDRs) { $0.prefix($1) }
            w.array(o.addresses) { w, a in w.string(a.type); w.string(a.address) }
        case .service(let o):
            w.u8(2)
            w.service(o)
        case .endpointSlice(let o):
            w.u8(3)
            w.meta(o.metadata)
            w.string(o.addressType.rawValue)
            w.array(o.endpoints) { w, e in
                w.array(e.addresses) { $0.ip($1) }
                w.u8((e.conditions.ready ? 1 : 0) | (e.conditions.serving ? 2 : 0) | (e.conditions.terminating ? 4 : 0))
                w.optString(e.hostname)
                w.optString(e.nodeName)
                if let r = e.targetRef {
                    w.u8(1)
                    w.optString(r.kind); w.optString(r.namespace); w.optString(r.name); w.optString(r.uid)
                } else {
                    w.u8(0)
                }
                w.optString(e.zone)
                w.array(e.zoneHints) { $0.string($1) }
            }
            w.array(o.ports) { w, p in
                w.string(p.name); w.string(p.protocol.rawValue); w.optInt(p.port.map(Int.init))
            }
        case .pod(let o):
            w.u8(4)
            w.meta(o.metadata)
            w.optString(o.nodeName); w.optString(o.hostname); w.optString(o.subdomain)
            w.bool(o.hostNetwork)
            w.array(o.ports) { w, p in w.optString(p.name); w.int(p.containerPort); w.optString(p.protocol?.rawValue) }
            w.array(o.podIPs) { $0.ip($1) }
            w.optString(o.phase)
            w.optBool(o.ready)
        case .namespace(let o):
            w.u8(5)
            w.meta(o.metadata)
        case .networkPolicy(let o):
            // Tag 6 is new with the kind: no older row holds one, so no marker change.
            w.u8(6)
            w.networkPolicy(o)
        case .clusterNetworkPolicy(let o):
            // Tag 7 is new with the kind, as tag 6 was: older rows hold none, no marker change.
            w.u8(7)
            w.clusterNetworkPolicy(o)
        case .attachment, .lease:
            return nil
        }
        return w.bytes
    }

    static func decode(_ bytes: UnsafeRawBufferPointer) throws(StoredCodingError) -> ClusterObject {
        var r = Reader(bytes)
        let first = try r.u8()
        guard first == marker || first == markerWithoutTopology else { throw StoredCodingError(message: "not a binary row") }
        let topology = first == marker
        let object: ClusterObject
        switch try r.u8() {
        case 1:
            let meta = try r.meta()
            let cidrs = try r.array { r throws(StoredCodingError) in try r.prefix() }
            let addresses = try r.array { r throws(StoredCodingError) in NodeAddress(type: try r.string(), address: try r.string()) }
            object = .node(Node(metadata: meta, podCIDRs: cidrs, addresses: addresses))
        case 2:
            object = .service(try r.service(topology: topology))
        case 3:
            let meta = try r.meta()
            let type = try r.enumValue(EndpointAddressType.self)
            let endpoints = try r.array { r throws(StoredCodingError) -> Endpoint in
                let addresses = try r.array { r throws(StoredCodingError) in try r.ip() }
                let c = try r.u8()
                let hostname = try r.optString()
                let nodeName = try r.optString()
                var ref: ObjectReference?
                if try r.u8() == 1 {
                    ref = ObjectReference(kind: try r.optString(), namespace: try r.optString(), name: try r.optString(), uid: try r.optString())
                }
                let zone = topology ? try r.optString() : nil
                let hints = topology ? try r.array { r throws(StoredCodingError) in try r.string() } : []
                return Endpoint(addresses: addresses, conditions: EndpointConditions(ready: c & 1 != 0, serving: c & 2 != 0, terminating: c & 4 != 0),
                                hostname: hostname, nodeName: nodeName, targetRef: ref, zone: zone, zoneHints: hints)
            }
            let ports = try r.array { r throws(StoredCodingError) -> EndpointPort in
                let name = try r.string()
                let proto = try r.enumValue(L4Protocol.self)
                let port = try r.optInt().map { UInt16(truncatingIfNeeded: $0) }
                return EndpointPort(name: name, protocol: proto, port: port)
            }
            object = .endpointSlice(EndpointSlice(metadata: meta, addressType: type, endpoints: endpoints, ports: ports))
        case 4:
            let meta = try r.meta()
            let nodeName = try r.optString(), hostname = try r.optString(), subdomain = try r.optString()
            let hostNetwork = try r.bool()
            let ports = try r.array { r throws(StoredCodingError) -> ContainerPort in
                let name = try r.optString()
                let port = try r.int()
                let proto = try r.optString().map { s throws(StoredCodingError) in try Reader.enumValue(L4Protocol.self, s) }
                return ContainerPort(name: name, containerPort: port, protocol: proto)
            }
            let ips = try r.array { r throws(StoredCodingError) in try r.ip() }
            let phase = try r.optString()
            let ready = try r.optBool()
            object = .pod(Pod(metadata: meta, nodeName: nodeName, hostname: hostname, subdomain: subdomain, hostNetwork: hostNetwork,
                              ports: ports, podIPs: ips, phase: phase, ready: ready))
        case 5:
            object = .namespace(Namespace(metadata: try r.meta()))
        case 6:
            object = .networkPolicy(try r.networkPolicy())
        case 7:
            object = .clusterNetworkPolicy(try r.clusterNetworkPolicy())
        case let tag:
            throw StoredCodingError(message: "unknown kind tag \(tag)")
        }
        guard r.atEnd else { throw StoredCodingError(message: "\(r.remaining) bytes after the object") }
        return object
    }

    static func decode(_ bytes: [UInt8]) throws(StoredCodingError) -> ClusterObject {
        do {
            return try bytes.withUnsafeBytes { (b: UnsafeRawBufferPointer) throws -> ClusterObject in try decode(b) }
        } catch let e as StoredCodingError {
            throw e
        } catch {
            throw StoredCodingError(message: "\(error)")
        }
    }
}

// MARK: writing

private struct Writer {
    var bytes: [UInt8] = []

    init() { bytes.reserveCapacity(256) }

    mutating func u8(_ v: UInt8) { bytes.append(v) }

    mutating func varint(_ value: UInt64) {
        var v = value
        while v >= 0x80 {
            bytes.append(UInt8(truncatingIfNeeded: v) | 0x80)
            v >>= 7
        }
        bytes.append(UInt8(v))
    }

    mutating func int(_ v: Int) { varint(UInt64(bitPattern: Int64((v << 1) ^ (v >> 63)))) }  // zigzag
    mutating func optInt(_ v: Int?) {
        if let v { u8(1); int(v) } else { u8(0) }
    }

    mutating func bool(_ v: Bool) { u8(v ? 1 : 0) }
    mutating func optBool(_ v: Bool?) { u8(v == nil ? 0 : (v! ? 2 : 1)) }

    mutating func string(_ s: String) {
        var s = s
        s.withUTF8 { utf8 in
            varint(UInt64(utf8.count))
            bytes.append(contentsOf: utf8)
        }
    }

    /// nil as 0, else length + 1.
    mutating func optString(_ s: String?) {
        guard var s else { return u8(0) }
        s.withUTF8 { utf8 in
            varint(UInt64(utf8.count) + 1)
            bytes.append(contentsOf: utf8)
        }
    }

    mutating func ip(_ a: IPAddress) {
        switch a {
        case .v4(let v4):
            u8(4)
            withUnsafeBytes(of: v4.value.bigEndian) { bytes.append(contentsOf: $0) }
        case .v6(let v6):
            u8(6)
            withUnsafeBytes(of: v6.high.bigEndian) { bytes.append(contentsOf: $0) }
            withUnsafeBytes(of: v6.low.bigEndian) { bytes.append(contentsOf: $0) }
        }
    }

    mutating func prefix(_ p: IPPrefix) {
        ip(p.address)
        u8(UInt8(p.length))
    }

    mutating func array<T>(_ items: [T], _ body: (inout Writer, T) -> Void) {
        varint(UInt64(items.count))
        for item in items { body(&self, item) }
    }

    /// Sorted by key, so equal maps give equal bytes.
    mutating func optMap(_ map: [String: String]?) {
        guard let map else { return u8(0) }
        varint(UInt64(map.count) + 1)
        for (k, v) in map.sorted(by: { $0.key < $1.key }) {
            string(k)
            string(v)
        }
    }

    mutating func meta(_ m: ObjectMeta) {
        string(m.name)
        optString(m.namespace)
        optString(m.uid)
        optString(m.resourceVersion)
        optMap(m.labels)
        optMap(m.annotations)
        optString(m.deletionTimestamp)
    }

    mutating func service(_ o: Service) {
        meta(o.metadata)
        string(o.type.rawValue)
        array(o.clusterIPs) { $0.ip($1) }
        bool(o.isHeadless)
        array(o.ports) { w, p in
            w.string(p.name); w.string(p.protocol.rawValue); w.int(Int(p.port))
            switch p.targetPort {
            case .int(let i): w.u8(0); w.int(i)
            case .string(let s): w.u8(1); w.string(s)
            }
            w.optInt(p.nodePort.map(Int.init))
        }
        optMap(o.selector)
        optInt(o.sessionAffinityTimeout)
        string(o.externalTrafficPolicy.rawValue)
        string(o.internalTrafficPolicy.rawValue)
        array(o.externalIPs) { $0.ip($1) }
        array(o.loadBalancerIngress) { $0.ip($1) }
        array(o.loadBalancerSourceRanges) { $0.prefix($1) }
        optString(o.externalName)
        bool(o.publishNotReadyAddresses)
        array(o.ipFamilies) { $0.string($1.rawValue) }
        optString(o.ipFamilyPolicy?.rawValue)
        optString(o.trafficDistribution)
        optInt(o.healthCheckNodePort.map(Int.init))
    }

    mutating func selector(_ s: LabelSelector) {
        optMap(s.matchLabels)
        array(s.matchExpressions) { w, e in
            w.string(e.key); w.string(e.operator.rawValue); w.array(e.values) { $0.string($1) }
        }
    }

    mutating func optSelector(_ s: LabelSelector?) {
        guard let s else { return u8(0) }
        u8(1)
        selector(s)
    }

    mutating func networkPolicy(_ o: NetworkPolicy) {
        meta(o.metadata)
        selector(o.podSelector)
        array(o.policyTypes) { $0.string($1.rawValue) }
        for rules in [o.ingress, o.egress] {
            array(rules) { w, rule in
                w.array(rule.ports) { w, p in
                    w.string(p.protocol.rawValue)
                    switch p.port {
                    case nil: w.u8(0)
                    case .int(let i)?: w.u8(1); w.int(i)
                    case .string(let name)?: w.u8(2); w.string(name)
                    }
                    w.optInt(p.endPort)
                }
                w.array(rule.peers) { w, peer in
                    w.optSelector(peer.podSelector)
                    w.optSelector(peer.namespaceSelector)
                    if let b = peer.ipBlock {
                        w.u8(1); w.prefix(b.cidr); w.array(b.except) { $0.prefix($1) }
                    } else {
                        w.u8(0)
                    }
                }
            }
        }
    }
}

extension Writer {
    mutating func namespacedPods(_ p: ClusterNetworkPolicy.NamespacedPods) {
        selector(p.namespaceSelector)
        selector(p.podSelector)
    }

    mutating func clusterNetworkPolicy(_ o: ClusterNetworkPolicy) {
        meta(o.metadata)
        string(o.tier.rawValue)
        int(o.priority)
        switch o.subject {
        case .namespaces(let s): u8(0); selector(s)
        case .pods(let p): u8(1); namespacedPods(p)
        }
        for rules in [o.ingress, o.egress] {
            array(rules) { w, rule in
                w.optString(rule.name)
                w.string(rule.action.rawValue)
                w.array(rule.peers) { w, peer in
                    switch peer {
                    case .namespaces(let s): w.u8(0); w.selector(s)
                    case .pods(let p): w.u8(1); w.namespacedPods(p)
                    case .networks(let n): w.u8(2); w.array(n) { $0.prefix($1) }
                    case .unsupported(let field): w.u8(3); w.string(field)
                    }
                }
                w.array(rule.protocols) { w, match in
                    switch match {
                    case .namedPort(let name): w.u8(0); w.string(name)
                    case .port(let proto, let port):
                        w.u8(1)
                        w.string(proto.rawValue)
                        switch port {
                        case nil: w.u8(0)
                        case .number(let n)?: w.u8(1); w.int(n)
                        case .range(let r)?: w.u8(2); w.int(r.lowerBound); w.int(r.upperBound)
                        }
                    }
                }
            }
        }
    }
}

// MARK: reading

private struct Reader {
    let base: UnsafeRawBufferPointer
    var offset = 0

    init(_ base: UnsafeRawBufferPointer) { self.base = base }

    var atEnd: Bool { offset == base.count }
    var remaining: Int { base.count - offset }

    private func short() -> StoredCodingError { StoredCodingError(message: "truncated at byte \(offset)") }

    mutating func u8() throws(StoredCodingError) -> UInt8 {
        guard offset < base.count else { throw short() }
        defer { offset += 1 }
        return base[offset]
    }

    mutating func varint() throws(StoredCodingError) -> UInt64 {
        var v: UInt64 = 0
        var shift: UInt64 = 0
        while true {
            let b = try u8()
            guard shift < 64 else { throw StoredCodingError(message: "varint too long at byte \(offset)") }
            v |= UInt64(b & 0x7f) << shift
            if b < 0x80 { return v }
            shift += 7
        }
    }

    mutating func int() throws(StoredCodingError) -> Int {
        let z = try varint()
        return Int(Int64(bitPattern: (z >> 1) ^ (0 &- (z & 1))))
    }

    mutating func optInt() throws(StoredCodingError) -> Int? {
        try u8() == 0 ? nil : try int()
    }

    mutating func bool() throws(StoredCodingError) -> Bool { try u8() != 0 }

    mutating func optBool() throws(StoredCodingError) -> Bool? {
        switch try u8() {
        case 0: nil
        case 1: false
        default: true
        }
    }

    private mutating func utf8(_ n: Int) throws(StoredCodingError) -> String {
        guard n >= 0, n <= remaining else { throw short() }
        defer { offset += n }
        return String(decoding: UnsafeRawBufferPointer(rebasing: base[offset..<offset + n]), as: UTF8.self)
    }

    mutating func string() throws(StoredCodingError) -> String {
        try utf8(Int(try varint()))
    }

    mutating func optString() throws(StoredCodingError) -> String? {
        let n = try varint()
        return n == 0 ? nil : try utf8(Int(n - 1))
    }

    private mutating func fixed<T: FixedWidthInteger>(_: T.Type) throws(StoredCodingError) -> T {
        let n = MemoryLayout<T>.size
        guard n <= remaining else { throw short() }
        var v: T = 0
        withUnsafeMutableBytes(of: &v) { $0.copyMemory(from: UnsafeRawBufferPointer(rebasing: base[offset..<offset + n])) }
        offset += n
        return T(bigEndian: v)
    }

    mutating func ip() throws(StoredCodingError) -> IPAddress {
        switch try u8() {
        case 4: return .v4(IPv4Address(try fixed(UInt32.self)))
        case 6:
            let high = try fixed(UInt64.self)
            return .v6(IPv6Address(high: high, low: try fixed(UInt64.self)))
        case let f: throw StoredCodingError(message: "unknown address family \(f)")
        }
    }

    mutating func prefix() throws(StoredCodingError) -> IPPrefix {
        let a = try ip()
        let length = Int(try u8())
        guard length <= a.family.bitWidth else { throw StoredCodingError(message: "prefix length \(length) too long") }
        return IPPrefix(address: a, length: length)
    }

    mutating func array<T>(_ body: (inout Reader) throws(StoredCodingError) -> T) throws(StoredCodingError) -> [T] {
        let n = Int(try varint())
        // Each element takes at least one byte: a count beyond the rest is corrupt, not a reason to allocate.
        guard n <= remaining else { throw short() }
        var out: [T] = []
        out.reserveCapacity(n)
        for _ in 0..<n { out.append(try body(&self)) }
        return out
    }

    mutating func optMap() throws(StoredCodingError) -> [String: String]? {
        let n = try varint()
        guard n > 0 else { return nil }
        guard Int(n - 1) <= remaining else { throw short() }
        var map: [String: String] = [:]
        map.reserveCapacity(Int(n - 1))
        for _ in 0..<(n - 1) {
            let k = try string()
            map[k] = try string()
        }
        return map
    }

    static func enumValue<E: RawRepresentable>(_: E.Type, _ raw: String) throws(StoredCodingError) -> E where E.RawValue == String {
        guard let v = E(rawValue: raw) else { throw StoredCodingError(message: "unknown \(E.self) \"\(raw)\"") }
        return v
    }

    mutating func enumValue<E: RawRepresentable>(_ type: E.Type) throws(StoredCodingError) -> E where E.RawValue == String {
        try Self.enumValue(type, try string())
    }

    mutating func meta() throws(StoredCodingError) -> ObjectMeta {
        var m = ObjectMeta(name: try string())
        m.namespace = try optString()
        m.uid = try optString()
        m.resourceVersion = try optString()
        m.labels = try optMap()
        m.annotations = try optMap()
        m.deletionTimestamp = try optString()
        return m
    }

    mutating func service(topology: Bool) throws(StoredCodingError) -> Service {
        let meta = try meta()
        var s = Service(metadata: meta, type: try enumValue(ServiceType.self))
        s.clusterIPs = try array { r throws(StoredCodingError) in try r.ip() }
        s.isHeadless = try bool()
        s.ports = try array { r throws(StoredCodingError) -> ServicePort in
            let name = try r.string()
            let proto = try r.enumValue(L4Protocol.self)
            let port = UInt16(truncatingIfNeeded: try r.int())
            let target: IntOrString = try r.u8() == 0 ? .int(try r.int()) : .string(try r.string())
            let nodePort = try r.optInt().map { UInt16(truncatingIfNeeded: $0) }
            return ServicePort(name: name, protocol: proto, port: port, targetPort: target, nodePort: nodePort)
        }
        s.selector = try optMap()
        s.sessionAffinityTimeout = try optInt()
        s.externalTrafficPolicy = try enumValue(TrafficPolicy.self)
        s.internalTrafficPolicy = try enumValue(TrafficPolicy.self)
        s.externalIPs = try array { r throws(StoredCodingError) in try r.ip() }
        s.loadBalancerIngress = try array { r throws(StoredCodingError) in try r.ip() }
        s.loadBalancerSourceRanges = try array { r throws(StoredCodingError) in try r.prefix() }
        s.externalName = try optString()
        s.publishNotReadyAddresses = try bool()
        s.ipFamilies = try array { r throws(StoredCodingError) in try r.enumValue(IPFamily.self) }
        s.ipFamilyPolicy = try optString().map { v throws(StoredCodingError) in try Self.enumValue(IPFamilyPolicy.self, v) }
        if topology {
            s.trafficDistribution = try optString()
            s.healthCheckNodePort = try optInt().map { UInt16(truncatingIfNeeded: $0) }
        }
        return s
    }

    mutating func selector() throws(StoredCodingError) -> LabelSelector {
        let labels = try optMap() ?? [:]
        let expressions = try array { r throws(StoredCodingError) -> LabelSelector.Requirement in
            let key = try r.string()
            let op = try r.enumValue(LabelSelector.Operator.self)
            return LabelSelector.Requirement(key: key, operator: op, values: try r.array { r throws(StoredCodingError) in try r.string() })
        }
        return LabelSelector(matchLabels: labels, matchExpressions: expressions)
    }

    mutating func optSelector() throws(StoredCodingError) -> LabelSelector? {
        try u8() == 0 ? nil : try selector()
    }

    mutating func networkPolicy() throws(StoredCodingError) -> NetworkPolicy {
        let meta = try meta()
        let podSelector = try selector()
        let types = try array { r throws(StoredCodingError) in try r.enumValue(NetworkPolicy.PolicyType.self) }
        var rules: [[NetworkPolicy.Rule]] = []
        for _ in 0..<2 {
            rules.append(try array { r throws(StoredCodingError) -> NetworkPolicy.Rule in
                let ports = try r.array { r throws(StoredCodingError) -> NetworkPolicy.Port in
                    let proto = try r.enumValue(L4Protocol.self)
                    let port: IntOrString?
                    switch try r.u8() {
                    case 0: port = nil
                    case 1: port = .int(try r.int())
                    case 2: port = .string(try r.string())
                    case let t: throw StoredCodingError(message: "unknown port tag \(t)")
                    }
                    return NetworkPolicy.Port(protocol: proto, port: port, endPort: try r.optInt())
                }
                let peers = try r.array { r throws(StoredCodingError) -> NetworkPolicy.Peer in
                    let pods = try r.optSelector()
                    let namespaces = try r.optSelector()
                    var block: NetworkPolicy.IPBlock?
                    if try r.u8() != 0 {
                        block = NetworkPolicy.IPBlock(cidr: try r.prefix(), except: try r.array { r throws(StoredCodingError) in try r.prefix() })
                    }
                    return NetworkPolicy.Peer(podSelector: pods, namespaceSelector: namespaces, ipBlock: block)
                }
                return NetworkPolicy.Rule(ports: ports, peers: peers)
            })
        }
        return NetworkPolicy(metadata: meta, podSelector: podSelector, policyTypes: types, ingress: rules[0], egress: rules[1])
    }
}

extension Reader {
    mutating func namespacedPods() throws(StoredCodingError) -> ClusterNetworkPolicy.NamespacedPods {
        let namespaces = try selector()
        return ClusterNetworkPolicy.NamespacedPods(namespaceSelector: namespaces, podSelector: try selector())
    }

    mutating func clusterNetworkPolicy() throws(StoredCodingError) -> ClusterNetworkPolicy {
        let meta = try meta()
        let tier = try enumValue(ClusterNetworkPolicy.Tier.self)
        let priority = try int()
        let subject: ClusterNetworkPolicy.Subject
        switch try u8() {
        case 0: subject = .namespaces(try selector())
        case 1: subject = .pods(try namespacedPods())
        case let t: throw StoredCodingError(message: "unknown subject tag \(t)")
        }
        var rules: [[ClusterNetworkPolicy.Rule]] = []
        for _ in 0..<2 {
            rules.append(try array { r throws(StoredCodingError) -> ClusterNetworkPolicy.Rule in
                let name = try r.optString()
                let action = try r.enumValue(ClusterNetworkPolicy.Action.self)
                let peers = try r.array { r throws(StoredCodingError) -> ClusterNetworkPolicy.Peer in
                    switch try r.u8() {
                    case 0: return .namespaces(try r.selector())
                    case 1: return .pods(try r.namespacedPods())
                    case 2: return .networks(try r.array { r throws(StoredCodingError) in try r.prefix() })
                    case 3: return .unsupported(field: try r.string())
                    case let t: throw StoredCodingError(message: "unknown peer tag \(t)")
                    }
                }
                let protocols = try r.array { r throws(StoredCodingError) -> ClusterNetworkPolicy.ProtocolMatch in
                    switch try r.u8() {
                    case 0: return .namedPort(try r.string())
                    case 1:
                        let proto = try r.enumValue(L4Protocol.self)
                        switch try r.u8() {
                        case 0: return .port(proto, nil)
                        case 1: return .port(proto, .number(try r.int()))
                        case 2:
                            let start = try r.int(), end = try r.int()
                            guard start <= end else { throw StoredCodingError(message: "port range \(start)-\(end) is reversed") }
                            return .port(proto, .range(start...end))
                        case let t: throw StoredCodingError(message: "unknown port tag \(t)")
                        }
                    case let t: throw StoredCodingError(message: "unknown protocol tag \(t)")
                    }
                }
                return ClusterNetworkPolicy.Rule(name: name, action: action, peers: peers, protocols: protocols)
            })
        }
        return ClusterNetworkPolicy(metadata: meta, tier: tier, priority: priority, subject: subject,
                                    ingress: rules[0], egress: rules[1])
    }
}
