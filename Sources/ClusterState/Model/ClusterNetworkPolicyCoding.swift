// ClusterNetworkPolicy (policy.networking.k8s.io/v1alpha2) in its Kubernetes JSON/YAML shape,
// validated while decoding as the CRD's OpenAPI schema and CEL rules would at the API server
// (network-policy-api apis/v1alpha2/clusternetworkpolicy_types.go): the embedded and etcd
// sources have no API server in front of them, so what it would refuse is refused here, with
// the field's path.
//
// What the schema says and this decoder enforces: tier Admin|Baseline; priority 0...1000;
// subject exactly one of namespaces / pods (pods.podSelector required); at most 25 rules per
// direction; a rule name of at most 100 characters; action Accept|Deny|Pass; 1...25 peers, each
// exactly one field; networks (egress) 1...25 distinct CIDRs; protocols 1...25 items (when
// given), each exactly one of tcp / udp / sctp / destinationNamedPort; a destinationPort exactly
// one of number (1...65535) / range (start < end); a named port an IANA_SVC_NAME; and the CEL
// rule that an egress rule with a networks, nodes or domainNames peer takes no named port.
//
// Fail closed: a peer whose one field nodenet does not implement (the experimental `nodes` and
// `domainNames`, `networks` in an ingress rule, or a field of a newer API version) decodes as
// `.unsupported(field:)`, which the API says an Accept rule matches nothing with and a Deny or
// Pass rule denies everything with. Its content is not kept: it encodes back as `{field: {}}`.
// A peer with no field at all is an error (the schema's MinProperties). Unknown fields anywhere
// else are ignored, as for every other kind.
//
// One deviation from the schema: `tcp: {}` (no destinationPort) is refused as the API server
// does (MinProperties=1); the model's "every port of the protocol" (`.port(p, nil)`), which only
// code can build, encodes as the range 1-65535, which means the same.

import IPAddressing

extension ClusterNetworkPolicy: Codable {
    static let maxRules = 25
    static let maxItems = 25
    static let maxRuleName = 100

    /// The keys of a mapping that are present and not null, sorted (messages name them alike
    /// whatever the decoder's key order).
    private static func presentKeys(_ c: KeyedDecodingContainer<AnyKey>) throws -> [String] {
        try c.allKeys.filter { try !c.decodeNil(forKey: $0) }.map(\.stringValue).sorted()
    }

    private struct RawNamespacedPods: Codable {
        var namespaceSelector: LabelSelector?
        var podSelector: LabelSelector?
    }

    /// A subject or peer: the fields nodenet knows decoded, every other present field named.
    private struct RawPeer: Decodable {
        var namespaces: LabelSelector?
        var pods: RawNamespacedPods?
        var networks: [String]?
        var networksError: (any Error)?
        /// Every present field, known or not (for "exactly one" and fail-closed).
        var fields: [String] = []

        init(from decoder: any Decoder) throws {
            let c = try decoder.container(keyedBy: AnyKey.self)
            fields = try ClusterNetworkPolicy.presentKeys(c)
            namespaces = try c.decodeIfPresent(LabelSelector.self, forKey: AnyKey("namespaces"))
            pods = try c.decodeIfPresent(RawNamespacedPods.self, forKey: AnyKey("pods"))
            // Kept as an error until the direction is known: `networks` is an unknown (fail
            // closed) field in an ingress rule, whatever its value.
            do { networks = try c.decodeIfPresent([String].self, forKey: AnyKey("networks")) } catch { networksError = error }
        }
    }

    private struct RawRange: Codable {
        var start: Int?
        var end: Int?
    }

    private struct RawPort: Codable {
        var number: Int?
        var range: RawRange?
    }

    private struct RawProtocolPort: Codable {
        var destinationPort: RawPort?
    }

    private struct RawProtocol: Decodable {
        var tcp: RawProtocolPort?
        var udp: RawProtocolPort?
        var sctp: RawProtocolPort?
        var destinationNamedPort: String?
        var fields: [String] = []

        init(from decoder: any Decoder) throws {
            let c = try decoder.container(keyedBy: AnyKey.self)
            fields = try ClusterNetworkPolicy.presentKeys(c)
            tcp = try c.decodeIfPresent(RawProtocolPort.self, forKey: AnyKey("tcp"))
            udp = try c.decodeIfPresent(RawProtocolPort.self, forKey: AnyKey("udp"))
            sctp = try c.decodeIfPresent(RawProtocolPort.self, forKey: AnyKey("sctp"))
            destinationNamedPort = try c.decodeIfPresent(String.self, forKey: AnyKey("destinationNamedPort"))
        }
    }

    private struct RawRule: Decodable {
        var name: String?
        var action: String?
        var from: [RawPeer]?
        var to: [RawPeer]?
        var protocols: [RawProtocol]?
    }

    private struct RawSpec: Decodable {
        var tier: String?
        var priority: Int?
        var subject: RawPeer?
        var ingress: [RawRule]?
        var egress: [RawRule]?
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: AnyKey.self)
        try checkKind(c, decoder, .clusterNetworkPolicy)
        let metadata = try decodeMeta(c, decoder, kind: .clusterNetworkPolicy)
        guard let spec = try c.decodeIfPresent(RawSpec.self, forKey: AnyKey("spec")) else {
            throw invalid(decoder, "spec", "Required value")
        }
        guard let tierText = spec.tier else { throw invalid(decoder, "spec.tier", "Required value") }
        guard let tier = Tier(rawValue: tierText) else {
            throw invalid(decoder, "spec.tier", "Unsupported value: \(excerpt(tierText)): supported values: \"Admin\", \"Baseline\"")
        }
        guard let priority = spec.priority else { throw invalid(decoder, "spec.priority", "Required value") }
        guard 0...1000 ~= priority else {
            throw invalid(decoder, "spec.priority", "\(priority): must be between 0 and 1000, inclusive")
        }
        guard let rawSubject = spec.subject else { throw invalid(decoder, "spec.subject", "Required value") }
        let subject = try Self.subject(rawSubject, decoder, "spec.subject")
        let ingress = try Self.rules(spec.ingress, .ingress, decoder)
        let egress = try Self.rules(spec.egress, .egress, decoder)
        self.init(metadata: metadata, tier: tier, priority: priority, subject: subject, ingress: ingress, egress: egress)
    }

    private static func subject(_ raw: RawPeer, _ decoder: any Decoder, _ path: String) throws -> Subject {
        guard raw.fields.count == 1 else {
            throw invalid(decoder, path, exactlyOne(["namespaces", "pods"], found: raw.fields))
        }
        if let namespaces = raw.namespaces { return .namespaces(namespaces) }
        if let pods = raw.pods { return .pods(try namespacedPods(pods, decoder, path + ".pods")) }
        throw invalid(decoder, path, "\(raw.fields[0]) is not a subject nodenet knows: must be one of namespaces, pods")
    }

    private static func namespacedPods(_ raw: RawNamespacedPods, _ decoder: any Decoder, _ path: String) throws -> NamespacedPods {
        guard let podSelector = raw.podSelector else { throw invalid(decoder, path + ".podSelector", "Required value") }
        return NamespacedPods(namespaceSelector: raw.namespaceSelector ?? .everything, podSelector: podSelector)
    }

    private static func exactlyOne(_ known: [String], found: [String]) -> String {
        let list = known.dropLast().joined(separator: ", ") + " or " + known.last!
        return found.isEmpty ? "must set exactly one of \(list)"
            : "must set exactly one field (\(list)), found \(found.count): \(found.joined(separator: ", "))"
    }

    private static func rules(_ raw: [RawRule]?, _ direction: Rule.Direction, _ decoder: any Decoder) throws -> [Rule] {
        let raw = raw ?? []
        let path = "spec.\(direction.rawValue)"
        guard raw.count <= maxRules else {
            throw invalid(decoder, path, "Too many: \(raw.count): must have at most \(maxRules) items")
        }
        return try raw.enumerated().map { i, r in try rule(r, direction, decoder, "\(path)[\(i)]") }
    }

    private static func rule(_ r: RawRule, _ direction: Rule.Direction, _ decoder: any Decoder, _ path: String) throws -> Rule {
        let name = r.name.flatMap { $0.isEmpty ? nil : $0 }
        if let name, name.unicodeScalars.count > maxRuleName {
            throw invalid(decoder, path + ".name", "Too long: may not be more than \(maxRuleName) characters (\(name.unicodeScalars.count))")
        }
        guard let actionText = r.action else { throw invalid(decoder, path + ".action", "Required value") }
        guard let action = Action(rawValue: actionText) else {
            throw invalid(decoder, path + ".action", "Unsupported value: \(excerpt(actionText)): supported values: \"Accept\", \"Deny\", \"Pass\"")
        }
        let peersKey = direction == .ingress ? "from" : "to"
        guard let rawPeers = direction == .ingress ? r.from : r.to else {
            throw invalid(decoder, "\(path).\(peersKey)", "Required value")
        }
        try checkCount(rawPeers.count, decoder, "\(path).\(peersKey)")
        let peers = try rawPeers.enumerated().map { i, p in try peer(p, direction, decoder, "\(path).\(peersKey)[\(i)]") }
        var protocols: [ProtocolMatch] = []
        if let rawProtocols = r.protocols {
            try checkCount(rawProtocols.count, decoder, path + ".protocols")
            protocols = try rawProtocols.enumerated().map { i, p in try protocolMatch(p, decoder, "\(path).protocols[\(i)]") }
        }
        // The CRD's CEL rule on egress rules: no named port beside a peer without named ports.
        if direction == .egress, protocols.contains(where: { if case .namedPort = $0 { true } else { false } }),
           let peer = peers.first(where: { p in
               switch p {
               case .networks: true
               case .unsupported(let field): field == "nodes" || field == "domainNames"
               case .namespaces, .pods: false
               }
           }) {
            let field = if case .unsupported(let f) = peer { f } else { "networks" }
            throw invalid(decoder, path, "a \(field) peer cannot be set with destinationNamedPort: \(field) have no named ports")
        }
        return Rule(name: name, action: action, peers: peers, protocols: protocols)
    }

    /// MinItems=1, MaxItems=25 (peers, protocols, networks).
    private static func checkCount(_ n: Int, _ decoder: any Decoder, _ path: String) throws {
        guard n >= 1 else { throw invalid(decoder, path, "must have at least 1 item") }
        guard n <= maxItems else { throw invalid(decoder, path, "Too many: \(n): must have at most \(maxItems) items") }
    }

    private static func peer(_ p: RawPeer, _ direction: Rule.Direction, _ decoder: any Decoder, _ path: String) throws -> Peer {
        let known = direction == .egress ? ["namespaces", "pods", "networks"] : ["namespaces", "pods"]
        guard p.fields.count == 1, let field = p.fields.first else {
            throw invalid(decoder, path, exactlyOne(known, found: p.fields))
        }
        switch field {
        case "namespaces": return .namespaces(p.namespaces!)
        case "pods": return .pods(try namespacedPods(p.pods!, decoder, path + ".pods"))
        case "networks" where direction == .egress:
            if let e = p.networksError { throw e }
            let texts = p.networks!
            try checkCount(texts.count, decoder, path + ".networks")
            var networks: [IPPrefix] = []
            for (i, text) in texts.enumerated() {
                let field = "\(path).networks[\(i)]"
                guard let prefix = IPPrefix(text) else {
                    throw invalid(decoder, field, "\(excerpt(text)): Invalid CIDR format provided (e.g. 10.0.0.0/8 or fd00::/8)")
                }
                // isCIDR takes host bits set; what is meant is the network.
                let network = prefix.network
                guard !networks.contains(network) else { throw invalid(decoder, field, "Duplicate value: \(excerpt(text))") }
                networks.append(network)
            }
            return .networks(networks)
        default:
            // Experimental (nodes, domainNames), ingress networks, or newer than nodenet.
            return .unsupported(field: field)
        }
    }

    private static func protocolMatch(_ p: RawProtocol, _ decoder: any Decoder, _ path: String) throws -> ProtocolMatch {
        guard p.fields.count == 1 else {
            throw invalid(decoder, path, exactlyOne(["tcp", "udp", "sctp", "destinationNamedPort"], found: p.fields))
        }
        if let name = p.destinationNamedPort {
            let field = path + ".destinationNamedPort"
            guard !name.isEmpty else { throw invalid(decoder, field, "must not be empty") }
            if let problem = NetworkPolicy.portNameProblem(name) { throw invalid(decoder, field, "\(excerpt(name)): \(problem)") }
            return .namedPort(name)
        }
        let (proto, key, raw): (L4Protocol, String, RawProtocolPort?) =
            if p.tcp != nil { (.tcp, "tcp", p.tcp) } else if p.udp != nil { (.udp, "udp", p.udp) } else if p.sctp != nil { (.sctp, "sctp", p.sctp) }
            else { (.tcp, p.fields[0], nil) }
        guard let raw else {
            throw invalid(decoder, path, "\(p.fields[0]) is not a protocol nodenet knows: must be one of tcp, udp, sctp, destinationNamedPort")
        }
        guard let port = raw.destinationPort else {
            throw invalid(decoder, "\(path).\(key).destinationPort", "Required value (\(key) must have at least 1 field)")
        }
        return .port(proto, try portMatch(port, decoder, "\(path).\(key).destinationPort"))
    }

    private static func portMatch(_ p: RawPort, _ decoder: any Decoder, _ path: String) throws -> PortMatch {
        switch (p.number, p.range) {
        case (let n?, nil):
            guard 1...65535 ~= n else { throw invalid(decoder, path + ".number", "\(n): must be between 1 and 65535, inclusive") }
            return .number(n)
        case (nil, let r?):
            guard let start = r.start else { throw invalid(decoder, path + ".range.start", "Required value") }
            guard let end = r.end else { throw invalid(decoder, path + ".range.end", "Required value") }
            for (v, key) in [(start, "start"), (end, "end")] where !(1...65535 ~= v) {
                throw invalid(decoder, "\(path).range.\(key)", "\(v): must be between 1 and 65535, inclusive")
            }
            guard start < end else { throw invalid(decoder, path + ".range", "Start port must be less than End port (\(start) >= \(end))") }
            return .range(start...end)
        case (nil, nil):
            throw invalid(decoder, path, "must set exactly one of number or range")
        case (.some, .some):
            throw invalid(decoder, path, "must set exactly one field (number or range), found 2: number, range")
        }
    }

    // MARK: encoding (the API shape; decodes back to the same value)

    private struct OutNamespacedPods: Encodable {
        var namespaceSelector: LabelSelector
        var podSelector: LabelSelector
        init(_ p: NamespacedPods) { namespaceSelector = p.namespaceSelector; podSelector = p.podSelector }
    }

    private struct Empty: Encodable {}

    /// One field, named at run time (a peer, a subject, a protocol item).
    private struct OneField<Value: Encodable>: Encodable {
        var key: String
        var value: Value
        func encode(to encoder: any Encoder) throws {
            var c = encoder.container(keyedBy: AnyKey.self)
            try c.encode(value, forKey: AnyKey(key))
        }
    }

    private struct OutRange: Encodable { var start: Int; var end: Int }
    private struct OutPort: Encodable { var number: Int?; var range: OutRange? }
    private struct OutProtocolPort: Encodable { var destinationPort: OutPort }

    private struct OutRule: Encodable {
        var name: String?
        var action: String
        var from: [AnyEncodable]?
        var to: [AnyEncodable]?
        var protocols: [AnyEncodable]?
    }

    private struct OutSpec: Encodable {
        var tier: String
        var priority: Int
        var subject: AnyEncodable
        var ingress: [OutRule]?
        var egress: [OutRule]?
    }

    private struct AnyEncodable: Encodable {
        let value: any Encodable
        init(_ value: any Encodable) { self.value = value }
        func encode(to encoder: any Encoder) throws { try value.encode(to: encoder) }
    }

    private static func encoded(_ peer: Peer) -> AnyEncodable {
        switch peer {
        case .namespaces(let s): AnyEncodable(OneField(key: "namespaces", value: s))
        case .pods(let p): AnyEncodable(OneField(key: "pods", value: OutNamespacedPods(p)))
        case .networks(let n): AnyEncodable(OneField(key: "networks", value: n.map(\.description)))
        case .unsupported(let field): AnyEncodable(OneField(key: field, value: Empty()))
        }
    }

    private static func encoded(_ match: ProtocolMatch) -> AnyEncodable {
        switch match {
        case .namedPort(let name):
            return AnyEncodable(OneField(key: "destinationNamedPort", value: name))
        case .port(let proto, let port):
            let out: OutPort = switch port {
            case .number(let n)?: OutPort(number: n)
            case .range(let r)?: OutPort(range: OutRange(start: r.lowerBound, end: r.upperBound))
            case nil: OutPort(range: OutRange(start: 1, end: 65535))
            }
            return AnyEncodable(OneField(key: proto.rawValue.lowercased(), value: OutProtocolPort(destinationPort: out)))
        }
    }

    private static func encoded(_ rule: Rule, _ direction: Rule.Direction) -> OutRule {
        let peers = rule.peers.map(encoded)
        return OutRule(name: rule.name, action: rule.action.rawValue,
                       from: direction == .ingress ? peers : nil, to: direction == .egress ? peers : nil,
                       protocols: rule.protocols.isEmpty ? nil : rule.protocols.map(encoded))
    }

    public func encode(to encoder: any Encoder) throws {
        var c = try encodeHeader(encoder, .clusterNetworkPolicy, metadata)
        let subject = switch subject {
        case .namespaces(let s): AnyEncodable(OneField(key: "namespaces", value: s))
        case .pods(let p): AnyEncodable(OneField(key: "pods", value: OutNamespacedPods(p)))
        }
        let spec = OutSpec(tier: tier.rawValue, priority: priority, subject: subject,
                           ingress: ingress.isEmpty ? nil : ingress.map { Self.encoded($0, .ingress) },
                           egress: egress.isEmpty ? nil : egress.map { Self.encoded($0, .egress) })
        try c.encode(spec, forKey: AnyKey("spec"))
    }
}
