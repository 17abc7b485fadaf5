import ClusterState
import Foundation
import Logging
import NIOCore
import ServiceLifecycle
import Synchronization
import UnixSignals

/// Loads the stored objects into the store, then opens `NodeAgent.stateLoaded` for the
/// services that wait on it. Runs beside the control socket, which answers meanwhile (status
/// says "state" is what readiness waits for). A database that cannot be read stops the agent.
struct StateService: AgentActor {
    let agent: NodeAgent

    func run() async throws {
        do {
            try await agent.loadState()
        } catch {
            agent.board.failed("state", "\(error)")
            agent.logger.critical("cannot load the stored objects", metadata: ["error": "\(error)"])
            // The waiting services go on to be cancelled with the group, not left hanging.
            agent.stateLoaded.open()
            throw error
        }
        agent.stateLoaded.open()
        try? await gracefulShutdown()
    }
}

/// A gate that opens once and stays open; waiting is cancellable.
final class OneShotGate: Sendable {
    private let state = Mutex<(open: Bool, waiters: [UInt64: CheckedContinuation<Void, Never>], next: UInt64)>((false, [:], 0))

    func open() {
        let waiters = state.withLock { s -> [CheckedContinuation<Void, Never>] in
            s.open = true
            defer { s.waiters = [:] }
            return Array(s.waiters.values)
        }
        waiters.forEach { $0.resume() }
    }

    var isOpen: Bool { state.withLock { $0.open } }

    func wait() async {
        if isOpen { return }
        let id = state.withLock { s -> UInt64 in s.next += 1; return s.next }
        await withTaskCancellationHandler {
            await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
                let now = state.withLock { s -> Bool in
                    if s.open || Task.isCancelled { return true }
                    s.waiters[id] = c
                    return false
                }
                if now { c.resume() }
            }
        } onCancel: {
            state.withLock { $0.waiters.removeValue(forKey: id) }?.resume()
        }
    }
}

/// The control socket: binds, serves until graceful shutdown, closes.
struct ControlService: AgentActor {
    let agent: NodeAgent

    func run() async throws {
        let started = ContinuousClock.now
        agent.board.register("control")
        let api = ControlAPI(agent: agent)
        let server = ControlServer(socketPath: agent.config.socketPath, group: agent.group, logger: agent.logger) { request in
            await api.handle(request)
        }
        let channel: any Channel
        do {
            channel = try await server.bind()
        } catch {
            agent.board.failed("control", "cannot bind \(server.socketPath): \(error)")
            throw error
        }
        agent.board.reconciled("control", seconds: (ContinuousClock.now - started).seconds, message: "listening on \(server.socketPath)")
        try? await gracefulShutdown()
        try? await channel.close()
        try? FileManager.default.removeItem(atPath: server.socketPath)
    }
}

/// The built-in endpoints controller (embedded and etcd sources).
struct EndpointsService: AgentActor {
    let agent: NodeAgent

    func run() async throws {
        agent.board.register("endpoints")
        await agent.waitForState()
        let started = ContinuousClock.now
        let controller = EndpointsController()
        await controller.reconcileAll(store: agent.store)
        agent.board.reconciled("endpoints", seconds: (ContinuousClock.now - started).seconds, message: "derives EndpointSlices from Pods")
        await cancelWhenGracefulShutdown {
            await controller.run(store: agent.store)
        }
    }
}

/// Keeps this node's pod subnets current as Node objects and leases change.
struct NodeSubnetService: AgentActor {
    let agent: NodeAgent

    func run() async throws {
        agent.board.register("subnet")
        await agent.waitForState()
        let events = await agent.store.subscribe()
        let started = ContinuousClock.now
        await agent.refreshPodSubnets()
        report(seconds: (ContinuousClock.now - started).seconds)
        await cancelWhenGracefulShutdown {
            for await event in events {
                if case .changed(_, let changes) = event, !changes.contains(where: { $0.key.kind == .node || $0.key.kind == .lease }) {
                    continue
                }
                let t = ContinuousClock.now
                if await agent.refreshPodSubnets() {
                    agent.logger.info("pod subnets changed", metadata: ["cidrs": "\(agent.podCIDRs.map(\.description))"])
                }
                report(seconds: (ContinuousClock.now - t).seconds)
            }
        }
    }

    private func report(seconds: Double) {
        let cidrs = agent.podCIDRs
        agent.board.reconciled("subnet", seconds: seconds, state: cidrs.isEmpty ? .pending : .inSync,
                               message: cidrs.isEmpty ? "no pod subnet: set podCIDRs, apply this node's Node object, or free space in clusterCIDR"
                                   : "pod subnets \(cidrs.map(\.description).joined(separator: ","))")
    }
}

/// SIGHUP reloads the configuration.
struct ReloadService: AgentActor {
    let agent: NodeAgent

    func run() async throws {
        let signals = await UnixSignalsSequence(trapping: .sighup)
        for await _ in signals.cancelOnGracefulShutdown() {
            agent.logger.info("SIGHUP: reloading configuration")
            agent.reload()
        }
    }
}

/// systemd integration: READY=1 when every actor has reconciled once, STATUS= summaries,
/// WATCHDOG=1 at half the unit's WatchdogSec, STOPPING=1 as soon as shutdown starts.
struct LifecycleService: AgentActor {
    let agent: NodeAgent

    func run() async throws {
        let notifier = agent.notifier
        let logger = agent.logger
        let board = agent.board
        let conflist = agent.config.cni.conflist
        let socket = agent.config.socketPath
        board.whenReady { [agent] in
            // The runtime's conflist first (when configured), so a node whose unit is active
            // has it: off the cooperative pool, since it fsyncs.
            DispatchQueue.global().async {
                if let conflist {
                    do {
                        if try CNIConflist.write(CNIConflist.document(socket: socket), to: conflist) {
                            logger.info("wrote the CNI network configuration", metadata: ["path": "\(conflist)"])
                        }
                    } catch {
                        agent.board.failed("pods", "cannot write \(conflist): \(error)")
                        logger.error("cannot write the CNI network configuration", metadata: ["path": "\(conflist)", "error": "\(error)"])
                    }
                }
                notifier.ready(status: agent.summary())
                logger.info("agent ready", metadata: ["summary": "\(agent.summary())"])
            }
        }
        // WATCHDOG=1 is a heartbeat (at half WatchdogSec); STATUS= follows the board's changes
        // (each reconcile, error or readiness change), not a timer.
        let watchdog = notifier.watchdogInterval
        let changes = board.changes()
        await cancelWhenGracefulShutdown {
            await withTaskGroup(of: Void.self) { group in
                if let watchdog {
                    group.addTask {
                        while !Task.isCancelled {
                            notifier.watchdog()
                            try? await Task.sleep(for: watchdog / 2)
                        }
                    }
                }
                group.addTask {
                    var lastStatus = ""
                    for await _ in changes {
                        let s = agent.summary()
                        if s != lastStatus, board.isReady {
                            notifier.status(s)
                            lastStatus = s
                        }
                    }
                }
                await group.next()
                group.cancelAll()
            }
        }
        board.stopping()
        notifier.stopping()
        logger.info("shutting down: the dataplane stays in place")
    }
}

extension Duration {
    var seconds: Double {
        let (s, atto) = components
        return Double(s) + Double(atto) / 1e18
    }
}
