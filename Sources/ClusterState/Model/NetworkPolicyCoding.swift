// NetworkPolicy (networking.k8s.io/v1) in its Kubernetes JSON/YAML shape, with the API
// server's defaulting and validation applied while decoding: the embedded and etcd sources have
// no API server in front of them, so what an API server would refuse must be refused here (with
// the field's path), and what it would default must be defaulted here.
//
// Defaulting: k/k pkg/apis/networking/v1/defaults.go (policyTypes, protocol TCP).
// Validation: k/k pkg/apis/networking/validation/validation.go (ValidateNetworkPolicySpec,
// ValidateNetworkPolicyPort, ValidateNetworkPolicyPeer, ValidateIPBlock) and apimachinery's
// ValidateLabelSelector; messages follow upstream's where they read well. One addition:
// duplicate policyTypes are refused (upstream lets them through; they mean nothing).
// Unknown fields are ignored, as for every other kind.

import IPAddressing

extension LabelSelector: Codable {
    private struct RawRequirement: Codable {
        var key: String
        var `operator`: String
        var values: [String]?
    }

    private enum Keys: String, CodingKey { case matchLabels, matchExpressions }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: Keys.self)
        let labels = try c.decodeIfPresent([String: String].self, forKey: .matchLabels) ?? [:]
        let raw = try c.decodeIfPresent([RawRequirement].self, forKey: .matchExpressions) ?? []
        for (key, value) in labels.sorted(by: { $0.key < $1.key }) {
            guard isQualifiedName(key) else {
                throw invalid(decoder, "matchLabels", "key \(excerpt(key)) is not a valid label key (an optional DNS subdomain prefix and '/', then 63 letters, digits, '-', '_' or '.' at most)")
            }
            guard isLabelValue(value) else {
                throw invalid(decoder, "matchLabels", "value of \(excerpt(key)), \(excerpt(value)), is not a valid label value (63 letters, digits, '-', '_' or '.' at most, beginning and ending with a letter or digit)")
            }
        }
        var requirements: [Requirement] = []
        for (i, r) in raw.enumerated() {
            let path = "matchExpressions[\(i)]"
            guard let op = Operator(rawValue: r.operator) else {
                throw invalid(decoder, path + ".operator", "Unsupported value: \(excerpt(r.operator)): supported values: \"In\", \"NotIn\", \"Exists\", \"DoesNotExist\"")
            }
            guard isQualifiedName(r.key) else {
                throw invalid(decoder, path + ".key", "\(excerpt(r.key)) is not a valid label key")
            }
            let values = r.values ?? []
            switch op {
            case .in, .notIn:
                guard !values.isEmpty else {
                    throw invalid(decoder, path + ".values", "must be specified when `operator` is 'In' or 'NotIn'")
                }
            case .exists, .doesNotExist:
                guard values.isEmpty else {
                    throw invalid(decoder, path + ".values", "may not be specified when `operator` is 'Exists' or 'DoesNotExist'")
                }
            }
            for (j, v) in values.enumerated() where !isLabelValue(v) {
                throw invalid(decoder, path + ".values[\(j)]", "\(excerpt(v)) is not a valid label value")
            }
            requirements.append(Requirement(key: r.key, operator: op, values: values))
        }
        self.init(matchLabels: labels, matchExpressions: requirements)
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: Keys.self)
        if !matchLabels.isEmpty { try c.encode(matchLabels, forKey: .matchLabels) }
        if !matchExpressions.isEmpty {
            try c.encode(matchExpressions.map { RawRequirement(key: $0.key, operator: $0.operator.rawValue, values: $0.values.isEmpty ? nil : $0.values) },
                         forKey: .matchExpressions)
        }
    }
}

extension NetworkPolicy: Codable {
    private struct RawIPBlock: Codable {
        var cidr: String?
        var except: [String]?
    }

    private struct RawPeer: Codable {
        var podSelector: LabelSelector?
        var namespaceSelector: LabelSelector?
        var ipBlock: RawIPBlock?
    }

    private struct RawPort: Codable {
        var `protocol`: String?
        var port: IntOrString?
        var endPort: Int?
    }

    private struct RawRule: Codable {
        var from: [RawPeer]?
        var to: [RawPeer]?
        var ports: [RawPort]?
    }

    private struct RawSpec: Codable {
        var podSelector: LabelSelector?
        var policyTypes: [String]?
        var ingress: [RawRule]?
        var egress: [RawRule]?
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: AnyKey.self)
        try checkKind(c, decoder, .networkPolicy)
        let metadata = try decodeMeta(c, decoder, kind: .networkPolicy)
        let spec = try c.decodeIfPresent(RawSpec.self, forKey: AnyKey("spec")) ?? RawSpec()

        var types: [PolicyType] = []
        for (i, text) in (spec.policyTypes ?? []).enumerated() {
            let field = "spec.policyTypes[\(i)]"
            guard let t = PolicyType(rawValue: text) else {
                throw invalid(decoder, field, "Unsupported value: \(excerpt(text)): supported values: \"Ingress\", \"Egress\"")
            }
            guard !types.contains(t) else { throw invalid(decoder, field, "Duplicate value: \"\(text)\"") }
            types.append(t)
        }
        let ingress = try (spec.ingress ?? []).enumerated().map { i, r in
            try Self.rule(r.ports, r.from, decoder, "spec.ingress[\(i)]", peers: "from")
        }
        let egress = try (spec.egress ?? []).enumerated().map { i, r in
            try Self.rule(r.ports, r.to, decoder, "spec.egress[\(i)]", peers: "to")
        }
        // podSelector is required by the API, but `{}` is its only sensible reading when absent.
        self.init(metadata: metadata, podSelector: spec.podSelector ?? .everything, policyTypes: types,
                  ingress: ingress, egress: egress)
    }

    private static func rule(_ rawPorts: [RawPort]?, _ rawPeers: [RawPeer]?, _ decoder: any Decoder, _ path: String,
                             peers peersKey: String) throws -> Rule {
        let ports = try (rawPorts ?? []).enumerated().map { i, p in try port(p, decoder, "\(path).ports[\(i)]") }
        let peers = try (rawPeers ?? []).enumerated().map { i, p in try peer(p, decoder, "\(path).\(peersKey)[\(i)]") }
        return Rule(ports: ports, peers: peers)
    }

    /// ValidateNetworkPolicyPort, after SetDefaults_NetworkPolicyPort (protocol TCP).
    private static func port(_ p: RawPort, _ decoder: any Decoder, _ path: String) throws -> Port {
        let proto = try parseProtocol(p.protocol, decoder, path + ".protocol")
        switch p.port {
        case .int(let n)?:
            guard 1...65535 ~= n else { throw invalid(decoder, path + ".port", "\(n): must be between 1 and 65535, inclusive") }
            if let end = p.endPort {
                guard end >= n else { throw invalid(decoder, path + ".endPort", "\(end): must be greater than or equal to `port` (\(n))") }
                guard end <= 65535 else { throw invalid(decoder, path + ".endPort", "\(end): must be between 1 and 65535, inclusive") }
            }
        case .string(let name)?:
            if let problem = portNameProblem(name) { throw invalid(decoder, path + ".port", "\(excerpt(name)): \(problem)") }
            if p.endPort != nil {
                throw invalid(decoder, path + ".endPort", "may not be specified when `port` is non-numeric")
            }
        case nil:
            if p.endPort != nil {
                throw invalid(decoder, path + ".endPort", "EndPort field cannot be defined if the Port field is not defined")
            }
        }
        return Port(protocol: proto, port: p.port, endPort: p.endPort)
    }

    /// ValidateNetworkPolicyPeer and ValidateIPBlock.
    private static func peer(_ p: RawPeer, _ decoder: any Decoder, _ path: String) throws -> Peer {
        let fields = [p.podSelector != nil, p.namespaceSelector != nil, p.ipBlock != nil].filter { $0 }.count
        guard fields > 0 else {
            throw invalid(decoder, path, "must specify a peer (podSelector, namespaceSelector or ipBlock)")
        }
        guard let raw = p.ipBlock else { return Peer(podSelector: p.podSelector, namespaceSelector: p.namespaceSelector) }
        guard fields == 1 else { throw invalid(decoder, path, "may not specify both ipBlock and another peer") }
        guard let text = raw.cidr, !text.isEmpty else { throw invalid(decoder, path + ".ipBlock.cidr", "Required value") }
        guard let given = IPPrefix(text) else {
            throw invalid(decoder, path + ".ipBlock.cidr", "\(excerpt(text)): must be a valid CIDR (e.g. 10.0.0.0/16 or fd00::/64)")
        }
        // The API server takes a CIDR with host bits set (ParseCIDRSloppy) and means its network.
        let cidr = given.network
        var except: [IPPrefix] = []
        for (i, e) in (raw.except ?? []).enumerated() {
            let field = path + ".ipBlock.except[\(i)]"
            guard let x = IPPrefix(e) else { throw invalid(decoder, field, "\(excerpt(e)): must be a valid CIDR") }
            guard x.family == cidr.family else {
                throw invalid(decoder, field, "\(excerpt(e)): must be a strict subset of `cidr` (\(cidr)): not the same IP family")
            }
            guard x.length > cidr.length, cidr.contains(x.address) else {
                throw invalid(decoder, field, "\(excerpt(e)): must be a strict subset of `cidr` (\(cidr))")
            }
            except.append(x.network)
        }
        return Peer(ipBlock: IPBlock(cidr: cidr, except: except))
    }

    /// validation.IsValidPortName (IANA_SVC_NAME): nil when valid, else why not.
    static func portNameProblem(_ name: String) -> String? {
        let u = Array(name.utf8)
        guard !u.isEmpty, u.count <= 15 else { return "must be no more than 15 characters" }
        func lower(_ c: UInt8) -> Bool { c >= 97 && c <= 122 }
        func digit(_ c: UInt8) -> Bool { c >= 48 && c <= 57 }
        guard u.allSatisfy({ lower($0) || digit($0) || $0 == 45 }) else {
            return "must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)"
        }
        guard !name.contains("--") else { return "must not contain consecutive hyphens" }
        guard u.contains(where: lower) else { return "must contain at least one letter (a-z)" }
        guard u.first != 45, u.last != 45 else { return "must not begin or end with a hyphen" }
        return nil
    }

    public func encode(to encoder: any Encoder) throws {
        var c = try encodeHeader(encoder, .networkPolicy, metadata)
        func peer(_ p: Peer) -> RawPeer {
            RawPeer(podSelector: p.podSelector, namespaceSelector: p.namespaceSelector,
                    ipBlock: p.ipBlock.map { RawIPBlock(cidr: $0.cidr.description, except: $0.except.isEmpty ? nil : $0.except.map(\.description)) })
        }
        func ports(_ r: Rule) -> [RawPort]? {
            r.ports.isEmpty ? nil : r.ports.map { RawPort(protocol: $0.protocol.rawValue, port: $0.port, endPort: $0.endPort) }
        }
        let spec = RawSpec(
            podSelector: podSelector,
            policyTypes: policyTypes.map(\.rawValue),
            ingress: ingress.isEmpty ? nil : ingress.map { RawRule(from: $0.peers.isEmpty ? nil : $0.peers.map(peer), ports: ports($0)) },
            egress: egress.isEmpty ? nil : egress.map { RawRule(to: $0.peers.isEmpty ? nil : $0.peers.map(peer), ports: ports($0)) })
        try c.encode(spec, forKey: AnyKey("spec"))
    }
}
