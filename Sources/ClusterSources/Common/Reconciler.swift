import ClusterState
import Foundation
import Logging
import Synchronization

/// What a backend reports while watching.
enum FeedEvent: Sendable {
    /// Changes to apply, and the position to resume from after them.
    case changes([StoreChange], resume: String)
    /// Nothing changed but the watch is alive (etcd progress notify, Kubernetes BOOKMARK).
    case progress(resume: String?)
    /// The resume position is gone (etcd compaction, Kubernetes 410 Gone): list again.
    case expired(String)
    /// An object in the stream did not decode (already logged): named in the status.
    case skipped(String)
}

/// One page of a list, applied to the store as its own transaction as it arrives (a list of
/// 175,000 objects is never all decoded at once).
struct FeedPage: Sendable {
    var objects: [ClusterObject]
    /// Keys or names of items that did not decode, with the reason (already logged by the backend).
    var skippedNotes: [String] = []
    /// The list started over with this page (a Kubernetes continue token expired): the keys of
    /// the pages before it do not count as listed.
    var restart = false
}

/// Thrown by `Feed.list` when the backend does not serve the resource at all (an optional CRD
/// that is not installed): the kind is empty, there is nothing to watch, and the reconciler
/// lists again after `absentRecheck`. Says why, for the status.
struct FeedResourceAbsent: Error, CustomStringConvertible {
    var reason: String
    var description: String { reason }
}

/// One resource a source lists and watches: the part that differs between etcd and the
/// Kubernetes API. `Reconciler` does the rest, the same way for both.
protocol Feed: Sendable {
    /// For logs and status ("etcd /nodenet/objects/", "pods").
    var name: String { get }
    /// The kinds this feed fills (for object counts).
    var kinds: [ObjectKind] { get }
    /// Whether a stored object is this feed's to delete when a list lacks it.
    func owns(_ object: ClusterObject) -> Bool
    /// Lists every object, one consistent snapshot handed over page by page (each page is in
    /// the store before the next is asked for); returns the position to watch from.
    func list(page: (FeedPage) async throws -> Void) async throws -> String
    /// Events after `resume`. The stream finishing normally means "watch again from where
    /// you are"; throwing means the connection broke.
    func watch(from resume: String) async throws -> AsyncThrowingStream<FeedEvent, any Error>
    /// The endpoint currently in use, for status.
    var endpoint: String { get }
}

struct WatchStalled: Error, CustomStringConvertible {
    var feed: String
    var bound: Duration
    var description: String { "watch of \(feed) made no progress for \(bound), restarting it" }
}

struct ResumeExpired: Error, CustomStringConvertible {
    var feed: String
    var reason: String
    var description: String { "watch of \(feed) cannot resume: \(reason)" }
}

struct FeedWriteFailed: Error, CustomStringConvertible {
    var feed: String
    var error: any Error
    var description: String { "\(feed): writing to the store failed: \(error)" }
}

/// List, apply the difference, watch from the list's position, apply events; on expiry or a
/// broken stream list again and apply the difference. Never drops the store. Runs until
/// cancelled; every failure is retried with backoff and reported in the status.
struct Reconciler: Sendable {
    var feed: any Feed
    var store: ClusterStore
    var tracker: StatusTracker
    var logger: Logger
    /// A watch with no event or progress notification for this long is restarted.
    var stallBound: Duration
    var backoff = Backoff()
    /// A watch that lived this long was healthy: a failure after it starts the backoff over.
    var healthyWatch: Duration = .seconds(30)
    /// How often a resource the backend does not serve (`FeedResourceAbsent`) is listed again.
    var absentRecheck: Duration = .seconds(60)
    /// Lists in a row (`min(absentRecheck, 5 s)` apart) that must find the resource not served
    /// before the objects of its kind already in the store are removed.
    var absentConfirmations = 3

    func run() async {
        var backoff = self.backoff
        var resume: String?
        var lists = 0
        var watches = 0
        /// Consecutive lists that found the resource not served.
        var absentStreak = 0
        var watch: WatchPosition?
        while !Task.isCancelled {
            do {
                if resume == nil {
                    do {
                        resume = try await listAndApply(relist: lists > 0)
                    } catch let notServed as FeedResourceAbsent {
                        absentStreak += 1
                        // What the store holds of the kind is dropped only once the absence
                        // is confirmed: an API server that is starting answers 404 for a CRD's
                        // resources until it has loaded the CRD, and dropping admin Deny
                        // policies for that moment would fail open.
                        if absentStreak < absentConfirmations, await storeHoldsFeedKinds() {
                            absent(feed.name, notServed.reason)
                            try await Task.sleep(for: min(absentRecheck, .seconds(5)))
                            continue
                        }
                        // Nothing to watch: the kind is empty until the resource appears.
                        try await applyAbsent()
                        absent(feed.name, notServed.reason)
                        try await Task.sleep(for: absentRecheck)
                        continue
                    }
                    absentStreak = 0
                    absent(feed.name, nil)
                    lists += 1
                }
                if watches > 0 { tracker.update { $0.watchRestarts += 1 } }
                watches += 1
                watch = nil
                let stream = try await feed.watch(from: resume!)
                tracker.update { $0.connected = true; $0.endpoint = feed.endpoint }
                let position = WatchPosition(resume!)
                watch = position
                try await consume(stream, position)
                // A clean end of stream (server-side timeout): watch again from where we are.
                let (reached, events, started) = position.withLock { ($0.resume, $0.events, $0.started) }
                resume = reached
                if events > 0 {
                    backoff.reset()
                } else if ContinuousClock.now - started < healthyWatch {
                    // Ended at once with nothing (a proxy closing every watch): do not spin.
                    try await Task.sleep(for: backoff.next())
                }
            } catch is CancellationError {
                return
            } catch {
                if Task.isCancelled { return }
                // Failing right after starting (a refused watch, an expiry on every try) must
                // not spin: back off unless the watch was healthy for a while.
                let lived = watch.map { p in p.withLock { ContinuousClock.now - $0.started } } ?? .zero
                if lived >= healthyWatch { backoff.reset() }
                switch error {
                case let e as ResumeExpired:
                    // Expected now and then (compaction, 410): list at once, unless the last
                    // re-list also expired straight away.
                    logger.info("\(e); listing again")
                    if lived < healthyWatch, lists > 1 { try? await Task.sleep(for: backoff.next()) }
                case let e as StreamOverflow:
                    // Events were dropped to keep memory bounded: a resync, like an expiry.
                    logger.warning("\(feed.name): \(e); listing again")
                    if lived < healthyWatch, lists > 1 { try? await Task.sleep(for: backoff.next()) }
                default:
                    let delay = backoff.next()
                    logger.warning("\(feed.name): \(error); listing again in \(delay)")
                    tracker.failed(error, endpoint: feed.endpoint)
                    try? await Task.sleep(for: delay)
                }
                // A broken or expired stream may have lost events: list again and apply the difference.
                resume = nil
            }
        }
    }

    /// Writes through `commit`: with a persistent store, what the source delivered survives a
    /// restart during which the source is unreachable (the agent serves from it meanwhile);
    /// with a memory-only store it is `apply`. A failed write counts as a failure of the
    /// feed: it backs off and lists again.
    private func write(_ changes: [StoreChange]) async throws -> [ObjectChange] {
        do {
            return try await store.commit(changes)
        } catch {
            throw FeedWriteFailed(feed: feed.name, error: error)
        }
    }

    /// The streaming list: each page is applied as it arrives (upserts equal to what is stored
    /// are no-ops in the store, so a re-list only publishes real changes); objects this feed
    /// owns that no page had are deleted once the last page is in; only then is the feed (and,
    /// with every feed listed, the store) synced. A list that fails half way leaves the pages
    /// it applied (each a consistent part of the source) and is listed again.
    private func listAndApply(relist: Bool) async throws -> String {
        var seen = Set<ObjectKey>()
        var listed = 0, changed = 0, skipped = 0, pages = 0
        var lastNote: String?
        let resume = try await feed.list { page in
            try Task.checkCancellation()
            if page.restart { seen.removeAll(keepingCapacity: true); listed = 0 }
            pages += 1
            listed += page.objects.count
            skipped += page.skippedNotes.count
            if let note = page.skippedNotes.last { lastNote = note }
            for object in page.objects { seen.insert(object.key) }
            if !page.objects.isEmpty { changed += try await write(page.objects.map(StoreChange.upsert)).count }
        }
        try Task.checkCancellation()
        let deletions = await unlisted(seen)
        if !deletions.isEmpty { changed += try await write(deletions).count }
        if skipped > 0 {
            tracker.update { s in
                s.skippedObjects += skipped
                if let lastNote { s.lastSkipped = lastNote }
            }
        }
        logger.info("\(feed.name): listed \(listed) objects in \(pages) pages, \(changed) changes applied, skipped \(skipped)")
        if tracker.listed(feed: feed.name, relist: relist) { await store.markSynced() }
        tracker.counted(await store.snapshot(), kinds: feed.kinds)
        return resume
    }

    /// Whether the store holds any object of the feed's kinds.
    private func storeHoldsFeedKinds() async -> Bool {
        let snapshot = await store.snapshot()
        return feed.kinds.contains { snapshot.count(of: $0) > 0 }
    }

    /// The resource is not served: the kind is empty (what the feed owns is deleted) and the
    /// feed counts as listed, so readiness does not wait for an optional CRD.
    private func applyAbsent() async throws {
        let deletions = await unlisted([])
        if !deletions.isEmpty { _ = try await write(deletions) }
        if tracker.listed(feed: feed.name, relist: false) { await store.markSynced() }
        tracker.counted(await store.snapshot(), kinds: feed.kinds)
    }

    /// Records whether the feed's resource is served, logging only the transitions (a recheck
    /// every minute must not log every minute).
    private func absent(_ name: String, _ reason: String?) {
        let was = tracker.status.absent?[name]
        guard was != reason else { return }
        tracker.update { s in
            var map = s.absent ?? [:]
            map[name] = reason
            s.absent = map.isEmpty ? nil : map
        }
        if let reason {
            logger.notice("\(name): \(reason); treated as empty, checking again every \(absentRecheck)")
        } else if was != nil {
            logger.notice("\(name): now served; listing and watching it")
        }
    }

    /// Deletes for the objects this feed owns that the list did not have. In a function of
    /// its own so the snapshot is released before the deletes are written (a snapshot alive
    /// during a commit makes the store copy its tables).
    private func unlisted(_ seen: Set<ObjectKey>) async -> [StoreChange] {
        let snapshot = await store.snapshot()
        return StoreDiff.deletions(seen: seen, current: snapshot, kinds: feed.kinds, owns: feed.owns)
    }

    /// Applies events until the stream ends (the position reached is in `position`), stalls or
    /// breaks (throws). The stall watchdog runs beside the reader; whichever finishes first wins.
    private func consume(_ stream: AsyncThrowingStream<FeedEvent, any Error>, _ position: WatchPosition) async throws {
        let bound = stallBound
        let feedName = feed.name
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask {
                for try await event in stream {
                    position.withLock { $0.last = .now }
                    switch event {
                    case .changes(let changes, let resume):
                        _ = try await write(changes)
                        position.withLock { $0.resume = resume; $0.events += 1 }
                        tracker.update { $0.lastEvent = .now; $0.connected = true }
                        tracker.counted(await store.snapshot(), kinds: feed.kinds)
                    case .progress(let resume):
                        position.withLock { p in
                            if let resume { p.resume = resume }
                            p.events += 1
                        }
                        tracker.update { $0.lastEvent = .now; $0.connected = true }
                    case .expired(let reason):
                        throw ResumeExpired(feed: feedName, reason: reason)
                    case .skipped(let note):
                        tracker.update { $0.lastSkipped = note }
                    }
                }
            }
            group.addTask {
                while true {
                    try await Task.sleep(for: min(bound / 4, .seconds(5)))
                    let last = position.withLock { $0.last }
                    if ContinuousClock.now - last > bound { throw WatchStalled(feed: feedName, bound: bound) }
                }
            }
            defer { group.cancelAll() }
            try await group.next()
        }
    }
}

/// Where a watch is and when it last showed life; shared by the reader and its watchdog.
final class WatchPosition: Sendable {
    struct State {
        var resume: String
        let started: ContinuousClock.Instant
        var last: ContinuousClock.Instant
        /// Events and progress notifications received.
        var events = 0
    }
    private let state: Mutex<State>
    init(_ resume: String) { state = Mutex(State(resume: resume, started: .now, last: .now)) }
    func withLock<R: Sendable>(_ body: (inout State) -> R) -> R {
        state.withLock { body(&$0) }
    }
}
