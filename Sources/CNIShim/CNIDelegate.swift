import CShims
#if canImport(Glibc)
import Glibc
#endif

/// Hands a CNI call to the full plugin, the `nodenet` binary (`nodenet cni`), which runs the
/// complete path (validation with the spec's error codes, the agent-down DEL that tears the
/// veth down over netlink and queues the release, the wait for a starting agent). The lean
/// executable keeps no netlink code, so it links statically and starts in about 1.2 ms; the
/// rare calls it does not decide pay one more exec.
///
/// Where the full binary is, by layout (the first candidate that exists, is executable and is
/// not this executable wins):
/// - the package: `/usr/bin/nodenet-cni` with `/opt/cni/bin/nodenet` and `/usr/lib/cni/nodenet`
///   symlinks to it: `nodenet` beside the plugin's real path, `/usr/bin/nodenet`;
/// - a plain copy of the plugin in a runtime's plugin directory (how a DaemonSet's init
///   container installs plugins): the full binary copied beside it as `nodenet-full`
///   (``fullBinaryName``), else a host install at `/usr/bin/nodenet` or `/usr/local/bin/nodenet`.
///
/// The plugin never executes itself: a candidate with the device and inode of /proc/self/exe
/// is skipped (a copy named `nodenet` in /opt/cni/bin has itself as "nodenet beside"), and a
/// plugin started with ``handOverMarker`` set refuses, so a candidate that is another copy of
/// the plugin (another inode) answers an error instead of handing over again, in a loop.
public enum CNIDelegate {
    /// The name the full binary has beside a plain copy of the plugin, in a runtime's plugin
    /// directory where `nodenet` is the plugin itself.
    public static let fullBinaryName = "nodenet-full"
    /// Host installs of the full binary, searched after the plugin's own directories.
    public static let hostBinaries = ["/usr/bin/nodenet", "/usr/local/bin/nodenet"]
    /// Set in the environment of the binary a plugin hands a call to (its value: the plugin's
    /// path). The full binary ignores it; a plugin that finds it set was handed a call by
    /// another plugin and refuses.
    public static let handOverMarker = "NODENET_CNI_HANDED_OVER_BY"

    /// A file's identity: a path and its hard links or symlinks to it share it.
    public struct FileIdentity: Hashable, Sendable {
        public var device: UInt64
        public var inode: UInt64
        public init(device: UInt64, inode: UInt64) {
            self.device = device
            self.inode = inode
        }
    }

    /// What the search found at a candidate path.
    public enum Verdict: Equatable, Sendable {
        case usable
        case missing
        case notExecutable
        case thisPlugin

        var reason: String {
            switch self {
            case .usable: "usable"
            case .missing: "missing"
            case .notExecutable: "not an executable file"
            case .thisPlugin: "this plugin itself"
            }
        }
    }

    public enum Search: Equatable, Sendable {
        case found(String)
        /// Nothing usable; every path looked at, with why it was passed over.
        case notFound([(path: String, verdict: Verdict)])

        public static func == (a: Search, b: Search) -> Bool {
            switch (a, b) {
            case (.found(let x), .found(let y)): x == y
            case (.notFound(let x), .notFound(let y)): x.map(\.path) == y.map(\.path) && x.map(\.verdict) == y.map(\.verdict)
            default: false
            }
        }
    }

    /// The paths to try, in order, without repeats. `realPath` is this executable's path with
    /// symlinks resolved (/proc/self/exe), `invokedAs` the path the runtime executed (argv[0],
    /// which runtimes set to the plugin's full path).
    public static func candidates(realPath: String, invokedAs: String?) -> [String] {
        var out: [String] = []
        func add(_ path: String) { if !out.contains(path) { out.append(path) } }
        let realDir = directory(of: realPath)
        let invokedDir = invokedAs.flatMap(directory(of:))
        // The package: /usr/bin/nodenet-cni beside /usr/bin/nodenet.
        if let realDir { add(realDir + "/nodenet") }
        // A plain copy in a plugin directory: the full binary copied beside it.
        if let invokedDir { add(invokedDir + "/" + fullBinaryName) }
        if let realDir { add(realDir + "/" + fullBinaryName) }
        for path in hostBinaries { add(path) }
        return out
    }

    /// The first usable candidate; `inspect` says what is at a path (`verdict(of:plugin:)` on
    /// a node, a table in tests).
    public static func search(_ candidates: [String], inspect: (String) -> Verdict) -> Search {
        var passed: [(path: String, verdict: Verdict)] = []
        for path in candidates {
            let verdict = inspect(path)
            if verdict == .usable { return .found(path) }
            passed.append((path, verdict))
        }
        return .notFound(passed)
    }

    /// What is at `path`, compared with the plugin's own identity.
    public static func verdict(of path: String, plugin: FileIdentity?) -> Verdict {
        guard let id = identity(of: path) else { return .missing }
        if id == plugin { return .thisPlugin }
        var st = stat()
        guard stat(path, &st) == 0, (st.st_mode & S_IFMT) == S_IFREG, access(path, X_OK) == 0 else { return .notExecutable }
        return .usable
    }

    /// Device and inode of the file at `path`, symlinks followed.
    public static func identity(of path: String) -> FileIdentity? {
        var st = stat()
        guard stat(path, &st) == 0 else { return nil }
        return FileIdentity(device: UInt64(st.st_dev), inode: UInt64(st.st_ino))
    }

    /// The search on this node, for the running plugin.
    public static func findFullBinary(invokedAs: String?) -> Search {
        let real = realExecutablePath() ?? ""
        let me = identity(of: "/proc/self/exe")
        return search(candidates(realPath: real, invokedAs: invokedAs)) { verdict(of: $0, plugin: me) }
    }

    /// The CNI error message when no full binary was found: what was searched and what to install.
    public static func notFoundMessage(_ passed: [(path: String, verdict: Verdict)], command: String) -> String {
        let searched = passed.map { "\($0.path) (\($0.verdict.reason))" }.joined(separator: ", ")
        return "the nodenet agent did not take this \(command) and the full nodenet binary, which handles it without "
            + "the agent, was not found; searched \(searched). Install nodenet (the package puts it at /usr/bin/nodenet), "
            + "or copy it beside this plugin as \(fullBinaryName); then retry"
    }

    /// The message when this plugin was started by another plugin's hand-over.
    public static func handedOverMessage(by plugin: String, me: String) -> String {
        "\(me) is a copy of the nodenet CNI plugin (nodenet-cni), but \(plugin) handed it a call meant for the full "
            + "nodenet binary; replace \(me) with the nodenet binary (or remove it) so the plugin finds the real one"
    }

    static func realExecutablePath() -> String? {
        var buf = [CChar](repeating: 0, count: 4096)
        let n = readlink("/proc/self/exe", &buf, buf.count - 1)
        guard n > 0 else { return nil }
        return String(decoding: buf[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    static func directory(of path: String) -> String? {
        guard path.hasPrefix("/"), let slash = path.lastIndex(of: "/") else { return nil }
        return slash == path.startIndex ? "" : String(path[..<slash])
    }

    /// Replaces this process with `binary`, the same environment plus ``handOverMarker``, and
    /// `stdin` as its standard input (read already, so it goes through an in-memory file).
    /// Returns only on failure, with a description.
    public static func exec(_ binary: String, stdin: [UInt8], from plugin: String) -> String {
        let fd = nodenet_memfd_create("nodenet-cni-stdin")
        guard fd >= 0 else { return "memfd_create: \(String(cString: strerror(errno)))" }
        var offset = 0
        while offset < stdin.count {
            let n = stdin[offset...].withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
            guard n > 0 else { return "writing the configuration for \(binary): \(String(cString: strerror(errno)))" }
            offset += n
        }
        guard lseek(fd, 0, SEEK_SET) == 0, dup2(fd, 0) == 0 else { return "redirecting stdin: \(String(cString: strerror(errno)))" }
        close(fd)
        setenv(handOverMarker, plugin, 1)
        let argv: [UnsafeMutablePointer<CChar>?] = [strdup(binary), nil]
        execv(binary, argv)
        return "cannot run \(binary): \(String(cString: strerror(errno)))"
    }
}
