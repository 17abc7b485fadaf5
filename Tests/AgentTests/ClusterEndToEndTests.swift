import Foundation
import IPAddressing
import NodenetTestSupport
import Testing

/// Whole clusters of the built agent in namespaces: nodes on a fabric bridge, pods through the
/// CNI path, real traffic, real DNS clients, real etcd.
@Suite(.serialized, .enabled(if: isPrivileged && (try? Shell.which("socat")) != nil && (try? Shell.which("dig")) != nil,
                             "needs root, socat and dig"))
struct ClusterEndToEndTests {
    /// The seed scenario's service in each family: `web-service` with TCP (80) and UDP (81)
    /// ports, a ClusterIP per family the cluster has (RequireDualStack when it has two).
    static func service(_ families: TestCluster.Families) -> String {
        let spec: String
        switch families {
        case .ipv4: spec = "clusterIP: 10.107.37.188"
        case .dualStack: spec = "ipFamilyPolicy: RequireDualStack\n  ipFamilies: [IPv4, IPv6]\n  clusterIP: 10.107.37.188\n  clusterIPs: [10.107.37.188, \"fd00:10:96::25bc\"]"
        case .ipv6: spec = "ipFamilies: [IPv6]\n  clusterIP: \"fd00:10:96::25bc\"\n  clusterIPs: [\"fd00:10:96::25bc\"]"
        }
        return """
        apiVersion: v1
        kind: Namespace
        metadata: {name: apps}
        ---
        apiVersion: v1
        kind: Service
        metadata: {name: web-service, namespace: apps}
        spec:
          type: NodePort
          \(spec)
          selector: {app: web}
          ports: [{name: http, port: 80, targetPort: 8080, nodePort: 30080}, {name: udp, protocol: UDP, port: 81, targetPort: 8081, nodePort: 30081}]
        ---
        apiVersion: v1
        kind: Service
        metadata: {name: web-local, namespace: apps}
        spec:
          type: NodePort
          externalTrafficPolicy: Local
          \(families == .dualStack ? "ipFamilyPolicy: PreferDualStack" : "ipFamilyPolicy: SingleStack")
          selector: {app: web}
          ports: [{name: http, port: 80, targetPort: 8080, nodePort: 30090}]
        """
    }

    static func serviceIPs(_ families: TestCluster.Families) -> [String] {
        (families.hasV4 ? ["10.107.37.188"] : []) + (families.hasV6 ? ["fd00:10:96::25bc"] : [])
    }

    func dig(_ pod: TestCluster.Pod, _ args: String...) throws -> String {
        try pod.ns.run(["dig", "+short", "+time=2", "+tries=2"] + args).stdout.trimmingCharacters(in: .whitespacesAndNewlines)
    }

    /// Polls `condition` every 50 ms until it holds, at most `timeout` seconds; records a
    /// failure naming `what` when it never does.
    func eventually(_ what: String, timeout: Double = 10, _ condition: () throws -> Bool) throws {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            if try condition() { return }
            usleep(50_000)
        }
        #expect(try condition(), "\(what) within \(timeout) s")
    }

    /// One node on the etcd source with etcd (Debian's etcd-server) in the fabric namespace at
    /// 192.168.1.1: etcd started, the agent started, a service applied that resolves from the
    /// node. The preamble of the etcd fault tests.
    final class EtcdNode {
        let cluster: TestCluster
        let etcdArgs: [String]
        /// The running etcd's pid; 0 while it is stopped.
        private(set) var etcd: pid_t = 0
        var node: TestCluster.Node { cluster.nodes[0] }

        init(agentArgs: [String] = []) throws {
            cluster = try TestCluster(nodes: 1) { _ in ["--source", "etcd", "--etcd-endpoints", "http://192.168.1.1:2379"] + agentArgs }
            etcdArgs = ["/usr/bin/nsenter", "--net=\(cluster.fabric.path)", try Shell.which("etcd"), "--data-dir", cluster.dir.file("etcd"),
                        "--listen-client-urls", "http://192.168.1.1:2379", "--advertise-client-urls", "http://192.168.1.1:2379",
                        "--listen-peer-urls", "http://127.0.0.1:2380"]
            do {
                try startEtcd()
                try node.agent.start()
                let applied = try node.agent.apply("""
                    apiVersion: v1
                    kind: Service
                    metadata: {name: ledger-api, namespace: payments}
                    spec: {clusterIP: 10.96.41.17, ports: [{name: https, port: 443}]}
                    """)
                #expect(applied.ok, "\(applied.stderr)")
                var answer = ""
                for _ in 0..<50 where answer != "10.96.41.17" { answer = try resolve(); if answer != "10.96.41.17" { usleep(100_000) } }
                #expect(answer == "10.96.41.17", "resolves while etcd is up")
            } catch {
                close()
                throw error
            }
        }

        func etcdctl(_ args: [String]) throws -> Shell.Result {
            try cluster.fabric.run(["etcdctl", "--endpoints", "http://192.168.1.1:2379"] + args)
        }

        /// Starts etcd and waits (bounded) until it reports healthy.
        func startEtcd() throws {
            etcd = try Shell.spawn(etcdArgs)
            var up = false
            for _ in 0..<100 where !up {
                up = (try? etcdctl(["endpoint", "health"]))?.ok == true
                if !up { usleep(100_000) }
            }
            try #require(up, "etcd did not start")
        }

        /// Stops etcd with `signal` and reaps it.
        func stopEtcd(_ signal: Int32 = SIGKILL) {
            guard etcd > 0 else { return }  // never kill(0, ...): that is the whole process group
            kill(etcd, signal)
            waitpid(etcd, nil, 0)
            etcd = 0
        }

        /// The node-local DNS answer for the applied service ("" when none).
        func resolve() throws -> String {
            try node.ns.run(["dig", "+short", "+time=1", "+tries=1", "@169.254.20.10", "ledger-api.payments.svc.cluster.local"]).stdout
                .trimmingCharacters(in: .whitespacesAndNewlines)
        }

        func close() {
            stopEtcd()
            cluster.close()
        }
    }

    /// A pod record name: the address with dots (IPv4) or colons (IPv6) as dashes.
    static func podRecord(_ ip: String, _ namespace: String = "apps") -> String {
        ip.replacingOccurrences(of: ip.contains(":") ? ":" : ".", with: "-") + ".\(namespace).pod.cluster.local"
    }

    /// Retries a probe until it holds, bounded (servers start asynchronously; the UDP server
    /// takes one datagram per process).
    func eventually(_ tries: Int = 20, _ probe: () throws -> Bool) rethrows -> Bool {
        for _ in 0..<tries {
            if try probe() { return true }
            usleep(200_000)
        }
        return false
    }

    /// The embedded source's static cluster: the same manifest on every node, in an IPv4, a
    /// dual-stack and an IPv6-only cluster (issue 22): pod to pod across nodes without NAT in
    /// each family, TCP and UDP to each ClusterIP family from a pod, NodePorts on every node
    /// address of each family from the fabric, DNS (A and AAAA, search path, pod records,
    /// forwarding, TCP) from the pod's own resolv.conf, route repair and peer removal per family.
    @Test(arguments: TestCluster.Families.allCases)
    func threeNodesHostGWServicesAndDNS(_ families: TestCluster.Families) throws {
        let cluster = try TestCluster(nodes: 3, families: families)
        defer { cluster.close() }
        try cluster.dnsStub()
        try cluster.startAgents()
        try cluster.applyEverywhere(cluster.nodeManifest + "---\n" + Self.service(families))

        let web1 = try cluster.addPod("web-1", on: 1)
        let web2 = try cluster.addPod("web-2", on: 2)
        let client = try cluster.addPod("client", on: 0)
        #expect(client.ips.count == (families == .dualStack ? 2 : 1), "an address per family: \(client.ips)")
        try cluster.applyEverywhere(cluster.podManifest([web1, web2], labels: ["app": "web"]))
        try cluster.applyEverywhere(cluster.podManifest([client], labels: ["app": "client"]))
        for web in [web1, web2] {
            try cluster.echoPeerServer(in: web)
            try cluster.udpEchoPeerServer(in: web)
        }

        // Pod to pod across nodes in each family, without NAT: the server sees the client's own address.
        for v6 in [false, true] {
            guard let from = client.ip(v6), let to1 = web1.ip(v6), let to2 = web2.ip(v6) else { continue }
            // Routes follow the Node objects applied above, asynchronously: bounded waits.
            #expect(try eventually { try cluster.ping(from: client.ns, to1) }, "\(client.name) reaches \(to1)")
            #expect(try eventually { try cluster.ping(from: client.ns, to2) }, "\(client.name) reaches \(to2)")
            var direct = ""
            _ = try eventually { direct = try cluster.request(from: client.ns, to2, 8080).stdout; return !direct.isEmpty }
            #expect(TestCluster.peer(direct) == from && direct.hasPrefix("from-web-2"), "no NAT between pods: \(direct)")
        }

        // The service: each ClusterIP spreads over both endpoints and keeps the client's address, TCP and UDP.
        for ip in Self.serviceIPs(families) {
            let from = try #require(client.ip(ip.contains(":")))
            var seen = Set<String>()
            for _ in 0..<12 {
                let r = try cluster.request(from: client.ns, ip, 80)
                #expect(TestCluster.peer(r.stdout) == from, "ClusterIP \(ip): \(r.stdout)\(r.stderr)")
                if r.stdout.hasPrefix("from-web-1") { seen.insert("web-1") }
                if r.stdout.hasPrefix("from-web-2") { seen.insert("web-2") }
            }
            #expect(seen == ["web-1", "web-2"], "both endpoints answer through the ClusterIP \(ip)")
            var udp = ""
            #expect(try eventually { udp = try cluster.udpRequest(from: client.ns, ip, 81).stdout; return udp.hasPrefix("from-web-") },
                    "UDP to ClusterIP \(ip): \(udp)")
            #expect(TestCluster.peer(udp) == from, "UDP to ClusterIP \(ip) keeps the source: \(udp)")
        }
        // NodePort from a host on the fabric, on every node and each of its addresses, TCP and UDP.
        for node in cluster.nodes {
            for ip in node.ips {
                let r = try cluster.request(from: cluster.fabric, ip, 30080)
                #expect(r.stdout.hasPrefix("from-web-"), "NodePort on \(node.name) \(ip): \(r.stdout)\(r.stderr)")
                var udp = ""
                #expect(try eventually { udp = try cluster.udpRequest(from: cluster.fabric, ip, 30081).stdout; return udp.hasPrefix("from-web-") },
                        "UDP NodePort on \(node.name) \(ip): \(udp)")
            }
        }

        // externalTrafficPolicy Local: a node with an endpoint (node2 holds web-1) answers on each
        // of its addresses with that endpoint and the client's own address; node1 has none and
        // drops (kube-proxy's behaviour), in each family.
        for (ip, fabricIP) in zip(cluster.nodes[1].ips, families.fabricIPs) {
            var r = ""
            #expect(try eventually { r = try cluster.request(from: cluster.fabric, ip, 30090).stdout; return !r.isEmpty })
            #expect(r.hasPrefix("from-web-1") && TestCluster.peer(r) == fabricIP, "eTP Local on node2 \(ip): \(r)")
        }
        for ip in cluster.nodes[0].ips {
            #expect(try cluster.request(from: cluster.fabric, ip, 30090, timeout: 1).stdout.isEmpty, "eTP Local without a local endpoint on node1 \(ip)")
        }

        // DNS from the pod, through the resolv.conf its CNI result produced, in each family.
        for (v6, type, serviceIP, forwarded) in [(false, "A", "10.107.37.188", "192.0.2.10"), (true, "AAAA", "fd00:10:96::25bc", "2001:db8::10")]
        where v6 ? families.hasV6 : families.hasV4 {
            #expect(try dig(client, type, "web-service.apps.svc.cluster.local") == serviceIP)
            #expect(try dig(client, type, "+search", "web-service") == serviceIP, "short name through the search path")
            let web1IP = try #require(web1.ip(v6))
            #expect(try dig(client, type, Self.podRecord(web1IP)) == web1IP)
            #expect(try dig(client, type, "www.example.test") == forwarded, "forwarded to the stub upstream")
            let tcp = try client.ns.run(["dig", "+tcp", "+short", type, "web-service.apps.svc.cluster.local"]).stdout
            #expect(tcp.contains(serviceIP), "DNS over TCP")
        }
        let resolvConf = try String(contentsOfFile: "/etc/netns/\(client.ns.name)/resolv.conf", encoding: .utf8)
        let nameservers = resolvConf.split(separator: "\n").filter { $0.hasPrefix("nameserver ") }.map { String($0.dropFirst(11)) }
        #expect(nameservers == (families.hasV4 ? ["169.254.20.10"] : []) + (families.hasV6 ? ["fd5f:8dcc:e9bf::a"] : []), "\(nameservers)")
        // Every nameserver of the pod answers on its own (a resolver may use either).
        let (type, serviceIP) = families.hasV4 ? ("A", "10.107.37.188") : ("AAAA", "fd00:10:96::25bc")
        for server in nameservers {
            #expect(try dig(client, "@\(server)", type, "web-service.apps.svc.cluster.local") == serviceIP, "\(type) from \(server)")
        }
        if families.hasV4 {
            // The second default DNS address is in the service range (10.96.0.10, the kubeadm
            // clusterDNS): the service rules must not drop it as an unallocated ClusterIP, from a
            // pod or from the node.
            #expect(try dig(client, "@10.96.0.10", "web-service.apps.svc.cluster.local") == "10.107.37.188", "10.96.0.10 from a pod")
            let fromNode = try cluster.nodes[0].ns.run(["dig", "+short", "+time=2", "+tries=2", "@10.96.0.10", "web-service.apps.svc.cluster.local"])
            #expect(fromNode.stdout.contains("10.107.37.188"), "10.96.0.10 from the node: \(fromNode.stdout)")
        }
        // Queries to the node-local DNS addresses are exempt from conntrack (no DNAT race).
        for (family, table) in [("ipv4", "ip"), ("ipv6", "ip6")] where family == "ipv4" ? families.hasV4 : families.hasV6 {
            let tracked = try cluster.nodes[0].ns.run(["conntrack", "-L", "-f", family]).stdout.split(separator: "\n")
                .filter { ($0.contains("dst=169.254.20.10") || $0.contains("dst=fd5f:8dcc:e9bf::a")) && $0.contains("dport=53") }
            #expect(tracked.isEmpty, "a DNS query was tracked: \(tracked)")
            #expect(try cluster.nodes[0].ns.check(["nft", "list", "chain", table, "nodenet", "dns-notrack"]).stdout.contains("notrack"))
        }
        // A service applied now resolves at once.
        let late = families.hasV4 ? "10.96.7.7" : "fd00:10:96::707"
        try cluster.applyEverywhere("apiVersion: v1\nkind: Service\nmetadata: {name: late, namespace: apps}\nspec: {clusterIP: \"\(late)\", ports: [{port: 80}]}\n")
        #expect(try dig(client, families.hasV4 ? "A" : "AAAA", "late.apps.svc.cluster.local") == late)
        // It has no endpoints: connections are refused at once (kube-proxy's reject), not left to
        // time out. The reject sits in the forward hook, after routing (as kube-proxy's): give
        // node1 the default route a production node has, or the kernel answers "network
        // unreachable" first (this fabric has no default route).
        for gateway in families.fabricIPs {
            try cluster.nodes[0].ns.check(["ip", gateway.contains(":") ? "-6" : "-4", "route", "add", "default", "via", gateway])
        }
        var refused = try cluster.request(from: client.ns, late, 80, timeout: 2)
        _ = try eventually { refused = try cluster.request(from: client.ns, late, 80, timeout: 2); return refused.stderr.contains("Connection refused") }
        #expect(!refused.ok && refused.stderr.contains("Connection refused"), "no endpoints: \(refused.stderr)")

        // A route deleted behind the agent's back comes back, in each family.
        let node1 = cluster.nodes[0].ns
        for (subnet, via) in zip(cluster.nodes[1].podCIDRs, cluster.nodes[1].ips) {
            let ip = subnet.contains(":") ? ["ip", "-6"] : ["ip", "-4"]
            try node1.check(ip + ["route", "del", subnet])
            var back = ""
            _ = try eventually(50) { back = try node1.check(ip + ["route", "show", subnet]).stdout; return back.contains("via \(via)") }
            #expect(back.contains("via \(via)"), "the deleted route to \(subnet) was repaired: \(back)")
            #expect(back.contains("proto 78") || back.contains("proto nodenet"), "\(back)")
        }

        // A peer removed from the store loses its routes on every node, in each family.
        let node3 = "apiVersion: v1\nkind: Node\nmetadata: {name: node3}\n"
        for n in cluster.nodes.prefix(2) { #expect(try n.agent.cli(["delete", "-f", "-"], stdin: node3).ok) }
        for n in cluster.nodes.prefix(2) {
            let gone = try eventually {
                let routes = try n.ns.check(["ip", "-4", "route"]).stdout + (try n.ns.check(["ip", "-6", "route"]).stdout)
                return !cluster.nodes[2].podCIDRs.contains { routes.contains($0) }
            }
            #expect(gone, "\(n.name) still routes to the removed node3")
        }
    }

    /// Issue 22 item 1, end to end: `nodenet apply` allocates a Service's cluster IPs as its
    /// `ipFamilyPolicy` and `ipFamilies` ask, from the agent's service ranges of each family;
    /// the addresses resolve (A/AAAA) and carry traffic to the endpoint. A family the cluster
    /// has no range for is refused with the field named, and nothing of that manifest is written.
    @Test(arguments: TestCluster.Families.allCases)
    func applyAllocatesClusterIPsPerIPFamilyPolicy(_ families: TestCluster.Families) throws {
        let cluster = try TestCluster(nodes: 1, families: families)
        defer { cluster.close() }
        try cluster.startAgents()
        let node = cluster.nodes[0]
        try cluster.applyEverywhere(cluster.nodeManifest + "---\napiVersion: v1\nkind: Namespace\nmetadata: {name: apps}\n")
        let web = try cluster.addPod("web", on: 0)
        let client = try cluster.addPod("client", on: 0)
        try cluster.applyEverywhere(cluster.podManifest([web], labels: ["app": "web"]))
        try cluster.echoPeerServer(in: web)

        func service(_ name: String, _ spec: String) -> String {
            "apiVersion: v1\nkind: Service\nmetadata: {name: \(name), namespace: apps}\n"
                + "spec: {\(spec)selector: {app: web}, ports: [{port: 80, targetPort: 8080}]}\n"
        }
        // name, spec, families wanted (nil: refused, with this field named)
        let v4 = families.hasV4, v6 = families.hasV6
        let cases: [(name: String, spec: String, want: [Bool]?, field: String)] = [
            ("default", "", [families == .ipv6], ""),
            ("single-v6", "ipFamilyPolicy: SingleStack, ipFamilies: [IPv6], ", v6 ? [true] : nil, "spec.ipFamilies[0]"),
            ("prefer", "ipFamilyPolicy: PreferDualStack, ", (v4 ? [false] : []) + (v6 ? [true] : []), ""),
            ("require", "ipFamilyPolicy: RequireDualStack, ", v4 && v6 ? [false, true] : nil, "spec.ipFamilyPolicy"),
        ]
        let dnsServer = families.hasV4 ? "169.254.20.10" : "fd5f:8dcc:e9bf::a"
        func resolve(_ name: String, _ type: String) throws -> [String] {
            try node.ns.run(["dig", "+short", "+time=1", "+tries=2", "@\(dnsServer)", type, "\(name).apps.svc.cluster.local"]).stdout
                .split(separator: "\n").map(String.init)
        }
        for c in cases {
            guard let want = c.want else {
                // Refused, and the valid Service in the same manifest is not written either.
                let r = try node.agent.apply(service("also-\(c.name)", "") + "---\n" + service(c.name, c.spec))
                #expect(!r.ok && r.stderr.contains(c.field), "\(c.name) is refused naming \(c.field): \(r.stdout)\(r.stderr)")
                #expect(try resolve("also-\(c.name)", families.hasV4 ? "A" : "AAAA").isEmpty, "nothing of a refused manifest is written")
                continue
            }
            let r = try node.agent.apply(service(c.name, c.spec))
            #expect(r.ok, "\(c.name): \(r.stderr)")
            var a: [String] = [], aaaa: [String] = []
            _ = try eventually {
                a = try resolve(c.name, "A"); aaaa = try resolve(c.name, "AAAA")
                return a.count + aaaa.count == want.count
            }
            #expect(a.count == want.filter { !$0 }.count && aaaa.count == want.filter { $0 }.count,
                    "\(c.name): A \(a), AAAA \(aaaa), wanted \(want.map { $0 ? "IPv6" : "IPv4" })")
            #expect(a.allSatisfy { $0.hasPrefix("10.") } && aaaa.allSatisfy { $0.hasPrefix("fd00:10:96::") }, "from the service ranges: \(a) \(aaaa)")
            for ip in a + aaaa {
                let from = try #require(client.ip(ip.contains(":")))
                var answer = ""
                _ = try eventually { answer = try cluster.request(from: client.ns, ip, 80).stdout; return !answer.isEmpty }
                #expect(answer.hasPrefix("from-web") && TestCluster.peer(answer) == from, "\(c.name) \(ip): \(answer)")
            }
        }
    }

    /// An agent that starts while etcd is down serves the full sync it stored in an earlier
    /// run: it gets ready at once, the cluster DNS answers from that state (not SERVFAIL), and
    /// status says the source is not synced yet; once etcd is back it syncs.
    @Test(.enabled(if: (try? Shell.which("etcd")) != nil, "needs etcd-server"))
    func etcdDownAtStartServesThePersistedSync() throws {
        let fixture = try EtcdNode()
        defer { fixture.close() }
        let node = fixture.node
        let resolve = fixture.resolve

        _ = node.agent.stop()
        fixture.stopEtcd()
        // Well under the source's 30 s first-sync wait: ready from the persisted sync.
        try node.agent.start(timeout: 15)
        #expect(try resolve() == "10.96.41.17", "DNS answers from the persisted state while etcd is down")
        let status = try node.agent.cli(["status", "--json"]).stdout
        #expect(status.contains("serving the persisted state"), "status says where the view comes from: \(status)")

        try fixture.startEtcd()
        var synced = false
        for _ in 0..<100 where !synced {
            synced = (try node.agent.cli(["status", "--json"]).stdout).contains("synced from etcd")
            if !synced { usleep(100_000) }
        }
        #expect(synced, "synced once etcd is back: \(node.agent.log(tail: 20))")
        #expect(try resolve() == "10.96.41.17")
    }

    /// Issue 14 item 3, the fault as an operator meets it: etcd (Debian's etcd-server) is
    /// stopped for several lifetimes of the node's lease and started again. The cluster DNS
    /// answers all along; afterwards the node's subnet key and Node object are the very same
    /// records (same create revision, same lease: they never lapsed, so no other node dropped
    /// its routes and no one could claim the subnet), and the source is synced again within
    /// seconds. Without the fix the first renewal came seconds after etcd was back (the HTTP
    /// pool's connection backoff had grown over the outage) and the lease expired.
    @Test(.enabled(if: (try? Shell.which("etcd")) != nil, "needs etcd-server"))
    func etcdOutageLongerThanTheLeaseKeepsTheNodesRecords() throws {
        let ttl = 4
        let fixture = try EtcdNode(agentArgs: ["--etcd-lease-seconds", "\(ttl)"])
        defer { fixture.close() }
        let node = fixture.node
        let resolve = fixture.resolve
        let etcdctl = fixture.etcdctl
        /// create revision and lease of a key, from etcdctl's JSON (nil: no such key).
        func record(_ key: String) throws -> (create: Int, lease: Int)? {
            let out = try etcdctl(["get", key, "-w", "json"]).stdout
            guard let json = try JSONSerialization.jsonObject(with: Data(out.utf8)) as? [String: Any],
                  let kv = (json["kvs"] as? [[String: Any]])?.first else { return nil }
            return ((kv["create_revision"] as? Int) ?? -1, (kv["lease"] as? Int) ?? 0)
        }
        let subnetKeys = try etcdctl(["get", "--prefix", "--keys-only", "/nodenet/subnets/"]).stdout
            .split(separator: "\n").map(String.init).filter { !$0.isEmpty }
        try #require(subnetKeys.count == 1, "one subnet key: \(subnetKeys)")
        let subnetBefore = try #require(try record(subnetKeys[0]))
        let nodeBefore = try #require(try record("/nodenet/objects/Node/node1"))

        fixture.stopEtcd(SIGTERM)
        // Six lease lifetimes without etcd; DNS answers from the store all along, asked twice a
        // second (a schedule for the queries, not a wait for anything).
        let outageStart = Date()
        var dnsAnswers = 0, dnsQueries = 0
        while Date().timeIntervalSince(outageStart) < Double(ttl * 6) {
            dnsQueries += 1
            if try resolve() == "10.96.41.17" { dnsAnswers += 1 }
            let next = outageStart.addingTimeInterval(Double(dnsQueries) * 0.5)
            Thread.sleep(until: next)
        }
        #expect(dnsAnswers == dnsQueries, "DNS answered \(dnsAnswers) of \(dnsQueries) queries during the outage")
        try fixture.startEtcd()
        let back = Date()
        var synced = false
        while !synced, Date().timeIntervalSince(back) < 10 {
            let s = try node.agent.cli(["status", "--json"]).stdout
            synced = s.contains("\"connected\" : true")
            if !synced { usleep(100_000) }
        }
        #expect(synced, "the source reconnected within 10 s: \(node.agent.log(tail: 20))")
        // Two lease lifetimes later: the same records on the same lease.
        usleep(UInt32(ttl * 2) * 1_000_000)
        let subnetAfter = try record(subnetKeys[0])
        let nodeAfter = try record("/nodenet/objects/Node/node1")
        #expect(subnetAfter?.create == subnetBefore.create && subnetAfter?.lease == subnetBefore.lease,
                "subnet key before \(subnetBefore), after \(String(describing: subnetAfter))")
        #expect(nodeAfter?.create == nodeBefore.create && nodeAfter?.lease == nodeBefore.lease,
                "Node object before \(nodeBefore), after \(String(describing: nodeAfter))")
        #expect(try resolve() == "10.96.41.17")
    }

    /// Several agents sharing their state through one real etcd (Debian's etcd-server),
    /// running inside the fabric namespace: subnets leased from etcd, a service applied on one
    /// node reachable and resolvable from another.
    ///
    /// Also on an IPv6-only cluster (issue 22): etcd on the fabric's IPv6 address, /64 leases
    /// from the IPv6 cluster CIDR, an IPv6 service. And dual-stack: no podCIDRs in any config
    /// or Node object, only a clusterCIDR of each family: every node leases a subnet of each
    /// (IPv4 first), its Node carries an InternalIP of each, and pods reach each other across
    /// nodes in both families.
    @Test(.enabled(if: (try? Shell.which("etcd")) != nil, "needs etcd-server"), arguments: [TestCluster.Families.ipv4, .ipv6, .dualStack])
    func threeNodesOnEtcd(_ families: TestCluster.Families) throws {
        let endpoint = families.hasV4 ? "http://192.168.1.1:2379" : "http://[fd00:1::1]:2379"
        let serviceIP = families.hasV4 ? "10.107.37.188" : "fd00:10:96::25bc"
        let cluster = try TestCluster(nodes: 3, families: families) { _ in
            // IPv6-only: the pre-dual-stack key, which means the IPv6 size on such a cluster.
            ["--source", "etcd", "--etcd-endpoints", endpoint] + (families.hasV4 ? [] : ["--node-cidr-mask-size", "64"])
        }
        defer { cluster.close() }
        try cluster.dnsStub()
        try cluster.spawn(in: cluster.fabric, ["etcd", "--data-dir", cluster.dir.file("etcd"), "--listen-client-urls", endpoint,
                                               "--advertise-client-urls", endpoint, "--listen-peer-urls", "http://127.0.0.1:2380"])
        var up = false
        for _ in 0..<100 where !up {
            up = (try? cluster.fabric.run(["etcdctl", "--endpoints", endpoint, "endpoint", "health"]))?.ok == true
            if !up { usleep(100_000) }
        }
        try #require(up, "etcd did not start")
        try cluster.startAgents()

        // Every node leased its own subnet of each family and sees the others as Node objects.
        var subnets = Set<String>()
        for n in cluster.nodes {
            var cidrs: [String] = []
            for _ in 0..<100 where cidrs.isEmpty {
                let (objects, podCIDRs) = try Self.statusSubnets(n)
                if objects["Node"] == 3, podCIDRs.count == families.clusterCIDRs.count { cidrs = podCIDRs } else { usleep(100_000) }
            }
            #expect(!cidrs.isEmpty, "\(n.name) has no subnet of each family and three nodes")
            for (cidr, cluster) in zip(cidrs, families.clusterCIDRs) {
                #expect(IPPrefix(cluster)!.contains(IPPrefix(cidr)!), "\(n.name): \(cidrs) in clusterCIDR order")
            }
            subnets.formUnion(cidrs)
        }
        #expect(subnets.count == 3 * families.clusterCIDRs.count, "three different subnets of each family: \(subnets)")

        let web = try cluster.addPod("web", on: 1)
        let a = try cluster.addPod("client-a", on: 0)
        let c = try cluster.addPod("client-c", on: 2)
        try cluster.echoPeerServer(in: web)
        // Routes follow the leases: pods on every node reach each other, in every family.
        for pod in [web, a, c] { #expect(pod.ips.count == families.clusterCIDRs.count, "\(pod.name) has an address of each family: \(pod.ips)") }
        for (from, to) in [(a, web), (a, c), (c, web), (c, a)] {
            for ip in to.ips {
                var ok = false
                for _ in 0..<20 where !ok { ok = try cluster.ping(from: from.ns, ip); if !ok { usleep(200_000) } }
                #expect(ok, "\(from.name) cannot reach \(to.name) at \(ip)")
            }
        }
        // A service applied on node1 only is reachable and resolvable from a pod on node3.
        let applied = try cluster.nodes[0].agent.apply("""
            apiVersion: v1
            kind: Namespace
            metadata: {name: apps}
            ---
            apiVersion: v1
            kind: Pod
            metadata: {name: web, namespace: apps, labels: {app: web}}
            ---
            apiVersion: v1
            kind: Service
            metadata: {name: web-service, namespace: apps}
            spec: {clusterIP: "\(serviceIP)", selector: {app: web}, ports: [{name: http, port: 80, targetPort: 8080}]}
            """)
        #expect(applied.ok, "\(applied.stderr)")
        var answered = ""
        for _ in 0..<30 where !answered.contains("from-web") {
            answered = (try? cluster.request(from: c.ns, serviceIP, 80))?.stdout ?? ""
            if !answered.contains("from-web") { usleep(200_000) }
        }
        #expect(answered.hasPrefix("from-web") && TestCluster.peer(answered) == c.ip, "node3's pod reaches the service applied on node1: \(answered)")
        #expect(try dig(c, families.hasV4 ? "A" : "AAAA", "web-service.apps.svc.cluster.local") == serviceIP)
    }

    /// `nodenet status --json`: object counts and this node's pod subnets.
    static func statusSubnets(_ node: TestCluster.Node) throws -> (objects: [String: Int], podCIDRs: [String]) {
        let r = try node.agent.cli(["status", "--json"])
        guard let json = try? JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any] else { return ([:], []) }
        return (json["objects"] as? [String: Int] ?? [:], (json["node"] as? [String: Any])?["podCIDRs"] as? [String] ?? [])
    }

    /// Issue 22 on the embedded store: a dual-stack node with neither podCIDRs nor a Node
    /// object leases one subnet per clusterCIDR family itself; pods get an address of each
    /// family and reach each other in both; a restart keeps both subnets. (Embedded stores are
    /// one node's own: several nodes take their subnets from Node objects, not leases.)
    @Test func embeddedDualStackNodeLeasesASubnetOfEachFamily() throws {
        let cluster = try TestCluster(nodes: 1, families: .dualStack)
        defer { cluster.close() }
        try cluster.dnsStub()
        try cluster.startAgents()
        let node = cluster.nodes[0]
        var cidrs: [String] = []
        try eventually("both subnets leased") { cidrs = try Self.statusSubnets(node).podCIDRs; return cidrs.count == 2 }
        #expect(cidrs == ["10.244.0.0/24", "fd00:10:244::/64"], "one /24 and one /64, IPv4 first: \(cidrs)")
        let a = try cluster.addPod("web", on: 0)
        let b = try cluster.addPod("client", on: 0)
        for pod in [a, b] {
            #expect(pod.ips.count == 2 && pod.ip(false).map { IPPrefix(cidrs[0])!.contains(IPAddress($0)!) } == true
                    && pod.ip(true).map { IPPrefix(cidrs[1])!.contains(IPAddress($0)!) } == true, "\(pod.name): \(pod.ips)")
        }
        for ip in a.ips { #expect(try cluster.ping(from: b.ns, ip), "client reaches web at \(ip)") }

        // A restart serves the same subnets: the lease is in the state database.
        _ = node.agent.stop()
        try node.agent.start()
        #expect(try Self.statusSubnets(node).podCIDRs == cidrs)
        let c = try cluster.addPod("late", on: 0)
        #expect(c.ips.count == 2 && c.ips.allSatisfy { ip in cidrs.contains { IPPrefix($0)!.contains(IPAddress(ip)!) } }, "\(c.ips)")
        for ip in c.ips { #expect(try cluster.ping(from: a.ns, ip), "web reaches the pod added after the restart at \(ip)") }
    }

    /// Issue 22, the upgrade path on the embedded store: a node that leased an IPv4 subnet as a
    /// single-stack node restarts with a clusterCIDR of each family: it keeps its IPv4 subnet
    /// (the pod it has keeps its address and stays reachable) and gains an IPv6 one, which new
    /// pods get addresses from.
    @Test func embeddedIPv4LeaseGainsAnIPv6SubnetWhenTheClusterBecomesDualStack() throws {
        let cluster = try TestCluster(nodes: 1, families: .dualStack)
        defer { cluster.close() }
        try cluster.dnsStub()
        let node = cluster.nodes[0]
        // The same node (namespace, stateDir, runDir) configured single-stack, as before the upgrade.
        let before = AgentProcess(namespace: node.ns, directory: cluster.dir,
                                  args: ["--node-name", node.name, "--node-ip", node.ip, "--dns-upstreams", "192.168.1.1:53"])
        try before.start()
        var cidrs: [String] = []
        try eventually("an IPv4 subnet leased") { cidrs = try Self.statusSubnets(node).podCIDRs; return !cidrs.isEmpty }
        #expect(cidrs == ["10.244.0.0/24"])
        let old = try cluster.addPod("old", on: 0)
        #expect(old.ips.count == 1)
        _ = before.stop()

        try node.agent.start()
        try eventually("an IPv6 subnet gained") { cidrs = try Self.statusSubnets(node).podCIDRs; return cidrs.count == 2 }
        #expect(cidrs == ["10.244.0.0/24", "fd00:10:244::/64"], "kept the IPv4 subnet, gained an IPv6 one: \(cidrs)")
        let a = try cluster.addPod("new-a", on: 0)
        let b = try cluster.addPod("new-b", on: 0)
        #expect(a.ips.count == 2 && b.ips.count == 2, "\(a.ips) \(b.ips)")
        for ip in b.ips { #expect(try cluster.ping(from: a.ns, ip), "new-a reaches new-b at \(ip)") }
        #expect(try cluster.ping(from: a.ns, old.ip), "the pod from before the upgrade keeps its address and is reachable")
    }
}
