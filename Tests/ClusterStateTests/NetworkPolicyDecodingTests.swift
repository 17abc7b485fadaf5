import Foundation
import IPAddressing
import Testing
@testable import ClusterState

/// NetworkPolicy as a store kind: decoded from the API shape with the API server's defaulting,
/// refused with the field's path where the API server would refuse it, and encoded back to the
/// same shape. Namespaces always carry `kubernetes.io/metadata.name`.
@Suite struct NetworkPolicyDecodingTests {
    /// The example of the Kubernetes documentation (concepts/services-networking/network-policies),
    /// in the `apps` namespace of the seed scenario.
    static let documented = """
    apiVersion: networking.k8s.io/v1
    kind: NetworkPolicy
    metadata:
      name: test-network-policy
      namespace: apps
      uid: 7d4b1f0e-8f3a-4c7e-9a55-0d2f6b1c9e21
      resourceVersion: "48213"
      labels: {app.kubernetes.io/managed-by: helm}
    spec:
      podSelector:
        matchLabels:
          role: db
      policyTypes:
        - Ingress
        - Egress
      ingress:
        - from:
            - ipBlock:
                cidr: 172.17.0.0/16
                except:
                  - 172.17.1.0/24
            - namespaceSelector:
                matchLabels:
                  project: myproject
            - podSelector:
                matchLabels:
                  role: frontend
          ports:
            - protocol: TCP
              port: 6379
      egress:
        - to:
            - ipBlock:
                cidr: 10.0.0.0/24
          ports:
            - protocol: TCP
              port: 5978
    """

    /// Defaulting, AND vs OR peers, named ports, ranges, SCTP, IPv6 and matchExpressions, in JSON
    /// as `kubectl get -o json` prints it (no policyTypes: the API server would have defaulted
    /// them, the embedded and etcd sources must).
    static let everyShape = """
    {"apiVersion":"networking.k8s.io/v1","kind":"NetworkPolicy",
     "metadata":{"name":"allow-web.v2","namespace":"x"},
     "spec":{
       "podSelector":{"matchExpressions":[{"key":"pod","operator":"In","values":["a","b"]},
                                          {"key":"tier","operator":"DoesNotExist"}]},
       "ingress":[
         {"from":[{"namespaceSelector":{"matchLabels":{"kubernetes.io/metadata.name":"y"}},"podSelector":{"matchLabels":{"pod":"b"}}}],
          "ports":[{"port":"serve-80-tcp"},{"protocol":"UDP","port":80,"endPort":81},{"protocol":"SCTP"}]},
         {"from":[{"namespaceSelector":{"matchLabels":{"kubernetes.io/metadata.name":"y"}}},{"podSelector":{"matchLabels":{"pod":"b"}}}]},
         {}
       ],
       "egress":[
         {"to":[{"ipBlock":{"cidr":"fd00:10:244::/48","except":["fd00:10:244:2::/64"]}},{"namespaceSelector":{}}],
          "ports":[{"protocol":"UDP","port":53},{"protocol":"TCP","port":53}]}
       ]}}
    """

    func policy(_ text: String) throws -> NetworkPolicy {
        let objects = try ManifestDecoder.decode(text)
        guard objects.count == 1, case .networkPolicy(let p) = objects[0] else { throw Unexpected(objects: objects) }
        return p
    }

    struct Unexpected: Error { var objects: [ClusterObject] }

    @Test func theDocumentedExampleKeepsEveryField() throws {
        let p = try policy(Self.documented)
        #expect(p.id == NamespacedName("apps", "test-network-policy"))
        #expect(ClusterObject.networkPolicy(p).key == ObjectKey(.networkPolicy, namespace: "apps", name: "test-network-policy"))
        #expect(p.metadata.uid == "7d4b1f0e-8f3a-4c7e-9a55-0d2f6b1c9e21")
        #expect(p.podSelector == LabelSelector(matchLabels: ["role": "db"]))
        #expect(p.policyTypes == [.ingress, .egress])
        #expect(p.ingress == [NetworkPolicy.Rule(
            ports: [NetworkPolicy.Port(protocol: .tcp, port: .int(6379))],
            peers: [NetworkPolicy.Peer(ipBlock: NetworkPolicy.IPBlock(cidr: IPPrefix("172.17.0.0/16")!, except: [IPPrefix("172.17.1.0/24")!])),
                    NetworkPolicy.Peer(namespaceSelector: LabelSelector(matchLabels: ["project": "myproject"])),
                    NetworkPolicy.Peer(podSelector: LabelSelector(matchLabels: ["role": "frontend"]))])])
        #expect(p.egress == [NetworkPolicy.Rule(ports: [NetworkPolicy.Port(protocol: .tcp, port: .int(5978))],
                                                peers: [NetworkPolicy.Peer(ipBlock: NetworkPolicy.IPBlock(cidr: IPPrefix("10.0.0.0/24")!))])])
    }

    @Test func everyShapeWithTheAPIServersDefaults() throws {
        let p = try policy(Self.everyShape)
        #expect(p.name == "allow-web.v2")
        // No policyTypes and egress rules: Ingress and Egress (SetDefaults_NetworkPolicy).
        #expect(p.policyTypes == [.ingress, .egress])
        #expect(p.podSelector.matchExpressions == [.init(key: "pod", operator: .in, values: ["a", "b"]), .init(key: "tier", operator: .doesNotExist)])
        #expect(p.podSelector.matches(["pod": "a"]) && !p.podSelector.matches(["pod": "a", "tier": "x"]) && !p.podSelector.matches(["pod": "c"]))
        #expect(p.ingress.count == 3)
        // One peer with both selectors (AND) against two peers (OR).
        #expect(p.ingress[0].peers == [NetworkPolicy.Peer(podSelector: LabelSelector(matchLabels: ["pod": "b"]),
                                                          namespaceSelector: LabelSelector(matchLabels: ["kubernetes.io/metadata.name": "y"]))])
        #expect(p.ingress[1].peers.count == 2)
        #expect(p.ingress[1].peers[0].podSelector == nil && p.ingress[1].peers[1].namespaceSelector == nil)
        // A named port defaults to TCP; a range keeps endPort; a protocol alone is every port.
        #expect(p.ingress[0].ports == [NetworkPolicy.Port(protocol: .tcp, port: .string("serve-80-tcp")),
                                       NetworkPolicy.Port(protocol: .udp, port: .int(80), endPort: 81),
                                       NetworkPolicy.Port(protocol: .sctp)])
        // `{}`: every port from everywhere.
        #expect(p.ingress[2] == NetworkPolicy.Rule())
        #expect(p.egress[0].peers[0].ipBlock == NetworkPolicy.IPBlock(cidr: IPPrefix("fd00:10:244::/48")!, except: [IPPrefix("fd00:10:244:2::/64")!]))
        // `namespaceSelector: {}` is every namespace, not "absent".
        #expect(p.egress[0].peers[1].namespaceSelector == LabelSelector.everything)
        #expect(p.egress[0].peers[1].podSelector == nil)
    }

    @Test(arguments: [
        // Only ingress rules, no policyTypes: Ingress.
        ("spec: {podSelector: {matchLabels: {pod: a}}, ingress: [{}]}", [NetworkPolicy.PolicyType.ingress]),
        // Only egress rules, no policyTypes: Ingress too (a deny-all-ingress the author may not expect; upstream's rule).
        ("spec: {podSelector: {}, egress: [{}]}", [.ingress, .egress]),
        // Nothing at all: a default-deny ingress for every pod of the namespace.
        ("spec: {podSelector: {}}", [.ingress]),
        // An explicit list is kept, even an Egress-only one with ingress rules.
        ("spec: {podSelector: {}, policyTypes: [Egress], ingress: [{}]}", [.egress]),
        ("spec: {podSelector: {}, policyTypes: []}", [.ingress]),
        // No spec, no podSelector: `{}` (every pod of the namespace).
        ("", [.ingress]),
    ])
    func policyTypesDefaultAsTheAPIServerDoes(_ input: (String, [NetworkPolicy.PolicyType])) throws {
        let p = try policy("apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: p, namespace: x}\n" + input.0)
        #expect(p.policyTypes == input.1)
        #expect(p.podSelector.matchExpressions.isEmpty)
    }

    @Test func aCIDRWithHostBitsMeansItsNetworkAsTheAPIServerReadsIt() throws {
        let p = try policy("""
        apiVersion: networking.k8s.io/v1
        kind: NetworkPolicy
        metadata: {name: p, namespace: x}
        spec: {podSelector: {}, egress: [{to: [{ipBlock: {cidr: 10.244.1.7/16, except: [10.244.1.9/24]}}]}]}
        """)
        #expect(p.egress[0].peers[0].ipBlock == NetworkPolicy.IPBlock(cidr: IPPrefix("10.244.0.0/16")!, except: [IPPrefix("10.244.1.0/24")!]))
    }

    static let head = "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: web, namespace: apps}\n"

    /// Each refusal names the document, the policy, the field and the reason (upstream's words
    /// where they read well).
    @Test(arguments: [
        ("spec: {podSelector: {}, ingress: [{ports: [{protocol: ICMP, port: 80}]}]}",
         "spec.ingress[0].ports[0].protocol: unsupported protocol \"ICMP\" (want TCP, UDP or SCTP)"),
        ("spec: {podSelector: {}, ingress: [{ports: [{port: 0}]}]}", "spec.ingress[0].ports[0].port: 0: must be between 1 and 65535, inclusive"),
        ("spec: {podSelector: {}, egress: [{ports: [{port: 65536}]}]}", "spec.egress[0].ports[0].port: 65536: must be between 1 and 65535"),
        ("spec: {podSelector: {}, ingress: [{}, {ports: [{port: \"80\"}]}]}", "spec.ingress[1].ports[0].port: \"80\": must contain at least one letter (a-z)"),
        ("spec: {podSelector: {}, ingress: [{ports: [{port: http-alternate-port}]}]}", "spec.ingress[0].ports[0].port: \"http-alternate-port\": must be no more than 15 characters"),
        ("spec: {podSelector: {}, ingress: [{ports: [{port: Http}]}]}", "must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)"),
        ("spec: {podSelector: {}, ingress: [{ports: [{port: web--1}]}]}", "must not contain consecutive hyphens"),
        ("spec: {podSelector: {}, ingress: [{ports: [{port: -web}]}]}", "must not begin or end with a hyphen"),
        ("spec: {podSelector: {}, ingress: [{ports: [{endPort: 90}]}]}",
         "spec.ingress[0].ports[0].endPort: EndPort field cannot be defined if the Port field is not defined"),
        ("spec: {podSelector: {}, ingress: [{ports: [{port: 90, endPort: 80}]}]}",
         "spec.ingress[0].ports[0].endPort: 80: must be greater than or equal to `port` (90)"),
        ("spec: {podSelector: {}, ingress: [{ports: [{port: 90, endPort: 65536}]}]}", "spec.ingress[0].ports[0].endPort: 65536: must be between 1 and 65535"),
        ("spec: {podSelector: {}, ingress: [{ports: [{port: web, endPort: 90}]}]}",
         "spec.ingress[0].ports[0].endPort: may not be specified when `port` is non-numeric"),
        ("spec: {podSelector: {}, ingress: [{from: [{ipBlock: {cidr: 10.0.0.0/8}, podSelector: {}}]}]}",
         "spec.ingress[0].from[0]: may not specify both ipBlock and another peer"),
        ("spec: {podSelector: {}, egress: [{to: [{namespaceSelector: {}}, {}]}]}", "spec.egress[0].to[1]: must specify a peer"),
        ("spec: {podSelector: {}, egress: [{to: [{ipBlock: {except: [10.0.0.0/8]}}]}]}", "spec.egress[0].to[0].ipBlock.cidr: Required value"),
        ("spec: {podSelector: {}, egress: [{to: [{ipBlock: {cidr: 10.0.0.0/33}}]}]}", "spec.egress[0].to[0].ipBlock.cidr: \"10.0.0.0/33\": must be a valid CIDR"),
        ("spec: {podSelector: {}, egress: [{to: [{ipBlock: {cidr: 10.0.0.0/8, except: [10.0.0.0/8]}}]}]}",
         "spec.egress[0].to[0].ipBlock.except[0]: \"10.0.0.0/8\": must be a strict subset of `cidr` (10.0.0.0/8)"),
        ("spec: {podSelector: {}, egress: [{to: [{ipBlock: {cidr: 10.0.0.0/8, except: [10.1.0.0/16, 192.168.0.0/24]}}]}]}",
         "spec.egress[0].to[0].ipBlock.except[1]: \"192.168.0.0/24\": must be a strict subset of `cidr`"),
        ("spec: {podSelector: {}, egress: [{to: [{ipBlock: {cidr: 10.0.0.0/8, except: [\"fd00::/64\"]}}]}]}",
         "spec.egress[0].to[0].ipBlock.except[0]: \"fd00::/64\": must be a strict subset of `cidr` (10.0.0.0/8): not the same IP family"),
        ("spec: {podSelector: {}, egress: [{to: [{ipBlock: {cidr: 10.0.0.0/8, except: [10.1.0.0]}}]}]}", "spec.egress[0].to[0].ipBlock.except[0]: \"10.1.0.0\": must be a valid CIDR"),
        ("spec: {podSelector: {}, policyTypes: [Ingress, Both]}", "spec.policyTypes[1]: Unsupported value: \"Both\": supported values: \"Ingress\", \"Egress\""),
        ("spec: {podSelector: {}, policyTypes: [Egress, Egress]}", "spec.policyTypes[1]: Duplicate value: \"Egress\""),
        ("spec: {podSelector: {matchExpressions: [{key: pod, operator: In}]}}",
         "spec.podSelector.matchExpressions[0].values: must be specified when `operator` is 'In' or 'NotIn'"),
        ("spec: {podSelector: {matchExpressions: [{key: pod, operator: NotIn, values: []}]}}",
         "spec.podSelector.matchExpressions[0].values: must be specified when `operator` is 'In' or 'NotIn'"),
        ("spec: {podSelector: {matchExpressions: [{key: pod, operator: Exists, values: [a]}]}}",
         "spec.podSelector.matchExpressions[0].values: may not be specified when `operator` is 'Exists' or 'DoesNotExist'"),
        ("spec: {podSelector: {}, ingress: [{from: [{podSelector: {matchExpressions: [{key: pod, operator: Equals, values: [a]}]}}]}]}",
         "spec.ingress[0].from[0].podSelector.matchExpressions[0].operator: Unsupported value: \"Equals\""),
        ("spec: {podSelector: {matchExpressions: [{key: \"bad key\", operator: Exists}]}}", "spec.podSelector.matchExpressions[0].key: \"bad key\" is not a valid label key"),
        ("spec: {podSelector: {matchExpressions: [{key: pod, operator: In, values: [\"a b\"]}]}}",
         "spec.podSelector.matchExpressions[0].values[0]: \"a b\" is not a valid label value"),
        ("spec: {podSelector: {}, ingress: [{from: [{namespaceSelector: {matchLabels: {\"-team\": a}}}]}]}",
         "spec.ingress[0].from[0].namespaceSelector.matchLabels: key \"-team\" is not a valid label key"),
        ("spec: {podSelector: {matchLabels: {team: \"a/b\"}}}", "spec.podSelector.matchLabels: value of \"team\", \"a/b\", is not a valid label value"),
        ("spec: {podSelector: {}, ingress: {from: []}}", "spec.ingress: expected "),
    ])
    func refusesWithTheFieldNamed(_ input: (String, String)) {
        do {
            let objects = try ManifestDecoder.decode(Self.head + input.0)
            Issue.record("accepted: \(input.0) as \(objects)")
        } catch {
            #expect(error.description.hasPrefix("document 1 (NetworkPolicy apps/web): "), "got: \(error.description)")
            #expect(error.description.contains(input.1), "got: \(error.description)")
        }
    }

    /// The JSON path (etcd values, the Kubernetes source's wire format) refuses the same way.
    @Test func theJSONPathRefusesWithTheFieldNamed() {
        let json = #"{"apiVersion":"networking.k8s.io/v1","kind":"NetworkPolicy","metadata":{"name":"web","namespace":"apps"},"#
            + #""spec":{"podSelector":{},"egress":[{"to":[{"ipBlock":{"cidr":"10.0.0.0/8","except":["10.0.0.0/8"]}}]}]}}"#
        do {
            _ = try ManifestDecoder.decode(json: Data(json.utf8))
            Issue.record("accepted")
        } catch {
            #expect(error.object == "NetworkPolicy", "\(error)")
            #expect(error.description.contains("spec.egress[0].to[0].ipBlock.except[0]: \"10.0.0.0/8\": must be a strict subset"), "\(error)")
        }
    }

    @Test func refusedNamesAndAPIVersion() {
        for (text, expected) in [
            ("apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: Web_1, namespace: apps}\n",
             "metadata.name: \"Web_1\" is not a valid NetworkPolicy name"),
            ("apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: web, namespace: Apps}\n", "metadata.namespace: \"Apps\" is not a valid namespace name"),
            ("apiVersion: extensions/v1beta1\nkind: NetworkPolicy\nmetadata: {name: web}\n", "NetworkPolicy must have apiVersion networking.k8s.io/v1, not extensions/v1beta1"),
        ] {
            #expect(throws: ManifestError.self) { try ManifestDecoder.decode(text) }
            do { _ = try ManifestDecoder.decode(text) } catch { #expect(error.description.contains(expected), "got: \(error.description)") }
        }
    }

    /// One bad policy among good objects: the whole manifest is refused, nothing returned.
    @Test func oneBadPolicyFailsTheWholeManifest() {
        let text = "apiVersion: v1\nkind: Namespace\nmetadata: {name: apps}\n---\n" + Self.documented
            + "\n---\n" + Self.head + "spec: {podSelector: {}, ingress: [{ports: [{port: 90, endPort: 80}]}]}\n"
        do {
            let objects = try ManifestDecoder.decode(text)
            Issue.record("accepted \(objects.count) objects")
        } catch {
            #expect(error.document == 3)
            #expect(error.field == "spec.ingress[0].ports[0].endPort")
        }
    }

    @Test(arguments: [documented, everyShape])
    func encodesBackToTheAPIShapeAndDecodesEqual(_ text: String) throws {
        let object = try #require(try ManifestDecoder.decode(text).first)
        let json = try ObjectCoding.encode(object)
        #expect(try ObjectCoding.decode(kind: .networkPolicy, json) == object)
        #expect(try ManifestDecoder.decode(json: json) == object)
        let tree = try #require(try JSONSerialization.jsonObject(with: json) as? [String: Any])
        #expect(tree["apiVersion"] as? String == "networking.k8s.io/v1")
        #expect(tree["kind"] as? String == "NetworkPolicy")
        let spec = try #require(tree["spec"] as? [String: Any])
        // Written defaulted, as the API server returns it.
        #expect(spec["policyTypes"] as? [String] == ["Ingress", "Egress"])
        #expect(spec["podSelector"] != nil)
        let ingress = try #require(spec["ingress"] as? [[String: Any]])
        let ports = try #require(ingress[0]["ports"] as? [[String: Any]])
        #expect(ports.allSatisfy { $0["protocol"] is String })
    }

    @Test func aDefaultDenyEncodesAsDefaultDeny() throws {
        let p = NetworkPolicy(metadata: ObjectMeta(name: "default-deny", namespace: "x"), policyTypes: [.ingress, .egress])
        let json = String(decoding: try ObjectCoding.encode(.networkPolicy(p)), as: UTF8.self)
        #expect(json.contains(#""spec":{"podSelector":{},"policyTypes":["Ingress","Egress"]}"#), "\(json)")
        #expect(try ObjectCoding.decode(kind: .networkPolicy, Data(json.utf8)) == .networkPolicy(p))
    }

    // MARK: namespace labels

    @Test func namespacesAlwaysCarryTheirNameLabel() throws {
        let objects = try ManifestDecoder.decode("""
        apiVersion: v1
        kind: Namespace
        metadata: {name: apps}
        ---
        apiVersion: v1
        kind: Namespace
        metadata: {name: x, labels: {team: blue, kubernetes.io/metadata.name: y}}
        """)
        guard case .namespace(let apps) = objects[0], case .namespace(let x) = objects[1] else { Issue.record("\(objects)"); return }
        #expect(apps.labels == ["kubernetes.io/metadata.name": "apps"])
        // The API server overwrites a wrong value with the name; other labels stay.
        #expect(x.labels == ["kubernetes.io/metadata.name": "x", "team": "blue"])
        // From Kubernetes/etcd JSON too, and when built in code.
        let json = Data(#"{"apiVersion":"v1","kind":"Namespace","metadata":{"name":"z","labels":{"team":"red"}}}"#.utf8)
        guard case .namespace(let z) = try ManifestDecoder.decode(json: json) else { Issue.record("not a namespace"); return }
        #expect(z.labels == ["kubernetes.io/metadata.name": "z", "team": "red"])
        #expect(Namespace(metadata: ObjectMeta(name: "w")).labels == ["kubernetes.io/metadata.name": "w"])
    }
}

