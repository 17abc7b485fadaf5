// proxy-bench: how long the service proxy's pure part takes at scale: desired state for S
// services x E endpoints, the full diff and its nft rendering, then a one-service change
// (incremental plan) and a no-op full reconcile. With --netns NAME it also applies the full
// ruleset inside that (existing) namespace through the netlink backend (--backend nft: `nft -f`),
// then times one service's endpoint change from store event to applied, and prints the RSS.
// --apply-only: just program the full ruleset (for the first-packet benchmark) and exit.
// usage: proxy-bench [--services S] [--endpoints E] [--repeat R] [--netns NAME] [--backend netlink|nft] [--apply-only]
import ClusterState
import Foundation
import IPAddressing
import ServiceProxy

/// The n-th address above a.b.0.0 (same layout as gen-kube-proxy-ruleset.py).
func address(_ n: Int, _ a: UInt8, _ b: Int) -> IPAddress {
    .v4(IPv4Address(a, UInt8(b + n / 65536), UInt8((n / 256) % 256), UInt8(n % 256)))
}

func slice(_ i: Int, _ eps: [IPAddress]) -> EndpointSlice {
    EndpointSlice(metadata: ObjectMeta(name: "s\(i)-ipv4", namespace: "bench", labels: [EndpointSlice.serviceNameLabel: "s\(i)"]),
                  addressType: .ipv4, endpoints: eps.map { Endpoint(addresses: [$0], nodeName: "node2") },
                  ports: [EndpointPort(name: "http", port: 8080)])
}

func seconds(_ d: Duration) -> Double { Double(d.components.seconds) + Double(d.components.attoseconds) / 1e18 }

func benchmark() async throws {
    var services = 10_000, endpoints = 5, repeats = 5
    var netns: String?
    var useNft = false, applyOnly = false, restart = false, batchLimit = 10_000, rounds = 9
    var args = CommandLine.arguments.dropFirst().makeIterator()
    while let a = args.next() {
        switch a {
        case "--services": services = Int(args.next() ?? "") ?? services
        case "--endpoints": endpoints = Int(args.next() ?? "") ?? endpoints
        case "--repeat": repeats = max(1, Int(args.next() ?? "") ?? repeats)
        case "--netns": netns = args.next()
        case "--backend": useNft = args.next() == "nft"
        case "--apply-only": applyOnly = true
        case "--restart": restart = true
        case "--batch-limit": batchLimit = Int(args.next() ?? "") ?? batchLimit
        case "--rounds": rounds = max(1, Int(args.next() ?? "") ?? rounds)
        default:
            FileHandle.standardError.write(Data("usage: proxy-bench [--services S] [--endpoints E] [--repeat R] [--netns NAME]\n".utf8))
            exit(2)
        }
    }

    /// Best and median of `repeats` runs of `body` (which returns something to keep it alive).
    func measure<T>(_ label: String, _ body: () throws -> T) rethrows -> T {
        var times: [Double] = []
        var last: T?
        for _ in 0..<repeats {
            let start = ContinuousClock.now
            last = try body()
            times.append(seconds(ContinuousClock.now - start))
        }
        times.sort()
        print(String(format: "%@ best %9.3f ms   median %9.3f ms", label.padding(toLength: 34, withPad: " ", startingAt: 0) as NSString, times[0] * 1000, times[times.count / 2] * 1000))
        return last!
    }

    let config = ProxyConfiguration(nodeName: "node1", nodeAddresses: [IPAddress("192.168.1.11")!],
                                    clusterCIDRs: [IPPrefix("10.244.0.0/16")!], serviceCIDRs: [IPPrefix("10.96.0.0/12")!])
    let store = ClusterStore()
    var changes: [StoreChange] = []
    for i in 0..<services {
        let svc = Service(metadata: ObjectMeta(name: "s\(i)", namespace: "bench"), clusterIPs: [address(i, 10, 96)],
                          ports: [ServicePort(name: "http", port: 80, targetPort: .int(8080))], selector: ["app": "s\(i)"])
        changes.append(.upsert(.service(svc)))
        changes.append(.upsert(.endpointSlice(slice(i, (0..<endpoints).map { address(i * endpoints + $0, 10, 128) }))))
    }
    await store.apply(changes)
    let snapshot = await store.snapshot()
    if applyOnly, let netns {
        // What the agent holds: the store, a planner (with its desired model) and the backend.
        let backend = try NetlinkRulesetBackend(namespaceNamed: netns, additionBatchLimit: batchLimit)
        var planner = ServiceProxyPlanner(configuration: config)
        try await backend.apply(planner.plan(snapshot: snapshot, applied: nil).operations)
        // Freed transaction buffers go back to the system, so RSS shows what stays live.
        _ = mallocTrim(0)
        print("rss_mb=\(residentMegabytes()) after a full sync, holding \(services) services, \(services * endpoints) endpoints " +
              "(store \(await store.snapshot().services.count) services, planner model \(planner.desired.model.ruleCount) rules)")
        if restart {
            // An agent restart: a new backend and planner read the kernel back (rules unknown)
            // and rewrite every chain in one transaction, never flushing the table.
            let again = try NetlinkRulesetBackend(namespaceNamed: netns, additionBatchLimit: batchLimit)
            var fresh = ServiceProxyPlanner(configuration: config)
            var t0 = ContinuousClock.now
            let kernel = try await again.currentState()
            print(String(format: "restart: read back %.3f s", seconds(ContinuousClock.now - t0)))
            let plan = fresh.plan(snapshot: snapshot, applied: kernel)
            t0 = ContinuousClock.now
            try await again.apply(plan.operations)
            print(String(format: "restart: rewrite (%d operations, one batch) %.3f s", plan.operations.count, seconds(ContinuousClock.now - t0)))
        }
        return
    }
    print("proxy-bench services=\(services) endpoints=\(endpoints) repeat=\(repeats)")

    let state = measure("desired state (full)") { DesiredState(snapshot: snapshot, configuration: config) }
    let fullOps = measure("diff from nothing") { RulesetDiff.operations(from: nil, to: state.model) }
    let script = measure("render nft script") { NftRenderer().script(fullOps) }
    let messages = measure("encode netlink messages") { NetlinkRuleEncoder().requests(fullOps).requests }
    _ = measure("full reconcile, nothing changed") { RulesetDiff.operations(from: state.model, to: state.model) }
    print("  chains=\(state.model.chainCount) rules=\(state.model.ruleCount) elements=\(state.model.elementCount) " +
          "operations=\(fullOps.count) script_bytes=\(script.utf8.count) " +
          "netlink_messages=\(messages.count) netlink_bytes=\(messages.reduce(0) { $0 + $1.bytes.count })")

    // One service's endpoints change (all replaced), with everything else in place.
    let events = await store.subscribe()
    let target = services / 2
    await store.apply([.upsert(.endpointSlice(slice(target, (0..<endpoints).map { address(services * endpoints + $0, 10, 128) })))])
    var iterator = events.makeAsyncIterator()
    let event = await iterator.next()!
    let changed = await store.snapshot()
    var oneOps: [RulesetOperation] = []
    var times: [Double] = []
    for _ in 0..<repeats {
        // Untimed: the state after a full sync (a fresh planner each time, so the timed part
        // updates a uniquely owned model, as the actor's does).
        var planner = ServiceProxyPlanner(configuration: config)
        _ = planner.plan(snapshot: snapshot, applied: nil)
        let start = ContinuousClock.now
        planner.record(event)
        oneOps = planner.plan(snapshot: changed, applied: nil).operations
        times.append(seconds(ContinuousClock.now - start))
    }
    times.sort()
    print(String(format: "%@ best %9.3f ms   median %9.3f ms", "one-service change (plan)".padding(toLength: 34, withPad: " ", startingAt: 0) as NSString, times[0] * 1000, times[times.count / 2] * 1000))
    print("  one-service operations=\(oneOps.count)")

    if let netns {
        let ip = FileManager.default.isExecutableFile(atPath: "/usr/sbin/ip") ? "/usr/sbin/ip" : "/sbin/ip"
        let backend: any RulesetBackend = useNft ? NftCommandBackend(commandPrefix: [ip, "netns", "exec", netns])
            : try NetlinkRulesetBackend(namespaceNamed: netns, additionBatchLimit: batchLimit)
        let name = useNft ? "nft -f" : "netlink"
        let start = ContinuousClock.now
        try await backend.apply(fullOps)
        print(String(format: "%@ full ruleset apply  %9.3f s", name, seconds(ContinuousClock.now - start)))

        // Store event to applied: a persistent planner (as the actor keeps), one service's
        // endpoints replaced each round (alternating sets, so every round is a real change).
        var planner = ServiceProxyPlanner(configuration: config)
        _ = planner.plan(snapshot: snapshot, applied: nil)
        var eventTimes: [Double] = [], applyTimes: [Double] = []
        for r in 0..<rounds {
            let base = r % 2 == 0 ? services * endpoints + endpoints : target * endpoints
            let t0 = ContinuousClock.now
            await store.apply([.upsert(.endpointSlice(slice(target, (0..<endpoints).map { address(base + $0, 10, 128) })))])
            guard let e = await iterator.next() else { break }
            planner.record(e)
            let plan = planner.plan(snapshot: await store.snapshot(), applied: nil)
            let t1 = ContinuousClock.now
            try await backend.apply(plan.operations)
            applyTimes.append(seconds(ContinuousClock.now - t1))
            eventTimes.append(seconds(ContinuousClock.now - t0))
        }
        eventTimes.sort()
        applyTimes.sort()
        print(String(format: "%@ one-service event to applied  best %7.3f ms  median %7.3f ms  p99 %7.3f ms  (%d changes)", name, eventTimes[0] * 1000,
                     eventTimes[eventTimes.count / 2] * 1000, eventTimes[min(eventTimes.count - 1, eventTimes.count * 99 / 100)] * 1000, eventTimes.count))
        print(String(format: "%@   of which backend.apply (kernel transaction)  median %7.3f ms", name, applyTimes[applyTimes.count / 2] * 1000))
    }
    print("rss_mb=\(residentMegabytes()) (holding \(services) services, \(services * endpoints) endpoints: store, desired state, planner)")
}

/// VmRSS of this process, from /proc/self/status.
func residentMegabytes() -> Int {
    guard let text = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8),
          let line = text.split(separator: "\n").first(where: { $0.hasPrefix("VmRSS:") }) else { return -1 }
    return (Int(line.split(separator: " ").dropFirst().first ?? "") ?? 0) / 1024
}

try await benchmark()

/// glibc's malloc_trim (malloc.h is not part of the Glibc module): returns freed heap pages to
/// the system so RSS reflects live data. Benchmark only.
@_silgen_name("malloc_trim") func mallocTrim(_ pad: Int) -> Int32
