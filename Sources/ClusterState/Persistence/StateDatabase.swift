import Foundation
import GRDB

public struct PersistenceError: Error, CustomStringConvertible, Sendable {
    public var operation: String
    public var message: String

    public init(_ operation: String, _ message: String) {
        self.operation = operation
        self.message = message
    }

    public var description: String { "state database: \(operation): \(message)" }
}

/// Where `ClusterStore.commit` writes. One call is one transaction.
public protocol StorePersistence: Sendable {
    func save(_ changes: [ObjectChange]) throws(PersistenceError)
}

/// The node's SQLite database (`stateDir/nodenet.db`, WAL). Holds the embedded source's
/// objects and every node-local fact that must survive a crash; other modules (IPAM)
/// add their own tables through `writer`.
///
/// synchronous=FULL: a commit is on disk before the caller hears about it, so an apply or
/// a CNI ADD that was acknowledged survives even power loss, not only a kill -9.
public final class StateDatabase: StorePersistence {
    public let writer: DatabasePool
    public let path: String

    public init(directory: String) throws(PersistenceError) {
        do {
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true,
                                                    attributes: [.posixPermissions: 0o700])
        } catch {
            throw PersistenceError("create \(directory)", "\(error)")
        }
        path = directory + "/nodenet.db"
        var config = Configuration()
        config.busyMode = .timeout(5)
        config.prepareDatabase { db in
            try db.execute(sql: "PRAGMA synchronous = FULL")
        }
        do {
            writer = try DatabasePool(path: path, configuration: config)
            var migrator = DatabaseMigrator()
            migrator.registerMigration("objects-v1") { db in
                try db.create(table: "objects") { t in
                    t.column("kind", .text).notNull()
                    t.column("namespace", .text).notNull()
                    t.column("name", .text).notNull()
                    t.column("json", .blob).notNull()
                    t.primaryKey(["kind", "namespace", "name"])
                }
            }
            // Small facts about the state as a whole (which source last delivered a full sync).
            migrator.registerMigration("meta-v1") { db in
                try db.create(table: "meta") { t in
                    t.column("key", .text).notNull().primaryKey()
                    t.column("value", .text).notNull()
                }
            }
            try migrator.migrate(writer)
        } catch {
            throw PersistenceError("open \(path)", "\(error)")
        }
    }

    static let syncedSourceKey = "synced-source"

    /// The source (`etcd`, `kubernetes`) whose full sync the stored objects hold: set once it
    /// has listed everything, so a later start with that source unreachable can serve the stored
    /// view as a complete one (DNS answers, the node gets ready) instead of waiting for it.
    public func syncedSource() -> String? {
        try? writer.read { db in try String.fetchOne(db, sql: "SELECT value FROM meta WHERE key = ?", arguments: [Self.syncedSourceKey]) }
    }

    /// Records that the stored objects are a full sync of `source` (GRDB's writer queue, not
    /// the caller's thread).
    public func recordSyncedSource(_ source: String) async throws {
        try await writer.write { db in
            try db.execute(sql: "INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", arguments: [Self.syncedSourceKey, source])
        }
    }

    public func save(_ changes: [ObjectChange]) throws(PersistenceError) {
        do {
            try writer.write { db in
                // Prepared once per transaction, not parsed per object.
                let upsert = try db.cachedStatement(sql: "INSERT OR REPLACE INTO objects (kind, namespace, name, json) VALUES (?, ?, ?, ?)")
                let delete = try db.cachedStatement(sql: "DELETE FROM objects WHERE kind = ? AND namespace = ? AND name = ?")
                for change in changes {
                    let k = change.key
                    if let object = change.new {
                        try upsert.execute(arguments: [k.kind.rawValue, k.namespace, k.name, try Self.row(object)])
                    } else {
                        try delete.execute(arguments: [k.kind.rawValue, k.namespace, k.name])
                    }
                }
            }
        } catch {
            throw PersistenceError("save \(changes.count) objects", "\(error)")
        }
    }

    /// The stored form of an object: the compact binary form for the cluster kinds
    /// (`StoredCoding`), Kubernetes JSON for the node-local ones.
    static func row(_ object: ClusterObject) throws -> Data {
        if let bytes = StoredCoding.encode(object) { return Data(bytes) }
        return try ObjectCoding.encode(object)
    }

    /// Decodes a row of either form (rows written before the binary form are JSON).
    static func object(kind: ObjectKind, row bytes: UnsafeRawBufferPointer) throws -> ClusterObject {
        // Either binary marker: rows of the form before the topology fields (0xB1) still load.
        if StoredCoding.isBinary(bytes) { return try StoredCoding.decode(bytes) }
        return try ObjectCoding.decode(kind: kind, Data(bytes))
    }

    /// Every stored object. Rows that no longer decode (written by another version) are
    /// returned in `skipped` with the reason, never silently dropped or fatal.
    public func loadAll() throws(PersistenceError) -> (objects: [ClusterObject], skipped: [(ObjectKey, String)]) {
        do {
            return try writer.read { db in
                var objects: [ClusterObject] = []
                var skipped: [(ObjectKey, String)] = []
                let rows = try Row.fetchCursor(db, sql: "SELECT kind, namespace, name, json FROM objects ORDER BY kind, namespace, name")
                while let row = try rows.next() {
                    let kindText: String = row["kind"]
                    let key = ObjectKey(ObjectKind(rawValue: kindText) ?? .namespace, namespace: row["namespace"], name: row["name"])
                    guard let kind = ObjectKind(rawValue: kindText) else {
                        skipped.append((key, "unknown kind \(kindText)"))
                        continue
                    }
                    do {
                        // The blob is read in place: no copy per row.
                        let data = row.dataNoCopy(named: "json") ?? Data()
                        objects.append(try data.withUnsafeBytes { try Self.object(kind: kind, row: $0) })
                    } catch {
                        skipped.append((key, "\(error)"))
                    }
                }
                return (objects, skipped)
            }
        } catch {
            throw PersistenceError("load objects", "\(error)")
        }
    }

    /// A snapshot holding everything persisted.
    public func loadSnapshot() throws(PersistenceError) -> (ClusterSnapshot, skipped: [(ObjectKey, String)]) {
        let (objects, skipped) = try loadAll()
        var snapshot = ClusterSnapshot()
        for o in objects { snapshot.set(o.key, o) }
        return (snapshot, skipped)
    }
}
