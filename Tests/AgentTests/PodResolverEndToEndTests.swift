import Foundation
import NodenetTestSupport
import Synchronization
import Testing

/// The stub resolvers pods really run, against the node-local DNS through the resolv.conf their
/// CNI result produced: glibc (getent), musl (a static getaddrinfo program built with musl-gcc;
/// 1.2.3 has no TCP fallback) and Go's pure resolver. Each runs inside the pod's network
/// namespace and a private mount namespace whose /etc/resolv.conf is the pod's (the machine's
/// own is never touched). The upstream is a dnsmasq stub on the fabric.
@Suite(.serialized, .enabled(if: isPrivileged && (try? Shell.which("dnsmasq")) != nil && (try? Shell.which("dig")) != nil
                             && (try? Shell.which("unshare")) != nil, "needs root, dnsmasq, dig and unshare"))
struct PodResolverEndToEndTests {
    static let v4DNS = "169.254.20.10"
    static let v6DNS = "fd5f:8dcc:e9bf::a"  // the documented default of dns.listenIPv6

    /// Realistic names: long, with the generated suffixes controllers add.
    static let headless = "orders-db-replicas-headless"
    static let external = "payments-gateway-external"

    /// Namespace, a ClusterIP service, a headless service with `endpoints` ready endpoints of
    /// one family (in an EndpointSlice, as a controller writes it), an ExternalName service.
    static func manifest(clusterIP: String, endpoints: [String], family: String) -> String {
        let eps = endpoints.map { "  - {addresses: [\"\($0)\"], conditions: {ready: true}}" }.joined(separator: "\n")
        return """
        apiVersion: v1
        kind: Namespace
        metadata: {name: apps}
        ---
        apiVersion: v1
        kind: Service
        metadata: {name: web-service, namespace: apps}
        spec: {clusterIP: "\(clusterIP)", ports: [{name: http, port: 80}]}
        ---
        apiVersion: v1
        kind: Service
        metadata: {name: \(headless), namespace: apps}
        spec: {clusterIP: None, ports: [{name: postgres, port: 5432}]}
        ---
        apiVersion: discovery.k8s.io/v1
        kind: EndpointSlice
        metadata: {name: \(headless)-x7k2p, namespace: apps, labels: {kubernetes.io/service-name: \(headless)}}
        addressType: \(family)
        ports: [{name: postgres, port: 5432, protocol: TCP}]
        endpoints:
        \(eps)
        ---
        apiVersion: v1
        kind: Service
        metadata: {name: \(external), namespace: apps}
        spec: {type: ExternalName, externalName: www.example.test}

        """
    }

    /// The upstream stub on the fabric: example.test, and a forwarded name with 40 addresses
    /// (from a hosts file) whose answer does not fit 512 bytes.
    static func upstream(_ cluster: TestCluster) throws -> [String] {
        let pool = (0..<40).map { "198.51.100.\(10 + $0)" }
        let hosts = cluster.dir.write("pool-hosts", pool.map { "\($0) pool.cdn.test" }.joined(separator: "\n") + "\n")
        try cluster.spawn(in: cluster.fabric, ["dnsmasq", "--no-daemon", "--no-resolv", "--no-hosts", "--bind-interfaces",
                                               "--listen-address=192.168.1.1", "--port=53", "--addn-hosts=\(hosts)",
                                               "--local=/cdn.test/", "--address=/example.test/192.0.2.10", "--address=/example.test/2001:db8::10"])
        return pool
    }

    struct PodDNS {
        var pod: TestNamespace
        var nameservers: [String]
        var resolvConf: String
    }

    /// A pod attached by CNI ADD through the built plugin, as a runtime does (64-hex sandbox id,
    /// Kubernetes CNI_ARGS), and its resolv.conf written from the result's `dns`.
    static func addPod(_ cluster: TestCluster, name: String) throws -> PodDNS {
        let ns = try TestNamespace("pod")
        let id = (0..<4).map { _ in String(format: "%016llx", UInt64.random(in: 1 ... .max)) }.joined()
        let r = try cluster.nodes[0].cni.run("ADD", containerID: id, netns: ns.path,
                                             args: "IgnoreUnknown=1;K8S_POD_NAMESPACE=apps;K8S_POD_NAME=\(name);K8S_POD_INFRA_CONTAINER_ID=\(id)")
        guard r.ok else { throw TestFailure("CNI ADD \(name): \(r.stdout)\(r.stderr)") }
        let dns = CNIInvoker.json(r)["dns"] as? [String: Any] ?? [:]
        let servers = dns["nameservers"] as? [String] ?? []
        let conf = "search \((dns["search"] as? [String] ?? []).joined(separator: " "))\n"
            + servers.map { "nameserver \($0)\n" }.joined()
            + "options \((dns["options"] as? [String] ?? []).joined(separator: " "))\n"
        return PodDNS(pod: ns, nameservers: servers, resolvConf: cluster.dir.write("resolv-\(ns.name).conf", conf))
    }

    /// Runs argv in the pod's network namespace with the pod's resolv.conf bind-mounted over
    /// /etc/resolv.conf in a private mount namespace.
    static func inPod(_ p: PodDNS, _ argv: [String]) throws -> Shell.Result {
        try Shell.run(["unshare", "--mount", "--propagation", "private", "--", "sh", "-c",
                       "conf=$1; ns=$2; shift 2; mount --bind \"$conf\" /etc/resolv.conf && exec nsenter --net=\"$ns\" \"$@\"",
                       "sh", p.resolvConf, p.pod.path] + argv, timeout: 60)
    }

    enum Resolver: String { case glibc, musl, go }

    /// The addresses `name` resolves to (deduplicated, sorted), or the resolver's error.
    static func resolve(_ resolver: Resolver, _ name: String, in p: PodDNS) throws -> (addresses: [String], output: String) {
        let r: Shell.Result
        switch resolver {
        case .glibc: r = try inPod(p, ["getent", "ahosts", name])
        case .musl: r = try inPod(p, [try StubResolvers.musl(), name])
        case .go: r = try inPod(p, [try StubResolvers.go(), name])
        }
        let addresses = Set(r.stdout.split(separator: "\n").compactMap { $0.split(separator: " ").first.map(String.init) })
        return (r.ok ? addresses.sorted() : [], "\(resolver) \(name): exit \(r.status) \(r.stdout)\(r.stderr)")
    }

    /// glibc always; musl and Go where their toolchains are installed (the two tests below
    /// show as skipped, with the reason, where they are not).
    static var resolvers: [Resolver] {
        [.glibc] + (StubResolvers.muslAvailable ? [.musl] : []) + (StubResolvers.goAvailable ? [.go] : [])
    }

    @Test(.enabled(if: StubResolvers.muslAvailable, "musl-gcc (Debian musl-tools) is not installed: the musl resolver is not covered"))
    func muslResolverBuilds() throws {
        let r = try Shell.run([try StubResolvers.musl(), "localhost"])
        #expect(r.ok && r.stdout.contains("127.0.0.1"), "\(r.stdout)\(r.stderr)")
    }

    @Test(.enabled(if: StubResolvers.goAvailable, "go (Debian golang-go) is not installed: Go's pure resolver is not covered"))
    func goResolverBuilds() throws {
        let r = try Shell.run([try StubResolvers.go(), "localhost"])
        #expect(r.ok && r.stdout.contains("127.0.0.1"), "\(r.stdout)\(r.stderr)")
    }

    static func digUntil(_ p: PodDNS, _ args: [String], contains want: String) throws -> String {
        var out = ""
        for _ in 0..<50 {
            out = try p.pod.run(["dig", "+short", "+time=1", "+tries=1"] + args).stdout
            if out.contains(want) { return out }
            usleep(100_000)
        }
        return out
    }

    /// IPv4 node: the search list, a headless answer of 40 records (glibc and Go retry over TCP
    /// and get all; musl gets the whole records that fit in 512 bytes), ExternalName, and a
    /// forwarded answer over 512 bytes.
    @Test func ipv4NodeResolversGetUsableAnswers() throws {
        let cluster = try TestCluster(nodes: 1)
        defer { cluster.close() }
        let pool = try Self.upstream(cluster)
        try cluster.startAgents()
        let endpoints = (0..<40).map { "10.244.1.\(100 + $0)" }
        try cluster.applyEverywhere(cluster.nodeManifest + "---\n"
                                    + Self.manifest(clusterIP: "10.107.37.188", endpoints: endpoints, family: "IPv4"))
        let client = try Self.addPod(cluster, name: "checkout-frontend-7d9f8b6c4d-x2x9q")
        defer { client.pod.delete() }
        #expect(client.nameservers == [Self.v4DNS], "an IPv4-only pod gets the IPv4 node-local address only")
        #expect(try Self.digUntil(client, ["@\(Self.v4DNS)", "web-service.apps.svc.cluster.local"], contains: "10.107.37.188") != "")

        let headlessName = "\(Self.headless).apps.svc.cluster.local"
        for resolver in Self.resolvers {
            let short = try Self.resolve(resolver, "web-service", in: client)
            #expect(short.addresses == ["10.107.37.188"], "search list: \(short.output)")
            let ext = try Self.resolve(resolver, Self.external, in: client)
            #expect(ext.addresses.contains("192.0.2.10"), "ExternalName: \(ext.output)")
            let many = try Self.resolve(resolver, headlessName, in: client)
            let forwarded = try Self.resolve(resolver, "pool.cdn.test", in: client)
            switch resolver {
            case .musl:
                // No TCP fallback: the whole records that fit in 512 bytes (about 29), with TC.
                #expect(many.addresses.count >= 20 && many.addresses.count < 40 && Set(many.addresses).isSubset(of: endpoints),
                        "partial headless answer: \(many.output)")
                #expect(forwarded.addresses.count >= 20 && forwarded.addresses.count < 40 && Set(forwarded.addresses).isSubset(of: pool),
                        "partial forwarded answer: \(forwarded.output)")
            case .glibc, .go:
                #expect(many.addresses == endpoints.sorted(), "all 40 (TCP after TC): \(many.output)")
                #expect(forwarded.addresses == pool.sorted(), "all 40 forwarded: \(forwarded.output)")
            }
        }
        #expect(cluster.nodes[0].agent.log(tail: 200).contains("dns serving"))
    }

    /// IPv6-only node (pod and service ranges IPv6): the pod gets the IPv6 node-local address
    /// only, and every resolver works through it; it is exempt from conntrack.
    @Test func ipv6OnlyNodeResolvesThroughTheIPv6Address() throws {
        let cluster = try TestCluster(nodes: 1) { _ in
            ["--cluster-cidr", "fd00:10:244::/56", "--node-cidr-mask-size", "64", "--pod-cidrs", "fd00:10:244:1::/64",
             "--service-cidr", "fd00:10:96::/112"]
        }
        defer { cluster.close() }
        _ = try Self.upstream(cluster)
        try cluster.startAgents()
        let endpoints = (0..<40).map { "fd00:10:244:1::\(String(0x100 + $0, radix: 16))" }
        try cluster.applyEverywhere(Self.manifest(clusterIP: "fd00:10:96::1bc", endpoints: endpoints, family: "IPv6"))
        let client = try Self.addPod(cluster, name: "checkout-frontend-7d9f8b6c4d-v6q7z")
        defer { client.pod.delete() }
        #expect(client.nameservers == [Self.v6DNS], "an IPv6-only pod gets the IPv6 node-local address only")
        let addr = try client.pod.check(["ip", "-o", "addr", "show", "dev", "eth0"]).stdout
        #expect(!addr.contains("inet "), "the pod has no IPv4 address: \(addr)")
        // The address comes with the node's IPv6 pod subnet (bounded wait, not a sleep).
        #expect(try Self.digUntil(client, ["@\(Self.v6DNS)", "web-service.apps.svc.cluster.local", "AAAA"], contains: "fd00:10:96::1bc") != "",
                "the IPv6 DNS address answers: \(cluster.nodes[0].agent.log(tail: 30))")

        let headlessName = "\(Self.headless).apps.svc.cluster.local"
        let expanded = Set(endpoints.map { try! Self.canonical($0) })
        for resolver in Self.resolvers {
            let short = try Self.resolve(resolver, "web-service", in: client)
            #expect(short.addresses == ["fd00:10:96::1bc"], "search list over IPv6: \(short.output)")
            let ext = try Self.resolve(resolver, Self.external, in: client)
            #expect(ext.addresses.contains("2001:db8::10"), "ExternalName over IPv6: \(ext.output)")
            let many = try Self.resolve(resolver, headlessName, in: client)
            let got = Set(many.addresses.compactMap { try? Self.canonical($0) })
            if resolver == .musl {
                // AAAA records are 28 bytes: about 16 fit in 512.
                #expect(got.count >= 10 && got.count < 40 && got.isSubset(of: expanded), "partial AAAA answer: \(many.output)")
            } else {
                #expect(got == expanded, "all 40 AAAA: \(many.output)")
            }
        }
        // Exempt from conntrack like the IPv4 address.
        let node = cluster.nodes[0].ns
        #expect(try node.check(["nft", "list", "chain", "ip6", "nodenet", "dns-notrack"]).stdout.contains("\(Self.v6DNS)"))
        let tracked = try node.run(["conntrack", "-L", "-f", "ipv6"]).stdout.split(separator: "\n")
            .filter { $0.contains("dst=\(Self.v6DNS)") && $0.contains("dport=53") }
        #expect(tracked.isEmpty, "a DNS query to the IPv6 address was tracked: \(tracked)")
    }

    /// Dual-stack node: a dual-stack pod gets both addresses (IPv4 first), and both answer.
    @Test func dualStackPodGetsBothNameservers() throws {
        let cluster = try TestCluster(nodes: 1) { _ in
            ["--cluster-cidr", "10.244.0.0/16,fd00:10:244::/56", "--pod-cidrs", "10.244.1.0/24,fd00:10:244:1::/64",
             "--service-cidr", "10.96.0.0/12,fd00:10:96::/112"]
        }
        defer { cluster.close() }
        _ = try Self.upstream(cluster)
        try cluster.startAgents()
        try cluster.applyEverywhere(Self.manifest(clusterIP: "10.107.37.188", endpoints: ["10.244.1.100"], family: "IPv4"))
        let client = try Self.addPod(cluster, name: "checkout-frontend-7d9f8b6c4d-ds4k8")
        defer { client.pod.delete() }
        #expect(client.nameservers == [Self.v4DNS, Self.v6DNS])
        for server in client.nameservers {
            #expect(try Self.digUntil(client, ["@\(server)", "web-service.apps.svc.cluster.local"], contains: "10.107.37.188") != "",
                    "through \(server)")
        }
        #expect(try Self.resolve(.glibc, "web-service", in: client).addresses == ["10.107.37.188"])
    }

    /// One listener that cannot be bound (its port is taken) does not stop the agent: it is
    /// reported in status and retried until it binds. An IPv6 address in dns.listen serves at
    /// once (no DAD wait on the DNS device).
    @Test func aFailingListenerIsReportedAndRetried() throws {
        let cluster = try TestCluster(nodes: 1) { _ in ["--dns-listen", "169.254.20.10,fd00:10:96::a,169.254.20.11"] }
        defer { cluster.close() }
        _ = try Self.upstream(cluster)
        let node = cluster.nodes[0]
        // Someone else holds 169.254.20.11 port 53 on the node (a socket without SO_REUSEPORT).
        try node.ns.check(["ip", "link", "add", "nodenet-dns", "type", "bridge"])
        try node.ns.check(["ip", "addr", "add", "169.254.20.11/32", "dev", "nodenet-dns"])
        try node.ns.check(["ip", "link", "set", "nodenet-dns", "up"])
        let blocker = cluster.dir.file("blocker.pid")
        try cluster.spawn(in: node.ns, ["sh", "-c", "echo $$ > \(blocker); exec python3 -c 'import socket, time; "
                                        + "s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind((\"169.254.20.11\", 53)); time.sleep(300)'"])
        var blocked = false
        for _ in 0..<50 where !blocked {
            blocked = try node.ns.run(["ss", "-uln", "src", "169.254.20.11:53"]).stdout.contains("169.254.20.11:53")
            if !blocked { usleep(50_000) }
        }
        #expect(blocked, "the blocker holds 169.254.20.11:53")
        try node.agent.start()
        try cluster.applyEverywhere(cluster.nodeManifest + "---\n" + Self.manifest(clusterIP: "10.107.37.188", endpoints: ["10.244.1.100"], family: "IPv4"))
        let status = try node.agent.cli(["status", "--json"]).stdout
        #expect(Self.dnsRow(status)["state"] as? String == "error", "the failing listener is reported: \(status)")
        #expect((Self.dnsRow(status)["message"] as? String ?? "").contains("listener 169.254.20.11"), "\(status)")
        // The agent serves on the others meanwhile, IPv6 included (queried from the node itself).
        #expect(try node.ns.run(["dig", "+short", "+time=2", "+tries=1", "@fd00:10:96::a", "web-service.apps.svc.cluster.local"]).stdout
            .contains("10.107.37.188"), "the IPv6 listen address serves at once: \(node.agent.log(tail: 30))")
        #expect(try node.ns.run(["dig", "+short", "+time=2", "+tries=1", "@169.254.20.10", "web-service.apps.svc.cluster.local"]).stdout
            .contains("10.107.37.188"))
        // The port is freed: the listener binds on a retry and the row clears.
        if let pid = Int32((try? String(contentsOfFile: blocker, encoding: .utf8))?.trimmingCharacters(in: .whitespacesAndNewlines) ?? "") {
            kill(pid, SIGKILL)
        }
        var answered = false
        for _ in 0..<100 where !answered {
            answered = try node.ns.run(["dig", "+short", "+time=1", "+tries=1", "@169.254.20.11", "web-service.apps.svc.cluster.local"]).stdout
                .contains("10.107.37.188")
            if !answered { usleep(100_000) }
        }
        #expect(answered, "the listener was retried: \(node.agent.log(tail: 30))")
        var row: [String: Any] = [:]
        for _ in 0..<50 {
            row = Self.dnsRow(try node.agent.cli(["status", "--json"]).stdout)
            if row["state"] as? String == "in-sync" { break }
            usleep(100_000)
        }
        #expect(row["state"] as? String == "in-sync", "the row clears once every listener serves: \(row)")
        #expect(node.agent.pid.map { kill($0, 0) == 0 } == true, "the agent kept running")
    }

    /// The `dns` actor's row of `nodenet status --json`.
    static func dnsRow(_ json: String) -> [String: Any] {
        let root = (try? JSONSerialization.jsonObject(with: Data(json.utf8))) as? [String: Any]
        let actors = root?["actors"] as? [[String: Any]] ?? []
        return actors.first { $0["name"] as? String == "dns" } ?? [:]
    }

    /// Queries the agent's DNS has received (its `nodenet status --json` counter).
    static func queriesReceived(_ cluster: TestCluster) throws -> Int {
        let r = try cluster.nodes[0].agent.cli(["status", "--json"])
        let doc = try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any]
        let text = ((doc?["details"] as? [String: Any])?["dns"] as? [String: String])?["queries"] ?? ""
        guard let n = Int(text.split(separator: " ").first ?? "") else { throw TestFailure("no dns query count: \(r.stdout)") }
        return n
    }

    /// Issue #15 autopath: glibc's resolver (ndots:5, the pod's search list) resolving an
    /// external name sends A and AAAA for each of the three search domains and then the bare
    /// name: 8 queries. With `dns.autopath` the first pair is answered with a CNAME to the bare
    /// name and its records: one round trip, the same addresses. The same agent serves
    /// CoreDNS's metric names on /metrics (autopath off: NIO's UDP path; on: the batch path).
    @Test func autopathResolvesExternalNamesInOneRoundTrip() throws {
        var queries: [Bool: Int] = [:]
        var addresses: [Bool: [String]] = [:]
        for autopath in [false, true] {
            // The pass without autopath serves UDP through NIO's path (`dns.udpBatchIO: false`),
            // the autopath pass through the default batch path, which reads the client's
            // address (what autopath needs) from recvmmsg.
            let cluster = try TestCluster(nodes: 1, config: autopath ? nil : "dns:\n  udpBatchIO: false\n") { _ in
                ["--dns-autopath", "\(autopath)", "--metrics-listen", "127.0.0.1:9154"]
            }
            defer { cluster.close() }
            _ = try Self.upstream(cluster)
            try cluster.startAgents()
            try cluster.applyEverywhere(cluster.nodeManifest + "---\n"
                                        + Self.manifest(clusterIP: "10.107.37.188", endpoints: ["10.244.1.100"], family: "IPv4"))
            let client = try Self.addPod(cluster, name: "checkout-frontend-7d9f8b6c4d-ap\(autopath ? 1 : 0)")
            defer { client.pod.delete() }
            #expect(try Self.digUntil(client, ["@\(Self.v4DNS)", "web-service.apps.svc.cluster.local"], contains: "10.107.37.188") != "")
            // The pod's address is known to the zone before the walk starts (bounded wait).
            for _ in 0..<50 {
                let r = try Self.resolve(.glibc, "warmup-\(UUID().uuidString.prefix(8)).example.test", in: client)
                if !r.addresses.isEmpty { break }
                usleep(100_000)
            }
            let before = try Self.queriesReceived(cluster)
            let r = try Self.resolve(.glibc, "www.example.test", in: client)
            queries[autopath] = try Self.queriesReceived(cluster) - before
            addresses[autopath] = r.addresses
            // In-cluster short names resolve the same with autopath on.
            #expect(try Self.resolve(.glibc, "web-service", in: client).addresses == ["10.107.37.188"])
            if autopath {
                let metrics = try cluster.nodes[0].ns.run(["curl", "-s", "-m", "5", "http://127.0.0.1:9154/metrics"]).stdout
                for name in ["coredns_dns_requests_total{", "coredns_dns_responses_total{", "coredns_dns_request_duration_seconds_bucket{",
                             "coredns_cache_hits_total{", "coredns_cache_misses_total{", "coredns_forward_requests_total{to=\"192.168.1.1:53\"}",
                             "coredns_forward_healthcheck_failures_total{", "coredns_autopath_success_total{", "# HELP coredns_dns_requests_total"] {
                    #expect(metrics.contains(name), "\(name) on /metrics")
                }
            }
        }
        print("autopath: queries the agent received for one getent ahosts www.example.test: \(queries) (false: off, true: on)")
        #expect(addresses[true] == addresses[false], "the same final answer")
        #expect(addresses[true]?.contains("192.0.2.10") == true, "\(addresses)")
        #expect((queries[true] ?? 99) <= 2, "one round trip (A and AAAA) with autopath: \(queries)")
        #expect((queries[false] ?? 0) >= 8, "the whole search list without: \(queries)")
    }

    static func canonical(_ s: String) throws -> String {
        var a = in6_addr()
        guard inet_pton(AF_INET6, s, &a) == 1 else { throw TestFailure("not an IPv6 address: \(s)") }
        var buf = [CChar](repeating: 0, count: 64)
        inet_ntop(AF_INET6, &a, &buf, 64)
        return String(cString: buf)
    }
}

/// The musl and Go resolver programs, built once per test run into a temporary directory
/// (offline: Go from Debian's golang-go with no module proxy).
enum StubResolvers {
    static let dir = TempDirectory()
    static var muslAvailable: Bool { (try? Shell.which("musl-gcc")) != nil }
    static var goAvailable: Bool { (try? Shell.which("go")) != nil }

    static let cSource = """
    #include <arpa/inet.h>
    #include <netdb.h>
    #include <netinet/in.h>
    #include <stdio.h>
    #include <string.h>
    #include <sys/socket.h>
    /* getaddrinfo as an application calls it; prints every address. */
    int main(int argc, char **argv) {
        struct addrinfo hints, *res, *p;
        memset(&hints, 0, sizeof hints);
        hints.ai_socktype = SOCK_STREAM;
        int rc = getaddrinfo(argv[1], NULL, &hints, &res);
        if (rc) { fprintf(stderr, "getaddrinfo %s: %s\\n", argv[1], gai_strerror(rc)); return 2; }
        for (p = res; p; p = p->ai_next) {
            char buf[INET6_ADDRSTRLEN];
            if (p->ai_family == AF_INET) inet_ntop(AF_INET, &((struct sockaddr_in *)p->ai_addr)->sin_addr, buf, sizeof buf);
            else inet_ntop(AF_INET6, &((struct sockaddr_in6 *)p->ai_addr)->sin6_addr, buf, sizeof buf);
            printf("%s\\n", buf);
        }
        freeaddrinfo(res);
        return 0;
    }
    """

    static let goSource = """
    package main

    import (
    \t"context"
    \t"fmt"
    \t"net"
    \t"os"
    \t"time"
    )

    // Go's own stub resolver (PreferGo), as a CGO_ENABLED=0 binary uses it.
    func main() {
    \tr := &net.Resolver{PreferGo: true}
    \tctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
    \tdefer cancel()
    \taddrs, err := r.LookupIPAddr(ctx, os.Args[1])
    \tif err != nil {
    \t\tfmt.Fprintln(os.Stderr, err)
    \t\tos.Exit(2)
    \t}
    \tfor _, a := range addrs {
    \t\tfmt.Println(a.IP.String())
    \t}
    }
    """

    private static let built = Mutex<[String: String]>([:])

    static func musl() throws -> String {
        try build("musl") {
            let src = dir.write("resolve.c", cSource)
            let out = dir.file("resolve-musl")
            try Shell.check(["musl-gcc", "-static", "-O1", "-o", out, src], timeout: 120)
            return out
        }
    }

    static func go() throws -> String {
        try build("go") {
            let module = dir.file("goresolve")
            try FileManager.default.createDirectory(atPath: module, withIntermediateDirectories: true)
            _ = dir.write("goresolve/go.mod", "module goresolve\n\ngo 1.19\n")
            _ = dir.write("goresolve/main.go", goSource)
            let out = dir.file("resolve-go")
            let env = ["PATH": ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin", "HOME": dir.path,
                       "GOTOOLCHAIN": "local", "GOPROXY": "off", "GOFLAGS": "-mod=mod", "CGO_ENABLED": "0",
                       "GOCACHE": dir.file("gocache"), "GOPATH": dir.file("gopath")]
            let r = try Shell.run(["sh", "-c", "cd \(module) && go build -o \(out) ."], environment: env, timeout: 300)
            guard r.ok else { throw TestFailure("go build: \(r.stdout)\(r.stderr)") }
            return out
        }
    }

    private static func build(_ key: String, _ body: () throws -> String) throws -> String {
        if let path = built.withLock({ $0[key] }) { return path }
        let path = try body()
        built.withLock { $0[key] = path }
        return path
    }
}

struct TestFailure: Error, CustomStringConvertible {
    var description: String
    init(_ d: String) { description = d }
}
