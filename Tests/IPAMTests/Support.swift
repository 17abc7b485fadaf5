import Foundation
import GRDB
import IPAddressing
@testable import IPAM

/// A state database in a fresh temporary directory, opened the way the agent opens it.
struct TempDatabase {
    let directory: URL
    var path: String { directory.appendingPathComponent("nodenet.db").path }

    init() throws {
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("nodenet-ipam-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
    }

    func open(durable: Bool = false) throws -> DatabasePool {
        try DatabasePool(path: path, configuration: IPAMSchema.databaseConfiguration(durable: durable))
    }

    func allocator(_ subnets: String..., pool: DatabasePool? = nil) throws -> AddressAllocator {
        let prefixes = subnets.map { IPPrefix($0)! }
        return try AddressAllocator(database: pool ?? open(), configuration: IPAMConfiguration(subnets: prefixes))
    }

    func remove() { try? FileManager.default.removeItem(at: directory) }
}

func ip(_ s: String) -> IPAddress { IPAddress(s)! }

extension [Allocation] {
    var addresses: [String] { map(\.address.description) }
}

/// Runs `body` and returns the IPAMError it throws, or nil.
/// Any other error type is reported as a database error so the expectation fails visibly.
func ipamError(_ body: () throws -> Void) -> IPAMError? {
    do { try body(); return nil } catch let e as IPAMError { return e } catch {
        return .database(operation: "unexpected error type", message: "\(error)")
    }
}
