import ClusterState
import Foundation
import Synchronization

/// A source's health at one moment, for `nodenet status` and metrics.
public struct SourceStatus: Sendable, Codable, Equatable {
    /// "etcd" or "kubernetes".
    public var kind: String
    /// The endpoint or API server last talked to.
    public var endpoint: String?
    /// True while the last request or watch to the backend worked.
    public var connected: Bool
    /// True once every feed completed a first list into the store.
    public var synced: Bool
    /// When the last full list was applied.
    public var lastSync: Date?
    /// When the last watch event or progress notification arrived.
    public var lastEvent: Date?
    /// Watches started again after the first (stream ended, stalled, failed).
    public var watchRestarts: Int
    /// Full lists after the first (compaction, 410 Gone, broken stream).
    public var relists: Int
    /// Objects this source holds in the store, by kind name.
    public var objects: [String: Int]
    /// Objects skipped because they did not decode, since start.
    public var skippedObjects: Int
    /// The last object skipped (from a list or a watch event), named with the reason, e.g.
    /// `NetworkPolicy apps/web: spec.ingress[0].ports[0].endPort: ...`.
    public var lastSkipped: String?
    /// Feeds whose resource the backend does not serve (an optional CRD, such as
    /// ClusterNetworkPolicy's, not installed), with why: treated as empty and checked again
    /// periodically. Nil when every resource is served.
    public var absent: [String: String]?
    public var lastError: String?
    public var lastErrorAt: Date?

    public init(kind: String) {
        self.kind = kind
        connected = false
        synced = false
        watchRestarts = 0
        relists = 0
        objects = [:]
        skippedObjects = 0
    }
}

/// Shared, lock-protected status that feeds update and readers copy. A class with a Mutex
/// rather than an actor so `status` can be read synchronously by the agent's status page.
final class StatusTracker: Sendable {
    private struct State {
        var status: SourceStatus
        var feeds: [String: Bool]
    }
    private let state: Mutex<State>

    init(kind: String, feeds: [String]) {
        state = Mutex(State(status: SourceStatus(kind: kind), feeds: Dictionary(uniqueKeysWithValues: feeds.map { ($0, false) })))
    }

    var status: SourceStatus { state.withLock { $0.status } }

    func update(_ body: (inout SourceStatus) -> Void) {
        state.withLock { body(&$0.status) }
    }

    func failed(_ error: any Error, endpoint: String? = nil) {
        update {
            $0.connected = false
            $0.lastError = "\(error)"
            $0.lastErrorAt = Date()
            if let endpoint { $0.endpoint = endpoint }
        }
    }

    /// Records a feed's completed list. Returns true when this made every feed synced for the
    /// first time (the caller then marks the store synced).
    func listed(feed: String, relist: Bool) -> Bool {
        state.withLock { s in
            s.status.connected = true
            s.status.lastSync = Date()
            if relist { s.status.relists += 1 }
            let was = s.feeds.values.allSatisfy { $0 }
            s.feeds[feed] = true
            let now = s.feeds.values.allSatisfy { $0 }
            s.status.synced = now
            return now && !was
        }
    }

    func counted(_ snapshot: ClusterSnapshot, kinds: [ObjectKind]) {
        update { s in
            for kind in kinds { s.objects[kind.rawValue] = snapshot.count(of: kind) }
        }
    }

    /// Waits until every feed has listed once, or `timeout` passes.
    func waitForFirstSync(timeout: Duration) async -> Bool {
        let deadline = ContinuousClock.now + timeout
        while true {
            if status.synced { return true }
            if ContinuousClock.now >= deadline || Task.isCancelled { return false }
            try? await Task.sleep(for: .milliseconds(25))
        }
    }
}
