// Crash safety with a real kill -9: the test binary re-runs itself as a child that
// allocates and releases in a loop, logging each reply only after it returned (the moment
// a CNI reply would reach the runtime). The parent kills it at a random moment, reopens the
// database and checks that every logged allocation is there, no released one is, and no
// address has two holders.
import Foundation
import GRDB
import IPAddressing
import NodenetTestSupport
import Testing
@testable import IPAM

private let childDatabaseKey = "NODENET_IPAM_CRASH_DB"
private let childLogKey = "NODENET_IPAM_CRASH_LOG"
private let childStartKey = "NODENET_IPAM_CRASH_START"
private let crashSubnets = ["10.3.0.0/16", "fd00:3::/64"]
private let liveWindow = 50

@Suite struct CrashTests {
    @Test(.enabled(if: ProcessInfo.processInfo.environment[childDatabaseKey] != nil))
    func crashChild() throws {
        let env = ProcessInfo.processInfo.environment
        let db = try DatabasePool(path: env[childDatabaseKey]!, configuration: IPAMSchema.databaseConfiguration())
        let ipam = try AddressAllocator(database: db, configuration: IPAMConfiguration(subnets: crashSubnets.map { IPPrefix($0)! }))
        let log = open(env[childLogKey]!, O_WRONLY | O_APPEND | O_CREAT, 0o644)
        #expect(log >= 0)
        func record(_ line: String) {
            var bytes = Array((line + "\n").utf8)
            _ = write(log, &bytes, bytes.count)  // unbuffered: in the page cache before the next step
        }
        let start = Int(env[childStartKey] ?? "0") ?? 0
        let deadline = ContinuousClock.now + .seconds(10)
        for i in start..<(start + 20_000) where ContinuousClock.now < deadline {
            let got = try ipam.allocate(containerID: "c\(i)", ifname: "eth0")
            record("A c\(i) " + got.map { $0.address.address.description }.joined(separator: " "))
            if i - start >= liveWindow {
                try ipam.release(containerID: "c\(i - liveWindow)", ifname: "eth0")
                record("R c\(i - liveWindow)")
            }
        }
    }

    @Test(.timeLimit(.minutes(1)))
    func killNineNeverLosesOrDoublesAnAddress() throws {
        let db = try TempDatabase(); defer { db.remove() }
        let logPath = db.directory.appendingPathComponent("replies.log").path
        var rng = SystemRandomNumberGenerator()
        var uncertain: Set<String> = []
        for round in 0..<4 {
            var env = ProcessInfo.processInfo.environment
            env[childDatabaseKey] = db.path
            env[childLogKey] = logPath
            env[childStartKey] = String(round * 100_000)
            let child = try ChildProcess([URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath().path,
                                          "--testing-library", "swift-testing", "--filter", "crashChild"], environment: env)
            // Wait for the child to be busy allocating, then kill it at a random moment.
            let linesBefore = logLines(logPath).count
            let waitStart = ContinuousClock.now
            while logLines(logPath).count < linesBefore + 20, ContinuousClock.now - waitStart < .seconds(20), child.isRunning {
                usleep(2_000)
            }
            usleep(UInt32.random(in: 0..<150_000, using: &rng))
            #expect(child.isRunning, "child stopped before the kill (round \(round))")
            child.signal(SIGKILL)
            #expect(child.waitUntilExit() == SIGKILL, "killed by the signal, not exited")

            try verify(databasePath: db, logPath: logPath, round: round, uncertain: &uncertain)
        }
    }

    /// `uncertain` carries, across rounds, the attachments whose release was in flight at a kill.
    private func verify(databasePath db: TempDatabase, logPath: String, round: Int, uncertain: inout Set<String>) throws {
        var live: [String: [IPAddress]] = [:]
        var released: Set<String> = []
        var lastLine: [String] = []
        for line in logLines(logPath) {
            let parts = line.split(separator: " ").map(String.init)
            if parts.first == "A", !uncertain.contains(parts[1]) { live[parts[1]] = parts.dropFirst(2).map { IPAddress($0)! } }
            if parts.first == "R" { live[parts[1]] = nil; released.insert(parts[1]); uncertain.remove(parts[1]) }
            if parts.isEmpty == false { lastLine = parts }
        }
        // The operation in flight at the kill may have committed without its reply: after
        // "A cN" that is the release of cN-50, which then may or may not still be held.
        if lastLine.first == "A", let n = Int(lastLine[1].dropFirst()), n % 100_000 >= liveWindow {
            let pending = "c\(n - liveWindow)"
            if live[pending] != nil { live[pending] = nil; uncertain.insert(pending) }
        }
        #expect(live.count >= 20)
        let pool = try db.open()
        #expect(try pool.read { try String.fetchOne($0, sql: "PRAGMA integrity_check") } == "ok")
        let ipam = try AddressAllocator(database: pool, configuration: IPAMConfiguration(subnets: crashSubnets.map { IPPrefix($0)! }))
        let rows = try ipam.allocations()
        let holders = Dictionary(grouping: rows, by: \.address)
        #expect(holders.values.allSatisfy { $0.count == 1 }, "an address has two holders after round \(round)")
        let byContainer = Dictionary(grouping: rows, by: \.attachment.containerID)
        for (container, addresses) in live {
            #expect(Set(byContainer[container]?.map(\.address) ?? []) == Set(addresses),
                    "reply for \(container) was sent but its reservation is not as replied (round \(round))")
        }
        for container in released { #expect(byContainer[container] == nil, "\(container) was released but is still held") }
        // Beyond the replied ones, only in-flight operations' attachments may be held: one
        // allocation per kill so far (those never replied; GC's job) and the uncertain releases.
        #expect(byContainer.count <= live.count + uncertain.count + round + 1)
    }
}

private func logLines(_ path: String) -> [Substring] {
    guard let data = FileManager.default.contents(atPath: path) else { return [] }
    // A line cut by the kill has no newline yet; ignore it.
    let text = String(decoding: data, as: UTF8.self)
    var lines = text.split(separator: "\n", omittingEmptySubsequences: true)
    if !text.hasSuffix("\n"), !lines.isEmpty { lines.removeLast() }
    return lines
}
