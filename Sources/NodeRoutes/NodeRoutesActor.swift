// The reconciler: peers from ClusterState, drift from netlink events, a periodic safety net.
// One work loop does all kernel work; triggers only set flags and wake it, so a burst of
// store changes or kernel events coalesces into one pass. Store changes apply the diff from
// what we believe the kernel holds (no dump); kernel events that touch nodenet's entries,
// an overrun, the underlay or the vxlan device changing, and the timer run a full reconcile
// (dump, diff, repair). Cancellation ends `run()` and leaves the dataplane in place.
import ClusterState
import Glibc
import IPAddressing
import Logging
import Metrics
import Netlink
import Synchronization

public actor NodeRoutesActor {
    /// The actor's netlink exchanges (dumps, route batches, nftables) block: it runs on a
    /// thread of its own, not on the cooperative pool (one for every routes actor of the process).
    static let executor = DedicatedThreadExecutor(name: "nodenet-routes")
    public nonisolated var unownedExecutor: UnownedSerialExecutor { Self.executor.asUnownedSerialExecutor() }

    private var configuration: NodeRoutesConfiguration
    private let store: ClusterStore
    private let logger: Logger
    private let onReconciled: (@Sendable (NodeRoutesStatus) -> Void)?
    private let onChange: (@Sendable (NodeRoutesStatus) -> Void)?
    /// The status without its per-peer rows, plus what the rows are made from (copy-on-write
    /// values, so publishing them is O(1)): the rows are built when someone reads `status`,
    /// never on each change (5,000 peers sorted per Node event was most of a change's work).
    private let statusBox: Mutex<(status: NodeRoutesStatus, rows: PeerRowInputs)>

    /// The highest store version received, and the highest whose routes the kernel holds.
    private var seenVersion: UInt64 = 0
    private var appliedVersion: UInt64 = 0
    /// True while `work` runs: an event seen meanwhile is not yet reflected in the kernel.
    private var working = false

    private var kernel: Kernel?
    private var topology: Topology?
    private var nodes: [String: Node] = [:]
    private var desired = DesiredState()
    /// What we believe the kernel holds: the last dump plus the steps that succeeded since.
    private var believed = Dataplane()
    private var peerErrors: [String: String] = [:]
    private var nodeErrors: [String] = []
    private var lastRefused: [String: String] = [:]
    /// The vxlan device's wanted MTU and MAC, to notice it being altered.
    private var vxlanShape: DriftWatch.DeviceShape?

    /// Until the store's source finished its first sync, a Node missing from it may just not
    /// be listed yet: nothing is removed from the kernel before then (a restart with the
    /// Kubernetes source must not drop every route while the first list is in flight).
    private var storeSynced = false
    private var needFull = false
    private var needStore = false
    /// Nodes changed since the last pass (incremental update), or nil: recompute over all.
    private var changedNodes: Set<String>? = []
    private var retryScheduled = false
    private var retryDelay: Duration = .seconds(2)
    private var reconciledOnce = false
    private var readyWaiters: [CheckedContinuation<Void, Never>] = []
    private let wake: AsyncStream<Void>
    private let wakeContinuation: AsyncStream<Void>.Continuation

    private let repairsCounter = Counter(label: "nodenet_routes_repairs_total")
    private let reconcileCounter = Counter(label: "nodenet_routes_full_reconciles_total")
    private let peersGauge = Gauge(label: "nodenet_routes_peers")
    private let failingGauge = Gauge(label: "nodenet_routes_peers_failing")

    /// - Parameter onReconciled: called after every full reconcile (the first one is when the
    ///   agent may report READY).
    /// - Parameter onChange: called whenever the status changes (incremental work, a store event
    ///   the routes do not depend on moving `appliedVersion`); the status has no peer rows.
    public init(configuration: NodeRoutesConfiguration, store: ClusterStore, logger: Logger,
                onReconciled: (@Sendable (NodeRoutesStatus) -> Void)? = nil,
                onChange: (@Sendable (NodeRoutesStatus) -> Void)? = nil) {
        self.configuration = configuration
        self.store = store
        self.logger = logger
        self.onReconciled = onReconciled
        self.onChange = onChange
        statusBox = Mutex((NodeRoutesStatus(mode: configuration.mode.rawValue, podCIDRs: configuration.podCIDRs.map(\.description)),
                           PeerRowInputs(configuration: configuration)))
        (wake, wakeContinuation) = AsyncStream<Void>.makeStream(bufferingPolicy: .bufferingNewest(1))
    }

    /// The latest status with one row per peer, readable from any thread without waiting for
    /// the actor. Building the rows is O(peers): for `nodenet status`, not for each change.
    public nonisolated var status: NodeRoutesStatus {
        let (status, inputs) = statusBox.withLock { $0 }
        var s = status
        s.peers = inputs.rows()
        return s
    }

    /// The latest status without the per-peer rows: O(1).
    public nonisolated var summaryStatus: NodeRoutesStatus { statusBox.withLock { $0.status } }

    /// Returns once the first full reconcile finished (at once if it already did).
    public func waitUntilReconciled() async {
        if reconciledOnce { return }
        await withCheckedContinuation { readyWaiters.append($0) }
    }

    /// The node's own subnets changed (lease, Node object): re-address the vxlan device and
    /// re-check peers for overlap.
    public func updatePodCIDRs(_ cidrs: [IPPrefix]) {
        guard cidrs != configuration.podCIDRs else { return }
        configuration.podCIDRs = cidrs
        if let k = kernel { kernel = Kernel(client: k.client, configuration: configuration) }
        request(full: true)
    }

    /// Runs until cancelled. Never removes what it installed: the dataplane outlives the agent.
    public func run() async throws {
        let ns = configuration.namespace
        let client = try ns.map { try RouteClient(namespace: $0) } ?? RouteClient()
        kernel = Kernel(client: client, configuration: configuration)
        if ns == nil { _ = try? RouteProtocol.installName() }
        // Subscribe before reading so nothing between the read and the events is lost.
        // Neighbour and FDB entries are only ever nodenet's on the vxlan device: in host-gw mode
        // the node's ARP and NDP churn is not subscribed to at all.
        let monitor = try NetlinkMonitor(namespace: ns, groups: Self.groups(for: configuration.mode))
        defer { monitor.stop() }
        let subscription = await store.subscribe()
        defer { subscription.finish() }
        let first = await store.snapshot()
        nodes = first.nodes
        storeSynced = first.synced
        seenVersion = first.version
        fullReconcile(reason: "start", version: first.version)

        let interval = configuration.resyncInterval
        let wake = self.wake
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { for await e in monitor.events { await self.kernelEvent(e) } }
            group.addTask { for await e in subscription { await self.storeEvent(e) } }
            group.addTask {
                while !Task.isCancelled {
                    try? await Task.sleep(for: interval)
                    if !Task.isCancelled { await self.request(full: true) }
                }
            }
            group.addTask { for await _ in wake { await self.work() } }
            _ = try await group.next()
            group.cancelAll()
            if !Task.isCancelled { throw NodeRoutesError("an event source of the routes reconciler stopped (netlink monitor or store)") }
        }
    }

    /// The rtnetlink groups drift detection needs in `mode` (see `DriftWatch`).
    static func groups(for mode: RoutingMode) -> NetlinkMonitor.Groups {
        mode == .hostGW ? [.links, .addresses, .routes] : .all
    }

    // MARK: triggers

    private func request(full: Bool) {
        if full { needFull = true } else { needStore = true }
        wakeContinuation.yield()
    }

    private func storeEvent(_ e: StoreEvent) {
        switch e {
        case .changed(let version, let changes):
            seenVersion = max(seenVersion, version)
            var nodeChanged = false
            for change in changes where change.key.kind == .node {
                nodeChanged = true
                changedNodes?.insert(change.key.name)
            }
            if nodeChanged {
                request(full: false)
            } else if !working, !needFull, !needStore {
                // Nothing the routes depend on changed and nothing is pending: the kernel
                // holds the desired state of this version too.
                markApplied(version)
            }
        case .resync(let version):
            seenVersion = max(seenVersion, version)
            changedNodes = nil
            request(full: false)
        case .synced(let version):
            seenVersion = max(seenVersion, version)
            request(full: true)
        }
    }

    /// Records that the kernel holds the routes of store `version` (when nothing failed).
    private func markApplied(_ version: UInt64) {
        guard version > appliedVersion, peerErrors.isEmpty, nodeErrors.isEmpty else { return }
        appliedVersion = version
        let s = statusBox.withLock { box -> NodeRoutesStatus in
            box.status.appliedVersion = version
            return box.status
        }
        onChange?(s)
    }

    private func kernelEvent(_ e: NetlinkEvent) {
        guard let topology else { return }
        let watch = DriftWatch(topology: topology, wanted: desired.dataplane, believed: believed,
                               vxlanDevice: configuration.vxlanDeviceName, vxlanShape: vxlanShape, nodeIP: configuration.nodeIP)
        if watch.isDrift(e) { request(full: true) }
    }

    private func work() async {
        if needFull || needStore {
            working = true
            defer { working = false }
            let full = needFull
            needFull = false
            needStore = false
            let changed = changedNodes
            changedNodes = []
            let snapshot = await store.snapshot()
            seenVersion = max(seenVersion, snapshot.version)
            nodes = snapshot.nodes
            storeSynced = snapshot.synced
            // Another trigger may have arrived during the await; it is served now anyway.
            if full || needFull || topology == nil {
                needFull = false
                fullReconcile(reason: "drift", version: snapshot.version)
            } else {
                incremental(changed: changed)
            }
            // The kernel holds the routes of the snapshot; events seen since did not touch
            // Nodes unless a new pass is already requested.
            markApplied(needFull || needStore ? snapshot.version : seenVersion)
        }
    }

    // MARK: reconciling

    /// The Nodes in `changed` (nil: any) changed: update the desired state for them alone and
    /// apply the diff over the entries they touch, O(change) (5,000 peers recomputed and four
    /// sorted diffs per Node event were most of a new Node's time to its route). Changes that
    /// involve overlapping peers recompute the whole state, as a full pass would.
    private func incremental(changed: Set<String>?) {
        guard let kernel, let topology else { return fullReconcile(reason: "no topology") }
        let plan: DataplanePlan
        if let changed, let touched = desired.update(changed: changed, nodes: nodes, configuration: configuration, topology: topology) {
            plan = DataplanePlan.diff(current: believed, desired: desired.dataplane, touching: touched)
        } else {
            desired = DesiredState.compute(configuration: configuration, topology: topology, nodes: nodes.values)
            plan = DataplanePlan.diff(current: believed, desired: desired.dataplane)
        }
        do {
            // Based on `believed` itself (nil), updated in place: passing it as a value would
            // hold a second reference to its tables and make every pass copy all peers' entries.
            try execute(plan, on: kernel, basedOn: nil)
        } catch {
            nodeErrors = ["\(error)"]
            request(full: true)
        }
        publishStatus()
    }

    /// - Parameter version: the store version `nodes` is from, recorded as applied when the
    ///   pass succeeds (before `onReconciled` hears of it).
    private func fullReconcile(reason: String, version: UInt64? = nil) {
        guard let kernel else { return }
        reconcileCounter.increment()
        countReconcile()
        var errors: [String] = []
        var objects: [KernelObjectStatus] = []
        do {
            let (topo, underlay) = try kernel.topology()
            // Without the vxlan device, vxlan peers are refused but host-gw peers still served.
            var vx: (index: Int32?, created: Bool, addressErrors: [IPPrefix: String]) = (nil, false, [:])
            do {
                vx = try kernel.ensureVxlan(underlay: underlay)
                if vx.index != nil {
                    objects.append(KernelObjectStatus(kind: "device", name: configuration.vxlanDeviceName))
                    for p in kernel.vxlanAddresses {
                        objects.append(KernelObjectStatus(kind: "address", name: "\(p) on \(configuration.vxlanDeviceName)", error: vx.addressErrors[p]))
                    }
                }
                for (p, e) in vx.addressErrors.sorted(by: { $0.key.description < $1.key.description }) {
                    errors.append("vxlan device \(configuration.vxlanDeviceName) address \(p): \(e)")
                }
                if !vx.addressErrors.isEmpty { scheduleRetry() }
            } catch {
                objects.append(KernelObjectStatus(kind: "device", name: configuration.vxlanDeviceName, error: "\(error)"))
                errors.append("vxlan device \(configuration.vxlanDeviceName): \(error)")
                scheduleRetry()
            }
            if vx.created, reconciledOnce { logger.warning("vxlan device \(configuration.vxlanDeviceName) was missing or altered: re-created") }
            var t = topo
            t.vxlanIndex = vx.index
            vxlanShape = vx.index == nil ? nil : DriftWatch.DeviceShape(
                mtu: VTEPAddress.overlayMTU(underlayMTU: underlay.mtu, underlayFamily: configuration.nodeIP.family),
                mac: VTEPAddress.mac(for: configuration.nodeIP))
            topology = t
            desired = DesiredState.compute(configuration: configuration, topology: t, nodes: nodes.values)
            let current = try kernel.current(families: [.v4, .v6], vxlanIndex: vx.index)
            let plan = DataplanePlan.diff(current: current, desired: desired.dataplane)
            if !plan.isEmpty {
                if reconciledOnce {
                    // Everything we applied is in `believed`; a difference found by a dump was made by someone else.
                    let drifted = DataplanePlan.diff(current: current, desired: believed).count
                    if drifted > 0 {
                        repairsCounter.increment(by: Int64(drifted))
                        incrementRepairs(drifted)
                        logger.notice("repairing \(drifted) kernel entries changed behind nodenet's back", metadata: ["reason": "\(reason)"])
                    }
                } else {
                    logger.info("start: \(plan.setLinkLayer.count + plan.setRoutes.count) entries to add or correct, \(plan.deleteRoutes.count + plan.deleteLinkLayer.count) stale to remove")
                }
            }
            try execute(plan, on: kernel, basedOn: current)
        } catch {
            errors.append("\(error)")
            scheduleRetry()
        }
        let (nodeLevel, nodeObjects) = ensureForwarding()
        if !nodeLevel.isEmpty { scheduleRetry() }
        errors += nodeLevel
        objects += nodeObjects
        setNodeErrors(errors)
        statusBox.withLock { $0.status.objects = objects }
        if let version { markApplied(version) }
        let first = !reconciledOnce
        reconciledOnce = true
        publishStatus()
        if first {
            for w in readyWaiters { w.resume() }
            readyWaiters = []
        }
        onReconciled?(status)
    }

    /// - Parameter current: what the kernel holds (a dump), or nil: what `believed` says.
    private func execute(_ wanted: DataplanePlan, on kernel: Kernel, basedOn current: Dataplane?) throws {
        var plan = wanted
        if !storeSynced {
            plan.deleteRoutes = []
            plan.deleteLinkLayer = []
        }
        // A failed entry is missing from `believed`, so every later plan retries it: an empty
        // plan means nothing is failing.
        guard !plan.isEmpty else {
            if let current { believed = current }
            setPeerErrors([:])
            return
        }
        let steps = plan.steps
        let failures = try kernel.apply(plan)
        if let current { believed = current }
        believed.apply(steps, failed: Set(failures.keys))
        var errors: [String: String] = [:]
        for (i, e) in failures.sorted(by: { $0.key < $1.key }) {
            var text = "\(e)"
            if e.isExists, case .route(.add(let r)) = steps[i] {
                text = "a route nodenet does not own already covers \(r.destination); nodenet leaves it alone"
            }
            let owner = desired.owner(of: steps[i]) ?? "-"
            if errors[owner] == nil { errors[owner] = text }
        }
        setPeerErrors(errors)
        if !failures.isEmpty { scheduleRetry() }
    }

    /// Records per-peer failures, logging each one when it appears or changes (not at every
    /// retry) and when the peer is in sync again; resets the retry backoff when all is well.
    private func setPeerErrors(_ errors: [String: String]) {
        for (peer, text) in errors.sorted(by: { $0.key < $1.key }) where peerErrors[peer] != text {
            logger.warning("route entries failed", metadata: ["peer": "\(peer)", "error": "\(text)"])
        }
        for peer in peerErrors.keys.sorted() where errors[peer] == nil {
            logger.info("route entries in sync again", metadata: ["peer": "\(peer)"])
        }
        peerErrors = errors
        if errors.isEmpty, nodeErrors.isEmpty { retryDelay = .seconds(2) }
    }

    /// Node-level errors (the vxlan device and its addresses, forwarding, a failed
    /// dump), each logged once when it appears and once when it clears, not at every retry.
    private func setNodeErrors(_ errors: [String]) {
        for e in errors where !nodeErrors.contains(e) { logger.error("routes: \(e)") }
        for e in nodeErrors where !errors.contains(e) { logger.info("routes: resolved: \(e)") }
        nodeErrors = errors
        if errors.isEmpty, peerErrors.isEmpty { retryDelay = .seconds(2) }
    }

    /// A full reconcile a little later (a down underlay, a conflicting foreign route), backing
    /// off from 2 s to the resync interval while the failure persists.
    private func scheduleRetry() {
        guard !retryScheduled else { return }
        retryScheduled = true
        let delay = retryDelay
        retryDelay = min(retryDelay * 2, max(configuration.resyncInterval, .seconds(2)))
        Task {
            try? await Task.sleep(for: delay)
            self.retryFired()
        }
    }

    private func retryFired() {
        retryScheduled = false
        request(full: true)
    }

    /// Forwarding (the sysctls of each family the pods use): the errors (for the node-level
    /// list) and one status per sysctl. Masquerade is a reconciler of its own (`Masquerade`).
    private func ensureForwarding() -> ([String], [KernelObjectStatus]) {
        var sysctls = [(key: "net.ipv4.ip_forward", value: "1")]
        if (configuration.clusterCIDRs + configuration.podCIDRs).contains(where: { $0.family == .v6 }) {
            sysctls.append((key: "net.ipv6.conf.all.forwarding", value: "1"))
        }
        do {
            if let ns = configuration.namespace { try ns.setSysctls(sysctls) } else { for s in sysctls { try Sysctl.write(s.key, s.value) } }
            return ([], sysctls.map { KernelObjectStatus(kind: "sysctl", name: $0.key) })
        } catch {
            return (["enabling forwarding: \(error)"], sysctls.map { KernelObjectStatus(kind: "sysctl", name: $0.key, error: "\(error)") })
        }
    }

    private func incrementRepairs(_ n: Int) {
        statusBox.withLock { $0.status.repairs += n }
    }

    private func publishStatus() {
        let inputs = PeerRowInputs(configuration: configuration, nodes: nodes, desired: desired, errors: peerErrors)
        // Log each refusal once, when it appears or its reason changes.
        if desired.refused != lastRefused {
            for (name, reason) in desired.refused where lastRefused[name] != reason {
                logger.warning("peer refused", metadata: ["peer": "\(name)", "reason": "\(reason)"])
            }
            lastRefused = desired.refused
        }
        let (peerCount, failing) = inputs.counts
        peersGauge.record(peerCount)
        failingGauge.record(failing)
        let errors = desired.nodeErrors + nodeErrors
        let routes = believed.routes.count
        let device = configuration.mode == .hostGW ? nil : configuration.vxlanDeviceName
        let underlay = topology.map { "index \($0.underlayIndex) (\($0.underlayPrefixes.map(\.description).joined(separator: ", ")))" }
        let cidrs = configuration.podCIDRs.map(\.description)
        let done = reconciledOnce
        let status = statusBox.withLock { box -> NodeRoutesStatus in
            box.rows = inputs
            var s = box.status
            s.peerCount = peerCount
            s.failingPeers = failing
            s.errors = errors
            s.routes = routes
            s.vxlanDevice = device
            s.underlay = underlay
            s.podCIDRs = cidrs
            s.reconciled = done || s.reconciled
            box.status = s
            return s
        }
        onChange?(status)
    }

    /// Called at the end of `fullReconcile`; counts reconciles in the status.
    private func countReconcile() { statusBox.withLock { $0.status.fullReconciles += 1 } }
}
