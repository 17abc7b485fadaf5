import ClusterState
import Foundation
import Netlink
import NodeRoutes
import ServiceLifecycle
import Synchronization

/// Masquerade for pod traffic leaving the cluster (`ip`/`ip6 nodenet pod-egress`), in the one
/// reconciler shape: a pass at start, every `resyncInterval` (nothing reports an nftables rule
/// deleted behind nodenet's back), and with backoff while a chain fails; one status per rule,
/// each error logged once when it appears and once when it clears; rules a pass had to put
/// back counted as repairs. Its own row: a failing masquerade is not a routes error, and the
/// routes pass no longer waits on nftables.
struct MasqueradeService: AgentActor {
    let agent: NodeAgent

    func run() async throws {
        let name = "masquerade"
        agent.board.register(name)
        await agent.waitForState()
        let cidrs = agent.config.clusterCIDRs
        // Opened by the first pass that can: until then every rule is in error (the pass says
        // so) and the loop retries with backoff.
        let session = Mutex<NetlinkSession?>(nil)
        @Sendable func openSession() -> NetlinkSession? {
            session.withLock { s in
                if s == nil { s = try? NetlinkSession(protocol: Netlink.netfilter) }
                return s
            }
        }
        let started = ContinuousClock.now
        let loop = KernelReconcileLoop(interval: Self.resyncInterval)
        let first = Mutex(true)
        await cancelWhenGracefulShutdown {
            await loop.run(pass: {
                let (objects, changed) = await BlockingWork.run { Masquerade.reconcile(session: openSession(), clusterCIDRs: cidrs) }
                // The first pass writes what a fresh node lacks; later changes were made by someone else.
                if changed > 0, !first.withLock({ $0 }) {
                    agent.logger.notice("masquerade: repaired rules changed behind nodenet's back", metadata: ["changed": "\(changed)"])
                    agent.board.update(name) { $0.counters["repairs", default: 0] += changed }
                }
                first.withLock { $0 = false }
                return objects
            }, report: { objects, changes in
                for e in changes.newErrors { agent.logger.error("masquerade: \(e.kind) \(e.name): \(e.error ?? "")") }
                for c in changes.cleared { agent.logger.info("masquerade: \(c.kind) \(c.name) in sync again") }
                let errors = objects.filter { $0.state == .error }
                let seconds = (ContinuousClock.now - started).seconds
                if errors.isEmpty {
                    agent.board.reconciled(name, seconds: seconds,
                                           message: "\(objects.count) rule(s) in chain \(Masquerade.chain) for \(cidrs.map(\.description).joined(separator: ","))")
                } else {
                    // Readiness does not wait on masquerade being right: pods work without it
                    // (only their traffic leaving the cluster does not).
                    if !agent.board.hasReconciled(name) { agent.board.reconciled(name, seconds: seconds) }
                    agent.board.failed(name, errors.map { "\($0.name): \($0.error ?? "")" }.joined(separator: "; "),
                                       count: !changes.newErrors.isEmpty)
                }
                agent.board.update(name) { $0.objects = objects }
            })
        }
    }

    /// The periodic pass over the masquerade chains.
    static let resyncInterval: Duration = .seconds(10)
}
