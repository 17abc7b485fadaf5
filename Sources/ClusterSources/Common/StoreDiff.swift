import ClusterState

/// The pure half of a re-list: what must change in the store so that the objects a feed owns
/// are exactly the listed ones. Never "drop and rebuild": actors subscribed to the store must
/// only see the objects that really changed.
public enum StoreDiff {
    /// - Parameters:
    ///   - listed: every object the source reported (later duplicates of a key win).
    ///   - current: the store now.
    ///   - owns: whether a stored object is under this feed's authority; objects it owns that
    ///     the list lacks are deleted, all others are left alone.
    /// - Returns: upserts for new or different objects, then deletes, in key order.
    public static func changes(listed: [ClusterObject], current: ClusterSnapshot,
                               owns: (ClusterObject) -> Bool) -> [StoreChange] {
        var wanted: [ObjectKey: ClusterObject] = [:]
        for object in listed { wanted[object.key] = object }
        var out: [StoreChange] = []
        for (key, object) in wanted.sorted(by: { $0.key < $1.key }) where current[key] != object {
            out.append(.upsert(object))
        }
        for object in current.allObjects where owns(object) && wanted[object.key] == nil {
            out.append(.delete(object.key))
        }
        return out
    }

    /// Deletes, in key order, for the objects of `kinds` this feed owns that a list did not
    /// have (`seen`): the end of a streaming list, whose pages were applied as upserts.
    public static func deletions(seen: Set<ObjectKey>, current: ClusterSnapshot, kinds: [ObjectKind],
                                 owns: (ClusterObject) -> Bool) -> [StoreChange] {
        var out: [ObjectKey] = []
        for kind in Set(kinds) {
            current.forEachObject(of: kind) { object in
                if !seen.contains(object.key), owns(object) { out.append(object.key) }
            }
        }
        return out.sorted().map(StoreChange.delete)
    }
}
