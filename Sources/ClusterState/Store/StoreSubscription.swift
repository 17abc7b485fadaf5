import Synchronization

/// A subscriber's event queue. Bounded: when a slow subscriber has `limit` events waiting,
/// they are replaced by a single `.resync`, so it can never miss a change without knowing,
/// and the store never blocks on (or buffers without end for) a slow reader.
/// One consumer at a time; iterate it with `for await`.
public final class StoreSubscription: AsyncSequence, Sendable {
    public typealias Element = StoreEvent

    private struct State {
        var buffer: [StoreEvent] = []
        var head = 0
        var waiter: CheckedContinuation<StoreEvent?, Never>?
        var finished = false
        var resyncs = 0
        var pending: Int { buffer.count - head }
    }

    private let state = Mutex(State())
    private let limit: Int
    private let onFinish: @Sendable (ObjectIdentifier) -> Void

    init(limit: Int, onFinish: @escaping @Sendable (ObjectIdentifier) -> Void) {
        self.limit = Swift.max(1, limit)
        self.onFinish = onFinish
    }

    deinit {
        onFinish(ObjectIdentifier(self))
    }

    /// How many times this subscriber was told to resync (for tests and status).
    public var resyncCount: Int { state.withLock { $0.resyncs } }

    func push(_ event: StoreEvent, version: UInt64) {
        let waiter: CheckedContinuation<StoreEvent?, Never>? = state.withLock { s in
            guard !s.finished else { return nil }
            if let w = s.waiter {
                s.waiter = nil
                return w
            }
            if s.pending >= limit {
                s.buffer = [.resync(version: version)]
                s.head = 0
                s.resyncs += 1
            } else {
                s.buffer.append(event)
            }
            return nil
        }
        waiter?.resume(returning: event)
    }

    /// Stops the stream: a waiting or later `next()` returns nil.
    public func finish() {
        let waiter = state.withLock { s -> CheckedContinuation<StoreEvent?, Never>? in
            s.finished = true
            defer { s.waiter = nil }
            return s.waiter
        }
        waiter?.resume(returning: nil)
        onFinish(ObjectIdentifier(self))
    }

    func next() async -> StoreEvent? {
        if let ready = takeBuffered() { return ready }
        return await withTaskCancellationHandler {
            await withCheckedContinuation { (c: CheckedContinuation<StoreEvent?, Never>) in
                let immediate: StoreEvent?? = state.withLock { s in
                    if s.head < s.buffer.count {
                        let e = s.buffer[s.head]
                        s.head += 1
                        return .some(e)
                    }
                    if s.finished || Task.isCancelled { return .some(nil) }
                    s.waiter = c
                    return .none
                }
                if let immediate { c.resume(returning: immediate) }
            }
        } onCancel: {
            let waiter = state.withLock { s -> CheckedContinuation<StoreEvent?, Never>? in
                defer { s.waiter = nil }
                return s.waiter
            }
            waiter?.resume(returning: nil)
        }
    }

    private func takeBuffered() -> StoreEvent? {
        state.withLock { s in
            guard s.head < s.buffer.count else { return nil }
            let e = s.buffer[s.head]
            s.head += 1
            if s.head > 1024, s.head * 2 > s.buffer.count {
                s.buffer.removeFirst(s.head)
                s.head = 0
            }
            return e
        }
    }

    public struct AsyncIterator: AsyncIteratorProtocol {
        let subscription: StoreSubscription
        public mutating func next() async -> StoreEvent? { await subscription.next() }
    }

    public func makeAsyncIterator() -> AsyncIterator { AsyncIterator(subscription: self) }
}
