import ClusterState
import Foundation

public struct EtcdWriteError: Error, CustomStringConvertible, Sendable {
    public var object: ObjectKey?
    public var message: String
    public var description: String {
        object.map { "\($0): \(message)" } ?? message
    }
}

/// Writes `nodenet apply` / `nodenet delete` into etcd from any node: every change of a call
/// in one transaction, so all of them land or none does. The writing node's own store then
/// learns the changes through its watch, like every other node's.
public struct EtcdWriter: Sendable {
    public let client: EtcdClient
    public let keys: EtcdKeys

    public init(client: EtcdClient, prefix: String = "/nodenet") {
        self.client = client
        keys = EtcdKeys(prefix: prefix)
    }

    /// The transaction's operations; refuses node-local kinds (they never leave the node).
    public func operations(_ changes: [StoreChange]) throws(EtcdWriteError) -> [EtcdOperation] {
        var ops: [EtcdOperation] = []
        for change in changes {
            let key = change.key
            guard ObjectKind.manifestKinds.contains(key.kind) else {
                throw EtcdWriteError(object: key, message: "\(key.kind.rawValue) is node-local and is not written to etcd")
            }
            switch change {
            case .upsert(let object):
                do {
                    ops.append(.put(keys.key(for: key), try ObjectCoding.encode(object)))
                } catch {
                    throw EtcdWriteError(object: key, message: "cannot encode: \(error)")
                }
            case .delete:
                ops.append(.delete(keys.key(for: key)))
            }
        }
        return ops
    }

    /// Applies the changes in one etcd transaction; returns the revision it created.
    /// etcd refuses transactions over `--max-txn-ops` operations (128 by default).
    @discardableResult
    public func apply(_ changes: [StoreChange]) async throws -> Int64 {
        let ops = try operations(changes)
        guard !ops.isEmpty else { return 0 }
        let result = try await client.txn(if: [], then: ops)
        guard result.succeeded else {
            throw EtcdWriteError(object: nil, message: "etcd did not run the transaction of \(ops.count) changes")
        }
        return result.revision
    }
}
