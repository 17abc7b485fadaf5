import CShims
import ControlClient
import Foundation
import Logging
import Synchronization

/// The CNI plugin's own socket, `runDir/cni.sock`, beside the control socket: the same HTTP
/// exchange (`POST /v1/cni/raw`, `POST /v1/cni`), plus the pod's network namespace passed as
/// an open descriptor (SCM_RIGHTS). The plugin runs in the runtime's mount namespace and the
/// agent may not (a DaemonSet, a runtime with a private mount namespace): with the descriptor
/// the agent never needs to see the runtime's netns mounts. NIO's stream channels drop
/// ancillary data, so this listener is plain blocking I/O: one accepting thread, and one
/// thread per request, since a request (netlink, SQLite) blocks anyway and must stay off the
/// cooperative pool.
final class CNISocketServer: Sendable {
    /// What the server hands the handler: the request and the descriptor that came with it
    /// (owned by the handler from then on; nil when none came).
    typealias Handler = @Sendable (_ path: String, _ body: [UInt8], _ descriptor: Int32?) async -> [UInt8]

    static let fileName = "cni.sock"
    /// Requests in flight at most; more connections wait in the listen backlog.
    static let maxInFlight = 256
    static let maxBody = 4 << 20

    let socketPath: String
    private let listener: Int32
    private let logger: Logger
    private let stopped = Atomic<Bool>(false)

    /// Binds `socketPath` (mode 0600; a stale file from an earlier run is replaced: the
    /// caller holds the agent lock).
    init(socketPath: String, logger: Logger) throws {
        self.socketPath = socketPath
        self.logger = logger
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw ControlServerError(message: "cannot create \(socketPath): \(String(cString: strerror(errno)))") }
        var addr = sockaddr_un()
        addr.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(socketPath.utf8)
        guard bytes.count < MemoryLayout.size(ofValue: addr.sun_path) else {
            close(fd)
            throw ControlServerError(message: "socket path \(socketPath) is too long")
        }
        withUnsafeMutableBytes(of: &addr.sun_path) { raw in
            raw.copyBytes(from: bytes)
            raw[bytes.count] = 0
        }
        unlink(socketPath)
        let oldMask = umask(0o177)  // created 0600: no window where others could connect
        defer { umask(oldMask) }
        let rc = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        guard rc == 0, listen(fd, 256) == 0 else {
            let e = errno
            close(fd)
            throw ControlServerError(message: "cannot listen on \(socketPath): \(String(cString: strerror(e)))")
        }
        listener = fd
    }

    /// Starts accepting; requests go to `handler` until `stop()`.
    func start(handler: @escaping Handler) {
        let slots = DispatchSemaphore(value: Self.maxInFlight)
        let thread = Thread { [self] in
            while !stopped.load(ordering: .relaxed) {
                let conn = accept(listener, nil, nil)
                if conn < 0 {
                    if errno == EINTR || errno == ECONNABORTED { continue }
                    if stopped.load(ordering: .relaxed) { break }
                    logger.error("CNI socket accept failed", metadata: ["error": "\(String(cString: strerror(errno)))"])
                    usleep(100_000)  // EMFILE and the like: do not spin
                    continue
                }
                _ = fcntl(conn, F_SETFD, FD_CLOEXEC)  // accept4 needs _GNU_SOURCE
                slots.wait()
                let worker = Thread { [self] in
                    defer { slots.signal() }
                    serve(conn, handler: handler)
                }
                worker.name = "nodenet-cni-request"
                worker.start()
            }
        }
        thread.name = "nodenet-cni-accept"
        thread.start()
    }

    /// Stops accepting and removes the socket file; requests in flight finish.
    func stop() {
        guard !stopped.exchange(true, ordering: .relaxed) else { return }
        shutdown(listener, Int32(SHUT_RDWR))  // wakes the blocked accept
        close(listener)
        unlink(socketPath)
    }

    deinit { stop() }

    // MARK: one connection

    private func serve(_ conn: Int32, handler: @escaping Handler) {
        defer { close(conn) }
        var uid: uid_t = 0, pid: pid_t = 0
        guard nodenet_peer_credentials(conn, &uid, &pid) == 0, uid == 0 || uid == getuid() else {
            logger.warning("CNI connection refused", metadata: ["uid": "\(uid)", "pid": "\(pid)"])
            return
        }
        var tv = timeval(tv_sec: 30, tv_usec: 0)
        setsockopt(conn, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        setsockopt(conn, SOL_SOCKET, SO_SNDTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))

        var request = HTTPRequestReader(maxBody: Self.maxBody)
        var descriptors: [Int32] = []
        var buffer = [UInt8](repeating: 0, count: 65536)
        var fds = [Int32](repeating: -1, count: 4)
        while !request.isComplete, request.problem == nil {
            var count: Int32 = 0
            let n = buffer.withUnsafeMutableBytes { raw in
                fds.withUnsafeMutableBufferPointer { nodenet_recv_with_fds(conn, raw.baseAddress, raw.count, $0.baseAddress, 4, &count) }
            }
            descriptors += fds.prefix(Int(count))
            if n < 0, errno == EINTR { continue }
            guard n > 0 else { break }
            request.append(buffer[0..<n])
        }
        // One descriptor is the protocol; any others are closed rather than leaked.
        for extra in descriptors.dropFirst() { close(extra) }
        let descriptor = descriptors.first
        guard request.isComplete, let head = request.head else {
            if let descriptor { close(descriptor) }
            if let problem = request.problem { reply(conn, status: "400 Bad Request", body: Array("{\"error\":\"\(problem)\"}\n".utf8)) }
            return
        }
        guard head.method == "POST", head.path == "/v1/cni/raw" || head.path == "/v1/cni" else {
            if let descriptor { close(descriptor) }
            reply(conn, status: "404 Not Found", body: Array("{\"error\":\"no route \(head.method) \(head.path) on the CNI socket\"}\n".utf8))
            return
        }
        let answer = Mutex<[UInt8]>([])
        let done = DispatchSemaphore(value: 0)
        let body = request.body
        // This thread is not one of the cooperative pool's: waiting here blocks nothing else.
        Task {
            let out = await handler(head.path, body, descriptor)
            answer.withLock { $0 = out }
            done.signal()
        }
        done.wait()
        reply(conn, status: "200 OK", body: answer.withLock { $0 })
    }

    private func reply(_ conn: Int32, status: String, body: [UInt8]) {
        let head = "HTTP/1.1 \(status)\r\nContent-Type: application/octet-stream\r\nContent-Length: \(body.count)\r\nConnection: close\r\n\r\n"
        let bytes = Array(head.utf8) + body
        var offset = 0
        while offset < bytes.count {
            let n = bytes[offset...].withUnsafeBytes { send(conn, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            if n < 0, errno == EINTR { continue }
            guard n > 0 else { return }
            offset += n
        }
    }
}

/// An HTTP/1.1 request with a Content-Length body, accumulated from the bytes read so far.
struct HTTPRequestReader {
    struct Head: Equatable {
        var method: String
        var path: String
        var contentLength: Int
    }

    let maxBody: Int
    private(set) var head: Head?
    private(set) var problem: String?
    private var bytes: [UInt8] = []
    private var bodyStart = 0

    init(maxBody: Int) { self.maxBody = maxBody }

    var isComplete: Bool { head.map { bytes.count - bodyStart >= $0.contentLength } ?? false }
    var body: [UInt8] { head.map { Array(bytes[bodyStart..<(bodyStart + $0.contentLength)]) } ?? [] }

    mutating func append(_ chunk: ArraySlice<UInt8>) {
        bytes += chunk
        guard head == nil else { return }
        guard let end = ControlClient.headEnd(bytes) else {
            if bytes.count > 16384 { problem = "request head over 16 KiB" }
            return
        }
        let lines = String(decoding: bytes[0..<end], as: UTF8.self).split(separator: "\r\n", omittingEmptySubsequences: false)
        let first = lines.first?.split(separator: " ") ?? []
        guard first.count == 3, first[2].hasPrefix("HTTP/1.") else { problem = "malformed request line"; return }
        var length = 0
        for line in lines.dropFirst() {
            let parts = line.split(separator: ":", maxSplits: 1)
            guard parts.count == 2, parts[0].lowercased() == "content-length" else { continue }
            guard let n = Int(parts[1].trimmingCharacters(in: .whitespaces)), n >= 0 else { problem = "bad Content-Length"; return }
            length = n
        }
        guard length <= maxBody else { problem = "request body over \(maxBody) bytes"; return }
        let target = first[1]
        head = Head(method: String(first[0]), path: String(target.split(separator: "?", maxSplits: 1).first ?? target), contentLength: length)
        bodyStart = end + 4
    }
}
