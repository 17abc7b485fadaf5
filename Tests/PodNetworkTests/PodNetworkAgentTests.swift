import ClusterState
import Foundation
import class GRDB.DatabaseQueue
import IPAM
import IPAddressing
import Logging
import Netlink
import NodenetTestSupport
import Synchronization
import Testing
@testable import PodNetwork

/// The agent side of CNI in-process, against the real kernel in namespaces of the test's own,
/// where a test can stop an ADD half-way or make the store fail.
@Suite(.serialized, .enabled(if: isPrivileged, "needs root and iproute2"))
struct PodNetworkAgentTests {
    /// The state database, with deletes that fail on demand (a full disk, a locked database).
    final class FlakyPersistence: StorePersistence {
        let base: StateDatabase
        let failDeletes = Mutex(false)
        init(_ base: StateDatabase) { self.base = base }

        func save(_ changes: [ObjectChange]) throws(PersistenceError) {
            if failDeletes.withLock({ $0 }), changes.contains(where: { $0.new == nil }) {
                throw PersistenceError("delete", "database or disk is full")
            }
            try base.save(changes)
        }
    }

    final class Fixture: Sendable {
        let node: TestNamespace
        let dir = TempDirectory()
        let database: StateDatabase
        let persistence: FlakyPersistence
        let store: ClusterStore
        let pods: PodNetwork

        init() async throws {
            node = try TestNamespace("node")
            database = try StateDatabase(directory: dir.file("state"))
            persistence = FlakyPersistence(database)
            store = ClusterStore(persistence: persistence)
            pods = PodNetwork(configuration: PodNetworkConfiguration(runDir: dir.file("run")), store: store, database: database.writer,
                              host: try RouteClient(namespace: NetworkNamespace(path: node.path)), logger: Logger(label: "test"))
            try await pods.updatePodCIDRs([IPPrefix("10.244.1.0/24")!, IPPrefix("fd00:10:244:1::/64")!])
        }

        func close() { node.delete() }

        func request(_ command: String, containerID: String? = nil, netns: String? = nil,
                     config: String = #"{"cniVersion":"1.1.0","name":"nodenet","type":"nodenet"}"#) throws -> CNIRequest {
            var environment = ["CNI_COMMAND": command, "CNI_PATH": "/opt/cni/bin"]
            if let containerID { environment["CNI_CONTAINERID"] = containerID; environment["CNI_IFNAME"] = "eth0" }
            if let netns { environment["CNI_NETNS"] = netns }
            return try CNIRequest.parse(environment: environment, stdin: Array(config.utf8))
        }

        func reservation(_ containerID: String) throws -> [Allocation]? {
            try pods.current().0?.check(containerID: containerID, ifname: "eth0")
        }
    }

    /// `body`'s value, or nil when it takes longer than `seconds`.
    static func within<T: Sendable>(_ seconds: Double, _ body: @escaping @Sendable () async -> T) async -> T? {
        await withTaskGroup(of: T?.self) { group in
            group.addTask { await body() }
            group.addTask { try? await Task.sleep(for: .seconds(seconds)); return nil }
            let first = await group.next() ?? nil
            group.cancelAll()
            return first
        }
    }

    /// A GC that runs while an ADD has allocated its addresses but not yet recorded its
    /// attachment (the runtime's valid list cannot name it yet) leaves those addresses alone.
    @Test func gcSparesTheAddressesOfAnAddInFlight() async throws {
        let f = try await Fixture()
        defer { f.close() }
        let pod = try TestNamespace("pod")
        defer { pod.delete() }
        let id = String(repeating: "e3b0c44298fc1c14", count: 4)
        let (allocated, allocatedSignal) = AsyncStream<Void>.makeStream()
        let (proceed, proceedSignal) = AsyncStream<Void>.makeStream()
        f.pods.testHooks.withLock {
            $0.afterAllocation = { _ in
                allocatedSignal.yield()
                for await _ in proceed { break }
            }
        }
        let add = try f.request("ADD", containerID: id, netns: pod.path)
        let adding = Task { await f.pods.handle(add) }
        let reached = await Self.within(30) { () -> Bool in
            for await _ in allocated { return true }
            return false
        }
        #expect(reached == true, "the ADD reached its allocation")
        #expect(try f.reservation(id) != nil)

        let gc = try f.request("GC", config: #"{"cniVersion":"1.1.0","name":"nodenet","type":"nodenet","cni.dev/valid-attachments":[]}"#)
        let collected = await f.pods.handle(gc)
        #expect(collected.exitCode == 0, "GC: \(String(decoding: collected.stdout, as: UTF8.self))")
        proceedSignal.yield()
        let reply = await Self.within(30) { await adding.value }
        #expect(reply?.exitCode == 0, "ADD: \(reply.map { String(decoding: $0.stdout, as: UTF8.self) } ?? "timed out")")
        let held = try f.reservation(id)
        #expect(held?.count == 2, "GC freed the addresses of an ADD in flight: \(String(describing: held))")
        #expect(await f.store.snapshot()[ObjectKey(.attachment, name: "\(id)/eth0")] != nil)
    }

    /// A DEL whose attachment record cannot be deleted fails, and the address stays reserved
    /// (a record naming a free address could see it handed to another pod); the retried DEL
    /// then releases both.
    @Test func delThatCannotDeleteTheRecordFailsAndKeepsTheAddress() async throws {
        let f = try await Fixture()
        defer { f.close() }
        let pod = try TestNamespace("pod")
        defer { pod.delete() }
        let id = String(repeating: "a94a8fe5ccb19ba6", count: 4)
        let key = ObjectKey(.attachment, name: "\(id)/eth0")
        let added = await f.pods.handle(try f.request("ADD", containerID: id, netns: pod.path))
        #expect(added.exitCode == 0, "\(String(decoding: added.stdout, as: UTF8.self))")

        f.persistence.failDeletes.withLock { $0 = true }
        let failed = await f.pods.handle(try f.request("DEL", containerID: id, netns: pod.path))
        #expect(failed.exitCode != 0, "DEL reported success though its record is still there")
        if case .failure(let error) = failed {
            #expect(error.code == .ioFailure)
            #expect(error.msg.contains("database or disk is full"), "\(error.msg)")
        }
        #expect(await f.store.snapshot()[key] != nil)
        #expect(try f.reservation(id)?.count == 2, "the address was released while the record names it")

        f.persistence.failDeletes.withLock { $0 = false }
        let retried = await f.pods.handle(try f.request("DEL", containerID: id, netns: pod.path))
        #expect(retried.exitCode == 0, "\(String(decoding: retried.stdout, as: UTF8.self))")
        #expect(await f.store.snapshot()[key] == nil)
        #expect(try f.reservation(id) == nil)
    }

    /// Issue 14 item 17: ADDs that wait for a busy state database (a slow disk, another writer)
    /// do not hold Swift's cooperative pool: more of them than the pool has threads, and other
    /// async work still runs; they complete once the database is free. Without the fix each
    /// waiting ADD held a pool thread and nothing else in the agent ran until they finished.
    @Test func addsWaitingForTheDatabaseLeaveTheCooperativePoolFree() async throws {
        let f = try await Fixture()
        defer { f.close() }
        let count = ProcessInfo.processInfo.activeProcessorCount + 1
        let pods = try (0..<count).map { _ in try TestNamespace("pod") }
        defer { for p in pods { p.delete() } }
        // Another connection holds the write lock until told to let go.
        let locked = DispatchSemaphore(value: 0), unlock = DispatchSemaphore(value: 0)
        let other = try DatabaseQueue(path: f.database.path)
        Thread {
            try? other.inDatabase { db in
                try db.execute(sql: "BEGIN IMMEDIATE")
                locked.signal()
                unlock.wait()
                try db.execute(sql: "ROLLBACK")
            }
        }.start()
        #expect(locked.wait(timeout: .now() + 5) == .success)
        let ids = (0..<count).map { i in String(repeating: "c0ffee\(i)0", count: 8) }
        let adds = try zip(ids, pods).map { id, pod in
            let request = try f.request("ADD", containerID: id, netns: pod.path)
            return Task { await f.pods.handle(request) }
        }
        // Probed and released from a thread of its own: with the pool stalled, this test's own
        // task could not go on to release the lock.
        let ran = await withCheckedContinuation { continuation in
            Thread {
                let probe = DispatchSemaphore(value: 0)
                Task.detached { probe.signal() }
                let ran = probe.wait(timeout: .now() + 2) == .success
                unlock.signal()
                continuation.resume(returning: ran)
            }.start()
        }
        for add in adds {
            let reply = await add.value
            #expect(reply.exitCode == 0, "\(String(decoding: reply.stdout, as: UTF8.self))")
        }
        #expect(ran, "a task on the cooperative pool did not run while \(count) ADDs waited for the database")
    }

    /// Issue 14 item 17, the pod subnets: setting them opens IPAM's database, adds the bridge's
    /// gateway addresses over rtnetlink and rewrites the host port chains, all blocking, and
    /// runs on the blocking-work threads, not on the calling task's cooperative thread. Without
    /// the fix `updatePodCIDRs` was synchronous and did it all where it was called.
    @Test func podSubnetsAreSetOffTheCooperativePool() async throws {
        let f = try await Fixture()
        defer { f.close() }
        let seen = Mutex<[Bool]>([])
        f.pods.testHooks.withLock { $0.updatingPodCIDRs = { seen.withLock { $0.append(BlockingWork.onBlockingThread) } } }
        try await f.pods.updatePodCIDRs([IPPrefix("10.244.1.0/24")!, IPPrefix("fd00:10:244:2::/64")!])
        #expect(seen.withLock { $0 } == [true], "the blocking work ran on a blocking-work thread")
        #expect(f.pods.podCIDRs.map(\.description) == ["10.244.1.0/24", "fd00:10:244:2::/64"])
        let bridge = try f.node.check(["ip", "-6", "addr", "show", "dev", "nodenet0"]).stdout
        #expect(bridge.contains("fd00:10:244:2::1/64"), "the new gateway on the bridge: \(bridge)")
    }
}
