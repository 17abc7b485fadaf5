import Glibc

/// The one store every actor shares. Writers apply batches of changes atomically;
/// readers take snapshots and subscribe to change events.
///
/// Subscribers get a bounded buffer (see `StoreSubscription`): one that falls behind
/// receives `.resync` instead of silently missing changes.
///
/// The store runs on a thread of its own (`DedicatedThreadExecutor`), not on the cooperative
/// pool: `commit` writes the state database synchronously (an fsync per batch), and on the
/// pool that stalled every other actor of the agent for as long as the disk took.
public actor ClusterStore {
    /// One thread for every store of the process (the agent has one; tests make many).
    static let executor = DedicatedThreadExecutor(name: "nodenet-store")
    public nonisolated var unownedExecutor: UnownedSerialExecutor { Self.executor.asUnownedSerialExecutor() }

    private var state = ClusterSnapshot()
    // Weak: a subscription that its reader dropped unregisters itself from its deinit.
    private var subscribers: [ObjectIdentifier: WeakSubscription] = [:]

    private struct WeakSubscription {
        weak var subscription: StoreSubscription?
    }

    private let persistence: (any StorePersistence)?

    /// - Parameter persistence: where `commit` writes before it changes memory; nil for a
    ///   memory-only store (tests, derived objects).
    public init(_ initial: ClusterSnapshot = ClusterSnapshot(), persistence: (any StorePersistence)? = nil) {
        state = initial
        self.persistence = persistence
    }

    public func snapshot() -> ClusterSnapshot { state }

    /// Whether the store's code runs on its own thread (tests).
    func runsOnItsThread() -> Bool { Self.executor.isCurrent }
    /// Puts the persisted objects in at start: they are the store's content, not changes
    /// (nothing is published, nothing written). Only before anything else touched the store.
    public func load(_ snapshot: ClusterSnapshot) {
        precondition(state.version == 0 && state.objectCount == 0, "load is for an empty store at start")
        let synced = state.synced
        state = snapshot
        state.synced = state.synced || synced
    }

    public var version: UInt64 { state.version }

    /// When the latest change was published to the subscribers (CLOCK_MONOTONIC seconds).
    private var lastChangeAt: Double = 0

    static func monotonicSeconds() -> Double {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
    }

    /// Applies changes in order as one atomic step. Upserts equal to what is stored and
    /// deletes of missing objects are no-ops, so subscribers only ever see real changes.
    /// Returns the changes made (empty when nothing changed; the version does not move then).
    @discardableResult
    public func apply(_ changes: [StoreChange]) -> [ObjectChange] {
        let made = mutate(changes)
        return finish(made)
    }

    /// Like `apply`, but writes the changes to persistence first, in one transaction, so a
    /// crash leaves either the whole batch or none of it. On a write error nothing changes.
    @discardableResult
    public func commit(_ changes: [StoreChange]) throws(PersistenceError) -> [ObjectChange] {
        let made = mutate(changes)
        let collapsed = Self.collapse(made)
        if let persistence, !collapsed.isEmpty {
            do {
                try persistence.save(collapsed)
            } catch {
                // Roll memory back in reverse order: the batch never happened.
                for change in made.reversed() { state.set(change.key, change.old) }
                throw error
            }
        }
        return finish(made)
    }

    /// `commit`, also saying at which version and when the change was published to the
    /// subscribers (CLOCK_MONOTONIC seconds, after the fsync'd write: the moment "the store has
    /// it"); nil when nothing changed. The apply reply carries the time, so a benchmark can time
    /// the store-to-kernel path alone (`bench/scale`).
    public func commitTimed(_ changes: [StoreChange]) throws(PersistenceError) -> (version: UInt64, publishedAt: Double?) {
        let made = try commit(changes)
        return (state.version, made.isEmpty ? nil : lastChangeAt)
    }

    private func mutate(_ changes: [StoreChange]) -> [ObjectChange] {
        var made: [ObjectChange] = []
        for change in changes {
            let key = change.key
            switch change {
            case .upsert(let object):
                let old = state[key]
                guard old != object else { continue }
                state.set(key, object)
                made.append(ObjectChange(key: key, old: old, new: object))
            case .delete:
                guard let old = state.set(key, nil) else { continue }
                made.append(ObjectChange(key: key, old: old, new: nil))
            }
        }
        return made
    }

    private func finish(_ made: [ObjectChange]) -> [ObjectChange] {
        guard !made.isEmpty else { return [] }
        state.version += 1
        // Collapse repeated changes to one key within the batch into one before/after pair.
        let collapsed = Self.collapse(made)
        lastChangeAt = Self.monotonicSeconds()
        publish(.changed(version: state.version, changes: collapsed))
        return collapsed
    }

    /// Marks the first full sync from the source done.
    public func markSynced() {
        guard !state.synced else { return }
        state.synced = true
        publish(.synced(version: state.version))
    }

    /// A stream of events from now on. Take a snapshot after subscribing to start from a
    /// consistent base: events with a version at or below the snapshot's are already in it.
    public func subscribe(bufferLimit: Int = 8192) -> StoreSubscription {
        let sub = StoreSubscription(limit: bufferLimit) { [weak self] id in
            Task { await self?.unsubscribe(id) }
        }
        subscribers[ObjectIdentifier(sub)] = WeakSubscription(subscription: sub)
        return sub
    }

    public var subscriberCount: Int { subscribers.count }

    private func unsubscribe(_ id: ObjectIdentifier) {
        subscribers[id] = nil
    }

    private func publish(_ event: StoreEvent) {
        for sub in subscribers.values { sub.subscription?.push(event, version: state.version) }
    }

    static func collapse(_ changes: [ObjectChange]) -> [ObjectChange] {
        var order: [ObjectKey] = []
        var byKey: [ObjectKey: ObjectChange] = [:]
        for c in changes {
            if var existing = byKey[c.key] {
                existing.new = c.new
                byKey[c.key] = existing
            } else {
                order.append(c.key)
                byKey[c.key] = c
            }
        }
        return order.compactMap { k in
            guard let c = byKey[k], c.old != c.new else { return nil }
            return c
        }
    }
}
