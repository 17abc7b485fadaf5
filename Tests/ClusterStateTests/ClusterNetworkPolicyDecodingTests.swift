import Foundation
import IPAddressing
import Testing
@testable import ClusterState

/// ClusterNetworkPolicy (policy.networking.k8s.io/v1alpha2) as a store kind: decoded from the
/// API shape, refused with the field's path where the CRD's schema and CEL rules would refuse
/// it, peers nodenet does not implement kept as `.unsupported` (fail closed), and encoded back.
/// The examples follow the upstream conformance model (namespaces gryffindor, slytherin,
/// hufflepuff, ravenclaw; StatefulSet pods harry-potter-0/1 ...).
@Suite struct ClusterNetworkPolicyDecodingTests {
    /// Admin tier: deny slytherin, pass hufflepuff to the NetworkPolicy tier, accept the rest of
    /// the cluster on one port; egress denied to one pod by name label.
    static let adminDenyWithPass = """
    apiVersion: policy.networking.k8s.io/v1alpha2
    kind: ClusterNetworkPolicy
    metadata:
      name: ingress-tcp-gress-rules
      uid: 2f0c6a1e-5b7d-4e4a-9c1b-8a3d2e6f7b90
      resourceVersion: "93117"
      labels: {app.kubernetes.io/part-of: security}
    spec:
      tier: Admin
      priority: 16
      subject:
        namespaces:
          matchLabels:
            kubernetes.io/metadata.name: gryffindor
      ingress:
        - name: deny-all-ingress-from-slytherin
          action: Deny
          from:
            - namespaces:
                matchLabels:
                  kubernetes.io/metadata.name: slytherin
        - name: pass-ingress-from-hufflepuff
          action: Pass
          from:
            - namespaces:
                matchLabels:
                  kubernetes.io/metadata.name: hufflepuff
          protocols:
            - tcp:
                destinationPort:
                  number: 8080
            - udp:
                destinationPort:
                  number: 5353
            - sctp:
                destinationPort:
                  number: 9003
        - action: Accept
          from:
            - namespaces: {}
          protocols:
            - tcp: {destinationPort: {number: 80}}
      egress:
        - name: deny-to-cedric
          action: Deny
          to:
            - pods:
                namespaceSelector:
                  matchLabels:
                    kubernetes.io/metadata.name: hufflepuff
                podSelector:
                  matchLabels:
                    statefulset.kubernetes.io/pod-name: cedric-diggory-0
    """

    /// Baseline tier with a pods subject (namespaceSelector omitted: every namespace) and an
    /// egress to networks of both families, a port range and a named port.
    static let baselineNetworksRangesNamedPorts = """
    {"apiVersion":"policy.networking.k8s.io/v1alpha2","kind":"ClusterNetworkPolicy",
     "metadata":{"name":"default.baseline"},
     "spec":{
       "tier":"Baseline","priority":0,
       "subject":{"pods":{"podSelector":{"matchExpressions":[{"key":"house","operator":"In","values":["gryffindor","ravenclaw"]}]}}},
       "egress":[
         {"name":"allow-to-the-ministry","action":"Accept",
          "to":[{"networks":["10.244.0.1/16","fd00:10:244::/48"]}],
          "protocols":[{"tcp":{"destinationPort":{"range":{"start":8080,"end":9090}}}},{"udp":{"destinationPort":{"number":53}}}]},
         {"action":"Accept",
          "to":[{"pods":{"namespaceSelector":{"matchLabels":{"kubernetes.io/metadata.name":"ravenclaw"}},"podSelector":{}}}],
          "protocols":[{"destinationNamedPort":"web"},{"sctp":{"destinationPort":{"range":{"start":9003,"end":9005}}}}]},
         {"action":"Deny","to":[{"networks":["0.0.0.0/0"]},{"networks":["::/0"]}]}
       ],
       "ingress":[
         {"action":"Deny","from":[{"pods":{"namespaceSelector":{},"podSelector":{"matchLabels":{"app":"dementor"}}}}]}
       ]}}
    """

    func decoded(_ text: String) throws -> ClusterNetworkPolicy {
        let objects = try ManifestDecoder.decode(text)
        guard objects.count == 1, case .clusterNetworkPolicy(let p) = objects[0] else { throw Unexpected(objects: objects) }
        return p
    }

    struct Unexpected: Error { var objects: [ClusterObject] }

    static func name(_ house: String) -> LabelSelector { LabelSelector(matchLabels: ["kubernetes.io/metadata.name": house]) }

    @Test func anAdminPolicyWithDenyPassAndAccept() throws {
        let p = try decoded(Self.adminDenyWithPass)
        #expect(p.metadata.name == "ingress-tcp-gress-rules")
        #expect(p.metadata.namespace == nil)
        #expect(p.metadata.uid == "2f0c6a1e-5b7d-4e4a-9c1b-8a3d2e6f7b90")
        #expect(p.metadata.labels == ["app.kubernetes.io/part-of": "security"])
        #expect(p.tier == .admin)
        #expect(p.priority == 16)
        #expect(p.subject == .namespaces(Self.name("gryffindor")))
        #expect(p.ingress == [
            .init(name: "deny-all-ingress-from-slytherin", action: .deny, peers: [.namespaces(Self.name("slytherin"))]),
            .init(name: "pass-ingress-from-hufflepuff", action: .pass, peers: [.namespaces(Self.name("hufflepuff"))],
                  protocols: [.port(.tcp, .number(8080)), .port(.udp, .number(5353)), .port(.sctp, .number(9003))]),
            .init(action: .accept, peers: [.namespaces(.everything)], protocols: [.port(.tcp, .number(80))]),
        ])
        #expect(p.egress == [
            .init(name: "deny-to-cedric", action: .deny, peers: [.pods(.init(
                namespaceSelector: Self.name("hufflepuff"),
                podSelector: LabelSelector(matchLabels: ["statefulset.kubernetes.io/pod-name": "cedric-diggory-0"])))]),
        ])
        let key = ClusterObject.clusterNetworkPolicy(p).key
        #expect(key == ObjectKey(.clusterNetworkPolicy, name: "ingress-tcp-gress-rules"))
        #expect(key.description == "ClusterNetworkPolicy ingress-tcp-gress-rules")
    }

    @Test func aBaselinePolicyWithNetworksRangesAndNamedPorts() throws {
        let p = try decoded(Self.baselineNetworksRangesNamedPorts)
        #expect(p.name == "default.baseline")
        #expect(p.tier == .baseline)
        #expect(p.priority == 0)
        #expect(p.subject == .pods(.init(namespaceSelector: .everything, podSelector: LabelSelector(matchExpressions: [
            .init(key: "house", operator: .in, values: ["gryffindor", "ravenclaw"])]))))
        #expect(p.egress == [
            // A CIDR with host bits set means its network (isCIDR takes it).
            .init(name: "allow-to-the-ministry", action: .accept, peers: [.networks([IPPrefix("10.244.0.0/16")!, IPPrefix("fd00:10:244::/48")!])],
                  protocols: [.port(.tcp, .range(8080...9090)), .port(.udp, .number(53))]),
            .init(action: .accept, peers: [.pods(.init(namespaceSelector: Self.name("ravenclaw"), podSelector: .everything))],
                  protocols: [.namedPort("web"), .port(.sctp, .range(9003...9005))]),
            .init(action: .deny, peers: [.networks([IPPrefix("0.0.0.0/0")!]), .networks([IPPrefix("::/0")!])]),
        ])
        #expect(p.ingress == [.init(action: .deny, peers: [.pods(.init(podSelector: LabelSelector(matchLabels: ["app": "dementor"])))])])
    }

    /// The experimental peers, `networks` in an ingress rule and a field of a newer API are kept
    /// as unsupported (the policy compiler fails them closed), not refused: refusing would drop
    /// the whole policy, which for a Deny policy fails open.
    @Test func peersNodenetDoesNotImplementAreUnsupportedNotRefused() throws {
        let p = try decoded("""
        apiVersion: policy.networking.k8s.io/v1alpha2
        kind: ClusterNetworkPolicy
        metadata: {name: experimental}
        spec:
          tier: Admin
          priority: 3
          subject: {namespaces: {}}
          ingress:
            - {action: Deny, from: [{networks: [10.0.0.0/8]}, {serviceAccounts: {name: x}}]}
          egress:
            - {action: Deny, to: [{nodes: {matchLabels: {kubernetes.io/os: linux}}}]}
            - {action: Accept, to: [{domainNames: ["*.kubernetes.io"]}], protocols: [{tcp: {destinationPort: {number: 443}}}]}
        """)
        #expect(p.ingress[0].peers == [.unsupported(field: "networks"), .unsupported(field: "serviceAccounts")])
        #expect(p.egress.map(\.peers) == [[.unsupported(field: "nodes")], [.unsupported(field: "domainNames")]])
        // A field written as null is absent (YAML `pods: ~` beside the real one).
        let nulls = try decoded(Self.head + "spec: {\(Self.subject), egress: [{action: Deny, to: [{pods: ~, networks: [10.0.0.0/8], nodes: null}]}]}")
        #expect(nulls.egress[0].peers == [.networks([IPPrefix("10.0.0.0/8")!])])
        // Round trip keeps them unsupported (their content is not kept).
        let json = try ObjectCoding.encode(.clusterNetworkPolicy(p))
        #expect(try ObjectCoding.decode(kind: .clusterNetworkPolicy, json) == .clusterNetworkPolicy(p))
    }

    static let head = "apiVersion: policy.networking.k8s.io/v1alpha2\nkind: ClusterNetworkPolicy\nmetadata: {name: cnp}\n"
    static let subject = "tier: Admin, priority: 10, subject: {namespaces: {}}"

    /// Each refusal names the document, the policy, the field and the reason.
    @Test(arguments: [
        ("", "spec: Required value"),
        ("spec: {priority: 10, subject: {namespaces: {}}}", "spec.tier: Required value"),
        ("spec: {tier: Namespace, priority: 10, subject: {namespaces: {}}}", "spec.tier: Unsupported value: \"Namespace\": supported values: \"Admin\", \"Baseline\""),
        ("spec: {tier: Admin, subject: {namespaces: {}}}", "spec.priority: Required value"),
        ("spec: {tier: Admin, priority: 1001, subject: {namespaces: {}}}", "spec.priority: 1001: must be between 0 and 1000, inclusive"),
        ("spec: {tier: Baseline, priority: -1, subject: {namespaces: {}}}", "spec.priority: -1: must be between 0 and 1000, inclusive"),
        ("spec: {tier: Admin, priority: 10}", "spec.subject: Required value"),
        ("spec: {tier: Admin, priority: 10, subject: {}}", "spec.subject: must set exactly one of namespaces or pods"),
        ("spec: {tier: Admin, priority: 10, subject: {namespaces: {}, pods: {podSelector: {}}}}",
         "spec.subject: must set exactly one field (namespaces or pods), found 2: namespaces, pods"),
        ("spec: {tier: Admin, priority: 10, subject: {pods: {namespaceSelector: {}}}}", "spec.subject.pods.podSelector: Required value"),
        ("spec: {tier: Admin, priority: 10, subject: {nodes: {}}}", "spec.subject: nodes is not a subject nodenet knows"),
        ("spec: {tier: Admin, priority: 10, subject: {namespaces: {matchLabels: {\"-house\": a}}}}",
         "spec.subject.namespaces.matchLabels: key \"-house\" is not a valid label key"),
        ("spec: {\(subject), ingress: [{action: Allow, from: [{namespaces: {}}]}]}",
         "spec.ingress[0].action: Unsupported value: \"Allow\": supported values: \"Accept\", \"Deny\", \"Pass\""),
        ("spec: {\(subject), egress: [{to: [{namespaces: {}}]}]}", "spec.egress[0].action: Required value"),
        ("spec: {\(subject), ingress: [{action: Deny}]}", "spec.ingress[0].from: Required value"),
        ("spec: {\(subject), egress: [{action: Deny, to: []}]}", "spec.egress[0].to: must have at least 1 item"),
        ("spec: {\(subject), ingress: [{action: Deny, from: [{namespaces: {}}, {}]}]}",
         "spec.ingress[0].from[1]: must set exactly one of namespaces or pods"),
        ("spec: {\(subject), egress: [{action: Deny, to: [{}]}]}", "spec.egress[0].to[0]: must set exactly one of namespaces, pods or networks"),
        ("spec: {\(subject), egress: [{action: Deny, to: [{namespaces: {}, networks: [10.0.0.0/8]}]}]}",
         "spec.egress[0].to[0]: must set exactly one field (namespaces, pods or networks), found 2: namespaces, networks"),
        ("spec: {\(subject), egress: [{action: Deny, to: [{pods: {namespaceSelector: {}}}]}]}", "spec.egress[0].to[0].pods.podSelector: Required value"),
        ("spec: {\(subject), egress: [{action: Deny, to: [{networks: {cidr: 10.0.0.0/8}}]}]}", "spec.egress[0].to[0].networks: expected "),
        ("spec: {\(subject), ingress: [{action: Deny, from: [{pods: {podSelector: {}}, serviceAccounts: {name: x}}]}]}",
         "spec.ingress[0].from[0]: must set exactly one field (namespaces or pods), found 2: pods, serviceAccounts"),
        ("spec: {\(subject), egress: [{action: Deny, to: [{networks: []}]}]}", "spec.egress[0].to[0].networks: must have at least 1 item"),
        ("spec: {\(subject), egress: [{action: Deny, to: [{networks: [10.0.0.0/33]}]}]}",
         "spec.egress[0].to[0].networks[0]: \"10.0.0.0/33\": Invalid CIDR format provided"),
        ("spec: {\(subject), egress: [{action: Deny, to: [{networks: [10.0.0.0/8, 10.1.2.3]}]}]}",
         "spec.egress[0].to[0].networks[1]: \"10.1.2.3\": Invalid CIDR format provided"),
        ("spec: {\(subject), egress: [{action: Deny, to: [{networks: [10.0.0.0/8, 10.0.0.1/8]}]}]}",
         "spec.egress[0].to[0].networks[1]: Duplicate value: \"10.0.0.1/8\""),
        ("spec: {\(subject), egress: [{action: Deny, to: [{networks: [10.0.0.0/8]}], protocols: [{destinationNamedPort: web}]}]}",
         "spec.egress[0]: a networks peer cannot be set with destinationNamedPort"),
        ("spec: {\(subject), egress: [{action: Deny, to: [{namespaces: {}}, {nodes: {}}], protocols: [{tcp: {destinationPort: {number: 80}}}, {destinationNamedPort: web}]}]}",
         "spec.egress[0]: a nodes peer cannot be set with destinationNamedPort"),
        ("spec: {\(subject), ingress: [{action: Deny, from: [{namespaces: {}}], protocols: []}]}", "spec.ingress[0].protocols: must have at least 1 item"),
        ("spec: {\(subject), ingress: [{action: Deny, from: [{namespaces: {}}], protocols: [{}]}]}",
         "spec.ingress[0].protocols[0]: must set exactly one of tcp, udp, sctp or destinationNamedPort"),
        ("spec: {\(subject), ingress: [{action: Deny, from: [{namespaces: {}}], protocols: [{tcp: {destinationPort: {number: 80}}, udp: {destinationPort: {number: 80}}}]}]}",
         "spec.ingress[0].protocols[0]: must set exactly one field (tcp, udp, sctp or destinationNamedPort), found 2: tcp, udp"),
        ("spec: {\(subject), ingress: [{action: Deny, from: [{namespaces: {}}], protocols: [{icmp: {}}]}]}",
         "spec.ingress[0].protocols[0]: icmp is not a protocol nodenet knows"),
        ("spec: {\(subject), ingress: [{action: Deny, from: [{namespaces: {}}], protocols: [{tcp: {}}]}]}",
         "spec.ingress[0].protocols[0].tcp.destinationPort: Required value"),
        ("spec: {\(subject), ingress: [{action: Deny, from: [{namespaces: {}}], protocols: [{udp: {destinationPort: {}}}]}]}",
         "spec.ingress[0].protocols[0].udp.destinationPort: must set exactly one of number or range"),
        ("spec: {\(subject), ingress: [{action: Deny, from: [{namespaces: {}}], protocols: [{udp: {destinationPort: {number: 53, range: {start: 1, end: 2}}}}]}]}",
         "spec.ingress[0].protocols[0].udp.destinationPort: must set exactly one field (number or range), found 2: number, range"),
        ("spec: {\(subject), ingress: [{action: Deny, from: [{namespaces: {}}], protocols: [{tcp: {destinationPort: {number: 0}}}]}]}",
         "spec.ingress[0].protocols[0].tcp.destinationPort.number: 0: must be between 1 and 65535, inclusive"),
        ("spec: {\(subject), ingress: [{action: Deny, from: [{namespaces: {}}], protocols: [{sctp: {destinationPort: {number: 65536}}}]}]}",
         "spec.ingress[0].protocols[0].sctp.destinationPort.number: 65536: must be between 1 and 65535, inclusive"),
        ("spec: {\(subject), egress: [{action: Deny, to: [{namespaces: {}}], protocols: [{tcp: {destinationPort: {range: {start: 9090, end: 8080}}}}]}]}",
         "spec.egress[0].protocols[0].tcp.destinationPort.range: Start port must be less than End port (9090 >= 8080)"),
        ("spec: {\(subject), egress: [{action: Deny, to: [{namespaces: {}}], protocols: [{tcp: {destinationPort: {range: {start: 80, end: 80}}}}]}]}",
         "spec.egress[0].protocols[0].tcp.destinationPort.range: Start port must be less than End port (80 >= 80)"),
        ("spec: {\(subject), egress: [{action: Deny, to: [{namespaces: {}}], protocols: [{tcp: {destinationPort: {range: {start: 80, end: 70000}}}}]}]}",
         "spec.egress[0].protocols[0].tcp.destinationPort.range.end: 70000: must be between 1 and 65535, inclusive"),
        ("spec: {\(subject), egress: [{action: Deny, to: [{namespaces: {}}], protocols: [{tcp: {destinationPort: {range: {end: 80}}}}]}]}",
         "spec.egress[0].protocols[0].tcp.destinationPort.range.start: Required value"),
        ("spec: {\(subject), ingress: [{action: Deny, from: [{namespaces: {}}], protocols: [{destinationNamedPort: Web}]}]}",
         "spec.ingress[0].protocols[0].destinationNamedPort: \"Web\": must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)"),
        ("spec: {\(subject), ingress: [{action: Deny, from: [{namespaces: {}}], protocols: [{destinationNamedPort: http-alternate-port}]}]}",
         "spec.ingress[0].protocols[0].destinationNamedPort: \"http-alternate-port\": must be no more than 15 characters"),
        ("spec: {\(subject), ingress: [{action: Deny, from: [{namespaces: {}}], protocols: [{destinationNamedPort: \"8080\"}]}]}",
         "spec.ingress[0].protocols[0].destinationNamedPort: \"8080\": must contain at least one letter (a-z)"),
        ("spec: {\(subject), ingress: [{action: Deny, from: [{namespaces: {}}], protocols: [{destinationNamedPort: \"\"}]}]}",
         "spec.ingress[0].protocols[0].destinationNamedPort: must not be empty"),
        ("spec: {\(subject), ingress: [{name: \(String(repeating: "n", count: 101)), action: Deny, from: [{namespaces: {}}]}]}",
         "spec.ingress[0].name: Too long: may not be more than 100 characters (101)"),
        ("spec: {\(subject), ingress: {action: Deny}}", "spec.ingress: expected "),
    ])
    func refusesWithTheFieldNamed(_ input: (String, String)) {
        do {
            let objects = try ManifestDecoder.decode(Self.head + input.0)
            Issue.record("accepted: \(input.0) as \(objects)")
        } catch {
            #expect(error.description.hasPrefix("document 1 (ClusterNetworkPolicy cnp): "), "got: \(error.description)")
            #expect(error.description.contains(input.1), "got: \(error.description)")
        }
    }

    /// 25 rules, 25 peers, 25 protocols and 25 networks pass; 26 of any is refused.
    @Test func atMostTwentyFiveOfEachList() throws {
        func rule(peers: Int = 1, protocols: Int = 1, networks: Int = 1) -> String {
            let nets = (0..<networks).map { "10.\($0).0.0/16" }.joined(separator: ", ")
            let to = ["{networks: [\(nets)]}"] + Array(repeating: "{namespaces: {}}", count: peers - 1)
            let ports = (0..<protocols).map { "{tcp: {destinationPort: {number: \(1000 + $0)}}}" }.joined(separator: ", ")
            return "{action: Deny, to: [\(to.joined(separator: ", "))], protocols: [\(ports)]}"
        }
        func spec(_ rules: [String]) -> String { Self.head + "spec: {\(Self.subject), egress: [\(rules.joined(separator: ", "))]}" }
        let full = try decoded(spec(Array(repeating: rule(peers: 25, protocols: 25, networks: 25), count: 25)))
        #expect(full.egress.count == 25 && full.egress.allSatisfy { $0.peers.count == 25 && $0.protocols.count == 25 })
        if case .networks(let n) = full.egress[0].peers[0] { #expect(n.count == 25) } else { Issue.record("\(full.egress[0].peers[0])") }
        for (text, expected) in [
            (spec(Array(repeating: rule(), count: 26)), "spec.egress: Too many: 26: must have at most 25 items"),
            (spec([rule(peers: 26)]), "spec.egress[0].to: Too many: 26: must have at most 25 items"),
            (spec([rule(protocols: 26)]), "spec.egress[0].protocols: Too many: 26: must have at most 25 items"),
            (spec([rule(), rule(networks: 26)]), "spec.egress[1].to[0].networks: Too many: 26: must have at most 25 items"),
        ] {
            do {
                _ = try ManifestDecoder.decode(text)
                Issue.record("accepted: \(expected)")
            } catch {
                #expect(error.description.contains(expected), "got: \(error.description)")
            }
        }
    }

    /// The JSON path (etcd values, the Kubernetes source's wire format) refuses the same way.
    @Test func theJSONPathRefusesWithTheFieldNamed() {
        let json = #"{"apiVersion":"policy.networking.k8s.io/v1alpha2","kind":"ClusterNetworkPolicy","metadata":{"name":"cnp"},"#
            + #""spec":{"tier":"Admin","priority":5,"subject":{"namespaces":{}},"egress":[{"action":"Deny","to":[{"namespaces":{}}],"protocols":[{"tcp":{"destinationPort":{"range":{"start":90,"end":80}}}}]}]}}"#
        do {
            _ = try ManifestDecoder.decode(json: Data(json.utf8))
            Issue.record("accepted")
        } catch {
            #expect(error.object == "ClusterNetworkPolicy", "\(error)")
            #expect(error.description.contains("spec.egress[0].protocols[0].tcp.destinationPort.range: Start port must be less than End port"), "\(error)")
        }
    }

    @Test func refusedNamesAndAPIVersion() {
        for (text, expected) in [
            ("apiVersion: policy.networking.k8s.io/v1alpha2\nkind: ClusterNetworkPolicy\nmetadata: {name: Admin_1}\nspec: {\(Self.subject)}\n",
             "metadata.name: \"Admin_1\" is not a valid ClusterNetworkPolicy name"),
            ("apiVersion: policy.networking.k8s.io/v1alpha1\nkind: ClusterNetworkPolicy\nmetadata: {name: cnp}\nspec: {\(Self.subject)}\n",
             "ClusterNetworkPolicy must have apiVersion policy.networking.k8s.io/v1alpha2, not policy.networking.k8s.io/v1alpha1"),
            ("apiVersion: policy.networking.k8s.io/v1alpha1\nkind: AdminNetworkPolicy\nmetadata: {name: cnp}\n",
             "unsupported kind \"AdminNetworkPolicy\" (nodenet accepts Namespace, Node, Service, EndpointSlice, Pod, NetworkPolicy, ClusterNetworkPolicy)"),
        ] {
            do {
                _ = try ManifestDecoder.decode(text)
                Issue.record("accepted: \(expected)")
            } catch {
                #expect(error.description.contains(expected), "got: \(error.description)")
            }
        }
    }

    /// Cluster-scoped: a namespace in the manifest is dropped (as for a Node), not an error.
    @Test func aNamespaceInTheManifestIsIgnored() throws {
        let p = try decoded("apiVersion: policy.networking.k8s.io/v1alpha2\nkind: ClusterNetworkPolicy\nmetadata: {name: cnp, namespace: gryffindor}\nspec: {\(Self.subject)}\n")
        #expect(p.metadata.namespace == nil)
        #expect(ClusterObject.clusterNetworkPolicy(p).key == ObjectKey(.clusterNetworkPolicy, name: "cnp"))
    }

    /// One bad policy among good objects: the whole manifest is refused, nothing returned.
    @Test func oneBadPolicyFailsTheWholeManifest() {
        let text = "apiVersion: v1\nkind: Namespace\nmetadata: {name: gryffindor}\n---\n" + Self.adminDenyWithPass
            + "\n---\n" + Self.head + "spec: {\(Self.subject), ingress: [{action: Deny, from: [{namespaces: {}}], protocols: [{tcp: {destinationPort: {number: 0}}}]}]}\n"
        do {
            let objects = try ManifestDecoder.decode(text)
            Issue.record("accepted \(objects.count) objects")
        } catch {
            #expect(error.document == 3)
            #expect(error.field == "spec.ingress[0].protocols[0].tcp.destinationPort.number")
        }
    }

    @Test(arguments: [adminDenyWithPass, baselineNetworksRangesNamedPorts])
    func encodesBackToTheAPIShapeAndDecodesEqual(_ text: String) throws {
        let object = try #require(try ManifestDecoder.decode(text).first)
        let json = try ObjectCoding.encode(object)
        #expect(try ObjectCoding.decode(kind: .clusterNetworkPolicy, json) == object)
        #expect(try ManifestDecoder.decode(json: json) == object)
        #expect(try ManifestDecoder.decode(String(decoding: json, as: UTF8.self)) == [object])
        let tree = try #require(try JSONSerialization.jsonObject(with: json) as? [String: Any])
        #expect(tree["apiVersion"] as? String == "policy.networking.k8s.io/v1alpha2")
        #expect(tree["kind"] as? String == "ClusterNetworkPolicy")
        let spec = try #require(tree["spec"] as? [String: Any])
        #expect(spec["tier"] is String && spec["priority"] is Int && spec["subject"] is [String: Any])
    }

    @Test func theEncodedShapeIsTheAPIs() throws {
        let p = ClusterNetworkPolicy(
            metadata: ObjectMeta(name: "shape"), tier: .baseline, priority: 7,
            subject: .pods(.init(namespaceSelector: .everything, podSelector: LabelSelector(matchLabels: ["app": "web"]))),
            ingress: [.init(action: .accept, peers: [.namespaces(.everything)], protocols: [.port(.udp, .range(5353...5354))])],
            egress: [.init(name: "dns", action: .pass, peers: [.networks([IPPrefix("10.96.0.10/32")!])], protocols: [.port(.tcp, .number(53))])])
        let json = String(decoding: try ObjectCoding.encode(.clusterNetworkPolicy(p)), as: UTF8.self)
        #expect(json.contains(#""spec":{"egress":[{"action":"Pass","name":"dns","protocols":[{"tcp":{"destinationPort":{"number":53}}}],"to":[{"networks":["10.96.0.10\/32"]}]}],"ingress":[{"action":"Accept","from":[{"namespaces":{}}],"protocols":[{"udp":{"destinationPort":{"range":{"end":5354,"start":5353}}}}]}],"priority":7,"subject":{"pods":{"namespaceSelector":{},"podSelector":{"matchLabels":{"app":"web"}}}},"tier":"Baseline"}"#), "\(json)")
        #expect(try ObjectCoding.decode(kind: .clusterNetworkPolicy, Data(json.utf8)) == .clusterNetworkPolicy(p))
        // "Every port of the protocol", which only code builds, encodes as the whole range.
        var all = p
        all.ingress[0].protocols = [.port(.sctp, nil)]
        guard case .clusterNetworkPolicy(let back) = try ObjectCoding.decode(kind: .clusterNetworkPolicy, try ObjectCoding.encode(.clusterNetworkPolicy(all))) else {
            Issue.record("not a ClusterNetworkPolicy"); return
        }
        #expect(back.ingress[0].protocols == [.port(.sctp, .range(1...65535))])
    }
}
