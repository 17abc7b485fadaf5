import ClusterState
import IPAddressing
import Foundation
import Logging
import NodenetTestSupport
import Testing
@testable import ServiceProxy

/// Real packets through the rules: a "node" namespace running the actor (each test once per backend: nft and netlink), two pod
/// namespaces with a TCP server each, a client pod and a "fabric" host for NodePorts.
/// Every address exists only inside these namespaces.
@Suite(.serialized, .enabled(if: isPrivileged && (try? Shell.which("socat")) != nil, "needs root, nft and socat"))
struct TrafficTests {
    final class Topology: Sendable {
        let node: TestNamespace, pod1: TestNamespace, pod2: TestNamespace, client: TestNamespace, fabric: TestNamespace
        var all: [TestNamespace] { [pod1, pod2, client, fabric, node] }

        let kind: BackendKind

        init(_ kind: BackendKind) throws {
            self.kind = kind
            node = try TestNamespace("node")
            pod1 = try TestNamespace("pod")
            pod2 = try TestNamespace("pod")
            client = try TestNamespace("client")
            fabric = try TestNamespace("fabric")
            try node.check(["sysctl", "-qw", "net.ipv4.ip_forward=1"])
            try node.check(["sysctl", "-qw", "net.ipv6.conf.all.forwarding=1"])
            // Dual stack: pods fd00:10:244:N::5 behind the node's fd00:10:244:N::1, fabric fd00:1::1 / node fd00:1::11.
            try link(pod1, "10.244.1.5", gateway: "10.244.1.1", index: 1, v6: ("fd00:10:244:1::5", "fd00:10:244:1::1"))
            try link(pod2, "10.244.2.5", gateway: "10.244.2.1", index: 2, v6: ("fd00:10:244:2::5", "fd00:10:244:2::1"))
            try link(client, "10.244.3.5", gateway: "10.244.3.1", index: 3, v6: ("fd00:10:244:3::5", "fd00:10:244:3::1"))
            try link(fabric, "192.168.1.1", gateway: nil, nodeAddress: "192.168.1.11", index: 4, v6: ("fd00:1::1", "fd00:1::11"))
            // Like a real node: a default route, so service IPs without rules get forwarded (and
            // meet the reject rules) instead of failing routing with "network unreachable".
            try node.check(["ip", "route", "add", "default", "via", "192.168.1.1"])
            try node.check(["ip", "-6", "route", "add", "default", "via", "fd00:1::1"])
            for (ns, name) in [(pod1, "pod1"), (pod2, "pod2")] {
                // Not socat UDP-RECVFROM,fork: its child lingers on the shared socket and swallows
                // the next datagrams, so a pod would answer only once.
                // One UDP server per family (the IPv6 one IPv6-only, so each family has its own).
                for family in ["AF_INET", "AF_INET6"] {
                    try Self.background(ns, ["python3", "-c", """
                        import socket
                        s = socket.socket(socket.\(family), socket.SOCK_DGRAM)
                        if socket.\(family) == socket.AF_INET6:
                            s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
                        s.bind(("", 5353))
                        for _ in range(100000):
                            _, peer = s.recvfrom(100)
                            s.sendto(b"\(name)\\n", peer)
                        """])
                }
                try serveTCP(ns, port: 8080, reply: name)
                try Self.waitListening(ns, udp: true, port: 5353, sockets: 2)
            }
        }

        /// A TCP server in `ns` answering each connection with one line (`sh` text, so
        /// `$SOCAT_PEERADDR` is the client's address as the server sees it), once it listens.
        /// On IPv4 and IPv6 (two listeners).
        func serveTCP(_ ns: TestNamespace, port: Int, reply: String) throws {
            try Self.background(ns, ["socat", "TCP4-LISTEN:\(port),fork,reuseaddr", "SYSTEM:echo \(reply)"])
            try Self.background(ns, ["socat", "TCP6-LISTEN:\(port),fork,reuseaddr,ipv6only=1", "SYSTEM:echo \(reply)"])
            try Self.waitListening(ns, udp: false, port: port, sockets: 2)
        }

        struct NotListening: Error { var namespace: String, port: Int }

        /// Polls `ss` until `sockets` listen on the port (process start is slow when the machine is busy).
        static func waitListening(_ ns: TestNamespace, udp: Bool, port: Int, sockets: Int = 1) throws {
            for _ in 0..<200 {
                let listing = try ns.run(["ss", "-H", udp ? "-lun" : "-ltn", "sport = :\(port)"]).stdout
                if listing.split(separator: "\n").count >= sockets { return }
                usleep(50_000)
            }
            throw NotListening(namespace: ns.name, port: port)
        }

        /// A veth pair: `peer` side in `ns`, the other in the node with the .1 (or nodeAddress) of the /24;
        /// `v6`: the two sides' addresses in a /64 (no duplicate detection: usable at once), the
        /// node's being the namespace's IPv6 gateway when it has an IPv4 one.
        private func link(_ ns: TestNamespace, _ address: String, gateway: String?, nodeAddress: String? = nil, index: Int,
                          v6: (inside: String, node: String)) throws {
            let outside = "nn\(index)", inside = "eth\(index)"
            try node.check(["ip", "link", "add", outside, "type", "veth", "peer", "name", inside])
            try node.check(["ip", "link", "set", inside, "netns", ns.name])
            try node.check(["ip", "addr", "add", (nodeAddress ?? gateway!) + "/24", "dev", outside])
            try node.check(["ip", "addr", "add", v6.node + "/64", "dev", outside, "nodad"])
            try node.check(["ip", "link", "set", outside, "up"])
            try ns.check(["ip", "addr", "add", address + "/24", "dev", inside])
            try ns.check(["ip", "addr", "add", v6.inside + "/64", "dev", inside, "nodad"])
            try ns.check(["ip", "link", "set", inside, "up"])
            if let gateway {
                try ns.check(["ip", "route", "add", "default", "via", gateway])
                try ns.check(["ip", "-6", "route", "add", "default", "via", v6.node])
            }
        }

        static func background(_ ns: TestNamespace, _ argv: [String]) throws {
            _ = try ChildProcess([try Shell.which("ip"), "netns", "exec", ns.name] + argv)  // killed when its namespace is deleted
        }

        /// One TCP connection from `ns`: the server's line, or the error text.
        func connect(from ns: TestNamespace, _ target: String, timeout: Int = 3) throws -> (ok: Bool, text: String, seconds: Double) {
            let start = Date()
            let r = try ns.run(["socat", "-t3", "-T3", "-", "TCP:\(target),connect-timeout=\(timeout)"], stdin: "", timeout: 10)
            return (r.ok, (r.stdout + r.stderr).trimmingCharacters(in: .whitespacesAndNewlines), Date().timeIntervalSince(start))
        }

        /// One UDP exchange from a fixed source port (so a second one reuses the conntrack entry):
        /// the server's line, "refused" (ICMP port unreachable) or "timeout".
        func udp(from ns: TestNamespace, _ target: String, sourcePort: Int) throws -> String {
            // One datagram out, one reply back (socat would wait out its timeout after the reply).
            // "host:port", or "[v6]:port".
            let split = target.lastIndex(of: ":")!
            let host = target[..<split].trimmingCharacters(in: CharacterSet(charactersIn: "[]"))
            let port = target[target.index(after: split)...]
            let family = host.contains(":") ? "AF_INET6" : "AF_INET"
            let script = """
                import socket
                s = socket.socket(socket.\(family), socket.SOCK_DGRAM)
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                s.bind(("", \(sourcePort)))
                s.settimeout(3)
                s.connect(("\(host)", \(port)))  # connected: an ICMP error is reported
                try:
                    s.send(b"q\\n")
                    print(s.recv(100).decode().strip())
                except ConnectionRefusedError:
                    print("refused")
                except socket.timeout:
                    print("timeout")
                """
            let r = try ns.run(["python3", "-c", script], timeout: 10)
            return r.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        }

        /// The proxy actor programming the node namespace, after its first sync.
        func startProxy(_ store: ClusterStore) async throws -> (ServiceProxyActor, Task<Void, Never>) {
            let config = ProxyConfiguration(nodeName: nodeName, nodeAddresses: [ip("192.168.1.11"), ip("fd00:1::11")], clusterCIDRs: IPPrefixValue.pods,
                                            coalesceDelay: .milliseconds(5))
            let actor = ServiceProxyActor(store: store, configuration: config, backend: try backend(kind, in: node), logger: Logger(label: "test"))
            let task = Task { await actor.run() }
            try await waitFor { await actor.status().syncs >= 1 }
            return (actor, task)
        }

        /// Connects until every reply in `expected` was seen (at most `tries` times); every
        /// connection must succeed. Returns the replies seen.
        func distinct(from ns: TestNamespace, _ target: String, expected: Set<String>, tries: Int = 30,
                      sourceLocation: SourceLocation = #_sourceLocation) throws -> Set<String> {
            var seen = Set<String>()
            for _ in 0..<tries where !seen.isSuperset(of: expected) {
                let r = try connect(from: ns, target)
                #expect(r.ok, "\(target): \(r.text)", sourceLocation: sourceLocation)
                seen.insert(r.text)
            }
            return seen
        }

        /// `count` connections: each must succeed and reach `only`.
        func expectOnly(_ only: String, from ns: TestNamespace, _ target: String, count: Int = 12,
                        sourceLocation: SourceLocation = #_sourceLocation) throws {
            for _ in 0..<count {
                let r = try connect(from: ns, target)
                #expect(r.ok && r.text == only, "\(target): expected \(only), got \(r.text)", sourceLocation: sourceLocation)
            }
        }

        /// A connection the rules drop: it times out, no refusal comes back.
        func expectDropped(from ns: TestNamespace, _ target: String, sourceLocation: SourceLocation = #_sourceLocation) throws {
            let r = try connect(from: ns, target)
            #expect(!r.ok && !r.text.contains("refused") && r.seconds > 2.5, "\(target): \(r.text) after \(r.seconds) s",
                    sourceLocation: sourceLocation)
        }

        /// A connection refused at once (TCP RST or ICMP unreachable).
        func expectRefused(from ns: TestNamespace, _ target: String, sourceLocation: SourceLocation = #_sourceLocation) throws {
            let r = try connect(from: ns, target)
            #expect(!r.ok && r.text.contains("refused") && r.seconds < 2, "\(target): \(r.text) after \(r.seconds) s",
                    sourceLocation: sourceLocation)
        }

        func delete() { for ns in all { ns.delete() } }
    }

    @Test(arguments: BackendKind.allCases) func clusterIPNodePortRejectAndHairpin(_ kind: BackendKind) async throws {
        let t = try Topology(kind)
        defer { t.delete() }
        let store = ClusterStore()
        let web = service("web", type: .nodePort, ports: [ServicePort(name: "http", port: 80, targetPort: .int(8080), nodePort: 30080)])
        let empty = service("empty", ips: ["10.96.0.11"])
        await store.apply([
            .upsert(.service(web)), .upsert(.service(empty)),
            .upsert(.endpointSlice(slice("web", [EP(ip: "10.244.1.5"), EP(ip: "10.244.2.5")]))),
        ])
        let (actor, task) = try await t.startProxy(store)
        defer { task.cancel() }
        #expect(await actor.status().lastError == nil)

        // ClusterIP from a pod: both endpoints answer, chosen at random.
        #expect(try t.distinct(from: t.client, "10.96.0.10:80", expected: ["pod1", "pod2"]) == ["pod1", "pod2"])

        // No endpoints: refused at once, not a timeout.
        try t.expectRefused(from: t.client, "10.96.0.11:80")

        // NodePort from a host on the fabric.
        let np = try t.connect(from: t.fabric, "192.168.1.11:30080")
        #expect(np.ok && ["pod1", "pod2"].contains(np.text), "\(np.text)")

        // Hairpin: a pod reaching itself through its service.
        var hairpin = false
        for _ in 0..<30 where !hairpin {
            hairpin = try t.connect(from: t.pod1, "10.96.0.10:80").text == "pod1"
        }
        #expect(hairpin)

        // Endpoints change: pod2 only; then none: refused.
        await store.apply([.upsert(.endpointSlice(slice("web", [EP(ip: "10.244.2.5")])))])
        try await waitFor { await actor.status().syncs >= 2 }
        for _ in 0..<5 { #expect(try t.connect(from: t.client, "10.96.0.10:80").text == "pod2") }
        await store.apply([.delete(ObjectKey(.endpointSlice, namespace: "ns1", name: "web-ipv4"))])
        try await waitFor { await actor.status().syncs >= 3 }
        let gone = try t.connect(from: t.fabric, "192.168.1.11:30080")
        #expect(!gone.ok && gone.text.contains("refused"), "\(gone.text)")
    }
}

extension TrafficTests {
    @Test(arguments: BackendKind.allCases) func clientIPAffinitySticksToOneEndpoint(_ kind: BackendKind) async throws {
        let t = try Topology(kind)
        defer { t.delete() }
        let store = ClusterStore()
        await store.apply([.upsert(.service(service("sticky", affinity: 300))),
                           .upsert(.endpointSlice(slice("sticky", [EP(ip: "10.244.1.5"), EP(ip: "10.244.2.5")])))])
        let (_, task) = try await t.startProxy(store)
        defer { task.cancel() }
        let first = try t.connect(from: t.client, "10.96.0.10:80").text
        #expect(["pod1", "pod2"].contains(first))
        for _ in 0..<10 { #expect(try t.connect(from: t.client, "10.96.0.10:80").text == first) }
        // The kernel remembers the client's choice in the affinity map, with the service's timeout.
        let endpoint = first == "pod1" ? "10.244.1.5" : "10.244.2.5"
        let listing = try t.node.check(["nft", "list", "map", "ip", "nodenet", SharedName.affinity]).stdout
        #expect(listing.contains("10.244.3.5 . 10.96.0.10 . tcp . 80 timeout 5m") && listing.contains(": \(endpoint) . 8080"), "\(listing)")
        // Reading the kernel back copes with the learned entries (they are not part of the model).
        let kernel = try await backend(t.kind, in: t.node).currentState()
        #expect(kernel?.tables[.ip]?.sets[SharedName.affinity]?.spec.timeout == CountRules.defaultAffinityTimeout)
        #expect(kernel?.tables[.ip]?.sets[SharedName.affinity]?.elements.isEmpty == true)
    }

    @Test(arguments: BackendKind.allCases) func staleUDPFlowsAreDeletedWhenTheirEndpointGoes(_ kind: BackendKind) async throws {
        let t = try Topology(kind)
        defer { t.delete() }
        let store = ClusterStore()
        let dns = service("dns", ips: ["10.96.0.20"], ports: [ServicePort(name: "dns", protocol: .udp, port: 53, targetPort: .int(5353))])
        await store.apply([.upsert(.service(dns)), udpSlice("dns", ["10.244.1.5"])])
        let (actor, task) = try await t.startProxy(store)
        defer { task.cancel() }

        #expect(try t.udp(from: t.client, "10.96.0.20:53", sourcePort: 40053) == "pod1")
        let entries = { try t.node.run(["conntrack", "-L", "-p", "udp", "--orig-dst", "10.96.0.20", "--reply-src", "10.244.1.5"]).stdout }
        #expect(try entries().contains("dport=53"))
        // The backend itself (also through the conntrack tool): a filter keeping pod1 leaves the
        // flow, one keeping nothing deletes it, and says how many it deleted.
        let b = try backend(t.kind, in: t.node)
        func off(_ keep: Set<IPAddress>) -> [ConntrackFilter] {
            [ConntrackFilter(family: .v4, originalDestination: ip("10.96.0.20"), originalDestinationPort: 53, replySource: nil, keepingReplySources: keep)]
        }
        #expect(try await b.deleteConntrack(off([ip("10.244.1.5")])) == 0)
        #expect(try entries().contains("dport=53"))
        #expect(try await b.deleteConntrack(off([])) == 1)
        #expect(try !entries().contains("dport=53"))
        #expect(try t.udp(from: t.client, "10.96.0.20:53", sourcePort: 40053) == "pod1")

        // pod1 stops being an endpoint but keeps answering: only the deleted entry makes the next
        // datagram from the same socket go to pod2.
        await store.apply([udpSlice("dns", ["10.244.2.5"])])
        try await waitFor { await actor.status().syncs >= 2 }
        #expect(try !entries().contains("dport=53"))
        let after = try t.udp(from: t.client, "10.96.0.20:53", sourcePort: 40053)
        #expect(after == "pod2", "got \"\(after)\"")
    }
}

/// The slice of a service whose one port "dns" is UDP 5353 on every endpoint.
func udpSlice(_ service: String, _ ips: [String], family: EndpointAddressType = .ipv4) -> StoreChange {
    .upsert(.endpointSlice(slice(service, family: family, ports: [EndpointPort(name: "dns", protocol: .udp, port: 5353)], ips.map { EP(ip: $0) })))
}

/// Applies `changes` to the store and waits for the actor's next sync, which must succeed.
func applySynced(_ changes: [StoreChange], to store: ClusterStore, _ actor: ServiceProxyActor,
                 sourceLocation: SourceLocation = #_sourceLocation) async throws {
    let before = await actor.status().syncs
    await store.apply(changes)
    try await waitFor({ await actor.status().syncs > before }, sourceLocation: sourceLocation)
    let error = await actor.status().lastError
    #expect(error == nil, "\(error ?? "")", sourceLocation: sourceLocation)
}

enum IPPrefixValue {
    static let pods = [IPPrefix("10.244.0.0/16")!, IPPrefix("fd00:10:244::/56")!]
}
