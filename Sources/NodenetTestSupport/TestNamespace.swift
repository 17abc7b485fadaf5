import Foundation

/// A network namespace a test creates and deletes itself (`ip netns add`), named with a
/// per-process prefix so parallel runs never collide and leftovers of a crashed run of this
/// prefix are cleaned up first. Never touches the root namespace.
public final class TestNamespace: Sendable {
    public let name: String
    public var path: String { "/var/run/netns/\(name)" }

    /// Prefix shared by every namespace this test process creates.
    public static let runPrefix = "nnt\(getpid() % 100000)"

    private static let counter = Counter()

    public init(_ label: String) throws {
        let n = TestNamespace.counter.next()
        name = "\(Self.runPrefix)-\(label.prefix(8))\(n)"
        _ = try? Shell.run(["ip", "netns", "del", name])
        try Shell.check(["ip", "netns", "add", name])
        try Shell.check(["ip", "-n", name, "link", "set", "lo", "up"])
    }

    /// Runs a command inside the namespace.
    @discardableResult
    public func run(_ argv: [String], stdin: String? = nil, timeout: Double = 60) throws -> Shell.Result {
        try Shell.run(["ip", "netns", "exec", name] + argv, stdin: stdin, timeout: timeout)
    }

    @discardableResult
    public func check(_ argv: [String], stdin: String? = nil, timeout: Double = 60) throws -> Shell.Result {
        try Shell.check(["ip", "netns", "exec", name] + argv, stdin: stdin, timeout: timeout)
    }

    /// Kills whatever still runs in the namespace, then deletes it.
    public func delete() {
        if let pids = try? Shell.run(["ip", "netns", "pids", name]) {
            for pid in pids.stdout.split(separator: "\n").compactMap({ Int32($0) }) { kill(pid, SIGKILL) }
        }
        _ = try? Shell.run(["ip", "netns", "del", name])
    }

    deinit { delete() }

    final class Counter: @unchecked Sendable {
        // @unchecked: guarded by the lock.
        private let lock = NSLock()
        private var value = 0
        func next() -> Int { lock.lock(); defer { lock.unlock() }; value += 1; return value }
    }
}

/// A temporary directory removed on deinit.
public final class TempDirectory: Sendable {
    public let path: String

    public init() {
        path = NSTemporaryDirectory() + "nodenet-test-" + UUID().uuidString.prefix(8).lowercased()
        try! FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    }

    public func file(_ name: String) -> String { path + "/" + name }

    public func write(_ name: String, _ contents: String) -> String {
        let p = file(name)
        FileManager.default.createFile(atPath: p, contents: Data(contents.utf8))
        return p
    }

    deinit { try? FileManager.default.removeItem(atPath: path) }
}
