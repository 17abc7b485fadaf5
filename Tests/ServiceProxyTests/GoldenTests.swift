import ClusterState
import Testing
@testable import ServiceProxy

/// Whole-ruleset and per-service golden text (sorted lines, as kube-proxy's tests compare).
@Suite struct GoldenTests {
    @Test func emptyClusterHasOnlyTheFixedPart() async {
        let d = await desired([], [])
        let text = lines(d.model)
        #expect(text.contains("add chain ip nodenet nat-prerouting { type nat hook prerouting priority -100 ; policy accept ; }"))
        #expect(text.contains("add chain ip nodenet nat-postrouting { type nat hook postrouting priority 100 ; policy accept ; }"))
        #expect(text.contains("add rule ip nodenet services ip daddr . meta l4proto . th dport vmap @service-ips"))
        #expect(text.contains("add rule ip nodenet services ip daddr @nodeport-ips meta l4proto . th dport vmap @service-nodeports"))
        #expect(text.contains("add rule ip nodenet masquerading meta mark & 0x4000 == 0 return"))
        #expect(text.contains("add rule ip nodenet reject-chain meta l4proto tcp reject with tcp reset"))
        #expect(text.contains("add element ip nodenet nodeport-ips { 192.168.1.11 }"))
        #expect(!text.contains { $0.contains("service-ips {") && $0.contains("element") })
        // IPv6: no node address of that family, so NodePorts match any local address but loopback.
        #expect(lines(d.model, .ip6).contains(
            "add rule ip6 nodenet services fib daddr type local ip6 daddr != ::1/128 meta l4proto . th dport vmap @service-nodeports"))
    }

    @Test func clusterIPWithTwoEndpoints() async {
        let d = await desired([service("web")], [slice("web", [EP(ip: "10.244.1.5"), EP(ip: "10.244.2.7", node: "node2")])])
        #expect(serviceLines(d.model, "ns1/web/") == [
            "add chain ip nodenet endpoint-ns1/web/tcp/http__10.244.1.5/8080",
            "add chain ip nodenet endpoint-ns1/web/tcp/http__10.244.2.7/8080",
            "add chain ip nodenet service-ns1/web/tcp/http",
            "add element ip nodenet service-ips { 10.96.0.10 . tcp . 80 : goto service-ns1/web/tcp/http }",
            "add rule ip nodenet endpoint-ns1/web/tcp/http__10.244.1.5/8080 ip saddr 10.244.1.5 jump mark-for-masquerade comment \"hairpin\"",
            "add rule ip nodenet endpoint-ns1/web/tcp/http__10.244.1.5/8080 meta l4proto tcp dnat to 10.244.1.5:8080",
            "add rule ip nodenet endpoint-ns1/web/tcp/http__10.244.2.7/8080 ip saddr 10.244.2.7 jump mark-for-masquerade comment \"hairpin\"",
            "add rule ip nodenet endpoint-ns1/web/tcp/http__10.244.2.7/8080 meta l4proto tcp dnat to 10.244.2.7:8080",
            "add rule ip nodenet service-ns1/web/tcp/http ip daddr 10.96.0.10 meta l4proto tcp th dport 80 ip saddr != 10.244.0.0/16 jump mark-for-masquerade",
            "add rule ip nodenet service-ns1/web/tcp/http numgen random mod 2 vmap { 0 : goto endpoint-ns1/web/tcp/http__10.244.1.5/8080, 1 : goto endpoint-ns1/web/tcp/http__10.244.2.7/8080 }",
        ])
        #expect(lines(d.model).contains("add element ip nodenet cluster-ips { 10.96.0.10 }"))
        #expect(d.skipped.isEmpty)
    }

    @Test func nodePortWithAffinity() async {
        let svc = service("np", type: .nodePort, ports: [ServicePort(name: "dns", protocol: .udp, port: 53, targetPort: .int(5353), nodePort: 30053)],
                          affinity: 600)
        let d = await desired([svc], [slice("np", ports: [EndpointPort(name: "dns", protocol: .udp, port: 5353)], [EP(ip: "10.244.1.5")])])
        let ep = "endpoint-ns1/np/udp/dns__10.244.1.5/5353", aff = "affinity-ns1/np/udp/dns__10.244.1.5/5353"
        #expect(serviceLines(d.model, "ns1/np/") == [
            "add chain ip nodenet \(ep)",
            "add chain ip nodenet external-ns1/np/udp/dns",
            "add chain ip nodenet service-ns1/np/udp/dns",
            "add element ip nodenet service-ips { 10.96.0.10 . udp . 53 : goto service-ns1/np/udp/dns }",
            "add element ip nodenet service-nodeports { udp . 30053 : goto external-ns1/np/udp/dns }",
            "add rule ip nodenet \(ep) ip saddr 10.244.1.5 jump mark-for-masquerade comment \"hairpin\"",
            "add rule ip nodenet \(ep) meta l4proto udp dnat to 10.244.1.5:5353",
            "add rule ip nodenet \(ep) update @\(aff) { ip saddr }",
            "add rule ip nodenet external-ns1/np/udp/dns goto service-ns1/np/udp/dns",
            "add rule ip nodenet external-ns1/np/udp/dns jump mark-for-masquerade",
            "add rule ip nodenet service-ns1/np/udp/dns ip daddr 10.96.0.10 meta l4proto udp th dport 53 ip saddr != 10.244.0.0/16 jump mark-for-masquerade",
            "add rule ip nodenet service-ns1/np/udp/dns ip saddr @\(aff) goto \(ep)",
            "add rule ip nodenet service-ns1/np/udp/dns numgen random mod 1 vmap { 0 : goto \(ep) }",
            "add set ip nodenet \(aff) { type ipv4_addr ; flags dynamic,timeout ; timeout 600s ; }",
        ])
    }

    @Test func loadBalancerWithSourceRangesAndExternalIP() async {
        let svc = service("lb", type: .loadBalancer, ports: [ServicePort(name: "https", port: 443, targetPort: .int(8443), nodePort: 31443)],
                          externalIPs: ["203.0.113.9"], ingress: ["198.51.100.7"], sourceRanges: ["192.0.2.0/24", "192.168.1.0/24"])
        let d = await desired([svc], [slice("lb", ports: [EndpointPort(name: "https", port: 8443)], [EP(ip: "10.244.3.3", node: "node3")])])
        let got = serviceLines(d.model, "ns1/lb/")
        for line in [
            "add element ip nodenet service-ips { 10.96.0.10 . tcp . 443 : goto service-ns1/lb/tcp/https, 198.51.100.7 . tcp . 443 : goto external-ns1/lb/tcp/https, 203.0.113.9 . tcp . 443 : goto external-ns1/lb/tcp/https }",
            "add element ip nodenet service-nodeports { tcp . 31443 : goto external-ns1/lb/tcp/https }",
            "add element ip nodenet firewall-ips { 198.51.100.7 . tcp . 443 : goto firewall-ns1/lb/tcp/https }",
            // The node (192.168.1.11) is inside an allowed range, so the LB IP itself is allowed too.
            "add rule ip nodenet firewall-ns1/lb/tcp/https ip saddr != { 198.51.100.7, 192.0.2.0/24, 192.168.1.0/24 } drop",
        ] {
            #expect(got.contains(line), "\(line)")
        }
        // NodePorts are not subject to source ranges; externalIPs are not either.
        #expect(!got.contains { $0.contains("firewall-ips") && ($0.contains("31443") || $0.contains("203.0.113.9")) })
    }

    @Test func dualStackServiceGetsBothTables() async {
        let svc = service("ds", ips: ["10.96.0.20", "fd00:96::20"])
        let d = await desired([svc], [slice("ds", [EP(ip: "10.244.1.5")]), slice("ds", family: .ipv6, [EP(ip: "fd00:10:244:1::5")])])
        #expect(serviceLines(d.model, "ns1/ds/", .ip6) == [
            "add chain ip6 nodenet endpoint-ns1/ds/tcp/http__fd00-10-244-1--5/8080",
            "add chain ip6 nodenet service-ns1/ds/tcp/http",
            "add element ip6 nodenet service-ips { fd00:96::20 . tcp . 80 : goto service-ns1/ds/tcp/http }",
            "add rule ip6 nodenet endpoint-ns1/ds/tcp/http__fd00-10-244-1--5/8080 ip6 saddr fd00:10:244:1::5 jump mark-for-masquerade comment \"hairpin\"",
            "add rule ip6 nodenet endpoint-ns1/ds/tcp/http__fd00-10-244-1--5/8080 meta l4proto tcp dnat to [fd00:10:244:1::5]:8080",
            "add rule ip6 nodenet service-ns1/ds/tcp/http ip6 daddr fd00:96::20 meta l4proto tcp th dport 80 ip6 saddr != fd00:10:244::/56 jump mark-for-masquerade",
            "add rule ip6 nodenet service-ns1/ds/tcp/http numgen random mod 1 vmap { 0 : goto endpoint-ns1/ds/tcp/http__fd00-10-244-1--5/8080 }",
        ])
        #expect(serviceLines(d.model, "ns1/ds/", .ip).count == 7)
    }
}
