import Foundation
import IPAddressing
import Testing
@testable import IPAM

@Suite struct AllocationTests {
    @Test func slash29HandsOutTwoToSixThenExhausts() throws {
        let db = try TempDatabase(); defer { db.remove() }
        let ipam = try db.allocator("10.1.2.0/29")
        var got: [String] = []
        for i in 0..<5 { got += try ipam.allocate(containerID: "c\(i)", ifname: "eth0").addresses }
        #expect(got == ["10.1.2.2/29", "10.1.2.3/29", "10.1.2.4/29", "10.1.2.5/29", "10.1.2.6/29"])
        let err = ipamError { _ = try ipam.allocate(containerID: "c5", ifname: "eth0") }
        #expect(err == .exhausted(family: .v4, subnets: [IPPrefix("10.1.2.0/29")!], inUse: 5))
        #expect(err?.description == "no free address in 10.1.2.0/29 (5 in use)")
    }

    @Test func slash30HasOneAddressAndGatewayIsFirst() throws {
        let db = try TempDatabase(); defer { db.remove() }
        let ipam = try db.allocator("10.0.0.4/30")
        let a = try ipam.allocate(containerID: "a", ifname: "eth0")
        #expect(a == [Allocation(address: IPPrefix("10.0.0.6/30")!, gateway: ip("10.0.0.5"), subnet: IPPrefix("10.0.0.4/30")!)])
        #expect(ipamError { _ = try ipam.allocate(containerID: "b", ifname: "eth0") }?.description
                == "no free address in 10.0.0.4/30 (1 in use)")
    }

    @Test func slash126UsesTheLastAddressToo() throws {
        let db = try TempDatabase(); defer { db.remove() }
        let ipam = try db.allocator("fd00::/126")
        let a = try ipam.allocate(containerID: "a", ifname: "eth0")
        let b = try ipam.allocate(containerID: "b", ifname: "eth0")
        #expect(a.addresses + b.addresses == ["fd00::2/126", "fd00::3/126"])
        #expect(a.first?.gateway == ip("fd00::1"))
        #expect(ipamError { _ = try ipam.allocate(containerID: "c", ifname: "eth0") } != nil)
    }

    @Test func dualStackGivesOneAddressPerFamily() throws {
        let db = try TempDatabase(); defer { db.remove() }
        let ipam = try db.allocator("10.1.2.0/24", "2001:db8:1::/64")
        let a = try ipam.allocate(containerID: "dummy", ifname: "eth0")
        #expect(a.addresses == ["10.1.2.2/24", "2001:db8:1::2/64"])
        #expect(a.map(\.gateway) == [ip("10.1.2.1"), ip("2001:db8:1::1")])
        let b = try ipam.allocate(containerID: "other", ifname: "eth0")
        #expect(b.addresses == ["10.1.2.3/24", "2001:db8:1::3/64"])
    }

    @Test func exhaustingOneFamilyRollsBackTheOther() throws {
        let db = try TempDatabase(); defer { db.remove() }
        let ipam = try db.allocator("10.0.0.0/30", "fd00::/64")
        _ = try ipam.allocate(containerID: "a", ifname: "eth0")
        #expect(ipamError { _ = try ipam.allocate(containerID: "b", ifname: "eth0") } != nil)
        // No IPv6 address was kept for the failed attachment.
        #expect(try ipam.allocations().map(\.attachment.containerID) == ["a", "a"])
        #expect(try ipam.check(containerID: "b", ifname: "eth0") == nil)
    }

    @Test func roundRobinDelaysReuseUntilWrap() throws {
        let db = try TempDatabase(); defer { db.remove() }
        let ipam = try db.allocator("10.1.2.0/29")
        _ = try ipam.allocate(containerID: "a", ifname: "eth0")                 // .2
        _ = try ipam.allocate(containerID: "b", ifname: "eth0")                 // .3
        try ipam.release(containerID: "a", ifname: "eth0")
        #expect(try ipam.allocate(containerID: "c", ifname: "eth0").addresses == ["10.1.2.4/29"])
        #expect(try ipam.allocate(containerID: "d", ifname: "eth0").addresses == ["10.1.2.5/29"])
        #expect(try ipam.allocate(containerID: "e", ifname: "eth0").addresses == ["10.1.2.6/29"])
        // The cursor wraps: .2 is the first free address from the start.
        #expect(try ipam.allocate(containerID: "f", ifname: "eth0").addresses == ["10.1.2.2/29"])
    }

    @Test func repeatedAllocationIsAnErrorAndDifferentIfnameIsNot() throws {
        let db = try TempDatabase(); defer { db.remove() }
        let ipam = try db.allocator("10.1.2.0/24")
        _ = try ipam.allocate(containerID: "a", ifname: "eth0")
        let err = ipamError { _ = try ipam.allocate(containerID: "a", ifname: "eth0") }
        #expect(err == .alreadyAllocated(AttachmentID(containerID: "a", ifname: "eth0"), [ip("10.1.2.2")]))
        #expect(try ipam.allocate(containerID: "a", ifname: "net1").addresses == ["10.1.2.3/24"])
    }

    @Test func releaseIsIdempotent() throws {
        let db = try TempDatabase(); defer { db.remove() }
        let ipam = try db.allocator("10.1.2.0/24")
        _ = try ipam.allocate(containerID: "a", ifname: "eth0")
        #expect(try ipam.release(containerID: "a", ifname: "eth0").map(\.address) == [ip("10.1.2.2")])
        #expect(try ipam.release(containerID: "a", ifname: "eth0").isEmpty)
        #expect(try ipam.release(containerID: "never", ifname: "eth0").isEmpty)
        #expect(try ipam.check(containerID: "a", ifname: "eth0") == nil)
    }

    @Test func requestedAddressesFreeTakenOutsideReserved() throws {
        let db = try TempDatabase(); defer { db.remove() }
        let ipam = try db.allocator("10.1.2.0/24", "2001:db8::/64")
        let a = try ipam.allocate(containerID: "a", ifname: "eth0", requested: [ip("10.1.2.77"), ip("2001:db8::77")])
        #expect(a.addresses == ["10.1.2.77/24", "2001:db8::77/64"])
        // Only one family requested: the other is allocated automatically.
        let b = try ipam.allocate(containerID: "b", ifname: "eth0", requested: [ip("2001:db8::99")])
        #expect(b.addresses == ["10.1.2.2/24", "2001:db8::99/64"])

        let taken = ipamError { _ = try ipam.allocate(containerID: "c", ifname: "eth0", requested: [ip("10.1.2.77")]) }
        #expect(taken?.description == "requested address 10.1.2.77 in 10.1.2.0/24 is already allocated to a/eth0")
        let outside = ipamError { _ = try ipam.allocate(containerID: "c", ifname: "eth0", requested: [ip("10.9.0.5")]) }
        #expect(outside?.description == "requested address 10.9.0.5 is outside this node's pod subnets (10.1.2.0/24)")
        for reserved in ["10.1.2.0", "10.1.2.1", "10.1.2.255"] {
            let err = ipamError { _ = try ipam.allocate(containerID: "c", ifname: "eth0", requested: [ip(reserved)]) }
            #expect(err == .requestedReserved(ip(reserved), subnet: IPPrefix("10.1.2.0/24")!))
        }
        let twice = ipamError { _ = try ipam.allocate(containerID: "c", ifname: "eth0", requested: [ip("10.1.2.8"), ip("10.1.2.9")]) }
        #expect(twice == .requestedTwice(.v4, [ip("10.1.2.8"), ip("10.1.2.9")]))
        // Failed requests reserved nothing.
        #expect(try ipam.check(containerID: "c", ifname: "eth0") == nil)
    }

    @Test func requestedAddressDoesNotMoveTheCursor() throws {
        let db = try TempDatabase(); defer { db.remove() }
        let ipam = try db.allocator("10.1.2.0/24")
        _ = try ipam.allocate(containerID: "a", ifname: "eth0", requested: [ip("10.1.2.3")])
        #expect(try ipam.allocate(containerID: "b", ifname: "eth0").addresses == ["10.1.2.2/24"])
        // The next search skips the requested .3.
        #expect(try ipam.allocate(containerID: "c", ifname: "eth0").addresses == ["10.1.2.4/24"])
    }

    @Test func secondSubnetOfAFamilyIsUsedWhenTheFirstIsFull() throws {
        let db = try TempDatabase(); defer { db.remove() }
        let ipam = try db.allocator("10.0.0.0/30", "10.0.1.0/30")
        #expect(try ipam.allocate(containerID: "a", ifname: "eth0").addresses == ["10.0.0.2/30"])
        #expect(try ipam.allocate(containerID: "b", ifname: "eth0").addresses == ["10.0.1.2/30"])
        let err = ipamError { _ = try ipam.allocate(containerID: "c", ifname: "eth0") }
        #expect(err?.description == "no free address in 10.0.0.0/30, 10.0.1.0/30 (2 in use)")
    }

    @Test func invalidConfigurations() throws {
        let db = try TempDatabase(); defer { db.remove() }
        let pool = try db.open()
        func error(_ subnets: [String]) -> IPAMError? {
            do {
                _ = try AddressAllocator(database: pool, configuration: IPAMConfiguration(subnets: subnets.map { IPPrefix($0)! }))
                return nil
            } catch { return error }
        }
        #expect(error([]) == .noSubnets)
        #expect(error(["10.1.2.5/24"])?.description == "pod subnet 10.1.2.5/24 cannot be used: host bits are set (did you mean 10.1.2.0/24?)")
        #expect(error(["10.1.2.0/31"]) != nil)
        #expect(error(["10.1.2.0/32"]) != nil)
        #expect(error(["fd00::/127"]) != nil)
        #expect(error(["10.1.0.0/16", "10.1.2.0/24"])?.description == "pod subnet 10.1.2.0/24 cannot be used: overlaps 10.1.0.0/16")
        #expect(error(["10.1.2.0/30", "fd00::/126"]) == nil)
    }

    @Test func emptyAttachmentIsRejected() throws {
        let db = try TempDatabase(); defer { db.remove() }
        let ipam = try db.allocator("10.1.2.0/24")
        #expect(ipamError { _ = try ipam.allocate(containerID: "", ifname: "eth0") } == .invalidAttachment(AttachmentID(containerID: "", ifname: "eth0")))
    }

    @Test func garbageCollectKeepsOnlyValidAttachments() throws {
        let db = try TempDatabase(); defer { db.remove() }
        let ipam = try db.allocator("10.1.2.0/24", "fd00::/64")
        for c in ["a", "b", "c"] { _ = try ipam.allocate(containerID: c, ifname: "eth0") }
        let released = try ipam.garbageCollect(keeping: [AttachmentID(containerID: "b", ifname: "eth0")])
        #expect(Set(released.map(\.attachment.containerID)) == ["a", "c"])
        #expect(released.count == 4)
        #expect(try ipam.allocations().map(\.attachment.containerID) == ["b", "b"])
        // A cutoff in the past spares everything allocated since.
        _ = try ipam.allocate(containerID: "d", ifname: "eth0")
        #expect(try ipam.garbageCollect(keeping: [], allocatedBefore: 1).isEmpty)
        #expect(try ipam.allocations().count == 4)
    }

    @Test func statsCountPerSubnet() throws {
        let db = try TempDatabase(); defer { db.remove() }
        let ipam = try db.allocator("10.1.2.0/24", "fd00::/64")
        for c in ["a", "b"] { _ = try ipam.allocate(containerID: c, ifname: "eth0") }
        let s = try ipam.stats()
        #expect(s.map(\.used) == [2, 2])
        #expect(s[0].capacity == 253 && s[0].free == 251)
        #expect(s[1].capacity == UInt64.max - 1)
    }

    @Test func checkReturnsTheAllocation() throws {
        let db = try TempDatabase(); defer { db.remove() }
        let ipam = try db.allocator("10.1.2.0/24", "fd00::/64")
        let a = try ipam.allocate(containerID: "a", ifname: "eth0")
        #expect(try ipam.check(containerID: "a", ifname: "eth0") == a)
        #expect(try ipam.check(containerID: "a", ifname: "eth1") == nil)
    }
}
