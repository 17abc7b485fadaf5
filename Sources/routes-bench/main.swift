// routes-bench: NodeRoutesActor against `ip -batch` (bench/node-routes/run.sh runs both).
//   routes-bench converge N host-gw|vxlan   N peer Nodes appear in the store at once; prints
//                                           the time until every entry is in the kernel
//   routes-bench repair COUNT [PEERS]       deletes one nodenet route COUNT times behind the
//                                           actor's back; prints how long until it is back
// Everything happens inside a throwaway namespace (eth0 192.168.0.2/16 on a veth), with the
// same peers as the reference: subnet 10.{100+i/256}.{i%256}.0/24 at 192.168.{1+i/250}.{1+i%250}.
import ClusterState
import Glibc
import IPAddressing
import Logging
import Netlink
import NodeRoutes

func fail(_ message: String) -> Never {
    let line = Array("routes-bench: \(message)\n".utf8)
    _ = line.withUnsafeBytes { write(2, $0.baseAddress, $0.count) }
    exit(1)
}

func peer(_ i: Int) -> Node {
    Node(metadata: ObjectMeta(name: "peer\(i)"), podCIDRs: [IPPrefix("10.\(100 + i / 256).\(i % 256).0/24")!],
         addresses: [NodeAddress(type: "InternalIP", address: "192.168.\(1 + i / 250).\(1 + i % 250)")])
}

/// A namespace with the underlay, an actor running in it, and a way to wait on its status.
struct Bench {
    let name = "rtbench\(getpid())"
    let ns: NetworkNamespace
    let store = ClusterStore()  // marked synced in init: peers only ever appear here
    let actor: NodeRoutesActor
    let task: Task<Void, any Error>
    let clock = ContinuousClock()

    init(mode: RoutingMode) async throws {
        ns = try NetworkNamespace.create(named: name)
        let setup = try RouteClient(namespace: ns)
        let eth0 = try setup.createVeth(name: "eth0", peerName: "eth0p")
        try setup.addAddress(InterfaceAddress(index: eth0.index, prefix: IPPrefix("192.168.0.2/16")!))
        try setup.setLink(index: eth0.index, LinkChange(up: true))
        try setup.setLink(named: "eth0p", LinkChange(up: true))
        var logger = Logger(label: "routes-bench")
        logger.logLevel = .error
        let c = NodeRoutesConfiguration(nodeName: "self", nodeIP: IPAddress("192.168.0.2")!, podCIDRs: [IPPrefix("10.99.0.0/24")!],
                                        clusterCIDRs: [IPPrefix("10.0.0.0/8")!], mode: mode, namespace: ns)
        let a = NodeRoutesActor(configuration: c, store: store, logger: logger)
        actor = a
        await store.markSynced()
        task = Task { try await a.run() }
        try await waitFor(seconds: 30) { a.status.reconciled }
        // Let the start settle (the new vxlan device's own link events cause one more full
        // reconcile): the benchmark is about peers appearing on a running node.
        try await Task.sleep(for: .milliseconds(300))
    }

    func waitFor(seconds: Double, _ condition: () -> Bool) async throws {
        let start = clock.now
        while !condition() {
            if clock.now - start > .seconds(seconds) { fail("timed out") }
            try await Task.sleep(for: .microseconds(200))
        }
    }

    func finish() async {
        task.cancel()
        _ = try? await task.value
        try? NetworkNamespace.delete(named: name)
    }
}

func seconds(_ d: Duration) -> Double { Double(d.components.seconds) + Double(d.components.attoseconds) / 1e18 }

let args = CommandLine.arguments
guard args.count >= 3 else { fail("usage: routes-bench converge N host-gw|vxlan | repair COUNT [PEERS]") }
do {
    switch args[1] {
    case "converge":
        guard let n = Int(args[2]), n > 0, n <= 20_000 else { fail("N must be 1...20000") }
        guard args.count > 3, let mode = RoutingMode(rawValue: args[3]), mode != .auto else { fail("mode must be host-gw or vxlan") }
        let bench = try await Bench(mode: mode)
        let nodes = (0..<n).map(peer)
        let start = bench.clock.now
        await bench.store.apply(nodes.map { .upsert(.node($0)) })
        try await bench.waitFor(seconds: 120) { bench.actor.status.routes == n }
        let took = bench.clock.now - start
        // Check the kernel really holds it all.
        let client = try RouteClient(namespace: bench.ns)
        let routes = try client.routes(protocol: RouteProtocol.nodenet).count
        var extra = ""
        if mode == .vxlan, let vx = try client.link(named: "nodenet.1") {
            let neighbours = try client.neighbours(index: vx.index).count, fdb = try client.fdbEntries(index: vx.index).count
            guard neighbours >= n, fdb >= n else { fail("only \(neighbours) neighbours and \(fdb) fdb entries") }
            extra = " neighbours=\(neighbours) fdb=\(fdb)"
        }
        guard routes == n else { fail("only \(routes) routes in the kernel") }
        let inSync = bench.actor.status.peers.filter { $0.state == .inSync }.count
        print("routes-bench converge mode=\(mode.rawValue) peers=\(n) routes=\(routes)\(extra) in_sync=\(inSync) seconds=\(seconds(took))")
        await bench.finish()
    case "repair":
        guard let count = Int(args[2]), count > 0, count <= 1000 else { fail("COUNT must be 1...1000") }
        let peers = args.count > 3 ? Int(args[3]) ?? 100 : 100
        let bench = try await Bench(mode: .hostGW)
        await bench.store.apply((0..<peers).map { .upsert(.node(peer($0))) })
        try await bench.waitFor(seconds: 60) { bench.actor.status.routes == peers }
        let client = try RouteClient(namespace: bench.ns)
        let monitor = try NetlinkMonitor(namespace: bench.ns, groups: .routes)
        var events = monitor.events.makeAsyncIterator()
        var samples: [Double] = []
        for i in 0..<count {
            let target = peer(i % peers).podCIDRs[0]
            let start = bench.clock.now
            try client.deleteRoute(Route(destination: target))
            // The repair shows as a new nodenet route for the same destination.
            while let e = await events.next() {
                if case .route(let r, false) = e, r.destination == target, r.protocol == RouteProtocol.nodenet { break }
                if bench.clock.now - start > .seconds(5) { fail("route \(target) not repaired within 5 s") }
            }
            samples.append(seconds(bench.clock.now - start) * 1000)
            try await Task.sleep(for: .milliseconds(20))
        }
        monitor.stop()
        samples.sort()
        let median = samples[samples.count / 2], p90 = samples[min(samples.count - 1, samples.count * 9 / 10)]
        print("routes-bench repair samples=\(count) peers=\(peers) median_ms=\(median) p90_ms=\(p90) max_ms=\(samples.last!) repairs=\(bench.actor.status.repairs)")
        await bench.finish()
    default:
        fail("unknown command \(args[1])")
    }
} catch {
    fail("\(error)")
}
