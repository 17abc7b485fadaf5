// The one reconciler shape for kernel objects nodenet owns (the routes actor and the service
// proxy have it built in; the DNS device, its addresses, notrack chains and listeners, the host
// port mappings and the masquerade rules use this loop):
//
// - event-driven: kernel events the owner calls relevant (its device, its addresses) wake a pass;
//   so do explicit `trigger()`s (a desired-state change);
// - a periodic full pass catches what no event reports (nftables rules, anything missed);
// - a pass returns one status per object; errors are reported once when they appear and once
//   when they clear (the owner logs them), never at every retry; `report` pushes the statuses
//   to the owner's status row after every pass (nobody polls the loop for them);
// - a pass with errors is retried with backoff (from `retryInitial`, doubling, up to the
//   periodic interval) until it is clean.
// Triggers coalesce: a burst of events is one pass.
import Synchronization

/// What one pass found for one kernel object.
public struct KernelObjectStatus: Sendable, Codable, Equatable, Hashable {
    public enum State: String, Sendable, Codable {
        case inSync = "in-sync"
        case error
    }

    /// "device", "address", "chain", "listener", ...
    public var kind: String
    /// The object, as an operator would name it ("nodenet-dns", "ip nodenet dns-notrack").
    public var name: String
    public var state: State
    public var error: String?

    public init(kind: String, name: String, error: String? = nil) {
        self.kind = kind
        self.name = name
        state = error == nil ? .inSync : .error
        self.error = error
    }

    public var id: String { "\(kind) \(name)" }
}

/// What changed between two passes, for logging each error once.
public struct KernelObjectChanges: Sendable {
    /// Objects in error now that were not (or had another error) after the previous pass.
    public var newErrors: [KernelObjectStatus]
    /// Objects in error after the previous pass that are in sync (or gone) now.
    public var cleared: [KernelObjectStatus]

    public static func between(_ old: [KernelObjectStatus], _ new: [KernelObjectStatus]) -> KernelObjectChanges {
        let before = Dictionary(old.map { ($0.id, $0) }, uniquingKeysWith: { a, _ in a })
        let after = Dictionary(new.map { ($0.id, $0) }, uniquingKeysWith: { a, _ in a })
        let newErrors = new.filter { $0.state == .error && before[$0.id]?.error != $0.error }
        let cleared = old.filter { $0.state == .error && after[$0.id]?.state != .error }
        return KernelObjectChanges(newErrors: newErrors, cleared: cleared)
    }
}

public final class KernelReconcileLoop: Sendable {
    public let interval: Duration
    public let retryInitial: Duration
    private let wake: AsyncStream<Void>
    private let wakeContinuation: AsyncStream<Void>.Continuation
    private let passes = Atomic<Int>(0)

    /// - Parameters:
    ///   - interval: the periodic full pass.
    ///   - retryInitial: the first retry after a pass with errors.
    public init(interval: Duration, retryInitial: Duration = .milliseconds(500)) {
        self.interval = interval
        self.retryInitial = retryInitial
        (wake, wakeContinuation) = AsyncStream<Void>.makeStream(bufferingPolicy: .bufferingNewest(1))
    }

    /// Asks for a pass soon (coalesced with any other request).
    public func trigger() { wakeContinuation.yield() }

    /// Passes run so far.
    public var passCount: Int { passes.load(ordering: .relaxed) }

    /// Runs passes until cancelled: one at once, then on relevant events from `events`, on
    /// `trigger()`, every `interval`, and on retry after errors. `report` gets every pass's
    /// statuses and what changed since the previous one.
    public func run(events: AsyncStream<NetlinkEvent>? = nil,
                    relevant: @escaping @Sendable (NetlinkEvent) -> Bool = { _ in false },
                    pass: @escaping @Sendable () async -> [KernelObjectStatus],
                    report: @escaping @Sendable ([KernelObjectStatus], KernelObjectChanges) async -> Void) async {
        let interval = self.interval
        let wake = self.wake
        trigger()
        await withTaskGroup(of: Void.self) { group in
            if let events {
                group.addTask {
                    for await e in events where relevant(e) { self.trigger() }
                }
            }
            group.addTask {
                while !Task.isCancelled {
                    try? await Task.sleep(for: interval)
                    self.trigger()
                }
            }
            group.addTask {
                var previous: [KernelObjectStatus] = []
                var retry = self.retryInitial
                var retryTask: Task<Void, Never>?
                for await _ in wake {
                    if Task.isCancelled { break }
                    let statuses = await pass()
                    self.passes.add(1, ordering: .relaxed)
                    await report(statuses, KernelObjectChanges.between(previous, statuses))
                    previous = statuses
                    retryTask?.cancel()
                    if statuses.contains(where: { $0.state == .error }) {
                        let delay = retry
                        retry = min(retry * 2, interval)
                        retryTask = Task {
                            try? await Task.sleep(for: delay)
                            if !Task.isCancelled { self.trigger() }
                        }
                    } else {
                        retry = self.retryInitial
                    }
                }
                retryTask?.cancel()
            }
            // Ends when cancelled (the owner's task); the wake stream never finishes by itself.
            await withTaskCancellationHandler {
                await group.next()
            } onCancel: {
                self.wakeContinuation.finish()
            }
            group.cancelAll()
        }
    }
}
