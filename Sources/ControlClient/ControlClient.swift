// A minimal, blocking HTTP/1.1 client over the agent's unix control socket.
// Used by `nodenet status/apply/delete` and by the CNI shim, which the runtime execs for
// every pod: so no Foundation, no event loop, no threads; one connection per request.

import CShims
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

public struct ControlResponse: Sendable {
    public var status: Int
    public var body: [UInt8]

    public var text: String { String(decoding: body, as: UTF8.self) }
}

public enum ControlClientError: Error, CustomStringConvertible, Sendable, Equatable {
    /// Nothing listens on the socket (agent down) or the path does not exist.
    case agentUnreachable(path: String, errno: Int32)
    /// The request or reply failed mid-way.
    case io(operation: String, errno: Int32)
    case timeout(path: String)
    case malformedResponse(String)

    public var description: String {
        switch self {
        case .agentUnreachable(let path, let e):
            "the nodenet agent is not running (cannot connect to \(path): \(String(cString: strerror(e))))"
        case .io(let op, let e): "control socket \(op): \(String(cString: strerror(e)))"
        case .timeout(let path): "the nodenet agent did not answer in time on \(path)"
        case .malformedResponse(let why): "malformed reply from the agent: \(why)"
        }
    }
}

public struct ControlClient: Sendable {
    public static let defaultSocket = "/run/nodenet/nodenet.sock"

    public var socketPath: String
    /// Whole-request deadline in milliseconds (connect, send, receive).
    public var timeoutMilliseconds: Int32

    public init(socketPath: String = ControlClient.defaultSocket, timeoutMilliseconds: Int32 = 30_000) {
        self.socketPath = socketPath
        self.timeoutMilliseconds = timeoutMilliseconds
    }

    public func get(_ path: String) throws(ControlClientError) -> ControlResponse {
        try request(method: "GET", path: path, body: [])
    }

    /// `passing`: a descriptor sent along with the request (SCM_RIGHTS), for a server that
    /// receives them (the agent's CNI socket: the pod's network namespace).
    public func post(_ path: String, body: [UInt8], contentType: String = "application/json",
                     passing descriptor: Int32? = nil) throws(ControlClientError) -> ControlResponse {
        try request(method: "POST", path: path, body: body, contentType: contentType, passing: descriptor)
    }

    public func request(method: String, path: String, body: [UInt8], contentType: String = "application/json",
                        passing descriptor: Int32? = nil) throws(ControlClientError) -> ControlResponse {
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw .io(operation: "socket", errno: errno) }
        defer { close(fd) }
        var tv = timeval(tv_sec: Int(timeoutMilliseconds / 1000), tv_usec: Int(timeoutMilliseconds % 1000) * 1000)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))

        var addr = sockaddr_un()
        addr.sun_family = sa_family_t(AF_UNIX)
        let pathBytes = Array(socketPath.utf8)
        guard pathBytes.count < MemoryLayout.size(ofValue: addr.sun_path) else {
            throw .agentUnreachable(path: socketPath, errno: ENAMETOOLONG)
        }
        withUnsafeMutableBytes(of: &addr.sun_path) { raw in
            raw.copyBytes(from: pathBytes)
            raw[pathBytes.count] = 0
        }
        let rc = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size))
            }
        }
        guard rc == 0 else { throw .agentUnreachable(path: socketPath, errno: errno) }

        var head = "\(method) \(path) HTTP/1.1\r\nHost: nodenet\r\nConnection: close\r\n"
        head += "Content-Type: \(contentType)\r\nContent-Length: \(body.count)\r\n\r\n"
        do {
            try sendAll(fd, Array(head.utf8) + body, passing: descriptor)
        } catch {
            // The server may answer and close before taking the whole body (a body over its
            // limit is refused from the header): its answer is the one to report.
            guard case .io(_, let e) = error, e == EPIPE || e == ECONNRESET,
                  let early = try? Self.parse(try receiveAll(fd)) else { throw error }
            return early
        }
        return try Self.parse(try receiveAll(fd))
    }

    /// Sends `bytes`; `descriptor` rides on the first chunk the kernel takes.
    private func sendAll(_ fd: Int32, _ bytes: [UInt8], passing descriptor: Int32?) throws(ControlClientError) {
        var offset = 0
        var attached = descriptor
        while offset < bytes.count {
            let n = bytes[offset...].withUnsafeBytes { raw in
                if let d = attached { return nodenet_send_with_fd(fd, raw.baseAddress, raw.count, d) }
                return send(fd, raw.baseAddress, raw.count, Int32(MSG_NOSIGNAL))
            }
            if n < 0 {
                if errno == EINTR { continue }
                if errno == EAGAIN { throw .timeout(path: socketPath) }
                throw .io(operation: "send", errno: errno)
            }
            attached = nil
            offset += n
        }
    }

    private func receiveAll(_ fd: Int32) throws(ControlClientError) -> [UInt8] {
        var out: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if n < 0 {
                if errno == EINTR { continue }
                if errno == EAGAIN { throw .timeout(path: socketPath) }
                throw .io(operation: "receive", errno: errno)
            }
            if n == 0 { return out }
            out += buffer[0..<n]
            // Stop as soon as the declared body is complete; the server may keep the connection.
            if let complete = Self.completeLength(out), out.count >= complete { return Array(out[0..<complete]) }
        }
    }

    /// Total length (head + body) once the head is in and declares a Content-Length.
    static func completeLength(_ bytes: [UInt8]) -> Int? {
        guard let end = headEnd(bytes) else { return nil }
        let head = String(decoding: bytes[0..<end], as: UTF8.self).lowercased()
        for line in head.split(separator: "\r\n") where line.hasPrefix("content-length:") {
            if let n = Int(line.dropFirst("content-length:".count).filter { $0 != " " }) { return end + 4 + n }
        }
        return nil
    }

    /// Where the HTTP head ends (the index of its blank line's CR LF CR LF), for replies here and
    /// for requests on the agent's CNI socket.
    public static func headEnd(_ bytes: [UInt8]) -> Int? {
        guard bytes.count >= 4 else { return nil }
        for i in 0...(bytes.count - 4) where bytes[i] == 13 && bytes[i + 1] == 10 && bytes[i + 2] == 13 && bytes[i + 3] == 10 {
            return i
        }
        return nil
    }

    static func parse(_ bytes: [UInt8]) throws(ControlClientError) -> ControlResponse {
        guard let end = headEnd(bytes) else { throw .malformedResponse("no complete HTTP head (\(bytes.count) bytes)") }
        let statusLine = String(decoding: bytes[0..<end], as: UTF8.self).split(separator: "\r\n").first ?? ""
        let parts = statusLine.split(separator: " ")
        guard parts.count >= 2, parts[0].hasPrefix("HTTP/1."), let status = Int(parts[1]) else {
            throw .malformedResponse("bad status line \"\(statusLine)\"")
        }
        var body = Array(bytes[(end + 4)...])
        if let total = completeLength(bytes) { body = Array(body.prefix(total - end - 4)) }
        return ControlResponse(status: status, body: body)
    }
}
