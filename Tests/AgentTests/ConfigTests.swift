import ClusterState
import IPAddressing
import NodenetTestSupport
import Testing
@testable import Agent

@Suite struct ConfigTests {
    @Test func defaultsFollowTheDesign() throws {
        let c = try ConfigLoader.parse(yaml: "", defaultNodeName: "Node1")
        #expect(c.nodeName == "node1")
        #expect(c.source == .embedded)
        #expect(c.stateDir == "/var/lib/nodenet")
        #expect(c.runDir == "/run/nodenet")
        #expect(c.socketPath == "/run/nodenet/nodenet.sock")
        #expect(c.clusterCIDRs == [IPPrefix("10.244.0.0/16")!])
        #expect(c.serviceCIDRs == [IPPrefix("10.96.0.0/12")!])
        #expect(c.nodeCIDRMaskSize == 24)
        #expect(c.nodeCIDRMaskSizeIPv4 == 24 && c.nodeCIDRMaskSizeIPv6 == 64)
        #expect(c.clusterDomain == "cluster.local")
        #expect(c.routing == .hostGW)
        #expect(c.dns.listen.map(\.description) == ["169.254.20.10", "10.96.0.10"])
        #expect(c.dns.upstreams == ["/etc/resolv.conf"])
        #expect(c.dns.pods == .insecure)
        #expect(c.nodePortRange == 30000...32767)
        #expect(c.etcd.endpoints == ["http://127.0.0.1:2379"])
        #expect(c.etcd.prefix == "/nodenet")
        #expect(c.metrics.listen == "127.0.0.1:9154")
    }

    /// Issue 22: the README's dual-stack example is a valid configuration with both ranges of
    /// each kind (the end-to-end tests run an agent on it: PodMTUEndToEndTests, vxlan over IPv4).
    @Test func theReadmeDualStackExampleParses() throws {
        let c = try ConfigLoader.parse(yaml: try TestCluster.readmeExample("dual-stack config"), defaultNodeName: "n")
        #expect(c.nodeName == "node1" && c.nodeIP == IPAddress("192.168.1.11"))
        #expect(c.clusterCIDRs == [IPPrefix("10.244.0.0/16")!, IPPrefix("fd00:10:244::/56")!])
        #expect(c.serviceCIDRs == [IPPrefix("10.96.0.0/12")!, IPPrefix("fd00:10:96::/112")!])
        #expect(c.podCIDRs.isEmpty && c.routing == .vxlan)
        #expect(c.dns.listen.map(\.description) == ["169.254.20.10", "10.96.0.10"] && c.dns.listenIPv6 == IPAddress("fd5f:8dcc:e9bf::a"))
        let both = [IPPrefix("10.244.1.0/24")!, IPPrefix("fd00:10:244:1::/64")!]
        #expect(c.dns.listenAddresses(podCIDRs: both).map(\.description) == ["169.254.20.10", "10.96.0.10", "fd5f:8dcc:e9bf::a"])
    }

    @Test func theShippedExampleConfigParses() throws {
        let text = try String(contentsOfFile: "etc/nodenet/config.yaml", encoding: .utf8)
        let c = try ConfigLoader.parse(yaml: text, defaultNodeName: "n")
        #expect(c.source == .embedded)
    }

    @Test func fullFile() throws {
        let yaml = """
        nodeName: node2
        source: etcd
        stateDir: /tmp/s
        runDir: /tmp/r
        clusterCIDR: [10.244.0.0/16, fd00:10:244::/56]
        nodeCIDRMaskSize: 25
        podCIDRs: [10.244.2.0/25]
        serviceCIDR: 10.96.0.0/16
        clusterDomain: Example.Local.
        nodeIP: 192.168.1.12
        routing: vxlan
        dns: { listen: [169.254.20.10], upstreams: [127.0.0.53:5353], pods: verified, ttl: 30, port: 5353 }
        nodePortRange: 31000-31999
        etcd: { endpoints: [http://192.168.1.1:2379], prefix: /k }
        kubernetes: { kubeconfig: /etc/k }
        metrics: { listen: "127.0.0.1:9999" }
        """
        let c = try ConfigLoader.parse(yaml: yaml, defaultNodeName: "x")
        #expect(c.nodeName == "node2")
        #expect(c.source == .etcd)
        #expect(c.clusterCIDRs.count == 2)
        #expect(c.podCIDRs == [IPPrefix("10.244.2.0/25")!])
        #expect(c.clusterDomain == "example.local")
        #expect(c.nodeIP == IPAddress("192.168.1.12"))
        #expect(c.routing == .vxlan)
        #expect(c.dns.pods == .verified)
        #expect(c.dns.ttl == 30)
        #expect(c.dns.port == 5353)
        #expect(c.dns.upstreams == ["127.0.0.53:5353"])
        #expect(c.nodePortRange == 31000...31999)
        #expect(c.etcd.prefix == "/k")
        #expect(c.kubernetes.kubeconfig == "/etc/k")
        #expect(c.metrics.listen == "127.0.0.1:9999")
    }

    @Test func flagsOverrideTheFile() throws {
        let c = try ConfigLoader.parse(yaml: "routing: vxlan\ndns: {pods: disabled}", overrides: [
            "routing": "auto", "podCIDRs": "10.244.3.0/24, fd00:10:244:3::/64", "clusterCIDR": "10.244.0.0/16,fd00:10:244::/48",
            "dns.listen": "10.96.0.10",
        ], defaultNodeName: "n")
        #expect(c.routing == .auto)
        #expect(c.podCIDRs.count == 2)
        #expect(c.dns.pods == .disabled)
        #expect(c.dns.listen == [IPAddress("10.96.0.10")!])
    }

    @Test(arguments: [
        ("bogus: 1", "config key bogus: unknown key"),
        ("dns: {listne: [1.2.3.4]}", "config key dns.listne: unknown key"),
        ("source: consul", "config key source: \"consul\" is not one of embedded, etcd, kubernetes"),
        ("clusterCIDR: 10.244.0.1/16", "has host bits set (did you mean 10.244.0.0/16?)"),
        ("podCIDRs: [10.250.1.0/24]", "config key podCIDRs: 10.250.1.0/24 is not inside clusterCIDR"),
        ("nodeIP: 300.1.1.1", "config key nodeIP: \"300.1.1.1\" is not an IP address"),
        ("nodePortRange: 40000-30000", "config key nodePortRange"),
        ("stateDir: relative/path", "must be an absolute path"),
        ("nodeName: Bad_Name", "config key nodeName"),
        ("routing: [a, b]", "config key routing: takes a single value, not a list"),
        ("dns: 5", "config key dns: must be a mapping"),
        ("metrics: {listen: nowhere}", "config key metrics.listen"),
        ("etcd: {endpoints: [127.0.0.1:2379]}", "must start with http:// or https://"),
        ("- a\n- b", "the top level must be a mapping"),
        ("a: [", "not valid YAML"),
        ("nodeCIDRMaskSize: 8", "config key nodeCIDRMaskSize"),
        ("clusterCIDR: [10.244.0.0/16, fd00:10:244::/56]\nnodeCIDRMaskSizeIPv6: 48",
         "config key nodeCIDRMaskSizeIPv6: 48 must be between clusterCIDR fd00:10:244::/56's /56 and /120"),
        ("clusterCIDR: [10.244.0.0/16, fd00:10:244::/56]\nnodeCIDRMaskSizeIPv6: 124", "config key nodeCIDRMaskSizeIPv6: 124 must be between"),
        ("nodeCIDRMaskSizeIPv4: 31", "config key nodeCIDRMaskSizeIPv4: 31 must be between clusterCIDR 10.244.0.0/16's /16 and /30"),
        ("nodeCIDRMaskSizeIPv6: abc", "config key nodeCIDRMaskSizeIPv6: \"abc\" is not a number"),
        ("nodeCIDRMaskSize: 25\nnodeCIDRMaskSizeIPv4: 26", "config key nodeCIDRMaskSizeIPv4: 26 disagrees with nodeCIDRMaskSize 25"),
        ("clusterCIDR: fd00:10:244::/56\nnodeCIDRMaskSize: 40", "config key nodeCIDRMaskSize: 40 must be between clusterCIDR fd00:10:244::/56's /56"),
        ("dns: {lameDuck: soon}", "config key dns.lameDuck: \"soon\" is not a duration"),
        ("dns: {lameDuck: 61s}", "config key dns.lameDuck"),
        ("dns: {lameDuck: -1}", "config key dns.lameDuck"),
    ])
    func errorsNameTheKey(_ input: (String, String)) {
        do {
            _ = try ConfigLoader.parse(yaml: input.0, defaultNodeName: "n")
            Issue.record("accepted \(input.0)")
        } catch {
            #expect(error.description.contains(input.1), "got: \(error.description)")
        }
    }

    @Test func dnsLameDuckTakesSecondsOrMilliseconds() throws {
        #expect(try ConfigLoader.parse(yaml: "", defaultNodeName: "n").dns.lameDuckMilliseconds == 5000)
        for (text, ms) in [("0", Int64(0)), ("2s", 2000), ("0.5", 500), ("250ms", 250), ("60s", 60_000)] {
            #expect(try ConfigLoader.parse(yaml: "dns: {lameDuck: \(text)}", defaultNodeName: "n").dns.lameDuckMilliseconds == ms, "\(text)")
        }
        #expect(try ConfigLoader.parse(yaml: "", overrides: ["dns.lameDuck": "1s"], defaultNodeName: "n").dns.lameDuckMilliseconds == 1000)
    }

    @Test func unknownFlagKeyIsRefused() {
        #expect(throws: ConfigError.self) { try ConfigLoader.parse(yaml: "", overrides: ["nope": "1"], defaultNodeName: "n") }
    }

    @Test func flagNamesAreKebabCaseOfTheKeys() {
        #expect(ConfigLoader.flagName("nodeCIDRMaskSize") == "node-cidr-mask-size")
        #expect(ConfigLoader.flagName("dns.listen") == "dns-listen")
        #expect(ConfigLoader.flagName("clusterCIDR") == "cluster-cidr")
        #expect(ConfigLoader.flagName("nodeIP") == "node-ip")
        #expect(ConfigLoader.flagName("podCIDRs") == "pod-cidrs")
        #expect(ConfigLoader.flagName("kubernetes.kubeconfig") == "kubernetes-kubeconfig")
    }

    @Test func hostPort() {
        #expect(ConfigLoader.parseHostPort("127.0.0.1:9154")! == ("127.0.0.1", 9154))
        #expect(ConfigLoader.parseHostPort("[::1]:53")! == ("::1", 53))
        #expect(ConfigLoader.parseHostPort("127.0.0.1") == nil)
        #expect(ConfigLoader.parseHostPort("127.0.0.1:0") == nil)
    }

    /// Issue 22: one per-node subnet size per family, as kube-controller-manager's
    /// `--node-cidr-mask-size-ipv4/-ipv6`; `nodeCIDRMaskSize` is the IPv4 alias, or the IPv6
    /// size on an IPv6-only cluster (the key IPv6-only configs used before).
    @Test func nodeSubnetSizesPerFamily() throws {
        let dual = try ConfigLoader.parse(yaml: "clusterCIDR: [10.244.0.0/16, fd00:10:244::/56]", defaultNodeName: "n")
        #expect(dual.nodeCIDRMaskSizeIPv4 == 24 && dual.nodeCIDRMaskSizeIPv6 == 64)
        #expect(dual.podSubnetRanges.map(\.clusterCIDR) == [IPPrefix("10.244.0.0/16")!, IPPrefix("fd00:10:244::/56")!])
        #expect(dual.podSubnetRanges.map(\.maskSize) == [24, 64])
        let v6First = try ConfigLoader.parse(yaml: "clusterCIDR: [fd00:10:244::/56, 10.244.0.0/16]\nnodeCIDRMaskSizeIPv6: 80\nnodeCIDRMaskSize: 25",
                                             defaultNodeName: "n")
        #expect(v6First.podSubnetRanges.map(\.maskSize) == [80, 25], "clusterCIDR order, each family its size")
        let flags = try ConfigLoader.parse(yaml: "clusterCIDR: [10.244.0.0/16, fd00:10:244::/56]",
                                           overrides: ["nodeCIDRMaskSizeIPv4": "26", "nodeCIDRMaskSizeIPv6": "72"], defaultNodeName: "n")
        #expect(flags.nodeCIDRMaskSize == 26 && flags.nodeCIDRMaskSizeIPv6 == 72)
        let v6only = try ConfigLoader.parse(yaml: "clusterCIDR: fd00:10:244::/56\nnodeCIDRMaskSize: 80", defaultNodeName: "n")
        #expect(v6only.podSubnetRanges == [PodSubnetRange(clusterCIDR: IPPrefix("fd00:10:244::/56")!, maskSize: 80)])
        #expect(ConfigLoader.flagName("nodeCIDRMaskSizeIPv4") == "node-cidr-mask-size-ipv4")
        #expect(ConfigLoader.flagName("nodeCIDRMaskSizeIPv6") == "node-cidr-mask-size-ipv6")
    }

    @Test func flagNameOfTheIPv6DNSAddress() {
        #expect(ConfigLoader.flagName("dns.listenIPv6") == "dns-listen-ipv6")
    }

    /// Which addresses the DNS server binds, and which nameservers pods are offered, per node kind.
    @Test func dnsAddressesFollowThePodFamilies() throws {
        let v4 = IPAddress("169.254.20.10")!, kubeDNS = IPAddress("10.96.0.10")!, v6 = IPAddress("fd5f:8dcc:e9bf::a")!
        let c = try ConfigLoader.parse(yaml: "", defaultNodeName: "n")
        #expect(c.dns.listenIPv6 == v6)
        // The default is a ULA outside the default ranges and kind's common IPv6 ones.
        for range in c.clusterCIDRs + c.serviceCIDRs + [IPPrefix("fd00:10:244::/56")!, IPPrefix("fd00:10:96::/112")!] {
            #expect(!range.contains(v6), "\(range)")
        }
        #expect(IPPrefix("fc00::/7")!.contains(v6))
        let ipv4Node = [IPPrefix("10.244.1.0/24")!], ipv6Node = [IPPrefix("fd00:10:244:1::/64")!]
        let dualNode = ipv4Node + ipv6Node
        #expect(c.dns.listenAddresses(podCIDRs: ipv4Node) == [v4, kubeDNS])
        #expect(c.dns.listenAddresses(podCIDRs: []) == [v4, kubeDNS], "no subnet yet: IPv6 follows when one appears")
        #expect(c.dns.listenAddresses(podCIDRs: ipv6Node) == [v4, kubeDNS, v6])
        #expect(c.dns.listenAddresses(podCIDRs: dualNode) == [v4, kubeDNS, v6])
        #expect(c.dns.podNameservers == [v4, v6], "one per family; pods get those of their own families")

        // Disabled, or an IPv6 address in dns.listen itself (that one is the pods').
        let off = try ConfigLoader.parse(yaml: "dns: {listenIPv6: none}", defaultNodeName: "n")
        #expect(off.dns.listenIPv6 == nil && off.dns.listenAddresses(podCIDRs: ipv6Node) == [v4, kubeDNS] && off.dns.podNameservers == [v4])
        let own = try ConfigLoader.parse(yaml: "", overrides: ["dns.listen": "169.254.20.10,fd00:10:96::a"], defaultNodeName: "n")
        #expect(own.dns.listenAddresses(podCIDRs: ipv6Node) == [v4, IPAddress("fd00:10:96::a")!])
        #expect(own.dns.podNameservers == [v4, IPAddress("fd00:10:96::a")!])
        let custom = try ConfigLoader.parse(yaml: "", overrides: ["dns.listenIPv6": "fd12:3456:789a::53"], defaultNodeName: "n")
        #expect(custom.dns.podNameservers == [v4, IPAddress("fd12:3456:789a::53")!])
        #expect(throws: ConfigError.self) { try ConfigLoader.parse(yaml: "dns: {listenIPv6: 169.254.20.11}", defaultNodeName: "n") }
    }
}

/// The DNS keys of issue #15 and #14 item 6: zones, autopath, serve-stale, allow list, rate limit.
@Suite struct DNSConfigTests {
    @Test func dnsFeatureKeysParseFromFileAndFlags() throws {
        let c = try ConfigLoader.parse(yaml: """
            dns:
              zones: {corp.example: [10.0.0.53, "10.0.0.54:5353"], Lab.Example.: 10.1.0.53}
              autopath: true
              serveStale: 30m
              allowedClients: [192.168.1.0/24, 10.1.2.3]
              rateLimit: 50
              udpBatchIO: false
            """, defaultNodeName: "n")
        #expect(c.dns.zones == ["corp.example": ["10.0.0.53", "10.0.0.54:5353"], "lab.example": ["10.1.0.53"]])
        #expect(c.dns.autopath)
        #expect(c.dns.serveStaleSeconds == 1800)
        #expect(c.dns.allowedClients == [IPPrefix("192.168.1.0/24")!, IPPrefix("10.1.2.3/32")!])
        #expect(c.dns.rateLimit == 50)
        #expect(!c.dns.udpBatchIO)
        let d = try ConfigLoader.parse(yaml: "", defaultNodeName: "n")
        #expect(!d.dns.autopath && d.dns.zones.isEmpty && d.dns.serveStaleSeconds == 3600 && d.dns.rateLimit == 1000 && d.dns.udpBatchIO)
        let f = try ConfigLoader.parse(yaml: "", overrides: ["dns.zones": "corp.example=10.0.0.53 10.0.0.54,lab.example=10.1.0.53",
                                                             "dns.autopath": "true", "dns.serveStale": "0"], defaultNodeName: "n")
        #expect(f.dns.zones == ["corp.example": ["10.0.0.53", "10.0.0.54"], "lab.example": ["10.1.0.53"]])
        #expect(f.dns.autopath && f.dns.serveStaleSeconds == 0)
    }

    @Test func anInvalidZoneAddressIsRefusedNamingTheKey() {
        for (yaml, key) in [
            ("dns: {zones: {corp.example: [10.0.0.300]}}", "dns.zones.corp.example"),
            ("dns: {zones: {corp.example: [ns1.corp.example]}}", "dns.zones.corp.example"),
            ("dns: {zones: {corp.example: []}}", "dns.zones.corp.example"),
            ("dns: {zones: {\"bad..zone\": [10.0.0.53]}}", "dns.zones"),
            ("dns: {zones: [10.0.0.53]}", "dns.zones"),
            ("dns: {autopath: maybe}", "dns.autopath"),
            ("dns: {udpBatchIO: sometimes}", "dns.udpBatchIO"),
            ("dns: {serveStale: forever}", "dns.serveStale"),
            ("dns: {allowedClients: [not-a-cidr]}", "dns.allowedClients"),
        ] {
            #expect {
                _ = try ConfigLoader.parse(yaml: yaml, defaultNodeName: "n")
            } throws: { error in
                (error as? ConfigError)?.key == key && "\(error)".contains(key)
            }
        }
    }
}
