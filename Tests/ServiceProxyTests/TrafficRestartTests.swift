import ClusterState
import Foundation
import NodenetTestSupport
import Synchronization
import Testing
@testable import ServiceProxy

/// Real traffic over time: affinity entries expiring, and the agent restarting under load.
extension TrafficTests {
    /// Each test of this file runs in both families (issue 22).
    @Test(arguments: BackendKind.allCases, TrafficFamily.allCases)
    func sessionAffinityExpiresAfterItsTimeout(_ kind: BackendKind, _ family: TrafficFamily) async throws {
        try await nftIPv6AffinityKnownIssue(kind, family) {
            let t = try Topology(kind)
            defer { t.delete() }
            let store = ClusterStore()
            let timeout = 2
            let vip = family.target(family.clusterIP(10), 80)
            await store.apply([.upsert(.service(service("sticky", ips: [family.clusterIP(10)], affinity: timeout))),
                               .upsert(.endpointSlice(family.slice("sticky", [EP(ip: family.pod(1)), EP(ip: family.pod(2))])))])
            let (_, task) = try await t.startProxy(store)
            defer { task.cancel() }

            // Each round: after more than the timeout without traffic, a free choice, which then
            // sticks for back-to-back connections. Over the rounds both endpoints must come up
            // (all rounds alike by chance: 2^-11), which they never would if the entry outlived
            // its timeout.
            var chosen = Set<String>()
            for round in 0..<12 where chosen.count < 2 {
                if round > 0 { try await Task.sleep(for: .seconds(timeout + 1)) }
                let first = try t.connect(from: t.client, vip)
                #expect(first.ok, "\(first.text)")
                chosen.insert(first.text)
                try t.expectOnly(first.text, from: t.client, vip, count: 4)
            }
            #expect(chosen == ["pod1", "pod2"])
        }
    }

    /// e2e "should be able to switch session affinity" (and affinity on a NodePort): ClientIP ->
    /// None -> ClientIP, then a shorter timeout (the affinity sets are re-created around the chains that use them).
    @Test(arguments: BackendKind.allCases, TrafficFamily.allCases)
    func sessionAffinitySwitchesOffAndOn(_ kind: BackendKind, _ family: TrafficFamily) async throws {
        try await nftIPv6AffinityKnownIssue(kind, family) {
            let t = try Topology(kind)
            defer { t.delete() }
            let store = ClusterStore()
            func sticky(_ timeout: Int?) -> StoreChange {
                .upsert(.service(service("sticky", type: .nodePort, ips: [family.clusterIP(10)], ports: [ServicePort(name: "http", port: 80, targetPort: .int(8080), nodePort: 30080)],
                                         affinity: timeout)))
            }
            await store.apply([sticky(600), .upsert(.endpointSlice(family.slice("sticky", [EP(ip: family.pod(1)), EP(ip: family.pod(2))])))])
            let (actor, task) = try await t.startProxy(store)
            defer { task.cancel() }
            let target = family.target(family.clusterIP(10), 80), both: Set = ["pod1", "pod2"]
            let nodePort = family.target(family.nodeIP, 30080)

            try t.expectOnly(try t.connect(from: t.client, target).text, from: t.client, target, count: 8)
            // Through the NodePort from outside too (the entry is the client's address, before masquerade).
            try t.expectOnly(try t.connect(from: t.fabric, nodePort).text, from: t.fabric, nodePort, count: 8)
            try await applySynced([sticky(nil)], to: store, actor)
            #expect(try t.distinct(from: t.client, target, expected: both) == both)
            try await applySynced([sticky(600)], to: store, actor)
            try t.expectOnly(try t.connect(from: t.client, target).text, from: t.client, target, count: 8)

            // 600 s -> 1 s: the entry learned under the old timeout is gone with its set, and new
            // ones expire after a second (free choices again: both endpoints over the rounds).
            try await applySynced([sticky(1)], to: store, actor)
            var chosen = Set<String>()
            for round in 0..<12 where chosen.count < 2 {
                if round > 0 { try await Task.sleep(for: .seconds(2)) }
                chosen.insert(try t.connect(from: t.client, target).text)
            }
            #expect(chosen == both)
        }
    }

    /// The agent restarts while a client connects in a loop: the new actor (new backend
    /// instance) reconciles against what the kernel holds, in place. No connection attempt may
    /// fail, the table and its chains are the same kernel objects before and after (same
    /// handles: nothing deleted and re-created), learned affinity entries survive, and a change
    /// made while no agent ran is applied.
    @Test(arguments: BackendKind.allCases, TrafficFamily.allCases)
    func restartLosesNoConnection(_ kind: BackendKind, _ family: TrafficFamily) async throws {
        try await nftIPv6AffinityKnownIssue(kind, family) {
            let t = try Topology(kind)
            defer { t.delete() }
            let store = ClusterStore()
            let (pod1, pod2) = (family.pod(1), family.pod(2))
            let (webIP, stickyIP, retimedIP) = (family.clusterIP(10), family.clusterIP(12), family.clusterIP(13))
            func retimed(_ timeout: Int) -> Service { service("retimed", ips: [retimedIP], affinity: timeout) }
            await store.apply([
                .upsert(.service(service("web", ips: [webIP]))),
                .upsert(.endpointSlice(family.slice("web", [EP(ip: pod1), EP(ip: pod2)]))),
                .upsert(.service(service("sticky", ips: [stickyIP], affinity: 600))),
                .upsert(.endpointSlice(family.slice("sticky", [EP(ip: pod1), EP(ip: pod2)]))),
                .upsert(.service(retimed(600))),
                .upsert(.endpointSlice(family.slice("retimed", [EP(ip: pod1), EP(ip: pod2)]))),
            ])
            let (_, first) = try await t.startProxy(store)
            let sticky = try t.connect(from: t.client, family.target(stickyIP, 80)).text
            let handles = try kernelHandles(t.node, family.table)

            let dir = TempDirectory()
            let loop = try ConnectLoop(in: t.client, target: (webIP, 80), directory: dir)
            defer { loop.stop() }
            try await waitFor { loop.lines().count >= 30 }

            // The agent goes away; the kernel keeps serving on its own.
            try await stop(first)
            let stopped = loop.lines().count
            // Changes while no agent runs: an endpoint goes; an affinity timeout changes (its sets
            // are re-created, so the chains that use them must be rewritten around that).
            await store.apply([.upsert(.endpointSlice(family.slice("web", [EP(ip: pod1)]))), .upsert(.service(retimed(300)))])
            try await waitFor { loop.lines().count >= stopped + 20 }

            // A new agent: one full sync against the kernel.
            let (actor, second) = try await t.startProxy(store)
            defer { second.cancel() }
            let started = loop.lines().count
            try await waitFor { loop.lines().count >= started + 30 }
            loop.stop()
            try await waitFor { loop.lines().last == "end" }

            let lines = loop.lines().dropLast()
            let failures = lines.filter { !["ok pod1", "ok pod2"].contains($0) }
            #expect(failures.isEmpty, "\(failures.count) of \(lines.count) attempts failed: \(failures.prefix(5))")
            #expect(lines.count >= 80)
            let status = await actor.status()
            #expect(status.lastError == nil && status.fullSyncs == 1, "\(status)")

            // Reconciled: the endpoint removed while no agent ran gets no new connection; the new
            // timeout is in the kernel and the service works.
            try t.expectOnly("pod1", from: t.client, family.target(webIP, 80), count: 8)
            let retimedSet = try t.node.check(["nft", "list", "set", family.table, "nodenet", SharedName.affinityTimeout(300)]).stdout
            #expect(retimedSet.contains("\(retimedIP) . tcp . 80"), "\(retimedSet)")
            let r = try t.connect(from: t.client, family.target(retimedIP, 80))
            try t.expectOnly(r.text, from: t.client, family.target(retimedIP, 80), count: 4)
            // Not flushed: same table and chain objects, the learned affinity entry still there.
            let learned = "\(family.pod(3)) . \(stickyIP) . tcp . 80"
            let entries = try t.node.check(["nft", "list", "map", family.table, "nodenet", SharedName.affinity]).stdout
            #expect(entries.contains(learned) && entries.contains(": \(sticky == "pod1" ? pod1 : pod2) . 8080"), "\(entries)")
            let after = try kernelHandles(t.node, family.table)
            #expect(after.table == handles.table)
            for (chain, handle) in handles.chains {
                #expect(after.chains[chain] == handle, "chain \(chain) was re-created")
            }
            #expect(handles.chains.count >= 15)
            try t.expectOnly(sticky, from: t.client, family.target(stickyIP, 80), count: 4)
        }
    }

    /// A UDP flow steered to an endpoint that stopped being one while no agent ran (its pod
    /// still answering): the restarted agent knows no history, yet must not leave the flow
    /// stuck there (kubernetes#126468); flows to endpoints that remain are kept (#122740).
    @Test(arguments: BackendKind.allCases, TrafficFamily.allCases)
    func restartMovesUDPFlowsOffEndpointsGoneMeanwhile(_ kind: BackendKind, _ family: TrafficFamily) async throws {
        let t = try Topology(kind)
        defer { t.delete() }
        let store = ClusterStore()
        let udp53 = [ServicePort(name: "dns", protocol: .udp, port: 53, targetPort: .int(5353))]
        let (dnsIP, keptIP) = (family.clusterIP(20), family.clusterIP(21))
        func slice(_ name: String, _ pods: [Int]) -> StoreChange { udpSlice(name, pods.map(family.pod), family: family.sliceFamily) }
        await store.apply([.upsert(.service(service("dns", ips: [dnsIP], ports: udp53))), slice("dns", [1]),
                           .upsert(.service(service("kept", ips: [keptIP], ports: udp53))), slice("kept", [1])])
        let (_, first) = try await t.startProxy(store)
        #expect(try t.udp(from: t.client, family.target(dnsIP, 53), sourcePort: 40353) == "pod1")
        #expect(try t.udp(from: t.client, family.target(keptIP, 53), sourcePort: 40354) == "pod1")
        try await stop(first)
        await store.apply([slice("dns", [2]), slice("kept", [1, 2])])

        let (actor, second) = try await t.startProxy(store)
        defer { second.cancel() }
        #expect(await actor.status().lastError == nil)
        let moved = try t.udp(from: t.client, family.target(dnsIP, 53), sourcePort: 40353)
        #expect(moved == "pod2", "the flow stayed on the removed endpoint: \(moved)")
        let entries = try t.node.check(["conntrack", "-L", "-f", family == .ipv4 ? "ipv4" : "ipv6", "-p", "udp", "--orig-dst", keptIP]).stdout
        #expect(entries.contains("sport=40354"), "the flow to a remaining endpoint was cut: \(entries)")
    }

    /// Cancels an actor's run task and waits (bounded) until it has returned.
    private func stop(_ task: Task<Void, Never>) async throws {
        let done = Done()
        Task {
            await task.value
            done.flag.store(true, ordering: .releasing)
        }
        task.cancel()
        try await waitFor { done.flag.load(ordering: .acquiring) }
    }

    private final class Done: Sendable { let flag = Atomic<Bool>(false) }

    /// The handles of the `ip nodenet` (or `ip6 nodenet`) table and of its chains (`nft -a`):
    /// a deleted and re-created table or chain gets a new one.
    private func kernelHandles(_ node: TestNamespace, _ table: String = "ip") throws -> (table: String?, chains: [String: String]) {
        let text = try node.check(["nft", "-a", "list", "table", table, "nodenet"]).stdout
        var table: String?, chains: [String: String] = [:]
        for line in text.split(separator: "\n").map({ $0.trimmingCharacters(in: .whitespaces) }) {
            let words = line.split(separator: " ").map(String.init)
            guard let h = words.firstIndex(of: "handle"), h + 1 < words.count else { continue }
            if words.first == "table" { table = words[h + 1] }
            if words.first == "chain", words.count > 1 { chains[words[1]] = words[h + 1] }
        }
        return (table, chains)
    }
}

/// A client connecting to one address over and over from a pod (python, bounded by count and
/// time), one line per attempt in a file: "ok <reply>" or "fail <error>", then "end".
final class ConnectLoop: Sendable {
    let output: String, stopFile: String

    init(in ns: TestNamespace, target: (String, Int), directory: TempDirectory, seconds: Int = 90, maxAttempts: Int = 20_000) throws {
        output = directory.file("loop.out")
        stopFile = directory.file("loop.stop")
        let script = """
            import os, socket, time
            out = open("\(output)", "a", buffering=1)
            deadline = time.time() + \(seconds)
            for _ in range(\(maxAttempts)):
                if time.time() > deadline or os.path.exists("\(stopFile)"):
                    break
                try:
                    s = socket.create_connection(("\(target.0)", \(target.1)), timeout=3)
                    s.settimeout(3)
                    data = b""
                    while not data.endswith(b"\\n"):
                        chunk = s.recv(100)
                        if not chunk:
                            break
                        data += chunk
                    s.close()
                    out.write("ok " + data.decode().strip() + "\\n")
                except Exception as e:
                    out.write("fail " + repr(e) + "\\n")
                time.sleep(0.01)
            out.write("end\\n")
            """
        try TrafficTests.Topology.background(ns, ["python3", "-c", script])
    }

    func lines() -> [String] {
        ((try? String(contentsOfFile: output, encoding: .utf8)) ?? "").split(separator: "\n").map(String.init)
    }

    func stop() { _ = FileManager.default.createFile(atPath: stopFile, contents: nil) }
}
