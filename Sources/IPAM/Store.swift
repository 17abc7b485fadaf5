// SQL for the allocator, one statement per function, all cached (prepared once per
// connection): an allocation costs a handful of index lookups, never a table scan.
import Foundation
import GRDB
import IPAddressing

enum Store {
    static func reservations(of id: AttachmentID, _ db: Database) throws -> [Reservation] {
        let stmt = try db.cachedStatement(sql: """
            SELECT container_id, ifname, address, subnet, created_at FROM ipam_allocation
            WHERE container_id = ? AND ifname = ? ORDER BY family
            """)
        return try Row.fetchAll(stmt, arguments: [id.containerID, id.ifname]).compactMap(reservation)
    }

    static func allReservations(_ db: Database) throws -> [Reservation] {
        let stmt = try db.cachedStatement(sql: """
            SELECT container_id, ifname, address, subnet, created_at FROM ipam_allocation ORDER BY family, address
            """)
        return try Row.fetchAll(stmt).compactMap(reservation)
    }

    static func holder(of address: IPAddress, _ db: Database) throws -> AttachmentID? {
        let stmt = try db.cachedStatement(sql: "SELECT container_id, ifname FROM ipam_allocation WHERE family = ? AND address = ?")
        guard let row = try Row.fetchOne(stmt, arguments: [AddressCodec.family(address.family), AddressCodec.blob(address)]) else {
            return nil
        }
        return AttachmentID(containerID: row[0], ifname: row[1])
    }

    static func insert(_ address: IPAddress, pool: AddressPool, _ id: AttachmentID, _ db: Database) throws {
        let stmt = try db.cachedStatement(sql: """
            INSERT INTO ipam_allocation (family, address, address_text, subnet, container_id, ifname) VALUES (?, ?, ?, ?, ?, ?)
            """)
        try stmt.execute(arguments: [AddressCodec.family(address.family), AddressCodec.blob(address), address.description,
                                     pool.subnet.description, id.containerID, id.ifname])
    }

    static func delete(_ id: AttachmentID, _ db: Database) throws {
        let stmt = try db.cachedStatement(sql: "DELETE FROM ipam_allocation WHERE container_id = ? AND ifname = ?")
        try stmt.execute(arguments: [id.containerID, id.ifname])
    }

    /// Reservations inside the pool's assignable range (whatever subnet they were made from).
    static func count(in pool: AddressPool, _ db: Database) throws -> UInt64 {
        try count(in: pool, from: pool.first, to: pool.last, db)
    }

    /// Reservations between two offsets of the pool, inclusive.
    static func count(in pool: AddressPool, from lo: UInt64, to hi: UInt64, _ db: Database) throws -> UInt64 {
        let stmt = try db.cachedStatement(sql: """
            SELECT COUNT(*) FROM ipam_allocation WHERE family = ? AND address BETWEEN ? AND ?
            """)
        return UInt64(try Int.fetchOne(stmt, arguments: rangeArguments(pool, lo, hi)) ?? 0)
    }

    static func cursor(_ pool: AddressPool, _ db: Database) throws -> IPAddress? {
        let stmt = try db.cachedStatement(sql: "SELECT address FROM ipam_cursor WHERE subnet = ?")
        guard let blob = try Data.fetchOne(stmt, arguments: [pool.subnet.description]) else { return nil }
        return AddressCodec.address(blob)
    }

    static func setCursor(_ pool: AddressPool, _ address: IPAddress, _ db: Database) throws {
        let stmt = try db.cachedStatement(sql: """
            INSERT INTO ipam_cursor (subnet, address) VALUES (?, ?)
            ON CONFLICT (subnet) DO UPDATE SET address = excluded.address
            """)
        try stmt.execute(arguments: [pool.subnet.description, AddressCodec.blob(address)])
    }

    private static func rangeArguments(_ pool: AddressPool, _ lo: UInt64, _ hi: UInt64) -> StatementArguments {
        [AddressCodec.family(pool.family), AddressCodec.blob(pool.address(at: lo)), AddressCodec.blob(pool.address(at: hi))]
    }

    private static func reservation(_ row: Row) -> Reservation? {
        // A row this code did not write (or a future format) is skipped rather than crashing the agent.
        guard let address = AddressCodec.address(row[2]), let subnet = IPPrefix(row[3] as String) else { return nil }
        return Reservation(attachment: AttachmentID(containerID: row[0], ifname: row[1]),
                           address: address, subnet: subnet, createdAt: row[4])
    }
}

/// Finding the next free address without reading the pool into Swift. From the cursor:
/// if the next address is free (the usual case with round-robin) that is one primary-key
/// probe. Otherwise the used run after it is skipped in growing windows, each a COUNT over
/// an index range (SQLite walks it in C, nothing is materialised), and the first window with
/// room is bisected with more counts. Cost: O(length of the used run) in C plus O(log) queries.
enum FreeAddressSearch {
    static func next(in pool: AddressPool, _ db: Database) throws -> UInt64? {
        var start = pool.first
        if let last = try Store.cursor(pool, db), let offset = pool.assignableOffset(of: last), offset < pool.last {
            start = offset + 1
        }
        if let found = try firstGap(pool, from: start, to: pool.last, db) { return found }
        // Wrapped around: a released address becomes eligible again only now (reuse delay).
        if start > pool.first, let found = try firstGap(pool, from: pool.first, to: start - 1, db) { return found }
        return nil
    }

    static func firstGap(_ pool: AddressPool, from lo: UInt64, to hi: UInt64, _ db: Database) throws -> UInt64? {
        if try Store.holder(of: pool.address(at: lo), db) == nil { return lo }
        var start = lo
        var window: UInt64 = 64
        while true {
            let end = hi - start < window ? hi : start + window - 1
            if try Store.count(in: pool, from: start, to: end, db) <= end - start {
                return try bisect(pool, start, end, db)
            }
            if end == hi { return nil }
            start = end + 1
            window = min(window * 2, 1 << 20)
        }
    }

    /// The first free offset in [lo, hi], known to hold one.
    private static func bisect(_ pool: AddressPool, _ lo: UInt64, _ hi: UInt64, _ db: Database) throws -> UInt64 {
        var (a, b) = (lo, hi)
        while a < b {
            let mid = a + (b - a) / 2
            if try Store.count(in: pool, from: a, to: mid, db) <= mid - a { b = mid } else { a = mid + 1 }
        }
        return a
    }
}
