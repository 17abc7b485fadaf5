import ClusterState
import Foundation
import Logging

public struct EtcdSourceConfiguration: Sendable {
    /// Base URLs of the etcd members, e.g. `http://10.0.0.1:2379`; tried in turn on failure.
    public var endpoints: [String]
    public var prefix: String
    public var nodeName: String
    /// A watch without events or progress notifications for this long is restarted. etcd sends
    /// progress notifications every 10 minutes by default
    /// (`--experimental-watch-progress-notify-interval`), so the default is a bit more.
    public var stallBound: Duration
    public var requestTimeout: Duration
    /// For `https://` endpoints: the CA and client certificate (nil: system trust, no client certificate).
    public var tls: TLSMaterial?
    /// Keys per page of the first sync's list; each page is one store transaction.
    public var pageSize: Int

    public init(endpoints: [String], prefix: String = "/nodenet", nodeName: String, tls: TLSMaterial? = nil,
                stallBound: Duration = .seconds(11 * 60), requestTimeout: Duration = .seconds(5), pageSize: Int = 1000) {
        self.tls = tls
        self.pageSize = pageSize
        self.endpoints = endpoints
        self.prefix = prefix
        self.nodeName = nodeName
        self.stallBound = stallBound
        self.requestTimeout = requestTimeout
    }
}

/// Feeds the store from etcd: every cluster object under `<prefix>/objects/`, listed, applied
/// as a difference, then watched. Node-local kinds (PodAttachment, SubnetLease) are never
/// synced: other nodes' subnets reach the store as their Node objects' podCIDRs.
public final class EtcdSource: Sendable {
    public let configuration: EtcdSourceConfiguration
    public let client: EtcdClient
    private let store: ClusterStore
    private let logger: Logger
    private let tracker: StatusTracker
    private let feed: EtcdFeed

    /// Throws only for a configuration that can never work (no endpoints, unreadable TLS material).
    public init(configuration: EtcdSourceConfiguration, store: ClusterStore, logger: Logger = Logger(label: "nodenet.etcd")) throws {
        self.configuration = configuration
        self.store = store
        self.logger = logger
        client = try EtcdClient(endpoints: configuration.endpoints, tls: configuration.tls, requestTimeout: configuration.requestTimeout,
                                logger: logger)
        feed = EtcdFeed(client: client, keys: EtcdKeys(prefix: configuration.prefix), logger: logger, pageSize: configuration.pageSize)
        tracker = StatusTracker(kind: "etcd", feeds: [feed.name])
        tracker.update { $0.endpoint = client.currentEndpoint }
    }

    /// Lists, watches and re-lists until cancelled. Never fails: errors are retried with
    /// backoff and shown in `status`.
    public func run() async throws {
        await Reconciler(feed: feed, store: store, tracker: tracker, logger: logger, stallBound: configuration.stallBound).run()
    }

    public var status: SourceStatus { tracker.status }

    /// A writer for `nodenet apply`/`delete` through this source's client and prefix.
    public var writer: EtcdWriter { EtcdWriter(client: client, prefix: configuration.prefix) }

    /// True once the first list reached the store; false if `timeout` passed first.
    public func waitForFirstSync(timeout: Duration) async -> Bool {
        await tracker.waitForFirstSync(timeout: timeout)
    }
}

/// The etcd half of the reconciler: one feed over the whole objects prefix.
struct EtcdFeed: Feed {
    let client: EtcdClient
    let keys: EtcdKeys
    let logger: Logger
    /// Keys per list page: a page is decoded and applied as one store transaction.
    var pageSize = 1000

    var name: String { "etcd \(keys.objects)" }
    var kinds: [ObjectKind] { ObjectKind.manifestKinds }
    var endpoint: String { client.currentEndpoint }

    /// Every cluster kind, except EndpointSlices this node's endpoints controller derives
    /// (managed-by nodenet): those are local, not from etcd.
    func owns(_ object: ClusterObject) -> Bool {
        guard ObjectKind.manifestKinds.contains(object.kind) else { return false }
        if case .endpointSlice(let s) = object, s.metadata.label(EndpointSlice.managedByLabel) == EndpointsController.managerName { return false }
        return true
    }

    /// Pages of `pageSize` keys at the first page's revision, each decoded and handed over
    /// before the next (which is fetched meanwhile); the watch starts at revision + 1, so a key
    /// changed or deleted while paging arrives as an event after its listed version.
    func list(page: (FeedPage) async throws -> Void) async throws -> String {
        let revision = try await client.rangePages(prefix: keys.objects, pageSize: pageSize) { kvs, _ in
            var objects: [ClusterObject] = []
            objects.reserveCapacity(kvs.count)
            var notes: [String] = []
            for kv in kvs {
                switch decode(kv) {
                case .success(let object): objects.append(object)
                case .failure(let skip): notes.append(skip.note)
                }
            }
            try await page(FeedPage(objects: objects, skippedNotes: notes))
        }
        return String(revision)
    }

    func watch(from resume: String) async throws -> AsyncThrowingStream<FeedEvent, any Error> {
        let listed = Int64(resume) ?? 0
        let responses = try await client.watch(prefix: keys.objects, from: listed + 1)
        return relay { continuation in
            for try await response in responses {
                switch response {
                case .progress(let revision):
                    try continuation.yield(.progress(resume: revision > 0 ? String(revision) : nil))
                case .compacted(let c):
                    try continuation.yield(.expired("revision \(listed + 1) was compacted (compact revision \(c))"))
                    return
                case .events(let events, let revision):
                    let (changes, last, notes) = translate(events)
                    for note in notes { try continuation.yield(.skipped(note)) }
                    try continuation.yield(.changes(changes, resume: String(last > 0 ? last : revision)))
                }
            }
        }
    }

    /// Watch events to store changes. A value that does not decode removes the object: the
    /// store then agrees with what a list would give.
    func translate(_ events: [EtcdWatchEvent]) -> ([StoreChange], Int64, [String]) {
        var changes: [StoreChange] = []
        var notes: [String] = []
        var last: Int64 = 0
        for event in events {
            switch event {
            case .put(let kv):
                last = max(last, kv.modRevision)
                switch decode(kv) {
                case .success(let object):
                    changes.append(.upsert(object))
                case .failure(let skip):
                    notes.append(skip.note)
                    if let key = keys.objectKey(kv.key) { changes.append(.delete(key)) }
                }
            case .delete(let key, let revision):
                last = max(last, revision)
                if let k = keys.objectKey(key) { changes.append(.delete(k)) }
            }
        }
        return (changes, last, notes)
    }

    /// Why a key was skipped, naming it (logged, and shown in the status).
    struct Skip: Error {
        var note: String
    }

    /// The object stored at a key, or why not (logged) when it does not decode (an invalid
    /// object is never half-loaded) or sits at a key that is not its own.
    func decode(_ kv: EtcdKeyValue) -> Result<ClusterObject, Skip> {
        func skip(_ reason: String) -> Result<ClusterObject, Skip> {
            let note = "\(kv.key): \(reason)"
            logger.warning("etcd: skipping \(note)")
            return .failure(Skip(note: note))
        }
        guard let expected = keys.objectKey(kv.key) else {
            return skip("not a key of the layout <prefix>/objects/<Kind>[/<namespace>]/<name>")
        }
        let object: ClusterObject
        do {
            object = try ManifestDecoder.decode(json: kv.value)
        } catch {
            // The key names the object: keep the field and the reason, not the document number.
            return skip(error.field.map { "\($0): \(error.message)" } ?? error.message)
        }
        guard object.key == expected else {
            return skip("it holds \(object.key), which belongs at \(keys.key(for: object.key))")
        }
        return .success(object)
    }
}
