import Foundation
import Metrics
import Netlink
import Synchronization

public enum ActorState: String, Sendable, Codable {
    case starting
    case inSync = "in-sync"
    case pending
    case error
    case disabled
}

/// What one actor reports about itself; `nodenet status` shows one row per actor.
public struct ActorStatus: Sendable, Codable, Equatable {
    public var name: String
    public var state: ActorState
    /// One line: what it is doing or why it is not in sync.
    public var message: String
    public var lastReconcile: Date?
    public var lastReconcileSeconds: Double?
    public var lastError: String?
    public var lastErrorAt: Date?
    public var reconciles: Int
    public var errors: Int
    /// Actor-specific figures (routes: 12, rules: 840, ...), shown as key=value.
    public var counters: [String: Int]
    /// The kernel objects the actor owns, one status each, after its last pass (nil: the
    /// actor does not report objects).
    public var objects: [KernelObjectStatus]?
    /// The store version whose desired state the actor's kernel objects hold, for actors that
    /// track it: the row is in sync only when this is the store's current version (see
    /// `truthful(storeVersion:)`); nil for actors that do not report it.
    public var appliedVersion: UInt64?

    public init(name: String, state: ActorState = .starting, message: String = "") {
        self.name = name
        self.state = state
        self.message = message
        reconciles = 0
        errors = 0
        counters = [:]
    }

    /// The row as of store version `storeVersion`: an actor that reported its kernel objects in
    /// sync for an older version is still applying the changes since (pending), so "in-sync"
    /// always means the kernel holds the desired state of what the store holds now.
    public func truthful(storeVersion: UInt64) -> ActorStatus {
        guard state == .inSync, let applied = appliedVersion, applied < storeVersion else { return self }
        var row = self
        row.state = .pending
        row.message = "applying store changes: the kernel holds version \(applied) of \(storeVersion); " + message
        return row
    }
}

/// The actors' status rows and the readiness gate: READY=1 goes out once every actor
/// registered as `gatesReadiness` has completed its first reconcile.
public final class StatusBoard: Sendable {
    private struct State {
        var actors: [String: ActorStatus] = [:]
        var order: [String] = []
        var waitingFor: Set<String> = []
        var ready = false
        var stopping = false
        var onReady: [@Sendable () -> Void] = []
        var watchers: [AsyncStream<Void>.Continuation] = []
    }

    private let state = Mutex(State())

    public init() {}

    public func register(_ name: String, gatesReadiness: Bool = true, message: String = "starting") {
        // At zero from the start: an alert on its increase must see the series before the first error.
        _ = Counter(label: "nodenet_reconcile_errors_total", dimensions: [("actor", name)])
        state.withLock { s in
            if s.actors[name] == nil { s.order.append(name) }
            s.actors[name] = ActorStatus(name: name, message: message)
            if gatesReadiness, !s.ready { s.waitingFor.insert(name) }
        }
    }

    public func update(_ name: String, _ body: (inout ActorStatus) -> Void) {
        let watchers = state.withLock { s in
            var row = s.actors[name] ?? ActorStatus(name: name)
            body(&row)
            s.actors[name] = row
            return s.watchers
        }
        Self.notify(watchers)
    }

    /// A stream that yields after each change to the board (coalesced: a burst of changes
    /// while the reader is busy is one element). Those who follow the status (the systemd
    /// STATUS= line) wait on it instead of polling the board.
    public func changes() -> AsyncStream<Void> {
        let (stream, continuation) = AsyncStream<Void>.makeStream(bufferingPolicy: .bufferingNewest(1))
        state.withLock { $0.watchers.append(continuation) }
        continuation.yield()  // the board as it is now counts as the first change
        return stream
    }

    private static func notify(_ watchers: [AsyncStream<Void>.Continuation]) {
        for w in watchers { w.yield() }
    }

    /// Records a finished reconcile; the first one of each gating actor moves readiness.
    public func reconciled(_ name: String, seconds: Double, state newState: ActorState = .inSync, message: String = "") {
        Metrics.Timer(label: "nodenet_reconcile_duration_seconds", dimensions: [("actor", name)]).recordNanoseconds(Int64(seconds * 1e9))
        let (callbacks, watchers): ([@Sendable () -> Void], [AsyncStream<Void>.Continuation]) = state.withLock { s in
            var row = s.actors[name] ?? ActorStatus(name: name)
            row.state = newState
            row.message = message
            row.lastReconcile = Date()
            row.lastReconcileSeconds = seconds
            row.reconciles += 1
            s.actors[name] = row
            s.waitingFor.remove(name)
            guard s.waitingFor.isEmpty, !s.ready, !s.stopping else { return ([], s.watchers) }
            s.ready = true
            defer { s.onReady = [] }
            return (s.onReady, s.watchers)
        }
        callbacks.forEach { $0() }
        Self.notify(watchers)
    }

    /// Marks the row in error. `count`: a new error (counted, and `lastErrorAt` moves); false
    /// for the same errors seen again by a retry.
    public func failed(_ name: String, _ error: String, count: Bool = true) {
        if count { Counter(label: "nodenet_reconcile_errors_total", dimensions: [("actor", name)]).increment() }
        let watchers = state.withLock { s in
            var row = s.actors[name] ?? ActorStatus(name: name)
            row.state = .error
            row.lastError = error
            if count || row.lastErrorAt == nil {
                row.lastErrorAt = Date()
                row.errors += 1
            }
            row.message = error
            s.actors[name] = row
            return s.watchers
        }
        Self.notify(watchers)
    }

    /// Whether `name` has completed a reconcile (readiness counts it).
    public func hasReconciled(_ name: String) -> Bool {
        state.withLock { $0.actors[name]?.lastReconcile != nil }
    }

    /// Shutdown began: not ready from now on (`/readyz` 503, `nodenet status` exit 3), also
    /// while DNS answers its lame-duck period, so probes and clients move away first.
    public func stopping() {
        let watchers = state.withLock { s in
            s.stopping = true
            s.ready = false
            s.onReady = []
            return s.watchers
        }
        Self.notify(watchers)
    }

    public var isStopping: Bool { state.withLock { $0.stopping } }
    public var isReady: Bool { state.withLock { $0.ready && !$0.stopping } }
    public var waitingFor: [String] { state.withLock { $0.stopping ? ["shutdown"] : $0.waitingFor.sorted() } }

    /// Runs `body` once everything is ready (at once if it already is).
    public func whenReady(_ body: @escaping @Sendable () -> Void) {
        let now = state.withLock { s -> Bool in
            if s.ready { return true }
            s.onReady.append(body)
            return false
        }
        if now { body() }
    }

    public var rows: [ActorStatus] {
        state.withLock { s in s.order.compactMap { s.actors[$0] } }
    }
}
