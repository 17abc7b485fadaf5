import ClusterState
import Foundation
import Logging
import PodNetwork
import PolicyEnforcement
import ServiceProxy
import ServiceLifecycle
import Synchronization

/// NetworkPolicy enforcement: the policy actor, its status row, `nodenet policy check`, and the
/// gate every CNI ADD passes before it replies (the pod's policy state is in the kernel).
struct PolicyService: AgentActor {
    let agent: NodeAgent
    static let name = "policy"

    func run() async throws {
        let name = Self.name
        let config = agent.config
        guard config.policy.enabled else { return try await removeTables() }
        agent.board.register(name)
        await agent.waitForState()
        let backend: any RulesetBackend
        do {
            backend = try NetlinkRulesetBackend(tableName: PolicyTables.tableName, rewriteCheckFrom: 1)
        } catch {
            agent.board.failed(name, "cannot open nfnetlink: \(error)")
            throw error
        }
        // Bridged pod-to-pod traffic reaches the forward hook only with br_netfilter's sysctls
        // on (per network namespace): without them same-node traffic would bypass every policy.
        for key in ["bridge-nf-call-iptables", "bridge-nf-call-ip6tables"] {
            let path = "/proc/sys/net/bridge/" + key
            if (try? String(contentsOfFile: path, encoding: .utf8))?.hasPrefix("1") != true {
                do {
                    try "1\n".write(toFile: path, atomically: false, encoding: .utf8)
                } catch {
                    agent.logger.error("cannot enable \(key): same-node pod traffic bypasses NetworkPolicy (load br_netfilter)",
                                       metadata: ["error": "\(error)"])
                }
            }
        }
        let dnsAddresses = config.dns.enabled ? config.dns.listenAddresses(podCIDRs: agent.podCIDRs) : []
        let board = agent.board
        let actor = PolicyActor(
            store: agent.store,
            configuration: PolicyConfiguration(nodeName: config.nodeName, dnsAddresses: dnsAddresses),
            backend: backend, logger: agent.logger,
            // Denied packets are read at each metrics scrape (below), not on a timer.
            deniedPackets: try? NetlinkDeniedPacketReader(),
            onSync: { s in
                if s.inSync {
                    board.reconciled(name, seconds: s.lastSyncSeconds ?? 0,
                                     message: "\(s.policies) policies, \(s.identities) identities")
                } else if let e = s.lastError {
                    board.failed(name, e)
                }
                board.update(name) { row in
                    row.counters = ["policies": s.policies, "identities": s.identities, "elements": s.elements]
                    row.objects = s.objects
                    row.appliedVersion = s.appliedVersion
                }
            })
        agent.policy.set(actor)
        agent.onScrape(name) { await actor.refreshDeniedPackets() }
        agent.statusDetails(name) {
            let s = await actor.status()
            var d = ["policies": "\(s.policies)", "cluster policies": "\(s.clusterPolicies)", "isolated pods (ingress)": "\(s.isolatedIngress)",
                     "isolated pods (egress)": "\(s.isolatedEgress)", "identities": "\(s.identities)", "elements": "\(s.elements)",
                     "syncs": "\(s.syncs)", "last sync": s.lastSyncSeconds.map { String(format: "%.1f ms", $0 * 1000) } ?? "-",
                     "programming": s.lastProgrammingSeconds.map { String(format: "%.3f ms", $0 * 1000) } ?? "-"]
            for (i, note) in s.notes.enumerated() { d["note \(i + 1)"] = note }
            return d
        }
        agent.route("GET /v1/policy/rules") { _ in
            ControlReply(body: Array(await actor.rulesText().utf8), contentType: "text/plain")
        }
        agent.route("GET /v1/policy/check") { request in
            let q = request.query
            do {
                let query = try PolicyCheck.Query(from: q["from"] ?? "", to: q["to"] ?? "", port: q["port"] ?? "")
                let snapshot = await agent.store.snapshot()
                var inputs = PolicyInputs(snapshot: snapshot, nodeName: config.nodeName, policies: snapshot.networkPolicies,
                                          dnsAddresses: dnsAddresses)
                inputs.clusterPolicies = snapshot.clusterNetworkPolicies
                let result = try PolicyCheck.run(query, inputs: inputs)
                let encoder = JSONEncoder()
                encoder.outputFormatting = [.sortedKeys]
                return ControlReply(body: Array((try? encoder.encode(result)) ?? Data()))
            } catch {
                return ControlReply(status: .badRequest, body: Array(#"{"error":\#(jsonString("\(error)"))}"#.utf8))
            }
        }
        defer { agent.policy.set(nil) }
        await cancelWhenGracefulShutdown { await actor.run() }
    }

    /// Enforcement off: tables an earlier run left would keep enforcing stale policies, so they
    /// go (the row says so, and does not gate readiness).
    private func removeTables() async throws {
        agent.board.register(Self.name, gatesReadiness: false, message: "disabled")
        do {
            let backend = try NetlinkRulesetBackend(tableName: PolicyTables.tableName)
            if let held = try await backend.currentState() {
                try await backend.apply(held.tables.keys.map { RulesetOperation.deleteTable($0) })
                agent.logger.notice("NetworkPolicy enforcement is off: removed the policy tables an earlier run left")
            }
            agent.board.reconciled(Self.name, seconds: 0, message: "disabled (policy.enabled: false)")
        } catch {
            agent.board.failed(Self.name, "removing the policy tables: \(error)")
        }
        try? await gracefulShutdown()
    }

    private func jsonString(_ s: String) -> String {
        String(data: (try? JSONEncoder().encode(s)) ?? Data("\"\"".utf8), encoding: .utf8) ?? "\"\""
    }
}

/// The running policy actor, for the CNI ADD gate (PodNetworkService) and status.
final class PolicyHandle: Sendable {
    private let state = Mutex<PolicyActor?>(nil)
    private let changed = Mutex<[CheckedContinuation<Void, Never>]>([])

    func set(_ actor: PolicyActor?) {
        state.withLock { $0 = actor }
        let waiters = changed.withLock { w -> [CheckedContinuation<Void, Never>] in defer { w = [] }; return w }
        waiters.forEach { $0.resume() }
    }

    var current: PolicyActor? { state.withLock { $0 } }

    struct NotProgrammed: Error, CustomStringConvertible {
        var description: String
    }

    /// What a CNI ADD waits for: the policy state of `version` in the kernel, within `timeout`.
    func admit(version: UInt64, timeout: Duration) async throws {
        let deadline = ContinuousClock.now + timeout
        var actor = current
        while actor == nil, ContinuousClock.now < deadline {
            // Started moments after the pods service: poll briefly for it (bounded).
            try? await Task.sleep(for: .milliseconds(10))
            actor = current
        }
        guard let actor else {
            throw NotProgrammed(description: "network policy enforcement is not running yet (retry)")
        }
        guard await actor.waitApplied(version: version, timeout: deadline - ContinuousClock.now) else {
            throw NotProgrammed(description: "the pod's network policy state did not reach the kernel within \(timeout)")
        }
    }
}
