import ClusterState
import Foundation
import IPAddressing

/// Applies transactions by piping an nft script to `nft -f -` in the current network namespace
/// (one script is one kernel transaction), and reads state back with `nft -j list table`.
/// For tests and as a fallback until the netlink encoder lands: it costs a process per sync and
/// a text round trip, and it cannot read rules back (chains come back with `rules == nil`).
public struct NftCommandBackend: RulesetBackend {
    public var nftPath: String
    public var conntrackPath: String
    public var tableName: String
    /// Prefix for every command, e.g. ["ip", "netns", "exec", "NS"] in tests.
    public var commandPrefix: [String]

    public init(tableName: String = "nodenet", nftPath: String = "/usr/sbin/nft", conntrackPath: String = "/usr/sbin/conntrack",
                commandPrefix: [String] = []) {
        self.tableName = tableName
        self.nftPath = nftPath
        self.conntrackPath = conntrackPath
        self.commandPrefix = commandPrefix
    }

    public func apply(_ ops: [RulesetOperation]) async throws(BackendError) {
        guard !ops.isEmpty else { return }
        let script = NftRenderer(tableName: tableName).script(ops)
        let r = try run([nftPath, "-f", "-"], stdin: script, what: "nft -f")
        guard r.status == 0 else {
            throw BackendError(operation: "nft -f (\(ops.count) operations)", message: r.stderr.trimmed,
                               context: String(script.prefix(400)))
        }
    }

    public func currentState() async throws(BackendError) -> RulesetModel? {
        var model = RulesetModel()
        for family in TableFamily.allCases {
            let r = try run([nftPath, "-j", "list", "table", family.rawValue, tableName], stdin: nil, what: "nft list")
            guard r.status == 0 else {
                if r.stderr.contains("No such file or directory") { continue }
                throw BackendError(operation: "nft -j list table \(family.rawValue) \(tableName)", message: r.stderr.trimmed)
            }
            do {
                model.tables[family] = try NftJSONReader(family: family).table(Data(r.stdout.utf8))
            } catch {
                throw BackendError(operation: "decode nft -j output", message: "\(error)")
            }
        }
        return model.tables.isEmpty ? nil : model
    }

    public func deleteConntrack(_ filters: [ConntrackFilter]) async throws(BackendError) {
        for f in filters {
            // Exit status 1 with "0 flow entries" just means nothing matched.
            let r = try run([conntrackPath, "-D"] + f.conntrackArguments, stdin: nil, what: "conntrack -D")
            if r.status != 0, !r.stderr.contains("0 flow entries") {
                throw BackendError(operation: "conntrack -D \(f.conntrackArguments.joined(separator: " "))", message: r.stderr.trimmed)
            }
        }
    }

    struct Output { var status: Int32; var stdout: String; var stderr: String }

    private func run(_ argv: [String], stdin: String?, what: String) throws(BackendError) -> Output {
        let full = commandPrefix + argv
        let p = Process()
        p.executableURL = URL(fileURLWithPath: full[0])
        p.arguments = Array(full.dropFirst())
        let out = Pipe(), err = Pipe(), input = Pipe()
        p.standardOutput = out
        p.standardError = err
        p.standardInput = stdin == nil ? FileHandle.nullDevice : input
        do { try p.run() } catch { throw BackendError(operation: what, message: "cannot start \(full[0]): \(error)") }
        // Read both pipes concurrently with the write so a large script or listing never deadlocks.
        let collected = OutputBox()
        let group = DispatchGroup()
        for (pipe, isOut) in [(out, true), (err, false)] {
            group.enter()
            DispatchQueue.global().async {
                let d = pipe.fileHandleForReading.readDataToEndOfFile()
                collected.set(d, stdout: isOut)
                group.leave()
            }
        }
        if let stdin {
            input.fileHandleForWriting.write(Data(stdin.utf8))
            try? input.fileHandleForWriting.close()
        }
        p.waitUntilExit()
        group.wait()
        return Output(status: p.terminationStatus, stdout: collected.stdout, stderr: collected.stderr)
    }
}

/// Collects a child's output from two reader threads.
private final class OutputBox: @unchecked Sendable {
    // @unchecked: both fields are only touched under `lock`.
    private let lock = NSLock()
    private var out = Data(), err = Data()
    func set(_ d: Data, stdout: Bool) { lock.lock(); if stdout { out = d } else { err = d }; lock.unlock() }
    var stdout: String { lock.lock(); defer { lock.unlock() }; return String(decoding: out, as: UTF8.self) }
    var stderr: String { lock.lock(); defer { lock.unlock() }; return String(decoding: err, as: UTF8.self) }
}

extension String {
    var trimmed: String { trimmingCharacters(in: .whitespacesAndNewlines) }
}
