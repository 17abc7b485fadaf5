import Foundation
import Testing
@testable import ClusterState

/// A persistence whose saves block until released, like a commit waiting for a slow disk.
final class StalledPersistence: StorePersistence, @unchecked Sendable {
    // @unchecked: DispatchSemaphore is thread-safe.
    let gate = DispatchSemaphore(value: 0)
    let entered = DispatchSemaphore(value: 0)
    func save(_ changes: [ObjectChange]) throws(PersistenceError) {
        entered.signal()
        gate.wait()
    }
}

/// Waits for `semaphore` on a thread of its own (never on the cooperative pool, which the test
/// is about) and reports whether it was signalled within `timeout`.
func signalled(_ semaphore: DispatchSemaphore, within timeout: Double) async -> Bool {
    await withCheckedContinuation { continuation in
        Thread { continuation.resume(returning: semaphore.wait(timeout: .now() + timeout) == .success) }.start()
    }
}

/// Whether a task started on the cooperative pool runs within `timeout`; then `release()`,
/// from a thread of its own: when the pool is stalled, the test itself cannot go on until the
/// stall is released, so the release must not wait for it.
/// `started`: signalled once the blocking work is under way (the probe waits for it, up to 5 s).
func cooperativePoolRuns(after started: DispatchSemaphore? = nil, within timeout: Double,
                         thenRelease release: @escaping @Sendable () -> Void) async -> Bool {
    await withCheckedContinuation { continuation in
        Thread {
            _ = started?.wait(timeout: .now() + 5)
            let probe = DispatchSemaphore(value: 0)
            Task.detached { probe.signal() }
            let ran = probe.wait(timeout: .now() + timeout) == .success
            release()
            continuation.resume(returning: ran)
        }.start()
    }
}

/// Issue 14 item 17: blocking work stays off Swift's cooperative thread pool.
@Suite(.serialized) struct BlockingWorkTests {
    /// More stalled commits than the pool has threads: other async work still runs. Without
    /// the store's own thread each commit held a pool thread while it waited for the disk,
    /// and nothing else in the process ran until they were released.
    @Test func stalledCommitsDoNotStallTheCooperativePool() async throws {
        let count = ProcessInfo.processInfo.activeProcessorCount + 1
        let stores = (0..<count).map { _ -> (StalledPersistence, ClusterStore) in
            let p = StalledPersistence()
            return (p, ClusterStore(persistence: p))
        }
        let commits = stores.enumerated().map { i, s in
            Task { try await s.1.commit([.upsert(.node(node("node\(i)", "10.244.\(i).0/24", "192.168.1.\(i + 1)")))]) }
        }
        let persistences = stores.map(\.0)
        // Release every commit (each store's save in turn) whatever happened.
        let ran = await cooperativePoolRuns(after: stores[0].0.entered, within: 3) { for p in persistences { p.gate.signal() } }
        for c in commits { _ = try await c.value }
        #expect(ran, "a task on the cooperative pool did not run while \(count) commits waited for the disk")
        for (i, s) in stores.enumerated() { #expect(await s.1.snapshot().nodes["node\(i)"] != nil) }
    }

    @Test func blockingWorkRunsOnItsOwnThreadsAndCarriesErrors() async throws {
        #expect(try await BlockingWork.run { BlockingWork.onBlockingThread })
        struct Refused: Error {}
        await #expect(throws: Refused.self) { try await BlockingWork.run { () throws(Refused) -> Int in throw Refused() } }
        // More simultaneous blocking calls than the cooperative pool has threads: a task still runs.
        let gate = DispatchSemaphore(value: 0)
        let n = ProcessInfo.processInfo.activeProcessorCount + 1
        let calls = (0..<n).map { _ in Task { await BlockingWork.run { gate.wait() } } }
        let ran = await cooperativePoolRuns(within: 3) { for _ in 0..<n { gate.signal() } }
        for c in calls { await c.value }
        #expect(ran)
    }
}

@Suite struct StoreExecutorTests {
    @Test func storeCodeRunsOnTheStoresThread() async throws {
        let store = ClusterStore()
        #expect(await store.runsOnItsThread())
        #expect(await Task.detached { await store.runsOnItsThread() }.value)
        #expect(await BlockingWork.perform { await store.runsOnItsThread() })
    }
}
