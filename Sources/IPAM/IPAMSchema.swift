// The allocator's tables in the node's state database (stateDir/nodenet.db), which the agent
// opens once as a WAL DatabasePool and shares. The invariants live in the schema so that no
// crash or bug in memory can break them:
//   PRIMARY KEY (family, address)            one address, one holder
//   UNIQUE (container_id, ifname, family)    one address per family per attachment
import Foundation
import GRDB
import IPAddressing

public enum IPAMSchema {
    /// Adds the IPAM migrations to the agent's migrator. Identifiers are prefixed `ipam_` so
    /// they never collide with other modules' migrations in the shared database.
    public static func registerMigrations(in migrator: inout DatabaseMigrator) {
        migrator.registerMigration("ipam_v1") { db in
            // WITHOUT ROWID: the primary key is the clustered index, so the free-address scan
            // walks (family, address) in order straight from the table b-tree.
            // Addresses are network-order BLOBs (4 or 16 bytes): SQLite compares BLOBs with
            // memcmp, which for equal lengths is numeric order.
            try db.execute(sql: """
                CREATE TABLE ipam_allocation (
                    family INTEGER NOT NULL CHECK (family IN (4, 6)),
                    address BLOB NOT NULL CHECK (length(address) = CASE family WHEN 4 THEN 4 ELSE 16 END),
                    address_text TEXT NOT NULL,
                    subnet TEXT NOT NULL,
                    container_id TEXT NOT NULL CHECK (container_id <> ''),
                    ifname TEXT NOT NULL CHECK (ifname <> ''),
                    created_at INTEGER NOT NULL DEFAULT (CAST(strftime('%s', 'now') AS INTEGER)),
                    PRIMARY KEY (family, address),
                    UNIQUE (container_id, ifname, family)
                ) WITHOUT ROWID;
                """)
            // The round-robin cursor: the last address handed out automatically, per subnet.
            try db.execute(sql: """
                CREATE TABLE ipam_cursor (
                    subnet TEXT PRIMARY KEY NOT NULL,
                    address BLOB NOT NULL
                ) WITHOUT ROWID;
                """)
        }
    }

    /// Runs only the IPAM migrations. Safe next to other modules' migrators: GRDB ignores
    /// applied migrations it does not know.
    public static func migrate(_ writer: any DatabaseWriter) throws(IPAMError) {
        var migrator = DatabaseMigrator()
        registerMigrations(in: &migrator)
        do {
            try migrator.migrate(writer)
        } catch {
            throw .database(operation: "creating the IPAM tables", message: "\(error)")
        }
    }

    /// The connection setup nodenet uses for its state database: WAL (set by DatabasePool
    /// itself), `synchronous = NORMAL` and a busy timeout. See README.md for why NORMAL.
    /// Pass `durable: true` for `synchronous = FULL` (also survives power loss, ~fsync per ADD).
    public static func databaseConfiguration(durable: Bool = false) -> Configuration {
        var config = Configuration()
        config.busyMode = .timeout(5)
        config.prepareDatabase { db in
            try db.execute(sql: durable ? "PRAGMA synchronous = FULL" : "PRAGMA synchronous = NORMAL")
        }
        return config
    }
}

/// Row <-> value conversions kept in one place.
enum AddressCodec {
    static func blob(_ a: IPAddress) -> Data { Data(a.bytes) }

    static func address(_ blob: Data) -> IPAddress? { IPAddress(bytes: [UInt8](blob)) }

    static func family(_ f: IPFamily) -> Int { f == .v4 ? 4 : 6 }
}
