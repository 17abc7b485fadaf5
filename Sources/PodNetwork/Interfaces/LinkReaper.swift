import Dispatch
import Netlink
import Synchronization

/// Deletes pod veths off the DEL's reply path. Unregistering a network device waits for RCU
/// grace periods, 10-15 ms here: most of a DEL, and a runtime waits for every DEL. The address
/// and the attachment record are released before the reply; the interface follows a few
/// milliseconds later on this serial queue.
///
/// Deletes by ifindex captured at DEL time, never by name: an ADD may recreate the same host
/// name (it is derived from container id and ifname) before the queue gets to it, and the
/// kernel does not hand an ifindex out again while the old device could still be queued here.
final class LinkReaper: Sendable {
    /// Its own socket: a slow delete must not hold the shared host session's exchange lock,
    /// which every concurrent ADD needs.
    private let client: RouteClient
    private let queue = DispatchQueue(label: "nodenet.pod-link-reaper")
    /// Deletes queued and not yet run.
    private let pending = Atomic<Int>(0)

    init(client: RouteClient) {
        self.client = client
    }

    func delete(index: Int32) {
        pending.add(1, ordering: .relaxed)
        queue.async { [client] in
            _ = try? client.deleteLink(index: index)  // already gone: its namespace was deleted first
            self.pending.subtract(1, ordering: .relaxed)
        }
    }

    var hasPending: Bool { pending.load(ordering: .relaxed) > 0 }

    /// Returns once every delete queued before the call has run.
    func drain() {
        queue.sync {}
    }
}
