// Blocking work (SQLite commits that fsync, IPAM transactions, netlink exchanges, entering a
// pod's namespace) must not run on Swift's cooperative thread pool: it has one thread per
// core (two here), so two slow CNI ADDs or one slow disk stalled every actor of the agent.
// Two tools, both with plain threads:
//
// - `DedicatedThreadExecutor`: a serial executor on a thread of its own, for an actor whose
//   isolated methods block (the store: `commit` writes the state database). Callers keep the
//   actor's interface and simply suspend while it works.
// - `BlockingWork.run`: runs one closure on a small pool of threads kept for blocking calls
//   and suspends the caller until it returns.
// - `BlockingWork.perform`: runs a whole async operation with that pool as its task executor
//   (PodNetwork's CNI requests): its blocking steps (IPAM transactions, interface setup in
//   the pod's namespace, nftables exchanges) run on the pool, its awaits of the store hop to
//   the store's thread, and the cooperative pool is never held.
import Foundation
import Synchronization

/// A serial executor that runs every job on one dedicated thread, in order.
public final class DedicatedThreadExecutor: SerialExecutor, @unchecked Sendable {
    // @unchecked: `jobs` and `condition` are only touched under `condition`'s lock.
    private let condition = NSCondition()
    private var jobs: [UnownedJob] = []
    public let name: String
    private let thread = Mutex<pthread_t?>(nil)

    /// Whether the calling thread is this executor's (tests, assertions).
    public var isCurrent: Bool { thread.withLock { $0 } == pthread_self() }

    public init(name: String) {
        self.name = name
        // The thread holds the executor: executors are made once and live as long as the process.
        let thread = Thread { self.loop() }
        thread.name = name
        thread.start()
    }

    public func enqueue(_ job: consuming ExecutorJob) {
        let unowned = UnownedJob(job)
        condition.lock()
        jobs.append(unowned)
        condition.signal()
        condition.unlock()
    }

    public func asUnownedSerialExecutor() -> UnownedSerialExecutor {
        UnownedSerialExecutor(ordinary: self)
    }

    /// Runs forever: executors live as long as the process (the store does).
    private func loop() {
        thread.withLock { $0 = pthread_self() }
        while true {
            condition.lock()
            while jobs.isEmpty { condition.wait() }
            let batch = jobs
            jobs.removeAll(keepingCapacity: true)
            condition.unlock()
            for job in batch { job.runSynchronously(on: asUnownedSerialExecutor()) }
        }
    }
}

/// A fixed set of threads for blocking calls made from async code.
public enum BlockingWork {
    /// Threads for blocking work, process-wide. More than the cooperative pool has, so a few
    /// slow calls (a pod namespace that takes long to enter, a busy database) leave room for
    /// the others; beyond that calls queue here, never on the cooperative pool.
    public static let threadCount = max(4, ProcessInfo.processInfo.activeProcessorCount * 2)

    private static let pool = ThreadPool(threads: threadCount)

    /// Runs `body` on a blocking-work thread; the caller suspends until it returns.
    public static func run<T: Sendable, E: Error>(_ body: @escaping @Sendable () throws(E) -> T) async throws(E) -> T {
        let result: Result<T, E> = await withCheckedContinuation { continuation in
            pool.submit {
                do throws(E) {
                    continuation.resume(returning: .success(try body()))
                } catch {
                    continuation.resume(returning: .failure(error))
                }
            }
        }
        return try result.get()
    }

    /// Runs `body` with the blocking-work threads as its task executor: its nonisolated code,
    /// blocking calls included, runs there, not on the cooperative pool.
    public static func perform<T: Sendable, E: Error>(_ body: () async throws(E) -> T) async throws(E) -> T {
        try await withTaskExecutorPreference(pool, operation: body)
    }

    /// Whether the calling thread is one of the blocking-work threads (tests, assertions).
    public static var onBlockingThread: Bool { pool.owns(pthread_self()) }

    final class ThreadPool: TaskExecutor, @unchecked Sendable {
        // @unchecked: `work` is only touched under `condition`'s lock.
        private let condition = NSCondition()
        private var work: [@Sendable () -> Void] = []
        private let members = Mutex<Set<pthread_t>>([])

        func owns(_ thread: pthread_t) -> Bool { members.withLock { $0.contains(thread) } }

        init(threads: Int) {
            for i in 0..<threads {
                let thread = Thread { self.loop() }
                thread.name = "nodenet-blocking-\(i)"
                thread.start()
            }
        }

        func submit(_ item: @escaping @Sendable () -> Void) {
            condition.lock()
            work.append(item)
            condition.signal()
            condition.unlock()
        }

        func enqueue(_ job: consuming ExecutorJob) {
            let job = UnownedJob(job)
            submit { job.runSynchronously(on: self.asUnownedTaskExecutor()) }
        }

        private func loop() {
            members.withLock { _ = $0.insert(pthread_self()) }
            while true {
                condition.lock()
                while work.isEmpty { condition.wait() }
                let item = work.removeFirst()
                condition.unlock()
                item()
            }
        }
    }
}
