import Agent
import Foundation
import NodenetTestSupport
import Testing

/// Issue 14, one reconciler shape: host ports report one status per mapping, masquerade is a
/// reconciler of its own with its own row, and the services row follows the proxy's syncs
/// without any read-side refresh or timer. Each checked against what the kernel holds, after
/// changes made behind the agent's back.
@Suite(.serialized, .enabled(if: isPrivileged && (try? Shell.which("nft")) != nil, "needs root, iproute2 and nft"))
struct ReconcilerStatusTests {
    /// A realistic container id (64 hex characters, as runtimes make them).
    static func containerID(_ seed: String) -> String {
        var h: UInt64 = 0xcbf2_9ce4_8422_2325
        var out = ""
        for i in 0..<4 {
            for b in "\(seed)-\(i)".utf8 { h = (h ^ UInt64(b)) &* 0x100_0000_01b3 }
            out += String(format: "%016llx", h)
        }
        return out
    }


    func row(_ agent: AgentProcess, _ name: String) throws -> ActorStatus? {
        try status(agent).actors.first { $0.name == name }
    }

    /// The objects of one actor's row: "kind name" -> error (nil: in sync).
    func objects(_ agent: AgentProcess, _ actor: String) throws -> [String: String?] {
        Dictionary(((try row(agent, actor))?.objects ?? []).map { ("\($0.kind) \($0.name)", $0.error) }, uniquingKeysWith: { a, _ in a })
    }

    func poll(_ what: String, timeout: Double = 10, _ condition: () throws -> Bool) throws {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            if try condition() { return }
            usleep(50_000)
        }
        #expect(try condition(), "\(what) within \(timeout) s")
    }

    /// Replaces nodenet's base chain `family nodenet chain` by a regular chain of the same name,
    /// in one transaction: nodenet cannot make it a base chain again (the kernel answers EEXIST)
    /// until the impostor is deleted. A fault that lasts, on that chain only.
    func replaceWithRegularChain(_ ns: TestNamespace, _ family: String, _ chain: String) throws {
        try ns.check(["nft", "-f", "-"], stdin: """
            flush chain \(family) nodenet \(chain)
            delete chain \(family) nodenet \(chain)
            add chain \(family) nodenet \(chain)

            """)
    }

    /// Host ports: one status per mapping. A rule deleted behind the agent's back is put back
    /// and counted as a repair; a chain the agent cannot write puts exactly the mappings with
    /// rules in it in error (the IPv4 one here, not the IPv6 one), in `--json` and in the text,
    /// and they clear once it can. Without the change the status had one row per chain, and a
    /// mapping's state could not be read from it.
    @Test func hostPortStatusIsPerMappingAndMatchesTheKernel() throws {
        let ns = try TestNamespace("hpst")
        defer { ns.delete() }
        let pod = try TestNamespace("hpstpod")
        defer { pod.delete() }
        let dir = TempDirectory()
        let agent = AgentProcess(namespace: ns, directory: dir, args: [
            "--node-name", "node1", "--pod-cidrs", "10.244.1.0/24,fd00:10:244:1::/64",
            "--cluster-cidr", "10.244.0.0/16,fd00:10:244::/48", "--dns-enabled", "false",
        ])
        try agent.start()
        defer { agent.stop() }
        let id = Self.containerID("hostport-status")
        let cni = CNIInvoker(node: ns, socket: agent.socket)
        let mappings = #"[{"hostPort":8080,"containerPort":80,"protocol":"tcp","hostIP":"192.168.1.11"},"#
            + #"{"hostPort":8443,"containerPort":443,"protocol":"tcp","hostIP":"fd00::11"}]"#
        let add = try cni.run("ADD", containerID: id, netns: pod.path,
                              stdin: String(cni.config.dropLast()) + ",\"runtimeConfig\":{\"portMappings\":\(mappings)}}")
        try #require(add.ok, "\(add.stdout)\(add.stderr)")
        let v4 = "hostport \(id)/eth0 192.168.1.11:8080/tcp>80"
        let v6 = "hostport \(id)/eth0 [fd00::11]:8443/tcp>443"
        // The ADD wakes the reconciler: both mappings reported well before the 10 s pass.
        try poll("both mappings in sync", timeout: 5) {
            let o = try objects(agent, "pods")
            return o[v4] == .some(nil) && o[v6] == .some(nil)
        }
        func dnatRules() throws -> [String] {
            // A chain that is not there (yet) holds no rules.
            try ns.run(["nft", "-a", "list", "chain", "ip", "nodenet", "hostports"]).stdout
                .split(separator: "\n").map(String.init).filter { $0.contains("dnat to") }
        }
        let initial = try dnatRules()
        try #require(initial.count == 1, "\(initial)")
        // Writing the ADD's own rules is no repair, whether the ADD or a pass wrote them.
        #expect(try row(agent, "pods")?.counters["hostPortRepairs"] == nil)

        // The rule deleted behind the agent's back: back by the periodic pass, counted.
        let handle = try #require(initial[0].components(separatedBy: "# handle ").last?.trimmingCharacters(in: .whitespaces))
        try ns.check(["nft", "delete", "rule", "ip", "nodenet", "hostports", "handle", handle])
        try poll("the deleted rule put back and counted", timeout: 15) {
            let rules = try dnatRules(), repairs = try row(agent, "pods")?.counters["hostPortRepairs"] ?? 0
            return rules.count == 1 && repairs >= 1
        }
        #expect(try row(agent, "pods")?.counters["hostPortRepairs"] == 1, "the one rule deleted")
        #expect(try objects(agent, "pods")[v4] == .some(nil))

        // The IPv4 DNAT chain cannot be written: the IPv4 mapping is in error, the IPv6 one not.
        try replaceWithRegularChain(ns, "ip", "hostports")
        try poll("the IPv4 mapping in error", timeout: 15) {
            let o = try objects(agent, "pods")
            return (o[v4] ?? nil)?.contains("ip nodenet hostports") == true && o[v6] == .some(nil)
        }
        #expect(try row(agent, "pods")?.state == .error)
        #expect(try agent.cli(["status"]).stdout.contains("pods: \(v4): ip nodenet hostports"))
        // The impostor gone: the chain and its rule are back, the mapping in sync (retried with backoff).
        try ns.check(["nft", "delete", "chain", "ip", "nodenet", "hostports"])
        try poll("the mapping in sync again", timeout: 15) {
            let o = try objects(agent, "pods")
            let rules = try dnatRules()
            return o[v4] == .some(nil) && o[v6] == .some(nil) && rules.count == 1
        }
        #expect(try cni.run("DEL", containerID: id, netns: pod.path).ok)
        try poll("the mappings gone from status with their rules", timeout: 5) {
            let o = try objects(agent, "pods")
            let rules = try dnatRules()
            return o[v4] == nil && o[v6] == nil && rules.isEmpty
        }
    }

    /// Masquerade has its own row and objects (one per rule), not the routes pass's: a rule
    /// flushed behind the agent's back comes back and is counted as a repair; a chain it cannot
    /// write is an error on that rule and on the masquerade row (routes stay in sync), logged
    /// once, and clears once it can be written. Without the change masquerade was a part of
    /// the routes pass, its chain one of the routes row's objects.
    @Test func masqueradeRuleDeletedBehindItsBackComesBackWithItsStatus() throws {
        let ns = try TestNamespace("masqst")
        defer { ns.delete() }
        // An underlay address, so the routes row is in sync and can be told apart.
        try ns.check(["ip", "link", "add", "eth0", "type", "veth", "peer", "name", "eth0p"])
        try ns.check(["ip", "addr", "add", "192.168.1.11/24", "dev", "eth0"])
        try ns.check(["ip", "link", "set", "eth0", "up"])
        try ns.check(["ip", "link", "set", "eth0p", "up"])
        let dir = TempDirectory()
        let agent = AgentProcess(namespace: ns, directory: dir, args: [
            "--node-name", "node1", "--node-ip", "192.168.1.11", "--pod-cidrs", "10.244.1.0/24", "--dns-enabled", "false",
        ])
        try agent.start()
        defer { agent.stop() }
        let rule = "rule ip nodenet pod-egress 10.244.0.0/16"
        func masqueradeRules() throws -> Int {
            try ns.run(["nft", "list", "chain", "ip", "nodenet", "pod-egress"]).stdout.components(separatedBy: "masquerade").count - 1
        }
        try poll("the masquerade rule in sync on its own row") {
            let o = try objects(agent, "masquerade"), state = try row(agent, "masquerade")?.state
            return o[rule] == .some(nil) && state == .inSync
        }
        #expect(try masqueradeRules() == 1)
        #expect(try objects(agent, "routes").keys.allSatisfy { !$0.contains("pod-egress") }, "not part of the routes pass")

        try ns.check(["nft", "flush", "chain", "ip", "nodenet", "pod-egress"])
        try poll("the rule back and counted", timeout: 15) {
            let rules = try masqueradeRules(), repairs = try row(agent, "masquerade")?.counters["repairs"] ?? 0
            return rules == 1 && repairs >= 1
        }

        try replaceWithRegularChain(ns, "ip", "pod-egress")
        try poll("the rule in error", timeout: 15) {
            let o = try objects(agent, "masquerade"), state = try row(agent, "masquerade")?.state
            return (o[rule] ?? nil) != nil && state == .error
        }
        #expect(try row(agent, "routes")?.state == .inSync, "a masquerade fault is not a routes error")
        #expect(try agent.cli(["status"]).stdout.contains("masquerade: \(rule):"))
        try ns.check(["nft", "delete", "chain", "ip", "nodenet", "pod-egress"])
        try poll("the rule back and in sync", timeout: 15) {
            let o = try objects(agent, "masquerade"), state = try row(agent, "masquerade")?.state, rules = try masqueradeRules()
            return o[rule] == .some(nil) && state == .inSync && rules == 1
        }
        let log = agent.log(tail: 400)
        let logged = log.components(separatedBy: "masquerade: \(rule):").count - 1
        #expect(logged == 1, "the error was logged \(logged) times")
    }

    /// The services row follows the proxy's syncs as they happen: a service applied shows in
    /// the row's counters and applied version within a bounded poll, with no refresh when the
    /// status is read and no timer behind it (both removed). Its `/healthz` moves with it.
    @Test func servicesRowFollowsEachSync() throws {
        let ns = try TestNamespace("svcst")
        defer { ns.delete() }
        let dir = TempDirectory()
        let agent = AgentProcess(namespace: ns, directory: dir, args: [
            "--node-name", "node1", "--pod-cidrs", "10.244.1.0/24", "--dns-enabled", "false",
        ])
        try agent.start()
        defer { agent.stop() }
        func services() throws -> (count: Int?, applied: UInt64?, store: UInt64) {
            let s = try status(agent)
            let r = s.actors.first { $0.name == "services" }
            return (r?.counters["services"], r?.appliedVersion, s.source.storeVersion)
        }
        for (i, name) in ["ledger-api", "billing-api", "audit-api"].enumerated() {
            let applied = try agent.apply("""
                apiVersion: v1
                kind: Service
                metadata: {name: \(name), namespace: payments}
                spec: {clusterIP: 10.96.41.\(17 + i), ports: [{name: https, port: 443}]}
                """)
            #expect(applied.ok, "\(applied.stderr)")
            try poll("\(i + 1) services in the row at the store's version", timeout: 5) {
                let s = try services()
                return s.count == i + 1 && s.applied == s.store
            }
            #expect(try row(agent, "services")?.state == .inSync)
        }
        // Per-object status: the proxy's tables in sync, and an object it cannot program (a
        // slice whose Service does not exist) named in error with the reason, then gone once
        // deleted. Without the objects the row had counters only.
        try poll("the proxy's tables as in-sync objects") {
            let o = try objects(agent, "services")
            return o["table ip nodenet"] == .some(nil) && o["table ip6 nodenet"] == .some(nil)
        }
        let orphan = """
            apiVersion: discovery.k8s.io/v1
            kind: EndpointSlice
            metadata: {name: ledger-replica-ipv4, namespace: payments, labels: {kubernetes.io/service-name: ledger-replica}}
            addressType: IPv4
            endpoints: [{addresses: [10.244.1.23]}]
            ports: [{name: https, port: 8443, protocol: TCP}]
            """
        #expect(try agent.apply(orphan).ok)
        try poll("the orphan slice in error on the services row") {
            let error = try objects(agent, "services")["endpointslice payments/ledger-replica-ipv4"]
            return error??.contains("ledger-replica does not exist") == true
        }
        let deleted = try agent.cli(["delete", "-f", "-"], stdin: orphan)
        #expect(deleted.ok, "\(deleted.stderr)")
        try poll("the orphan slice gone from the row") {
            try objects(agent, "services")["endpointslice payments/ledger-replica-ipv4"] == nil
        }
    }
}

/// The board announces its changes, so what follows the status (systemd's STATUS= line) waits
/// on them instead of re-reading the board on a timer: one element for the board as it is, then
/// one per change after the reader took the previous one.
@Suite struct StatusBoardChangesTests {
    /// The next element of `iterator`, or false after `seconds`.
    static func next(_ changes: AsyncStream<Void>, within seconds: Double) async -> Bool {
        await withTaskGroup(of: Bool.self) { group in
            group.addTask {
                var iterator = changes.makeAsyncIterator()
                return await iterator.next() != nil
            }
            group.addTask { try? await Task.sleep(for: .seconds(seconds)); return false }
            let first = await group.next() ?? false
            group.cancelAll()
            return first
        }
    }

    @Test func everyReconcileErrorAndStopIsAnnounced() async {
        let board = StatusBoard()
        board.register("routes")
        let changes = board.changes()
        #expect(await Self.next(changes, within: 5), "the board as it is")
        board.reconciled("routes", seconds: 0.01, message: "in sync")
        #expect(await Self.next(changes, within: 5), "a reconcile")
        board.failed("routes", "add route 10.244.2.0/24: ENETDOWN")
        #expect(await Self.next(changes, within: 5), "an error")
        board.update("routes") { $0.counters["peers"] = 2 }
        #expect(await Self.next(changes, within: 5), "an update")
        board.stopping()
        #expect(await Self.next(changes, within: 5), "shutdown")
        #expect(!(await Self.next(changes, within: 0.2)), "nothing changed since")
    }
}
