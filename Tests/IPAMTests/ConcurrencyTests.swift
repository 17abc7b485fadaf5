import Foundation
import GRDB
import IPAddressing
import Testing
@testable import IPAM

@Suite struct ConcurrencyTests {
    /// Parallel ADDs through one allocator: the writer serialises them, no address twice.
    @Test func parallelAllocationsAreUnique() async throws {
        let db = try TempDatabase(); defer { db.remove() }
        let ipam = try db.allocator("10.6.0.0/24", "fd00:6::/64")
        let granted = try await withThrowingTaskGroup(of: [Allocation].self) { group in
            for t in 0..<8 {
                group.addTask {
                    var mine: [Allocation] = []
                    for i in 0..<25 { mine += try ipam.allocate(containerID: "t\(t)-\(i)", ifname: "eth0") }
                    return mine
                }
            }
            return try await group.reduce(into: []) { $0 += $1 }
        }
        #expect(granted.count == 400)
        #expect(Set(granted.map(\.address.address)).count == 400)
    }

    /// Two pools on one file (as two agent processes would be, say an old one still
    /// stopping): BEGIN IMMEDIATE plus the busy timeout serialise them; still no double grant.
    @Test func twoConnectionsOnOneFileNeverDoubleGrant() async throws {
        let db = try TempDatabase(); defer { db.remove() }
        let a = try db.allocator("10.7.0.0/26")
        let b = try db.allocator("10.7.0.0/26")  // its own DatabasePool
        let granted = try await withThrowingTaskGroup(of: [IPAddress].self) { group in
            for (name, ipam) in [("a", a), ("b", b)] {
                group.addTask {
                    var mine: [IPAddress] = []
                    for i in 0..<30 { mine += try ipam.allocate(containerID: "\(name)\(i)", ifname: "eth0").map(\.address.address) }
                    return mine
                }
            }
            return try await group.reduce(into: []) { $0 += $1 }
        }
        #expect(granted.count == 60 && Set(granted).count == 60)
        // 61 assignable in a /26: one left, then exhaustion.
        _ = try a.allocate(containerID: "last", ifname: "eth0")
        #expect(ipamError { _ = try b.allocate(containerID: "over", ifname: "eth0") }?.description == "no free address in 10.7.0.0/26 (61 in use)")
    }
}
