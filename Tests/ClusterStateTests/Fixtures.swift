// Real-looking Kubernetes objects as the API server returns them (kubectl get -o json),
// including fields nodenet ignores (managedFields, status.conditions, ...), so decoding is
// tested against the real shapes.

enum Fixtures {
    static let node = """
    {"apiVersion":"v1","kind":"Node","metadata":{"name":"node2","uid":"5e4b2f55-6e3b-4bd1-a4f2-9a1c3f7b8e21","resourceVersion":"184467",
     "labels":{"kubernetes.io/hostname":"node2","kubernetes.io/os":"linux"},"annotations":{"node.alpha.kubernetes.io/ttl":"0"},
     "creationTimestamp":"2026-11-20T10:00:00Z","managedFields":[{"manager":"kubelet","operation":"Update"}]},
     "spec":{"podCIDR":"10.244.2.0/24","podCIDRs":["10.244.2.0/24","fd00:10:244:2::/64"],"providerID":"kind://docker/kind/node2"},
     "status":{"addresses":[{"type":"InternalIP","address":"192.168.1.12"},{"type":"InternalIP","address":"fc00:f853:ccd:e793::3"},{"type":"Hostname","address":"node2"}],
     "conditions":[{"type":"Ready","status":"True","reason":"KubeletReady"}],"capacity":{"cpu":"2","memory":"24Gi","pods":"110"},
     "nodeInfo":{"kubeletVersion":"v1.31.0","containerRuntimeVersion":"containerd://1.7.18"}}}
    """

    static let service = """
    {"apiVersion":"v1","kind":"Service","metadata":{"name":"web-service","namespace":"apps","uid":"0b1f5e0c","resourceVersion":"2001",
     "labels":{"app":"web"},"annotations":{"kubectl.kubernetes.io/last-applied-configuration":"{}"}},
     "spec":{"type":"LoadBalancer","clusterIP":"10.107.37.188","clusterIPs":["10.107.37.188","fd00:10:96::1c4"],"ipFamilies":["IPv4","IPv6"],
     "ipFamilyPolicy":"PreferDualStack","ports":[{"name":"http","protocol":"TCP","port":80,"targetPort":"web","nodePort":31080},
     {"name":"dns","protocol":"UDP","port":53,"targetPort":5353,"nodePort":31053}],"selector":{"app":"web"},
     "sessionAffinity":"ClientIP","sessionAffinityConfig":{"clientIP":{"timeoutSeconds":600}},"externalTrafficPolicy":"Local",
     "internalTrafficPolicy":"Cluster","externalIPs":["192.0.2.50"],"loadBalancerSourceRanges":["198.51.100.0/24"],
     "healthCheckNodePort":32000,"allocateLoadBalancerNodePorts":true,"publishNotReadyAddresses":true},
     "status":{"loadBalancer":{"ingress":[{"ip":"192.0.2.100","ipMode":"VIP"}]}}}
    """

    static let headless = """
    {"apiVersion":"v1","kind":"Service","metadata":{"name":"db","namespace":"apps"},
     "spec":{"clusterIP":"None","clusterIPs":["None"],"ports":[{"name":"pg","port":5432}],"selector":{"app":"db"}}}
    """

    static let externalName = """
    {"apiVersion":"v1","kind":"Service","metadata":{"name":"ext","namespace":"apps"},
     "spec":{"type":"ExternalName","externalName":"db.example.test"}}
    """

    static let endpointSlice = """
    {"apiVersion":"discovery.k8s.io/v1","kind":"EndpointSlice","metadata":{"name":"web-service-x7k2p","namespace":"apps",
     "generateName":"web-service-","labels":{"kubernetes.io/service-name":"web-service","endpointslice.kubernetes.io/managed-by":"endpointslice-controller.k8s.io"},
     "ownerReferences":[{"apiVersion":"v1","kind":"Service","name":"web-service","uid":"0b1f5e0c"}]},
     "addressType":"IPv4",
     "endpoints":[{"addresses":["10.244.1.5"],"conditions":{"ready":true,"serving":true,"terminating":false},"hostname":"web-0",
       "nodeName":"node1","targetRef":{"kind":"Pod","namespace":"apps","name":"web-0","uid":"a1"},"zone":"z1"},
      {"addresses":["10.244.2.7"],"conditions":{"ready":false,"serving":true,"terminating":true},"nodeName":"node2",
       "targetRef":{"kind":"Pod","namespace":"apps","name":"web-1","uid":"a2"}},
      {"addresses":["10.244.3.9"],"conditions":{},"nodeName":"node3"}],
     "ports":[{"name":"http","protocol":"TCP","port":8080},{"name":"dns","protocol":"UDP","port":5353}]}
    """

    static let pod = """
    {"apiVersion":"v1","kind":"Pod","metadata":{"name":"web-0","namespace":"apps","uid":"a1","labels":{"app":"web","pod-template-hash":"5d8f"},
     "ownerReferences":[{"kind":"ReplicaSet","name":"web-5d8f"}]},
     "spec":{"nodeName":"node1","hostname":"web-0","subdomain":"web-service","containers":[{"name":"web","image":"nginx",
       "ports":[{"name":"web","containerPort":8080,"protocol":"TCP"}]}],"dnsPolicy":"ClusterFirst"},
     "status":{"phase":"Running","podIP":"10.244.1.5","podIPs":[{"ip":"10.244.1.5"},{"ip":"fd00:10:244:1::5"}],
       "conditions":[{"type":"Initialized","status":"True"},{"type":"Ready","status":"True"}],"hostIP":"192.168.1.11"}}
    """

    static let namespace = """
    {"apiVersion":"v1","kind":"Namespace","metadata":{"name":"apps","labels":{"kubernetes.io/metadata.name":"apps"}},"spec":{"finalizers":["kubernetes"]},"status":{"phase":"Active"}}
    """

    /// As the API server returns it (defaulted): named port, range, SCTP, both selectors in one
    /// peer, ipBlock with except in both families.
    static let networkPolicy = """
    {"apiVersion":"networking.k8s.io/v1","kind":"NetworkPolicy","metadata":{"name":"web-ingress","namespace":"apps","uid":"3f1c9a7e-5b2d-4e8f-a6c1-9d0e7b4a2c53","resourceVersion":"51102","generation":1},
     "spec":{"podSelector":{"matchLabels":{"app":"web"}},"policyTypes":["Ingress","Egress"],
      "ingress":[{"from":[{"namespaceSelector":{"matchLabels":{"kubernetes.io/metadata.name":"apps"}},"podSelector":{"matchExpressions":[{"key":"role","operator":"In","values":["frontend","canary"]}]}},
                          {"ipBlock":{"cidr":"192.168.1.0/24","except":["192.168.1.10/32"]}}],
                  "ports":[{"protocol":"TCP","port":"web"},{"protocol":"TCP","port":8080,"endPort":8090},{"protocol":"SCTP","port":9003}]}],
      "egress":[{"to":[{"ipBlock":{"cidr":"fd00:10:244::/48","except":["fd00:10:244:2::/64"]}}],"ports":[{"protocol":"UDP","port":53}]},{}]}}
    """

    /// As `kubectl get clusternetworkpolicy -o json` prints it: both tiers' shapes in one
    /// (pods subject, every peer kind, ports, ranges, a named port, both families).
    static let clusterNetworkPolicy = """
    {"apiVersion":"policy.networking.k8s.io/v1alpha2","kind":"ClusterNetworkPolicy","metadata":{"creationTimestamp":"2026-12-07T09:12:44Z","generation":1,"name":"pass-monitoring","resourceVersion":"61207","uid":"9b1e7c3a-2d4f-4a6b-8c0e-1f2a3b4c5d6e"},
     "spec":{"tier":"Admin","priority":20,
      "subject":{"pods":{"namespaceSelector":{"matchExpressions":[{"key":"kubernetes.io/metadata.name","operator":"NotIn","values":["kube-system"]}]},"podSelector":{}}},
      "ingress":[{"name":"pass-from-monitoring","action":"Pass","from":[{"namespaces":{"matchLabels":{"kubernetes.io/metadata.name":"monitoring"}}}],"protocols":[{"tcp":{"destinationPort":{"number":9100}}},{"destinationNamedPort":"metrics"}]},
                 {"action":"Deny","from":[{"pods":{"namespaceSelector":{},"podSelector":{"matchLabels":{"app":"scanner"}}}}]}],
      "egress":[{"name":"deny-metadata","action":"Deny","to":[{"networks":["169.254.169.254/32","fd00:ec2::254/128"]}]},
                {"action":"Accept","to":[{"namespaces":{}}],"protocols":[{"udp":{"destinationPort":{"range":{"start":30000,"end":32767}}}},{"sctp":{"destinationPort":{"number":9003}}}]}]},
     "status":{"conditions":[]}}
    """
}
