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
        var resolved: [RulesetOperation] = []
        for op in ops {
            if case .purgeAffinity(let family, let map, let keep, let strict) = op {
                let doomed = try learnedEntries(family, map).filter { e in
                    keep[e.tuple].map { !$0.contains(e.endpoint) } ?? strict
                }.map(\.key)
                if !doomed.isEmpty { resolved.append(.deleteElements(family, set: map, doomed)) }
            } else {
                resolved.append(op)
            }
        }
        let script = NftRenderer(tableName: tableName).script(resolved)
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

    struct LearnedEntry {
        var key: ElementKey
        var tuple: ElementKey
        var endpoint: ElementKey
    }

    /// The learned entries of the affinity map (`client . tuple : endpoint`), from `nft -j`.
    private func learnedEntries(_ family: TableFamily, _ map: String) throws(BackendError) -> [LearnedEntry] {
        let r = try run([nftPath, "-j", "list", "map", family.rawValue, tableName, map], stdin: nil, what: "nft list map")
        guard r.status == 0 else { throw BackendError(operation: "nft -j list map \(family.rawValue) \(tableName) \(map)", message: r.stderr.trimmed) }
        func value(_ v: Any) -> NFValue? {
            if let s = v as? String {
                if let a = IPAddress(s) { return .address(a) }
                if let p = L4Protocol.allCases.first(where: { $0.nftName == s }) { return .proto(p) }
            }
            if let n = v as? Int, let p = UInt16(exactly: n) { return .port(p) }
            return nil
        }
        func concat(_ v: Any) -> [NFValue]? {
            guard let parts = (v as? [String: Any])?["concat"] as? [Any] else { return nil }
            let values = parts.compactMap(value)
            return values.count == parts.count ? values : nil
        }
        guard let root = try? JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any],
              let items = root["nftables"] as? [[String: Any]] else { return [] }
        var out: [LearnedEntry] = []
        for item in items {
            guard let m = item["map"] as? [String: Any], let elems = m["elem"] as? [Any] else { continue }
            for raw in elems {
                guard let pair = raw as? [Any], pair.count == 2 else { continue }
                // The key may carry its timeout: {"elem": {"val": {"concat": [...]}, ...}}.
                let keyJSON = ((pair[0] as? [String: Any])?["elem"] as? [String: Any])?["val"] ?? pair[0]
                guard let key = concat(keyJSON), key.count == 4, let endpoint = concat(pair[1]) else { continue }
                out.append(LearnedEntry(key: ElementKey(key), tuple: ElementKey(Array(key.dropFirst())), endpoint: ElementKey(endpoint)))
            }
        }
        return out
    }

    /// nft 1.0.6 cannot add a rule using a `typeof` map already in the kernel.
    public var recreatesTypeofMaps: Bool { true }

    @discardableResult
    public func deleteConntrack(_ filters: [ConntrackFilter]) async throws(BackendError) -> Int {
        var deleted = 0
        for f in filters where f.keepingReplySources == nil { deleted += try conntrack("-D", f.conntrackArguments).count }
        // The tool cannot select "reply source none of": list the family's UDP flows once,
        // check each, delete the selected ones by their original tuple.
        for family in [IPFamily.v4, .v6] {
            let index = ConntrackFilterIndex(filters.filter { $0.family == family && $0.keepingReplySources != nil })
            guard !index.isEmpty else { continue }
            let name = family == .v4 ? "ipv4" : "ipv6"
            for line in try conntrack("-L", ["-f", name, "-p", "udp"]).output.split(separator: "\n") {
                guard let e = ConntrackLine(line), index.matches(originalDestination: e.destination, port: e.destinationPort, replySource: e.replySource)
                else { continue }
                deleted += try conntrack("-D", ["-f", name, "-p", "udp", "--orig-src", e.source.description, "--orig-dst", e.destination.description,
                                                "--orig-port-src", String(e.sourcePort), "--orig-port-dst", String(e.destinationPort)]).count
            }
        }
        return deleted
    }

    /// Runs `conntrack <command> <arguments>`: its standard output and the entry count it
    /// reports ("conntrack v1.4.7 (conntrack-tools): 2 flow entries have been deleted.").
    private func conntrack(_ command: String, _ arguments: [String]) throws(BackendError) -> (output: String, count: Int) {
        let r = try run([conntrackPath, command] + arguments, stdin: nil, what: "conntrack \(command)")
        // Exit status 1 with "0 flow entries" just means nothing matched.
        if r.status != 0, !r.stderr.contains("0 flow entries") {
            throw BackendError(operation: "conntrack \(command) \(arguments.joined(separator: " "))", message: r.stderr.trimmed)
        }
        let words = r.stderr.split(separator: " ")
        let count = words.firstIndex(of: "flow").flatMap { $0 > 0 ? Int(words[$0 - 1]) : nil } ?? 0
        return (r.stdout, count)
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
            // The throwing write: should nft exit before reading everything, the EPIPE is its
            // exit status's business, not a trap in the agent (Foundation's `write(_:)` traps).
            try? input.fileHandleForWriting.write(contentsOf: Data(stdin.utf8))
            try? input.fileHandleForWriting.close()
        }
        p.waitUntilExit()
        group.wait()
        return Output(status: p.terminationStatus, stdout: collected.stdout, stderr: collected.stderr)
    }
}

/// One line of `conntrack -L` (`udp 17 29 src=A dst=B sport=a dport=b [UNREPLIED] src=C dst=D ...`):
/// the first src/dst/ports are the original direction, the next src the reply's source.
struct ConntrackLine {
    var source: IPAddress, destination: IPAddress, sourcePort: UInt16, destinationPort: UInt16, replySource: IPAddress

    init?(_ line: Substring) {
        var values: [String: [String]] = [:]
        for word in line.split(separator: " ") {
            guard let eq = word.firstIndex(of: "=") else { continue }
            values[String(word[..<eq]), default: []].append(String(word[word.index(after: eq)...]))
        }
        guard let src = values["src"], src.count >= 2, let dst = values["dst"]?.first,
              let s = IPAddress(src[0]), let d = IPAddress(dst), let r = IPAddress(src[1]),
              let sp = values["sport"]?.first.flatMap({ UInt16($0) }), let dp = values["dport"]?.first.flatMap({ UInt16($0) })
        else { return nil }
        (source, destination, sourcePort, destinationPort, replySource) = (s, d, sp, dp, r)
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
