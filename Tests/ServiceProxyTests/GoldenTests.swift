import ClusterState
import Testing
@testable import ServiceProxy

/// The fixed part of the ruleset and, per service, its exact elements (sorted, as kube-proxy's
/// tests compare): a service is elements of the shared sets and maps, nothing else.
@Suite struct GoldenTests {
    @Test func emptyClusterHasOnlyTheFixedPart() async {
        let d = await desired([], [])
        let text = lines(d.model)
        for line in [
            "add chain ip nodenet nat-prerouting { type nat hook prerouting priority -100 ; policy accept ; }",
            "add chain ip nodenet nat-postrouting { type nat hook postrouting priority 100 ; policy accept ; }",
            "add chain ip nodenet nat-input { type nat hook input priority 100 ; policy accept ; }",
            "add map ip nodenet backends { typeof ip daddr . meta l4proto . th dport . numgen random mod 2 : ip daddr . th dport ; }",
            "add map ip nodenet affinity { type ipv4_addr . ipv4_addr . inet_proto . inet_service : ipv4_addr . inet_service ; flags dynamic,timeout ; timeout 10800s ; }",
            "add set ip nodenet fw-allow { type ipv4_addr . inet_service . ipv4_addr ; flags interval ; }",
            "add rule ip nodenet services ip saddr != 10.244.0.0/16 ip daddr . meta l4proto . th dport @cluster-masq meta mark set meta mark or 0x4000",
            "add rule ip nodenet services ip daddr . meta l4proto . th dport @ext goto external",
            "add rule ip nodenet services goto cluster-lb",
            "add rule ip nodenet external ip daddr . meta l4proto . th dport @fw-tuples ip daddr . th dport . ip saddr != @fw-allow drop comment \"loadBalancerSourceRanges\"",
            "add rule ip nodenet external ip daddr . meta l4proto . th dport @ext-local goto external-local",
            "add rule ip nodenet external meta mark set meta mark or 0x4000 goto cluster-lb",
            "add rule ip nodenet cluster-lb dnat ip to ip saddr . ip daddr . meta l4proto . th dport map @affinity",
            "add rule ip nodenet cluster-lb ip daddr . meta l4proto . th dport @n1 dnat ip to ip daddr . meta l4proto . th dport . numgen random mod 1 map @backends",
            "add rule ip nodenet cluster-lb ip daddr . meta l4proto . th dport @n16 dnat ip to ip daddr . meta l4proto . th dport . numgen random mod 16 map @backends",
            "add rule ip nodenet external-local ip daddr . meta l4proto . th dport @ln4 dnat ip to ip daddr . meta l4proto . th dport . numgen random mod 4 map @backends-local",
            "add rule ip nodenet external-local ip saddr 10.244.0.0/16 goto cluster-lb comment \"short-circuit pod traffic\"",
            "add rule ip nodenet external-local fib saddr type local meta mark set meta mark or 0x4000 goto cluster-lb comment \"short-circuit local traffic\"",
            "add rule ip nodenet nat-postrouting ct status dnat tcp dport != 0 ct original ip daddr . meta l4proto . ct original proto-dst @aff-10800s update @affinity { ip saddr . ct original ip daddr . meta l4proto . ct original proto-dst timeout 10800s : ip daddr . tcp dport }",
            "add rule ip nodenet nat-postrouting ct status dnat ip saddr . ip daddr @hairpin masquerade fully-random comment \"hairpin\"",
            "add rule ip nodenet nat-postrouting jump masquerading",
            "add rule ip nodenet masquerading meta mark & 0x4000 == 0 return",
            "add rule ip nodenet service-endpoints-check ct status dnat return comment \"already sent to an endpoint\"",
            "add rule ip nodenet service-endpoints-check ip daddr . meta l4proto . th dport @no-ep-reject goto reject-chain",
            "add rule ip nodenet reject-chain meta l4proto tcp reject with tcp reset",
            "add rule ip nodenet reject-chain reject with icmp port-unreachable",
            "add rule ip nodenet cluster-ips-check ip daddr != { 10.96.0.0/12 } return",
            "add rule ip nodenet service-endpoints-check ip daddr . meta l4proto . th dport @no-ep-drop drop",
            "add rule ip nodenet filter-forward ct state new jump forward-checks",
            "add rule ip nodenet forward-checks jump service-endpoints-check",
            "add rule ip nodenet forward-checks goto cluster-ips-check",
            "add rule ip nodenet filter-output ct state new jump service-endpoints-check",
        ] {
            #expect(text.contains(line), "\(line)")
        }
        // No element at all, and nothing per service: the fixed part is the whole ruleset.
        #expect(!text.contains { $0.hasPrefix("add element") })
        #expect(d.model.tables[.ip]?.chains.count == 17)
        // A new connection to a ClusterIP passes one lookup before `cluster-lb`, and an
        // established flow's packet one compare per filter hook; no filter prerouting chain.
        #expect(d.model.tables[.ip]?.chains["services"]?.rules?.count == 3)
        for name in ["filter-forward", "filter-input", "filter-output", "filter-output-post-dnat"] {
            #expect(d.model.tables[.ip]?.chains[name]?.rules?.count == 1, "\(name)")
        }
        #expect(d.model.tables[.ip]?.chains["filter-prerouting"] == nil)
        // IPv6 has no affinity record rules until an IPv6 service asks for affinity (nft 1.0.6
        // could not load them back from a listing).
        #expect(!lines(d.model, .ip6).contains { $0.contains("update @affinity") })
    }

    @Test func clusterIPWithTwoEndpoints() async {
        let d = await desired([service("web")], [slice("web", [EP(ip: "10.244.1.5"), EP(ip: "10.244.2.7", node: "node2")])])
        #expect(allElements(d.model) == [
            "backends: 10.96.0.10 . tcp . 80 . 0 : 10.244.1.5 . 8080",
            "backends: 10.96.0.10 . tcp . 80 . 1 : 10.244.2.7 . 8080",
            "cluster-ips: 10.96.0.10",
            "cluster-masq: 10.96.0.10 . tcp . 80",
            "hairpin: 10.244.1.5 . 10.244.1.5",
            "hairpin: 10.244.2.7 . 10.244.2.7",
            "n2: 10.96.0.10 . tcp . 80",
        ])
        #expect(d.skipped.isEmpty)
        #expect(d.endpointCount == 2)
    }

    @Test func nodePortWithAffinity() async {
        let svc = service("np", type: .nodePort, ports: [ServicePort(name: "dns", protocol: .udp, port: 53, targetPort: .int(5353), nodePort: 30053)],
                          affinity: 600)
        let d = await desired([svc], [slice("np", ports: [EndpointPort(name: "dns", protocol: .udp, port: 5353)], [EP(ip: "10.244.1.5")])])
        #expect(allElements(d.model) == [
            "aff-600s: 10.96.0.10 . udp . 53",
            "aff-600s: 192.168.1.11 . udp . 30053",
            "backends: 10.96.0.10 . udp . 53 . 0 : 10.244.1.5 . 5353",
            "backends: 192.168.1.11 . udp . 30053 . 0 : 10.244.1.5 . 5353",
            "cluster-ips: 10.96.0.10",
            "cluster-masq: 10.96.0.10 . udp . 53",
            "ext: 192.168.1.11 . udp . 30053",
            "hairpin: 10.244.1.5 . 10.244.1.5",
            "n1: 10.96.0.10 . udp . 53",
            "n1: 192.168.1.11 . udp . 30053",
        ])
        // The timeout's set and record rules (one per protocol) exist while a service uses it.
        let text = lines(d.model)
        #expect(text.contains("add set ip nodenet aff-600s { type ipv4_addr . inet_proto . inet_service ; }"))
        #expect(text.contains("add rule ip nodenet nat-input ct status dnat udp dport != 0 ct original ip daddr . meta l4proto . ct original proto-dst @aff-600s update @affinity { ip saddr . ct original ip daddr . meta l4proto . ct original proto-dst timeout 600s : ip daddr . udp dport }"))
        #expect(d.affinity[NamespacedName("ns1", "np")]?[.ip]?.count == 2)
    }

    @Test func loadBalancerWithSourceRangesAndExternalIP() async {
        let svc = service("lb", type: .loadBalancer, ports: [ServicePort(name: "https", port: 443, targetPort: .int(8443), nodePort: 31443)],
                          externalIPs: ["203.0.113.9"], ingress: ["198.51.100.7"], sourceRanges: ["192.0.2.0/24", "192.168.1.0/24"])
        let d = await desired([svc], [slice("lb", ports: [EndpointPort(name: "https", port: 8443)], [EP(ip: "10.244.3.3", node: "node3")])])
        #expect(elements(d.model, SharedName.firewallTuples) == ["198.51.100.7 . tcp . 443"])
        // The node (192.168.1.11) is inside an allowed range, so the LB IP itself is allowed too.
        #expect(elements(d.model, SharedName.firewallAllow) == [
            "198.51.100.7 . 443 . 192.0.2.0/24", "198.51.100.7 . 443 . 192.168.1.0/24", "198.51.100.7 . 443 . 198.51.100.7",
        ])
        #expect(elements(d.model, SharedName.external) == [
            "192.168.1.11 . tcp . 31443", "198.51.100.7 . tcp . 443", "203.0.113.9 . tcp . 443",
        ])
        #expect(elements(d.model, SharedName.externalLocal).isEmpty)
        #expect(elements(d.model, "n1") == [
            "10.96.0.10 . tcp . 443", "192.168.1.11 . tcp . 31443", "198.51.100.7 . tcp . 443", "203.0.113.9 . tcp . 443",
        ])
    }

    @Test func dualStackServiceGetsBothTables() async {
        let svc = service("ds", ips: ["10.96.0.20", "fd00:96::20"])
        let d = await desired([svc], [slice("ds", [EP(ip: "10.244.1.5")]), slice("ds", family: .ipv6, [EP(ip: "fd00:10:244:1::5")])])
        #expect(allElements(d.model, .ip6) == [
            "backends: fd00:96::20 . tcp . 80 . 0 : fd00:10:244:1::5 . 8080",
            "cluster-ips: fd00:96::20",
            "cluster-masq: fd00:96::20 . tcp . 80",
            "hairpin: fd00:10:244:1::5 . fd00:10:244:1::5",
            "n1: fd00:96::20 . tcp . 80",
        ])
        #expect(allElements(d.model, .ip).count == 5)
    }
}
