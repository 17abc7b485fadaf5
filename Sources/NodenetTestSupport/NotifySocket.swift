import Foundation

/// A stand-in for systemd's notification socket: a unix datagram socket whose path goes into
/// the agent's NOTIFY_SOCKET, collecting every sd_notify message the agent sends.
public final class NotifySocket: @unchecked Sendable {
    // @unchecked: `messages` is guarded by `lock`; `fd` is immutable after init.
    public let path: String
    private let fd: Int32
    private let lock = NSLock()
    private var received: [String] = []
    private var thread: Thread?

    public init(directory: TempDirectory) throws {
        path = directory.file("notify.sock")
        fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue), 0)
        var addr = sockaddr_un()
        addr.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &addr.sun_path) { raw in
            let b = Array(path.utf8)
            raw.copyBytes(from: b)
            raw[b.count] = 0
        }
        let rc = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        guard rc == 0 else { throw Shell.Failure(command: "bind \(path)", result: .init(status: errno, stdout: "", stderr: "bind failed")) }
        var tv = timeval(tv_sec: 0, tv_usec: 100_000)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        let t = Thread { [weak self] in
            var buf = [UInt8](repeating: 0, count: 4096)
            while let me = self {
                let n = buf.withUnsafeMutableBytes { recv(me.fd, $0.baseAddress, $0.count, 0) }
                if n > 0 {
                    let text = String(decoding: buf[0..<n], as: UTF8.self)
                    me.lock.lock(); me.received.append(text); me.lock.unlock()
                } else if n < 0, errno != EAGAIN, errno != EINTR {
                    return
                }
            }
        }
        t.start()
        thread = t
    }

    /// Every message so far (each may hold several newline-separated assignments).
    public var messages: [String] { lock.lock(); defer { lock.unlock() }; return received }

    /// Every assignment (`READY=1`, `STATUS=...`) so far, in order.
    public var assignments: [String] { messages.flatMap { $0.split(separator: "\n").map(String.init) } }

    /// Waits until an assignment starting with `prefix` arrives.
    public func wait(for prefix: String, timeout: Double = 15) -> Bool {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            if assignments.contains(where: { $0.hasPrefix(prefix) }) { return true }
            usleep(20_000)
        }
        return false
    }

    deinit {
        shutdown(fd, Int32(SHUT_RDWR))
        close(fd)
        unlink(path)
    }
}
