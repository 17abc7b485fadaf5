import ClusterState
import IPAddressing
import Logging
import Synchronization
import Testing
@testable import ServiceProxy

/// A backend over the simulated kernel that can be told to fail, and lets tests edit the
/// "kernel" behind the actor's back.
final class FakeBackend: RulesetBackend {
    private struct State {
        var kernel = SimulatedKernel()
        var failNext = 0
        var transactions: [[RulesetOperation]] = []
        var conntrack: [ConntrackFilter] = []
    }
    private let state = Mutex(State())

    func failNextApplies(_ n: Int) { state.withLock { $0.failNext = n } }
    var transactions: [[RulesetOperation]] { state.withLock { $0.transactions } }
    var kernel: RulesetModel { state.withLock { $0.kernel.model } }
    func edit(_ body: (inout RulesetModel) -> Void) { state.withLock { body(&$0.kernel.model) } }

    func apply(_ ops: [RulesetOperation]) async throws(BackendError) {
        try state.withLock { (s: inout State) throws(BackendError) in
            if s.failNext > 0 {
                s.failNext -= 1
                throw BackendError(operation: "apply", message: "injected failure")
            }
            do { try s.kernel.apply(ops) } catch { throw BackendError(operation: "apply", message: "\(error)") }
            s.transactions.append(ops)
        }
    }

    func currentState() async throws(BackendError) -> RulesetModel? {
        state.withLock { s in
            guard !s.kernel.model.tables.isEmpty else { return nil }
            var m = s.kernel.model
            m.contributions = [:]
            // Like the nft backend: rules cannot be read back.
            for f in Array(m.tables.keys) {
                for name in Array(m.tables[f]!.chains.keys) { m.tables[f]!.chains[name]!.rules = nil }
            }
            return m
        }
    }

    func deleteConntrack(_ filters: [ConntrackFilter]) async throws(BackendError) -> Int {
        state.withLock { $0.conntrack += filters }
        return filters.count
    }
}

@Suite struct ActorTests {
    func start(_ backend: FakeBackend, interval: Duration = .seconds(300)) async -> (ClusterStore, ServiceProxyActor, Task<Void, Never>) {
        let store = ClusterStore()
        await store.apply([.upsert(.service(service("web"))), .upsert(.endpointSlice(slice("web", [EP(ip: "10.244.1.1")])))])
        var config = testConfig
        config.coalesceDelay = .milliseconds(2)
        config.fullSyncInterval = interval
        let actor = ServiceProxyActor(store: store, configuration: config, backend: backend, logger: Logger(label: "test"))
        return (store, actor, Task { await actor.run() })
    }

    @Test func failedTransactionIsRetriedAsAFullSync() async throws {
        let backend = FakeBackend()
        let (store, actor, task) = await start(backend)
        defer { task.cancel() }
        try await waitFor { await actor.status().syncs == 1 }
        backend.failNextApplies(1)
        await store.apply([.upsert(.endpointSlice(slice("web", [EP(ip: "10.244.1.2")])))])
        try await waitFor { await actor.status().failures == 1 }
        #expect(await actor.status().lastError?.contains("injected failure") == true)
        #expect(await !actor.status().inSync)
        // Retried about a second later, as a full sync, and the kernel ends up right.
        try await waitFor { await actor.status().syncs == 2 }
        let status = await actor.status()
        #expect(status.fullSyncs == 2 && status.inSync && status.lastError == nil)
        let slot0 = ElementKey([.address(ip("10.96.0.10")), .proto(.tcp), .port(80), .slot(0)])
        #expect(backend.kernel.tables[.ip]?.sets[SharedName.backends]?.elements[slot0] == .some(.data(ElementKey([.address(ip("10.244.1.2")), .port(8080)]))))
    }

    /// Upgrading an agent whose table has the previous shape: the filter prerouting base chain
    /// and the `ext-masq` set of the last release are gone after the first sync at start, the
    /// new shape is in place, and nothing else of the old table is kept.
    @Test func firstSyncRemovesThePreviousShapesChainAndSet() async throws {
        let backend = FakeBackend()
        backend.edit { m in
            var old = TableModel(family: .ip)
            old.chains["filter-prerouting"] = NFChain("filter-prerouting", base: BaseChainSpec(.filter, .prerouting, priority: -110), rules: [])
            old.sets["ext-masq"] = NFSet(SetSpec("ext-masq", key: [.ipv4Addr, .inetProto, .inetService]))
            m.tables[.ip] = old
        }
        let (_, actor, task) = await start(backend)
        defer { task.cancel() }
        try await waitFor { await actor.status().syncs >= 1 }
        let table = try #require(backend.kernel.tables[.ip])
        #expect(table.chains["filter-prerouting"] == nil, "the previous shape's base chain is removed")
        #expect(table.sets["ext-masq"] == nil, "the previous shape's set is removed")
        #expect(table.sets[SharedName.backends] != nil && !table.chains.isEmpty, "the current shape is in place")
    }

    @Test func periodicFullSyncRepairsDriftWithoutRewritingWhatIsRight() async throws {
        let backend = FakeBackend()
        let (_, actor, task) = await start(backend, interval: .milliseconds(100))
        defer { task.cancel() }
        try await waitFor { await actor.status().syncs >= 1 }
        backend.edit { m in
            m.tables[.ip]!.sets[SharedName.backends]!.elements = [:]
            m.tables[.ip]!.chains["stray"] = NFChain("stray")
        }
        let before = backend.transactions.count
        try await waitFor { backend.kernel.tables[.ip]?.sets[SharedName.backends]?.elements.count == 1 }
        #expect(backend.kernel.tables[.ip]?.chains["stray"] == nil)
        let learned = { (op: RulesetOperation) -> Bool in if case .purgeAffinity = op { true } else { false } }
        let repair = try #require(backend.transactions.dropFirst(before).map { $0.filter { !learned($0) } }.first { !$0.isEmpty })
        // Only the element and the stray chain: rules known from the last sync are trusted.
        #expect(repair.count == 3, "\(repair)")
        #expect(await actor.status().fullSyncs >= 2)
    }

    @Test func statusCountsAndSkippedObjects() async throws {
        let backend = FakeBackend()
        let (store, actor, task) = await start(backend)
        defer { task.cancel() }
        await store.apply([.upsert(.endpointSlice(slice("ghost", [EP(ip: "10.244.9.9")])))])
        // The skipped line appears when the sync is planned; the counts compare once it applied.
        try await waitFor { let s = await actor.status(); return s.syncs >= 1 && !s.skipped.isEmpty && s.lastSyncSeconds != nil }
        try await waitFor { await actor.status().skipped.map(\.description) == ["EndpointSlice ns1/ghost-ipv4: service ns1/ghost does not exist"] }
        let s = await actor.status()
        #expect(s.services == 1 && s.endpoints == 1)
        #expect(s.chains == backend.kernel.chainCount)
        #expect(s.elements == backend.kernel.elementCount)
        #expect(s.lastTransactionSize >= 0 && s.lastSyncSeconds != nil)
    }

    /// Issue 14 (one reconciler shape): the proxy pushes its status on every sync, applied or
    /// failed, and every store version it holds without a sync, so the agent's row follows
    /// without polling the actor (it polled every second and on every read). Nothing here asks
    /// the actor for its status: only what `onEvent` delivered is looked at.
    @Test func statusIsPushedOnEverySyncWithoutBeingAsked() async throws {
        let backend = FakeBackend()
        let pushed = Mutex<[ServiceProxyActor.Event]>([])
        let store = ClusterStore()
        await store.apply([.upsert(.service(service("web"))), .upsert(.endpointSlice(slice("web", [EP(ip: "10.244.1.1")])))])
        var config = testConfig
        config.coalesceDelay = .milliseconds(2)
        config.fullSyncInterval = .seconds(300)
        let actor = ServiceProxyActor(store: store, configuration: config, backend: backend, logger: Logger(label: "test"),
                                      onEvent: { e in pushed.withLock { $0.append(e) } })
        let task = Task { await actor.run() }
        defer { task.cancel() }
        @Sendable func lastSync() -> ServiceProxyStatus? {
            pushed.withLock { events in
                for e in events.reversed() { if case .synced(let s) = e { return s } }
                return nil
            }
        }
        try await waitFor { lastSync()?.services == 1 && lastSync()?.inSync == true }
        #expect(lastSync()?.endpoints == 1)

        await store.apply([.upsert(.service(service("api", ips: ["10.96.0.11"]))),
                           .upsert(.endpointSlice(slice("api", [EP(ip: "10.244.1.2"), EP(ip: "10.244.1.3")])))])
        try await waitFor { lastSync()?.services == 2 && lastSync()?.endpoints == 3 }
        #expect(lastSync()?.appliedVersion == (await store.version))

        // A failed transaction is pushed with its error, the retry with the row in sync again.
        backend.failNextApplies(1)
        await store.apply([.upsert(.endpointSlice(slice("web", [EP(ip: "10.244.1.4")])))])
        try await waitFor { lastSync()?.lastError?.contains("injected failure") == true && lastSync()?.inSync == false }
        try await waitFor { lastSync()?.inSync == true && lastSync()?.lastError == nil }

        // A store change with nothing for the proxy: pushed as the version the kernel now holds.
        let syncs = lastSync()?.syncs
        await store.apply([.upsert(.node(Node(metadata: ObjectMeta(name: "node9"), podCIDRs: [IPPrefix("10.244.9.0/24")!],
                                              addresses: [NodeAddress(type: "InternalIP", address: "192.168.1.19")])))])
        let version = await store.version
        try await waitFor {
            pushed.withLock { $0.contains { if case .applied(let v) = $0 { v == version } else { false } } }
        }
        #expect(lastSync()?.syncs == syncs, "no sync for a change the proxy does not depend on")
    }
}
