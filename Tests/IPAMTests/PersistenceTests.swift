import Foundation
import GRDB
import IPAddressing
import Testing
@testable import IPAM

@Suite struct PersistenceTests {
    @Test func reservationsAndCursorSurviveReopening() throws {
        let db = try TempDatabase(); defer { db.remove() }
        do {
            let ipam = try db.allocator("10.1.2.0/24")
            for c in ["a", "b", "c"] { _ = try ipam.allocate(containerID: c, ifname: "eth0") }
            try ipam.release(containerID: "a", ifname: "eth0")
        }
        let ipam = try db.allocator("10.1.2.0/24")
        #expect(try ipam.check(containerID: "b", ifname: "eth0")?.addresses == ["10.1.2.3/24"])
        // The cursor was persisted: .2 (released) is not reused before the wrap.
        #expect(try ipam.allocate(containerID: "d", ifname: "eth0").addresses == ["10.1.2.5/24"])
    }

    @Test func changedSubnetsReportOldReservations() throws {
        let db = try TempDatabase(); defer { db.remove() }
        _ = try db.allocator("10.1.2.0/24").allocate(containerID: "old", ifname: "eth0")
        let ipam = try db.allocator("10.1.3.0/24")
        let outside = try ipam.reservationsOutsideSubnets()
        #expect(outside.map(\.address) == [ip("10.1.2.2")])
        #expect(outside.first?.subnet == IPPrefix("10.1.2.0/24"))
        // Still listed and still blocking a repeated ADD; CHECK describes it with its old subnet.
        #expect(try ipam.check(containerID: "old", ifname: "eth0")?.first?.gateway == ip("10.1.2.1"))
        #expect(ipamError { _ = try ipam.allocate(containerID: "old", ifname: "eth0") } != nil)
        #expect(try ipam.allocate(containerID: "new", ifname: "eth0").addresses == ["10.1.3.2/24"])
    }

    @Test func widerSubnetStillSeesReservationsOfTheNarrowerOne() throws {
        let db = try TempDatabase(); defer { db.remove() }
        _ = try db.allocator("10.1.2.0/30").allocate(containerID: "old", ifname: "eth0")  // 10.1.2.2
        let ipam = try db.allocator("10.1.0.0/16")
        #expect(try ipam.reservationsOutsideSubnets().isEmpty)
        #expect(ipamError { _ = try ipam.allocate(containerID: "x", ifname: "eth0", requested: [ip("10.1.2.2")]) } != nil)
        #expect(try ipam.stats().first?.used == 1)
    }

    @Test func schemaRejectsDoubleGrantsEvenFromRawSQL() throws {
        let db = try TempDatabase(); defer { db.remove() }
        let pool = try db.open()
        let ipam = try db.allocator("10.1.2.0/24", pool: pool)
        _ = try ipam.allocate(containerID: "a", ifname: "eth0")
        #expect(throws: DatabaseError.self) {
            try pool.write { db in
                try db.execute(sql: """
                    INSERT INTO ipam_allocation (family, address, address_text, subnet, container_id, ifname)
                    VALUES (4, ?, '10.1.2.2', '10.1.2.0/24', 'b', 'eth0')
                    """, arguments: [Data([10, 1, 2, 2])])
            }
        }
        #expect(throws: DatabaseError.self) {
            try pool.write { db in
                try db.execute(sql: """
                    INSERT INTO ipam_allocation (family, address, address_text, subnet, container_id, ifname)
                    VALUES (4, ?, '10.1.2.9', '10.1.2.0/24', 'a', 'eth0')
                    """, arguments: [Data([10, 1, 2, 9])])
            }
        }
    }

    @Test func otherModulesMigrationsCoexist() throws {
        let db = try TempDatabase(); defer { db.remove() }
        let pool = try db.open()
        var other = DatabaseMigrator()
        other.registerMigration("state_v1") { db in try db.execute(sql: "CREATE TABLE state_x (a)") }
        try other.migrate(pool)
        _ = try db.allocator("10.1.2.0/24", pool: pool)
        try other.migrate(pool)
        _ = try db.allocator("10.1.2.0/24", pool: pool)
        let tables = try pool.read { try String.fetchAll($0, sql: "SELECT name FROM sqlite_master WHERE type='table' AND name LIKE 'ipam_%' ORDER BY name") }
        #expect(tables == ["ipam_allocation", "ipam_cursor"])
    }

    /// Holes deep inside long used runs (beyond the first search windows) are found in order,
    /// and the search wraps to the start.
    @Test func gapSearchFindsHolesInLongRuns() throws {
        let db = try TempDatabase(); defer { db.remove() }
        let ipam = try db.allocator("10.8.0.0/22")  // offsets 2...1022
        let holes: Set<UInt32> = [300, 600]
        for o in UInt32(2)...1000 where !holes.contains(o) {
            _ = try ipam.allocate(containerID: "r\(o)", ifname: "eth0", requested: [.v4(IPv4Address(0x0A08_0000 | o))])
        }
        func next(_ id: String) throws -> String { try ipam.allocate(containerID: id, ifname: "eth0")[0].address.address.description }
        #expect(try next("a") == "10.8.1.44")   // offset 300
        #expect(try next("b") == "10.8.2.88")   // offset 600
        #expect(try next("c") == "10.8.3.233")  // offset 1001, after the run
        try ipam.release(containerID: "r5", ifname: "eth0")
        for id in ["d", "e", "f", "g", "h", "i", "j", "k", "l", "m", "n"] { _ = try next(id) }  // 1002...1022: 21 left
        for i in 0..<10 { _ = try next("z\(i)") }
        #expect(try next("wrap") == "10.8.0.5")  // only the released offset 5 is left
        #expect(ipamError { _ = try ipam.allocate(containerID: "full", ifname: "eth0") } != nil)
    }

    @Test func largePoolsAllocateWithoutScanning() throws {
        let db = try TempDatabase(); defer { db.remove() }
        let ipam = try db.allocator("10.2.0.0/16", "fd00:10::/64")
        var last: [Allocation] = []
        for i in 0..<300 { last = try ipam.allocate(containerID: "c\(i)", ifname: "eth0") }
        #expect(last.addresses == ["10.2.1.45/16", "fd00:10::12d/64"])
    }
}
