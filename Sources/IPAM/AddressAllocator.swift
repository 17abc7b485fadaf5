// The node's address allocator. Every public mutation is one IMMEDIATE write transaction:
// either all of an attachment's addresses (one per family) are committed, or none are,
// and the schema's keys make a double grant impossible even after a crash mid-write.
import Foundation
import GRDB
import IPAddressing

public final class AddressAllocator: Sendable {
    public let configuration: IPAMConfiguration
    private let database: any DatabaseWriter
    private let pools: [AddressPool]
    /// The configured families in first-seen order: one address of each per attachment.
    public let families: [IPFamily]

    /// Validates the subnets and creates the IPAM tables if needed. Existing reservations
    /// are kept whatever the subnets; `reservationsOutsideSubnets()` lists the ones that no
    /// longer fit, for the agent to decide about (they are never dropped silently).
    public init(database: any DatabaseWriter, configuration: IPAMConfiguration) throws(IPAMError) {
        pools = try configuration.pools()
        var families: [IPFamily] = []
        for p in pools where !families.contains(p.family) { families.append(p.family) }
        self.families = families
        self.configuration = configuration
        self.database = database
        try IPAMSchema.migrate(database)
    }

    /// Reserves one address of each configured family for the attachment. A requested
    /// address (from `runtimeConfig.ips`, `args` or `CNI_ARGS IP=`) is used for its family
    /// when it is free; other families get the next free address round-robin.
    public func allocate(containerID: String, ifname: String, requested: [IPAddress] = []) throws(IPAMError) -> [Allocation] {
        let id = try attachment(containerID, ifname)
        let wanted = try requestedPlacements(requested)
        return try transaction("allocating addresses for \(id)") { db in
            let held = try Store.reservations(of: id, db)
            guard held.isEmpty else { throw IPAMError.alreadyAllocated(id, held.map(\.address)) }
            var granted: [Allocation] = []
            for family in families {
                let pool: AddressPool, address: IPAddress
                if let (p, a) = wanted[family] {
                    if let holder = try Store.holder(of: a, db) {
                        throw IPAMError.requestedTaken(a, subnet: p.subnet, holder: holder)
                    }
                    (pool, address) = (p, a)
                } else {
                    (pool, address) = try nextFree(family, db)
                    try Store.setCursor(pool, address, db)
                }
                try Store.insert(address, pool: pool, id, db)
                granted.append(pool.allocation(address))
            }
            return granted
        }
    }

    /// Frees the attachment's addresses and returns what was freed. Idempotent: an unknown
    /// attachment frees nothing and succeeds (CNI DEL must).
    @discardableResult
    public func release(containerID: String, ifname: String) throws(IPAMError) -> [Reservation] {
        let id = AttachmentID(containerID: containerID, ifname: ifname)
        return try transaction("releasing \(id)") { db in
            let held = try Store.reservations(of: id, db)
            try Store.delete(id, db)
            return held
        }
    }

    /// The attachment's addresses, or nil when it holds none (CHECK then fails).
    public func check(containerID: String, ifname: String) throws(IPAMError) -> [Allocation]? {
        let id = AttachmentID(containerID: containerID, ifname: ifname)
        let held = try read("reading \(id)") { db in try Store.reservations(of: id, db) }
        return held.isEmpty ? nil : held.map(allocation(for:))
    }

    /// Frees every reservation whose attachment is not in `valid` (CNI GC with
    /// `cni.dev/valid-attachments`). `allocatedBefore` (unix seconds) spares reservations
    /// made after that moment, for callers whose valid set may lag fresh ADDs.
    @discardableResult
    public func garbageCollect(keeping valid: Set<AttachmentID>, allocatedBefore: Int64? = nil) throws(IPAMError) -> [Reservation] {
        try transaction("garbage-collecting reservations") { db in
            let stale = try Store.allReservations(db).filter { r in
                !valid.contains(r.attachment) && (allocatedBefore.map { r.createdAt < $0 } ?? true)
            }
            for id in Set(stale.map(\.attachment)) { try Store.delete(id, db) }
            return stale
        }
    }

    /// Every reservation, ordered by family and address.
    public func allocations() throws(IPAMError) -> [Reservation] {
        try read("listing reservations") { db in try Store.allReservations(db) }
    }

    /// Reservations whose address lies in none of the configured subnets (left over after the
    /// node's podCIDR changed). They still block nothing, since their addresses are not in a
    /// pool; the agent releases them once their pods are gone.
    public func reservationsOutsideSubnets() throws(IPAMError) -> [Reservation] {
        try allocations().filter { r in !pools.contains { $0.subnet.contains(r.address) } }
    }

    /// Used and free addresses per configured subnet.
    public func stats() throws(IPAMError) -> [SubnetUsage] {
        try read("counting reservations") { db in
            try pools.map { p in SubnetUsage(subnet: p.subnet, capacity: p.capacity, used: try Store.count(in: p, db)) }
        }
    }

    // MARK: - Internals

    private func attachment(_ containerID: String, _ ifname: String) throws(IPAMError) -> AttachmentID {
        let id = AttachmentID(containerID: containerID, ifname: ifname)
        guard !containerID.isEmpty, !ifname.isEmpty else { throw .invalidAttachment(id) }
        return id
    }

    /// Maps requested addresses to their pools; checks everything that needs no database.
    private func requestedPlacements(_ requested: [IPAddress]) throws(IPAMError) -> [IPFamily: (AddressPool, IPAddress)] {
        var placements: [IPFamily: (AddressPool, IPAddress)] = [:]
        for family in IPFamily.allCases {
            let asked = requested.filter { $0.family == family }
            guard let address = asked.first else { continue }
            guard asked.count == 1 else { throw .requestedTwice(family, asked) }
            guard let pool = pools.first(where: { $0.subnet.contains(address) }) else {
                throw .requestedOutside(address, subnets: pools.filter { $0.family == family }.map(\.subnet))
            }
            guard pool.assignableOffset(of: address) != nil else { throw .requestedReserved(address, subnet: pool.subnet) }
            placements[family] = (pool, address)
        }
        return placements
    }

    /// The next free address of the family: the subnets in configured order, each searched
    /// round-robin from its cursor.
    private func nextFree(_ family: IPFamily, _ db: Database) throws -> (AddressPool, IPAddress) {
        let candidates = pools.filter { $0.family == family }
        for pool in candidates {
            if let offset = try FreeAddressSearch.next(in: pool, db) { return (pool, pool.address(at: offset)) }
        }
        let inUse = try candidates.reduce(UInt64(0)) { $0 + (try Store.count(in: $1, db)) }
        throw IPAMError.exhausted(family: family, subnets: candidates.map(\.subnet), inUse: inUse)
    }

    private func allocation(for r: Reservation) -> Allocation {
        if let pool = pools.first(where: { $0.subnet.contains(r.address) }) { return pool.allocation(r.address) }
        // Outside today's subnets: describe it with the subnet it was allocated from.
        let gateway = r.subnet.address(at: 1) ?? r.subnet.address
        return Allocation(address: IPPrefix(address: r.address, length: r.subnet.length), gateway: gateway, subnet: r.subnet)
    }

    private func transaction<T>(_ operation: @autoclosure () -> String, _ body: (Database) throws -> T) throws(IPAMError) -> T {
        do {
            return try database.writeWithoutTransaction { db in
                var result: T?
                // IMMEDIATE takes the write lock up front, so the read-then-insert below can
                // never fail half-way with SQLITE_BUSY on a lock upgrade.
                try db.inTransaction(.immediate) {
                    result = try body(db)
                    return .commit
                }
                return result!
            }
        } catch let error as IPAMError {
            throw error
        } catch {
            throw .database(operation: operation(), message: "\(error)")
        }
    }

    private func read<T>(_ operation: @autoclosure () -> String, _ body: (Database) throws -> T) throws(IPAMError) -> T {
        do {
            return try database.read(body)
        } catch let error as IPAMError {
            throw error
        } catch {
            throw .database(operation: operation(), message: "\(error)")
        }
    }
}
