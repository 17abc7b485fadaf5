@_exported import CNIProtocol  // the agent side speaks the protocol types; users of PodNetwork get them too
import ClusterState
import Foundation
import GRDB
import IPAddressing
import IPAM
import Logging
import Netlink
import Synchronization

public struct PodNetworkConfiguration: Sendable {
    public var bridgeName: String
    /// The pod interfaces' MTU (the underlay's, less the overlay's overhead).
    public var mtu: UInt32
    /// The node-local DNS addresses, at most one per family; each pod gets those of its own
    /// families in resolv.conf.
    public var dnsServers: [String]
    public var clusterDomain: String
    public var runDir: String

    public init(bridgeName: String = "nodenet0", mtu: UInt32 = 1500, dnsServers: [String] = [], clusterDomain: String = "cluster.local",
                runDir: String = "/run/nodenet") {
        self.bridgeName = bridgeName
        self.mtu = mtu
        self.dnsServers = dnsServers
        self.clusterDomain = clusterDomain
        self.runDir = runDir
    }
}

/// The agent side of CNI: turns validated requests into pod interfaces, addresses and store
/// records. Safe to call concurrently (a runtime starts many pods at once): the kernel work
/// for different pods runs in parallel, the address allocator serialises in its database, and
/// the store records each attachment the moment its ADD succeeds.
public final class PodNetwork: Sendable {
    public let configuration: PodNetworkConfiguration
    let store: ClusterStore
    let database: any DatabaseWriter
    let interfaces: PodInterfaces
    let hostPorts: HostPortTable
    let logger: Logger
    private let state = Mutex<State>(State())
    /// ADDs between their address allocation and their attachment record (counted: a repeated
    /// ADD of the same attachment may overlap). A GC must leave their addresses alone: no
    /// valid list and no store snapshot can name them yet.
    private let addsInFlight = Mutex<[AttachmentID: Int]>([:])
    /// Test seams; nil in the agent.
    let testHooks = Mutex<TestHooks>(TestHooks())
    /// What an ADD waits for after its attachment is recorded and before it replies: the
    /// agent's network policy enforcement, so that the pod's first packet meets its policies.
    /// Given the store version holding the attachment; throws to fail the ADD (undone).
    private let admission = Mutex<(@Sendable (PodAttachment, UInt64) async throws -> Void)?>(nil)

    public func setAdmission(_ gate: (@Sendable (PodAttachment, UInt64) async throws -> Void)?) {
        admission.withLock { $0 = gate }
    }
    var admissionGate: (@Sendable (PodAttachment, UInt64) async throws -> Void)? { admission.withLock { $0 } }

    struct TestHooks {
        /// Runs in ADD right after its addresses are allocated (before the interfaces and the record).
        var afterAllocation: (@Sendable (AttachmentID) async -> Void)?
    }

    struct State {
        var allocator: AddressAllocator?
        var podCIDRs: [IPPrefix] = []
        var bridge: Link?
    }

    /// `reaperClient`: a second rtnetlink client in the host's namespace; with it a DEL
    /// replies before the kernel has finished unregistering the pod's veth (PodInterfaces).
    /// `nftables`: a netfilter session for the host port chains; without one, ADDs that ask
    /// for port mappings fail.
    public init(configuration: PodNetworkConfiguration, store: ClusterStore, database: any DatabaseWriter, host: RouteClient,
                reaperClient: RouteClient? = nil, nftables: NetlinkSession? = nil, logger: Logger) {
        self.configuration = configuration
        self.store = store
        self.database = database
        interfaces = PodInterfaces(host: host, bridgeName: configuration.bridgeName, reaperClient: reaperClient)
        hostPorts = HostPortTable(session: nftables)
        self.logger = logger
    }

    public var podCIDRs: [IPPrefix] { state.withLock { $0.podCIDRs } }

    /// Sets the node's pod subnets: the bridge gets their gateway addresses (added, never
    /// flushed) and new allocations come from them. Existing reservations are kept.
    public func updatePodCIDRs(_ cidrs: [IPPrefix]) throws {
        guard !cidrs.isEmpty else { return }
        if cidrs == podCIDRs, state.withLock({ $0.bridge != nil }) { return }
        let allocator = try AddressAllocator(database: database, configuration: try IPAMConfiguration(subnets: cidrs))
        let gateways = cidrs.compactMap { c in c.address(at: 1).map { IPPrefix(address: $0, length: c.length) } }
        let bridge = try interfaces.ensureBridge(gateways: gateways, mtu: nil)
        let changed = state.withLock { s in
            defer { s.allocator = allocator; s.podCIDRs = cidrs; s.bridge = bridge }
            return s.podCIDRs != cidrs
        }
        if changed { syncHostPorts(reason: "pod subnets changed") }  // the hairpin rules name them
        let outside = (try? allocator.reservationsOutsideSubnets()) ?? []
        if !outside.isEmpty {
            logger.warning("addresses outside the node's pod subnets are still reserved; they are released when their pods are deleted",
                           metadata: ["count": "\(outside.count)", "subnets": "\(cidrs.map(\.description))"])
        }
    }

    /// Start-up repair: finishes DELs queued while the agent was down, and forgets attachments
    /// whose network namespace is gone and reservations that never got an attachment record
    /// (an ADD interrupted by a crash). Returns what it released.
    @discardableResult
    public func reconcile() async -> Int {
        await BlockingWork.perform { await reconcileBlocking() }
    }

    private func reconcileBlocking() async -> Int {
        var released = 0
        hostPorts.load(Array(await store.snapshot().attachments.values))
        let pending = PendingDeletes(runDir: configuration.runDir)
        for (path, entry) in pending.list() {
            if let entry {
                // A release that fails stays queued for the next start.
                guard let did = await removeLogged(containerID: entry.containerID, ifname: entry.ifname, reason: "queued DEL") else { continue }
                released += did ? 1 : 0
            } else {
                logger.warning("unreadable pending delete removed", metadata: ["file": "\(path)"])
            }
            pending.remove(path)
        }
        // A pod is gone when its namespace is: then the kernel has removed its veth pair too.
        // The host side is what decides, because the namespace's path may be one the agent
        // cannot see (the runtime's mounts in another mount namespace; the plugin hands the
        // namespace over on ADD). Without a link list (netlink failing) nothing is released.
        let snapshot = await store.snapshot()
        if let links = try? interfaces.host.links() {
            let present = Set(links.map(\.name))
            for attachment in snapshot.attachments.values
            where !present.contains(attachment.hostInterface) && !FileManager.default.fileExists(atPath: attachment.netns) {
                released += await removeLogged(containerID: attachment.containerID, ifname: attachment.ifname, reason: "network namespace gone") == true ? 1 : 0
            }
        }
        if let allocator = state.withLock({ $0.allocator }) {
            let known = Set(await store.snapshot().attachments.values.map { AttachmentID(containerID: $0.containerID, ifname: $0.ifname) })
            let orphans = Set(((try? allocator.allocations()) ?? []).map(\.attachment)).subtracting(known)
            for id in orphans {
                released += await removeLogged(containerID: id.containerID, ifname: id.ifname, reason: "reservation without attachment") == true ? 1 : 0
            }
        }
        // Rules of pods attached before a restart are kept as they are (no flush); what
        // drifted while the agent was away (a rule deleted, a pod gone) is repaired here.
        syncHostPorts(reason: "start-up")
        return released
    }

    /// Rewrites the host port chains from the table; a failure is logged (the next change or
    /// start-up repairs it). Returns false on failure.
    @discardableResult
    func syncHostPorts(reason: String) -> Bool {
        do {
            let changed = try hostPorts.sync(podCIDRs: podCIDRs)
            if changed > 0 { logger.info("host port rules updated", metadata: ["changed": "\(changed)", "reason": "\(reason)"]) }
            return true
        } catch {
            logger.error("cannot program the host port rules", metadata: ["error": "\(error)", "reason": "\(reason)"])
            return false
        }
    }

    /// One pass of the host port reconciler (the agent runs it at start, periodically and
    /// with backoff while a chain fails): every host port chain brought to the attachments'
    /// mappings, one status per chain and family. Blocking (netlink).
    public func reconcileHostPorts() -> [KernelObjectStatus] {
        let (objects, changed) = hostPorts.reconcile(podCIDRs: podCIDRs)
        if changed > 0 { logger.notice("host port rules repaired", metadata: ["changed": "\(changed)"]) }
        return objects
    }

    /// Everything DEL does, without the CNI envelope. True when something was released.
    /// The record goes first: when it cannot be deleted, nothing else is released and the
    /// error is thrown (the runtime retries DEL), so an address is never free while a record
    /// still names it. An address release that fails is thrown too (the retry finishes it).
    @discardableResult
    func remove(containerID: String, ifname: String, reason: String) async throws -> Bool {
        let hostName = HostInterfaceName.forAttachment(containerID: containerID, ifname: ifname)
        var did = false
        let key = ObjectKey(.attachment, name: "\(containerID)/\(ifname)")
        if await store.snapshot()[key] != nil {
            do {
                try await store.commit([.delete(key)])
            } catch {
                throw RemoveError(step: "delete the attachment record", underlying: "\(error)")
            }
            did = true
        }
        if let allocator = state.withLock({ $0.allocator }) {
            do {
                if !(try allocator.release(containerID: containerID, ifname: ifname)).isEmpty { did = true }
            } catch {
                throw RemoveError(step: "release the addresses", underlying: "\(error)")
            }
        }
        if hostPorts.release(key: "\(containerID)/\(ifname)") {
            did = true
            syncHostPorts(reason: "attachment \(containerID)/\(ifname) released")
        }
        if (try? interfaces.release(hostName: hostName)) == true { did = true }
        if did { logger.info("attachment released", metadata: ["container": "\(containerID)", "ifname": "\(ifname)", "reason": "\(reason)"]) }
        return did
    }

    /// `remove` for start-up repair: a failure is logged and answered nil.
    func removeLogged(containerID: String, ifname: String, reason: String) async -> Bool? {
        do {
            return try await remove(containerID: containerID, ifname: ifname, reason: reason)
        } catch {
            logger.error("cannot release attachment", metadata: [
                "container": "\(containerID)", "ifname": "\(ifname)", "reason": "\(reason)", "error": "\(error)",
            ])
            return nil
        }
    }

    struct RemoveError: Error, CustomStringConvertible {
        var step: String
        var underlying: String
        var description: String { "cannot \(step): \(underlying)" }
    }

    /// Marks an ADD of `id` as between allocation and record until `body` returns.
    func inFlight<T>(_ id: AttachmentID, _ body: () async throws -> T) async rethrows -> T {
        addsInFlight.withLock { $0[id, default: 0] += 1 }
        defer {
            addsInFlight.withLock { s in
                if let n = s[id], n > 1 { s[id] = n - 1 } else { s[id] = nil }
            }
        }
        return try await body()
    }

    /// The ADDs now between allocation and record.
    var addsInProgress: Set<AttachmentID> { addsInFlight.withLock { Set($0.keys) } }

    /// Waits until background interface removals have run (see `PodInterfaces.release`).
    public func drainReleases() {
        interfaces.drainReleases()
    }

    /// Pod addresses allocated and free per subnet (empty before the node has a pod subnet).
    /// Reads the IPAM database: call it off the cooperative pool's hot paths (metrics scrapes).
    public func addressUsage() -> [SubnetUsage] {
        (try? current().0?.stats()) ?? []
    }

    func current() -> (AddressAllocator?, Link?) {
        state.withLock { ($0.allocator, $0.bridge) }
    }
}
