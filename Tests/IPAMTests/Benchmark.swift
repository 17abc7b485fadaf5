// Micro benchmark, not a timed assertion: NODENET_IPAM_BENCH=1 swift test --filter IPAMTests.Benchmark
// prints the cost per allocate/release for both synchronous modes. Figures go to Sources/IPAM/README.md.
import Foundation
import GRDB
import IPAddressing
import Testing
@testable import IPAM

@Suite struct Benchmark {
    @Test(.enabled(if: ProcessInfo.processInfo.environment["NODENET_IPAM_BENCH"] != nil))
    func allocationCost() throws {
        for durable in [false, true] {
            let db = try TempDatabase(); defer { db.remove() }
            let ipam = try AddressAllocator(database: try db.open(durable: durable),
                                            configuration: IPAMConfiguration(subnets: [IPPrefix("10.4.0.0/16")!, IPPrefix("fd00:4::/64")!]))
            let n = 2_000
            // Steady state of a busy node: 200 live pods, each new one releasing an old one.
            let clock = ContinuousClock()
            var allocTime = Duration.zero, releaseTime = Duration.zero
            for i in 0..<n {
                allocTime += try clock.measure { _ = try ipam.allocate(containerID: "c\(i)", ifname: "eth0") }
                if i >= 200 { releaseTime += try clock.measure { try ipam.release(containerID: "c\(i - 200)", ifname: "eth0") } }
            }
            print("synchronous=\(durable ? "FULL" : "NORMAL") dual-stack allocate: \(allocTime / n) release: \(releaseTime / (n - 200))")
            #expect(try ipam.allocations().count == 400)
        }
        // Worst case for the gap search: a /16 nearly full after the cursor wrapped.
        let db = try TempDatabase(); defer { db.remove() }
        let pool = try db.open()
        let ipam = try AddressAllocator(database: pool, configuration: IPAMConfiguration(subnets: [IPPrefix("10.5.0.0/16")!]))
        try pool.write { db in
            // Bulk-fill 10.5.0.2 ... 10.5.255.253, leaving one hole near the end.
            for o in 2..<65_533 where o != 65_000 {
                let a = IPAddress.v4(IPv4Address(0x0A05_0000 | UInt32(o)))
                try db.execute(sql: "INSERT INTO ipam_allocation (family, address, address_text, subnet, container_id, ifname) VALUES (4, ?, ?, '10.5.0.0/16', ?, 'eth0')",
                               arguments: [Data(a.bytes), a.description, "f\(o)"])
            }
        }
        let t = try ContinuousClock().measure { _ = try ipam.allocate(containerID: "late", ifname: "eth0") }
        print("nearly full /16 (65530 rows before the only hole): allocate \(t)")
        #expect(try ipam.check(containerID: "late", ifname: "eth0")?.first?.address.address == IPAddress("10.5.253.232"))
    }
}
