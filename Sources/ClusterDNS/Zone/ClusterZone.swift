import ClusterState
import IPAddressing
import Logging
import Synchronization

/// The live cluster zone: lookup tables behind a mutex (held for a few hash lookups per
/// query), kept current from the store's events by `follow(_:)`.
///
/// With several event loops the tables are replicated, one copy per loop: a mutex shared by
/// all loops would move its cache line between cores on every query. Replicas share their
/// storage (copy-on-write) after a rebuild; each pays one copy at its first incremental change.
public final class ClusterZone: Sendable {
    let resolver: ZoneResolver
    private let replicas: [Replica]
    private let syncedFlag = Atomic<Bool>(false)
    /// Run once, when the zone first syncs (the server's change stream).
    private let onSynced = Mutex<[@Sendable () -> Void]>([])
    /// Pod addresses are tracked for `pods verified` and for autopath.
    let tracksPods: Bool

    public init(configuration: DNSConfiguration, replicas: Int = 1) {
        resolver = ZoneResolver(configuration: configuration)
        tracksPods = configuration.podMode == .verified || configuration.autopath
        self.replicas = (0..<max(1, replicas)).map { _ in Replica() }
    }

    /// One copy of the tables. The trailing padding keeps the next replica's lock word off
    /// the cache line that this one's readers touch.
    private final class Replica: Sendable {
        let data = Mutex(ZoneData())
        let padding: (UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64) = (0, 0, 0, 0, 0, 0, 0, 0)
    }

    var replicaCount: Int { replicas.count }


    public var apex: DNSName { resolver.apex }

    /// False until the store reports its first full sync: names under the zone get SERVFAIL.
    public var isSynced: Bool { syncedFlag.load(ordering: .acquiring) }

    /// Answers a question; nil when the name is not ours (the caller forwards it).
    func resolve(_ q: DNSQuestion, replica: Int = 0) -> ZoneResult? {
        if !isSynced {
            guard q.name.isSubdomain(of: resolver.apex) else {
                // Reverse names fall through to the upstream until we know our own addresses.
                return nil
            }
            return ZoneResult(rcode: .servFail)
        }
        return replicas[replica % replicas.count].data.withLock { resolver.resolve(q, in: $0) }
    }

    /// A precomputed positive answer (count, records) for a lower-cased wire name and type,
    /// once synced; nil: take the general path.
    func wireAnswer(_ key: WireAnswers.Key, replica: Int) -> WireAnswers.Answer? {
        guard isSynced else { return nil }
        return replicas[replica % replicas.count].data.withLock { $0.wire.answers[key] }
    }

    /// The namespace of the pod with this address, when known (autopath).
    func namespace(of address: IPAddress, replica: Int = 0) -> String? {
        replicas[replica % replicas.count].data.withLock { $0.namespaceOfAddress[address] }
    }

    var serviceCount: Int { replicas[0].data.withLock { $0.services.count } }

    // MARK: building

    /// Replaces everything from a snapshot (start and `.resync`).
    func rebuild(from s: ClusterSnapshot) {
        var fresh = ZoneData()
        fresh.wire.apex = resolver.apexKey
        fresh.wire.ttl = resolver.ttl
        for (id, svc) in s.services {
            fresh.setService(id, ServiceEntry(service: svc, slices: s.endpointSlices(for: id)))
        }
        fresh.namespaceObjects = Set(s.namespaces.keys)
        if tracksPods {
            var pods = Set(s.pods.keys)
            for a in s.attachments.values { if let p = a.pod { pods.insert(p) } }
            for p in pods { fresh.setPodAddresses(p, s.addresses(of: p)) }
        }
        fresh.serial = UInt32(truncatingIfNeeded: s.version)
        for r in replicas { r.data.withLock { $0 = fresh } }
        if s.synced { markSynced() }
    }

    /// Applies one batch of changes, recomputing only the services and pods they touch.
    /// `s` is a snapshot at least as new as the changes (recomputation is idempotent).
    func apply(_ changes: [ObjectChange], from s: ClusterSnapshot) {
        var servicesTouched: Set<NamespacedName> = []
        var podsTouched: Set<NamespacedName> = []
        var namespaces: [(String, Bool)] = []
        for c in changes {
            for o in [c.old, c.new] {
                switch o {
                case .service(let svc)?: servicesTouched.insert(svc.id)
                case .endpointSlice(let sl)?: if let id = sl.service { servicesTouched.insert(id) }
                case .pod(let p)?: podsTouched.insert(p.id)
                case .attachment(let a)?: if let p = a.pod { podsTouched.insert(p) }
                case .namespace(let n)?: namespaces.append((n.metadata.name, c.new != nil))
                default: break
                }
            }
        }
        // Compute outside the lock; publish under it.
        let entries = servicesTouched.map { id in (id, s.services[id].flatMap { ServiceEntry(service: $0, slices: s.endpointSlices(for: id)) }) }
        let pods = tracksPods ? podsTouched.map { ($0, s.addresses(of: $0)) } : []
        for r in replicas {
            r.data.withLock { d in
                for (id, e) in entries { d.setService(id, e) }
                for (p, a) in pods { d.setPodAddresses(p, a) }
                for (n, present) in namespaces { if present { d.namespaceObjects.insert(n) } else { d.namespaceObjects.remove(n) } }
            }
        }
    }

    func markSynced() {
        syncedFlag.store(true, ordering: .releasing)
        let callbacks = onSynced.withLock { c in defer { c = [] }; return c }
        callbacks.forEach { $0() }
    }

    /// Runs `body` once the zone has synced (at once when it has).
    func whenSynced(_ body: @escaping @Sendable () -> Void) {
        let now = onSynced.withLock { c -> Bool in
            if isSynced { return true }
            c.append(body)
            return false
        }
        if now { body() }
    }

    /// Follows the store until the task is cancelled: snapshot, then events.
    func follow(_ store: ClusterStore, logger: Logger) async {
        let subscription = await store.subscribe()
        rebuild(from: await store.snapshot())
        logger.info("dns zone built", metadata: ["services": "\(serviceCount)", "synced": "\(isSynced)"])
        for await event in subscription {
            switch event {
            case .changed(_, let changes):
                apply(changes, from: await store.snapshot())
            case .resync:
                logger.notice("dns zone resync from snapshot")
                rebuild(from: await store.snapshot())
            case .synced:
                markSynced()
                logger.info("dns zone synced", metadata: ["services": "\(serviceCount)"])
            }
        }
    }
}
