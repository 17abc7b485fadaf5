import ClusterState

/// The run loop of an actor that keeps kernel state equal to the store: store events are
/// recorded (and wake a sync when they concern it), a full sync is requested every
/// `fullSyncInterval`, and a sync that asks for a retry is kicked again after the pause it
/// returns. Syncs never overlap; events arriving during one are taken by the next (a burst is
/// one sync). Used by the service proxy and the policy actor.
public enum StoreSyncLoop {
    /// - Parameters:
    ///   - wake: receives the function that starts a sync (for callers outside the loop).
    ///   - delay: waited before each sync, to collect more events (zero: none).
    ///   - sync: one sync; returns how long to wait before retrying, or nil when it succeeded.
    public static func run(events: StoreSubscription, fullSyncInterval: Duration, delay: Duration = .zero,
                           wake: (@escaping @Sendable () -> Void) async -> Void,
                           record: @escaping @Sendable (StoreEvent) async -> Bool,
                           requestFullSync: @escaping @Sendable () async -> Void,
                           sync: @escaping @Sendable () async -> Duration?) async {
        let (kicks, kick) = AsyncStream.makeStream(of: Void.self, bufferingPolicy: .bufferingNewest(1))
        await wake { kick.yield() }
        await withTaskGroup(of: Void.self) { group in
            group.addTask {
                for await event in events where await record(event) { kick.yield() }
            }
            group.addTask {
                while !Task.isCancelled {
                    guard (try? await Task.sleep(for: fullSyncInterval)) != nil else { return }
                    await requestFullSync()
                    kick.yield()
                }
            }
            for await _ in kicks {
                if Task.isCancelled { break }
                if delay > .zero { try? await Task.sleep(for: delay) }
                if let retry = await sync() {
                    // Failed: retry after a pause, not in a tight loop.
                    group.addTask {
                        if (try? await Task.sleep(for: retry)) != nil { kick.yield() }
                    }
                }
            }
            group.cancelAll()
        }
    }
}
