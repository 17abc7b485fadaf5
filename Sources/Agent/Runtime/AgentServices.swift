import ClusterState
import Foundation
import Logging
import NIOCore
import ServiceLifecycle
import UnixSignals

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
        let watchdog = notifier.watchdogInterval
        let tick: Duration = watchdog.map { $0 / 2 } ?? .seconds(10)
        await cancelWhenGracefulShutdown {
            var lastStatus = ""
            while !Task.isCancelled {
                if watchdog != nil { notifier.watchdog() }
                await agent.refreshStatus()
                let s = agent.summary()
                if s != lastStatus, board.isReady {
                    notifier.status(s)
                    lastStatus = s
                }
                try? await Task.sleep(for: tick)
            }
        }
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
