import ClusterState
import Foundation
import IPAddressing
import Logging
import NIOCore
import NIOPosix
import ServiceLifecycle
import Synchronization

public let nodenetVersion = "0.1.0"

public struct AgentStartError: Error, CustomStringConvertible {
    public var message: String
    public var description: String { message }
}

/// The node's agent: owns the lock, the state database, the store, the status board and the
/// event loops, and runs every actor as a swift-service-lifecycle Service.
///
/// Start-up order matters and is the design's: lock (no second agent), state (so pods keep
/// their addresses), store, then actors; READY=1 once every gating actor has reconciled once.
public final class NodeAgent: Sendable {
    public let configPath: String?
    public let overrides: [String: String]
    public let store: ClusterStore
    public let database: StateDatabase
    /// The stored objects are a full sync of the configured remote source from an earlier run.
    let servesPersistedSync: Bool
    public let board = StatusBoard()
    /// The service proxy's sync times, for the health endpoints (fed by ServiceProxyService).
    public let proxyHealth = ProxyHealth()
    /// The running NetworkPolicy actor (PolicyService), for the CNI ADD gate.
    let policy = PolicyHandle()
    public let logger: Logger
    public let notifier = SystemdNotifier()
    public let startedAt = Date()
    public let group: MultiThreadedEventLoopGroup
    let lock: AgentLock
    private let configuration: Mutex<AgentConfiguration>
    private let subnets = Mutex<(cidrs: [IPPrefix], source: PodSubnetSource?)>(([], nil))
    private let resolvedNodeIP: Mutex<IPAddress?>
    /// Extra control API routes registered by actors (CNI requests, for one).
    let routes = Mutex<[String: ControlHandler]>([:])
    /// The etcd or Kubernetes source, once started.
    private let remote = Mutex<RemoteSource?>(nil)
    /// Subscribers to pod subnet changes.
    private let subnetWatchers = Mutex<[AsyncStream<[IPPrefix]>.Continuation]>([])
    /// Status details contributed by actors, keyed by actor name.
    let detailProviders = Mutex<[String: @Sendable () async -> [String: String]]>([:])
    /// Gauges actors refresh on each /metrics scrape (IPAM usage), keyed by actor name.
    let scrapeHooks = Mutex<[String: @Sendable () async -> Void]>([:])
    /// Opens once the stored objects are in the store (`StateService`): the control socket
    /// answers before that, everything that reads or writes the store waits for it.
    let stateLoaded = OneShotGate()
    let metricsProviders = Mutex<[String: @Sendable () -> String]>([:])

    public var config: AgentConfiguration { configuration.withLock { $0 } }
    public var podCIDRs: [IPPrefix] { subnets.withLock { $0.cidrs } }
    public var nodeIP: IPAddress? { resolvedNodeIP.withLock { $0 } }

    public init(config: AgentConfiguration, configPath: String?, overrides: [String: String], logger: Logger) throws {
        self.configPath = configPath
        self.overrides = overrides
        self.logger = logger
        configuration = Mutex(config)
        // The control socket, pending deletes and the state database are the agent's alone:
        // a directory that existed with a looser mode (made by hand, by a package) is tightened.
        for dir in [config.runDir, config.stateDir] { try Self.makePrivate(directory: dir) }
        do {
            lock = try AgentLock(path: config.lockPath)
        } catch {
            throw AgentStartError(message: error.description)
        }
        do {
            database = try StateDatabase(directory: config.stateDir)
        } catch {
            throw AgentStartError(message: error.description)
        }
        // The objects are loaded by `StateService` once the agent runs, with the control socket
        // already open (a restart at 175,000 objects spent seconds here with no socket).
        store = ClusterStore(persistence: database)
        servesPersistedSync = config.source != .embedded && database.syncedSource() == config.source.rawValue
        resolvedNodeIP = Mutex(config.nodeIP ?? DefaultInterface.nodeIP())
        group = MultiThreadedEventLoopGroup(numberOfThreads: min(2, ProcessInfo.processInfo.activeProcessorCount))
    }

    /// Returns once the stored objects are in the store (at once after that).
    public func waitForState() async { await stateLoaded.wait() }

    /// Reads every stored object (one SQLite read, on a thread of its own: it blocks) into the
    /// store, then marks it synced when it is a complete view and derives the pod subnets.
    func loadState() async throws {
        let started = ContinuousClock.now
        let database = self.database
        let result: Result<(ClusterSnapshot, skipped: [(ObjectKey, String)]), PersistenceError> = await withCheckedContinuation { c in
            Thread.detachNewThread {
                c.resume(returning: Result { () throws(PersistenceError) in try database.loadSnapshot() })
            }
        }
        let (snapshot, skipped) = try result.get()
        for (key, why) in skipped {
            logger.warning("stored object skipped: does not decode", metadata: ["object": "\(key)", "reason": "\(why)"])
        }
        await store.load(snapshot)
        let config = self.config
        // The stored objects are a complete view when the source delivered a full sync into them
        // before: serve it at once (DNS, rules, readiness) while the source reconnects, rather
        // than answering SERVFAIL and never getting ready while etcd or the API server is down.
        if config.source == .embedded || servesPersistedSync { await store.markSynced() }
        await refreshPodSubnets()
        let seconds = (ContinuousClock.now - started).seconds
        logger.info("state loaded", metadata: ["objects": "\(snapshot.objectCount)", "stateDir": "\(config.stateDir)",
                                               "seconds": "\(String(format: "%.3f", seconds))"])
        board.reconciled("state", seconds: seconds, message: "\(snapshot.objectCount) objects from \(database.path)")
    }

    /// Creates `dir` mode 0700, or sets that mode when it exists.
    static func makePrivate(directory dir: String) throws(AgentStartError) {
        do {
            try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        } catch {
            throw AgentStartError(message: "cannot create \(dir): \(error)")
        }
        guard chmod(dir, 0o700) == 0 else {
            throw AgentStartError(message: "cannot make \(dir) private (mode 0700): \(String(cString: strerror(errno)))")
        }
    }

    /// Runs until SIGTERM/SIGINT, then shuts the actors down in reverse order. The dataplane
    /// is left in place: pods keep working while the agent restarts.
    public func run(actors extra: [any AgentActor] = []) async throws {
        let config = self.config

        // Every gating actor is on the board before any of them runs: each registers itself when
        // it starts, and the first to reconcile could otherwise empty the readiness gate before
        // slower ones registered (READY=1 and /readyz while the source had not synced). The names
        // are those the services below register, in the same order (the status table's order).
        var gating = ["state", "control"]
        if config.source != .embedded { gating.append("source") }
        if config.source != .kubernetes { gating.append("endpoints") }
        gating += ["subnet", "pods", "routes", "masquerade", "services"]
        if config.policy.enabled { gating.append(PolicyService.name) }
        if config.dns.enabled { gating.append("dns") }
        for name in gating { board.register(name) }

        var services: [ServiceGroupConfiguration.ServiceConfiguration] = []
        services.append(.init(service: StateService(agent: self)))
        services.append(.init(service: ControlService(agent: self)))
        if config.source != .embedded {
            services.append(.init(service: SourceService(agent: self)))
        }
        if config.source == .etcd {
            services.append(.init(service: PodIPPublisher(agent: self)))
        }
        if config.source != .kubernetes {
            services.append(.init(service: EndpointsService(agent: self)))
        }
        services.append(.init(service: NodeSubnetService(agent: self)))
        services.append(.init(service: PodNetworkService(agent: self)))
        services.append(.init(service: NodeRoutesService(agent: self)))
        services.append(.init(service: MasqueradeService(agent: self)))
        services.append(.init(service: ServiceProxyService(agent: self)))
        services.append(.init(service: PolicyService(agent: self)))
        services.append(.init(service: DNSService(agent: self)))
        services += extra.map { .init(service: $0) }
        services.append(.init(service: HealthService(agent: self), failureTerminationBehavior: .ignore))
        if !config.metrics.listen.isEmpty {
            services.append(.init(service: MetricsService(agent: self), failureTerminationBehavior: .ignore))
        }
        services.append(.init(service: ReloadService(agent: self)))
        // Last, so graceful shutdown reaches it first: STOPPING=1 goes out before anything stops.
        services.append(.init(service: LifecycleService(agent: self)))

        let group = ServiceGroup(configuration: .init(
            services: services,
            gracefulShutdownSignals: [.sigterm, .sigint],
            cancellationSignals: [],
            logger: logger))
        logger.info("agent starting", metadata: [
            "version": "\(nodenetVersion)", "node": "\(config.nodeName)", "source": "\(config.source.rawValue)",
            "socket": "\(config.socketPath)",
        ])
        try await group.run()
        try? await self.group.shutdownGracefully()
        logger.info("agent stopped")
    }

    /// Registers a control API route (`"POST /v1/cni"`), for actors that serve requests.
    public func route(_ methodAndPath: String, _ handler: @escaping ControlHandler) {
        routes.withLock { $0[methodAndPath] = handler }
    }

    /// Adds a section to `nodenet status` (for example routes per peer, DNS counters).
    public func statusDetails(_ name: String, _ provider: @escaping @Sendable () async -> [String: String]) {
        detailProviders.withLock { $0[name] = provider }
    }

    /// Runs `hook` before each /metrics scrape: for gauges that are cheap to read when asked
    /// and would cost work on every change (addresses in use and free).
    public func onScrape(_ name: String, _ hook: @escaping @Sendable () async -> Void) {
        scrapeHooks.withLock { $0[name] = hook }
    }

    /// Prometheus text an actor adds to `/metrics` (DNS: CoreDNS's metric names, rendered from
    /// its own counters at scrape time).
    public func metricsText(_ name: String, _ provider: @escaping @Sendable () -> String) {
        metricsProviders.withLock { $0[name] = provider }
    }

    var extraMetricsText: String { metricsProviders.withLock { $0 }.sorted { $0.key < $1.key }.map { $0.value() }.joined() }

    /// Re-derives this node's pod subnets (config, Node object, lease) and, if nothing else
    /// provides them, leases one per clusterCIDR (both families on a dual-stack cluster; a
    /// lease from before, of one family, keeps its subnet and gains the other). Returns true
    /// when they changed.
    @discardableResult
    func refreshPodSubnets() async -> Bool {
        let config = self.config
        var snapshot = await store.snapshot()
        if nodeIP == nil, let ip = snapshot.nodes[config.nodeName]?.internalIPs.first {
            resolvedNodeIP.withLock { $0 = ip }
        }
        var resolved = PodSubnets.resolve(node: config.nodeName, configured: config.podCIDRs, in: snapshot)
        // Leasing locally is the embedded source's way; with etcd the SubnetLeaser does it.
        let ranges = config.podSubnetRanges
        if resolved == nil || (resolved?.1 == .lease && !PodSubnets.covers(snapshot.leases[config.nodeName], ranges)),
           config.source == .embedded, !ranges.isEmpty {
            do {
                let lease = try PodSubnets.nextLease(node: config.nodeName, ranges: ranges, in: snapshot)
                try await store.commit([.upsert(.lease(lease))])
                logger.info("leased pod subnet", metadata: ["cidrs": "\(lease.cidrs.map(\.description))"])
                snapshot = await store.snapshot()
                resolved = PodSubnets.resolve(node: config.nodeName, configured: config.podCIDRs, in: snapshot)
            } catch {
                logger.error("cannot lease a pod subnet", metadata: ["error": "\(error)"])
            }
        }
        // A lease is only a fallback: once config or the Node object provides subnets, drop it.
        if let resolved, resolved.1 != .lease, snapshot.leases[config.nodeName] != nil, config.source == .embedded {
            try? await store.commit([.delete(ObjectKey(.lease, name: config.nodeName))])
        }
        let new = resolved ?? ([], nil)
        let changed = subnets.withLock { s in
            guard s.cidrs != new.0 || s.source != new.1 else { return false }
            s = (new.0, new.1)
            return true
        }
        if changed { subnetWatchers.withLock { $0.forEach { $0.yield(new.0) } } }
        return changed
    }

    func setRemoteSource(_ source: RemoteSource) {
        remote.withLock { $0 = source }
    }

    var remoteSource: RemoteSource? { remote.withLock { $0 } }

    /// A stream that yields this node's pod subnets each time they change.
    public func podCIDRChanges() -> AsyncStream<[IPPrefix]> {
        let (stream, continuation) = AsyncStream<[IPPrefix]>.makeStream(bufferingPolicy: .bufferingNewest(1))
        subnetWatchers.withLock { $0.append(continuation) }
        return stream
    }

    var attachmentCount: Int {
        get async { await store.snapshot().attachments.count }
    }

    /// SIGHUP: re-read the configuration. Settings that can change live are applied; the
    /// others are reported as needing a restart. An invalid file changes nothing.
    func reload() {
        notifier.reloading()
        defer { notifier.ready(status: summary()) }
        let old = config
        let new: AgentConfiguration
        do {
            new = try ConfigLoader.load(path: configPath, required: configPath != nil && configPath != AgentConfiguration.defaultPath,
                                        overrides: overrides, defaultNodeName: old.nodeName)
        } catch {
            logger.error("reload refused: configuration invalid, keeping the running one", metadata: ["error": "\(error)"])
            return
        }
        var live = old
        live.logLevel = new.logLevel
        live.dns.ttl = new.dns.ttl
        var restartNeeded = new
        restartNeeded.logLevel = old.logLevel
        restartNeeded.dns.ttl = old.dns.ttl
        configuration.withLock { $0 = live }
        if restartNeeded != old {
            logger.warning("reload: some changed settings take effect at the next restart")
        }
        logger.info("configuration reloaded", metadata: ["logLevel": "\(live.logLevel)"])
    }

    private func sourceRow(config: AgentConfiguration, snapshot: ClusterSnapshot) -> AgentStatus.Source {
        guard let remote = remoteSource?.status() else {
            return .init(kind: config.source.rawValue, synced: snapshot.synced, connected: true, lastSync: startedAt,
                         storeVersion: snapshot.version, message: config.source == .embedded ? "state in \(database.path)" : "starting")
        }
        var message = remote.endpoint.map { "endpoint \($0)" } ?? ""
        message += ", watch restarts \(remote.watchRestarts), relists \(remote.relists)"
        if remote.skippedObjects > 0 { message += ", \(remote.skippedObjects) objects skipped" }
        if let skipped = remote.lastSkipped { message += ", last skipped \(skipped)" }
        // An optional CRD not installed (ClusterNetworkPolicy): said, not an error.
        for (feed, reason) in (remote.absent ?? [:]).sorted(by: { $0.key < $1.key }) { message += ", \(feed): \(reason)" }
        if let e = remote.lastError { message += ", last error: \(e)" }
        return .init(kind: config.source.rawValue, synced: remote.synced, connected: remote.connected, lastSync: remote.lastSync,
                     storeVersion: snapshot.version, message: message)
    }

    /// The one-line summary for systemd's STATUS=.
    func summary() -> String {
        let rows = board.rows
        let errors = rows.filter { $0.state == .error }.map(\.name)
        let cidrs = podCIDRs.map(\.description).joined(separator: ",")
        var s = board.isReady ? "ready" : "starting"
        s += ", pods subnet \(cidrs.isEmpty ? "none" : cidrs)"
        if !errors.isEmpty { s += ", errors in \(errors.joined(separator: ","))" }
        return s
    }

    /// The status document. Rows are as the actors last pushed them (each reports its passes
    /// and syncs as they happen): reading never waits for an actor or refreshes a row.
    func status() async -> AgentStatus {
        let config = self.config
        let snapshot = await store.snapshot()
        let source = subnets.withLock { $0.source }
        var details: [String: [String: String]] = [:]
        for (name, provider) in detailProviders.withLock({ $0 }) { details[name] = await provider() }
        var objects: [String: Int] = [:]
        for kind in ObjectKind.allCases where snapshot.count(of: kind) > 0 { objects[kind.rawValue] = snapshot.count(of: kind) }
        let nodeIPs = await primaryNodeAddresses().map(\.description)
        var status = AgentStatus(
            agent: .init(version: nodenetVersion, pid: getpid(), startedAt: startedAt,
                         uptimeSeconds: Int(Date().timeIntervalSince(startedAt)), ready: board.isReady,
                         waitingFor: board.waitingFor, configPath: configPath, socket: config.socketPath),
            source: sourceRow(config: config, snapshot: snapshot),
            node: .init(name: config.nodeName, nodeIP: nodeIP?.description, podCIDRs: podCIDRs.map(\.description),
                        podCIDRSource: source?.rawValue ?? "none", clusterCIDRs: config.clusterCIDRs.map(\.description),
                        serviceCIDRs: config.serviceCIDRs.map(\.description), clusterDomain: config.clusterDomain,
                        routing: config.routing.rawValue),
            objects: objects,
            actors: board.rows.map { $0.truthful(storeVersion: snapshot.version) },
            pods: snapshot.attachments.values.sorted { $0.keyName < $1.keyName }.map {
                .init(namespace: $0.podNamespace, name: $0.podName, containerID: $0.containerID, ifname: $0.ifname,
                      ips: $0.ips.map(\.description), hostInterface: $0.hostInterface)
            },
            details: details)
        status.node.nodeIPs = nodeIPs
        return status
    }
}
