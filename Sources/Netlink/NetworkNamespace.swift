// Network namespace handles. A network namespace belongs to a thread, and Swift tasks hop
// between threads, so work inside a namespace runs on a fresh thread that enters it (setns)
// and leaves again. Sockets opened there stay bound to that namespace for their whole life.
import CShims
import Glibc

/// An open network namespace (an fd on its nsfs inode). Keeping the handle open keeps the
/// namespace alive even if its /var/run/netns name is removed.
public final class NetworkNamespace: Sendable {
    public let fileDescriptor: Int32
    /// Where it was opened from, for error messages.
    public let path: String

    public static let runDirectory = "/var/run/netns"

    /// Opens `/var/run/netns/NAME` or `/proc/PID/ns/net` (or any nsfs path).
    public init(path: String) throws(NetlinkError) {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw .system("open network namespace", path) }
        fileDescriptor = fd
        self.path = path
    }

    /// Takes ownership of `descriptor`, an open network namespace handed over by another
    /// process (the CNI plugin passes the pod's over SCM_RIGHTS); `path` is its name there,
    /// for messages. Nothing is checked here: entering it fails if it is not a namespace.
    public init(adopting descriptor: Int32, path: String) {
        fileDescriptor = descriptor
        self.path = path
    }

    public convenience init(named name: String) throws(NetlinkError) {
        try Self.validate(name: name)
        try self.init(path: Self.runDirectory + "/" + name)
    }

    /// The calling thread's own namespace.
    public static func current() throws(NetlinkError) -> NetworkNamespace {
        try NetworkNamespace(path: "/proc/thread-self/ns/net")
    }

    deinit { close(fileDescriptor) }

    static func validate(name: String) throws(NetlinkError) {
        guard !name.isEmpty, name != ".", name != "..", !name.contains("/"), name.utf8.count <= 200 else {
            throw .invalid("name network namespace", "\"\(name)\"", "must be a plain, non-empty file name")
        }
    }

    // MARK: running code inside

    /// Runs `body` on a fresh thread inside this namespace and waits for it. The calling thread
    /// never changes namespace.
    public func performSync<T>(_ body: () throws -> T) throws -> T {
        try withoutActuallyEscaping(body) { escapable in
            var result: Result<T, any Error>?
            try ThreadRunner.runAndJoin { result = self.enterAndRun(escapable) }
            return try result!.get()
        }
    }

    /// Runs `body` on a fresh thread inside this namespace without blocking the caller's thread.
    public func perform<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
        try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<T, any Error>) in
            do {
                try ThreadRunner.runDetached {
                    continuation.resume(with: self.enterAndRun(body))
                }
            } catch {
                continuation.resume(throwing: error)
            }
        }
    }

    /// Enters, runs, and returns to the thread's original namespace. Only called on threads
    /// ThreadRunner created, which end right after, so a failed return cannot leak.
    private func enterAndRun<T>(_ body: () throws -> T) -> Result<T, any Error> {
        let original = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC)
        guard original >= 0 else { return .failure(NetlinkError.system("open own network namespace", "/proc/thread-self/ns/net")) }
        defer {
            _ = nodenet_setns(original, nodenet_clone_newnet())
            close(original)
        }
        guard nodenet_setns(fileDescriptor, nodenet_clone_newnet()) == 0 else {
            let e = Glibc.errno
            // EINVAL here means the path is not a namespace: usually a leftover file of a
            // namespace that was deleted (or never finished being created).
            return .failure(NetlinkError(operation: "enter network namespace", object: path, kind: .system(errno: e),
                                         extAck: e == EINVAL ? "not a network namespace file (deleted namespace?)" : nil))
        }
        return Result { try body() }
    }

    // MARK: named namespaces (like `ip netns add/del`)

    /// Creates a namespace and bind-mounts it at /var/run/netns/NAME. Throws EEXIST when the
    /// name is taken.
    @discardableResult
    public static func create(named name: String) throws(NetlinkError) -> NetworkNamespace {
        try validate(name: name)
        let path = runDirectory + "/" + name
        try prepareRunDirectory()
        let fd = open(path, O_RDONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0)
        guard fd >= 0 else { throw .system("create network namespace", path) }
        close(fd)
        var failure: NetlinkError?
        do {
            // unshare moves the thread into the new namespace; the bind mount of that thread's
            // ns file keeps the namespace alive after the thread returns and exits.
            try ThreadRunner.runAndJoin {
                let original = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC)
                defer { if original >= 0 { _ = nodenet_setns(original, nodenet_clone_newnet()); close(original) } }
                guard nodenet_unshare(nodenet_clone_newnet()) == 0 else { failure = .system("unshare network namespace", path); return }
                let source = "/proc/self/task/\(nodenet_gettid())/ns/net"
                guard mount(source, path, "none", UInt(MS_BIND), nil) == 0 else { failure = .system("bind-mount network namespace", path); return }
            }
        } catch {
            failure = error
        }
        if let failure {
            unlink(path)
            throw failure
        }
        return try NetworkNamespace(path: path)
    }

    /// Unmounts and removes /var/run/netns/NAME. The namespace itself ends when nothing
    /// (process, open handle, socket) uses it any more. Throws `.notFound` when absent.
    public static func delete(named name: String) throws(NetlinkError) {
        try validate(name: name)
        let path = runDirectory + "/" + name
        if umount2(path, Int32(MNT_DETACH)) != 0 {
            let e = Glibc.errno
            if e == ENOENT { throw NetlinkError(operation: "delete network namespace", object: path, kind: .notFound) }
            // EINVAL: not a mount point (a leftover file); remove it anyway.
            if e != EINVAL { throw .system("unmount network namespace", path, errno: e) }
        }
        guard unlink(path) == 0 else { throw .system("remove network namespace file", path) }
    }

    /// The names under /var/run/netns.
    public static func names() -> [String] {
        guard let dir = opendir(runDirectory) else { return [] }
        defer { closedir(dir) }
        var out: [String] = []
        while let entry = readdir(dir) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
                String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
            }
            if name != ".", name != ".." { out.append(name) }
        }
        return out.sorted()
    }

    /// Makes /var/run/netns exist and be a shared mount point, as iproute2 does, so namespace
    /// mounts made here propagate to mount namespaces created later (and vice versa).
    static func prepareRunDirectory() throws(NetlinkError) {
        if mkdir(runDirectory, 0o755) != 0, Glibc.errno != EEXIST { throw .system("create directory", runDirectory) }
        for attempt in 0..<2 {
            if mount("", runDirectory, "none", UInt(MS_SHARED | MS_REC), nil) == 0 { return }
            let e = Glibc.errno
            // EINVAL: not a mount point yet; bind it onto itself once, then make it shared.
            guard e == EINVAL, attempt == 0 else { throw .system("make shared mount", runDirectory, errno: e) }
            guard mount(runDirectory, runDirectory, "none", UInt(MS_BIND | MS_REC), nil) == 0 else {
                throw .system("bind-mount", runDirectory)
            }
        }
    }

    // MARK: sysctls

    /// Writes /proc/sys/KEY (dots or slashes) from a thread inside this namespace: net.*
    /// sysctls are per namespace and resolved against the writer's namespace.
    public func setSysctl(_ key: String, _ value: String) throws {
        try setSysctls([(key, value)])
    }

    /// Several sysctls in one trip into the namespace, in order; e.g. for a pod interface:
    /// `[("net.ipv4.conf.eth0.arp_notify", "1"), ("net.ipv6.conf.eth0.accept_dad", "0")]`.
    public func setSysctls(_ pairs: [(key: String, value: String)]) throws {
        try performSync { for (k, v) in pairs { try Sysctl.write(k, v) } }
    }
}

/// /proc/sys access for the calling thread's namespace.
public enum Sysctl {
    public static func path(_ key: String) -> String {
        "/proc/sys/" + String(key.map { $0 == "." ? "/" : $0 })
    }

    public static func write(_ key: String, _ value: String) throws(NetlinkError) {
        let p = path(key)
        let fd = open(p, O_WRONLY | O_CLOEXEC)
        guard fd >= 0 else { throw .system("open sysctl", p) }
        defer { close(fd) }
        let bytes = Array((value + "\n").utf8)
        guard bytes.withUnsafeBytes({ Glibc.write(fd, $0.baseAddress, $0.count) }) == bytes.count else { throw .system("write sysctl", p) }
    }

    public static func read(_ key: String) throws(NetlinkError) -> String {
        guard let s = RouteProtocol.readSmallFile(path(key)) else { throw .system("read sysctl", path(key)) }
        return s.trimmingSuffixNewlines()
    }
}

extension String {
    func trimmingSuffixNewlines() -> String {
        var s = Substring(self)
        while s.last == "\n" || s.last == " " { s = s.dropLast() }
        return String(s)
    }
}

/// Fresh POSIX threads for namespace work (never a pooled thread: a thread that failed to
/// return to its namespace must not run anything else).
enum ThreadRunner {
    private final class Body {
        let run: () -> Void
        init(_ run: @escaping () -> Void) { self.run = run }
    }

    private static func start(_ body: @escaping () -> Void) throws(NetlinkError) -> pthread_t {
        let context = Unmanaged.passRetained(Body(body)).toOpaque()
        var thread = pthread_t()
        let rc = pthread_create(&thread, nil, { raw in
            Unmanaged<Body>.fromOpaque(raw!).takeRetainedValue().run()
            return nil
        }, context)
        guard rc == 0 else {
            Unmanaged<Body>.fromOpaque(context).release()
            throw .system("start thread", "namespace worker", errno: rc)
        }
        return thread
    }

    static func runAndJoin(_ body: @escaping () -> Void) throws(NetlinkError) {
        let t = try start(body)
        pthread_join(t, nil)
    }

    static func runDetached(_ body: @escaping @Sendable () -> Void) throws(NetlinkError) {
        pthread_detach(try start(body))
    }
}
