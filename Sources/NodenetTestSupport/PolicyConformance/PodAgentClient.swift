import Foundation

/// Talks to one pod's agent program (PodAgentScript.server) over its unix socket: one JSON
/// request line, one JSON answer line. Blocking; callers run it on their own threads.
struct PodAgentClient: Sendable {
    let path: String

    struct Failure: Error, CustomStringConvertible {
        var path: String
        var message: String
        var description: String { "pod agent \(path): \(message)" }
    }

    struct ProbeRequest: Codable, Sendable {
        var host: String
        var port: Int
        var proto: String
        var timeout: Double
    }

    func call<Answer: Decodable>(_ request: [String: any Encodable & Sendable], timeout: Double, as: Answer.Type) throws -> Answer {
        let body = try JSONEncoder().encode(AnyRequest(fields: request))
        let answer = try exchange(body + Data("\n".utf8), timeout: timeout)
        do { return try JSONDecoder().decode(Answer.self, from: answer) } catch {
            throw Failure(path: path, message: "bad answer \(String(decoding: answer, as: UTF8.self)): \(error)")
        }
    }

    func probe(_ probes: [ProbeRequest], timeout: Double) throws -> [String] {
        struct Answer: Decodable { var results: [String] }
        let a = try call(["op": "probe", "probes": probes], timeout: timeout, as: Answer.self)
        guard a.results.count == probes.count else { throw Failure(path: path, message: "\(a.results.count) results for \(probes.count) probes") }
        return a.results
    }

    private func exchange(_ request: Data, timeout: Double) throws -> Data {
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw Failure(path: path, message: "socket: \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        var addr = sockaddr_un()
        addr.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(path.utf8)
        guard bytes.count < MemoryLayout.size(ofValue: addr.sun_path) else { throw Failure(path: path, message: "path too long for a unix socket") }
        withUnsafeMutableBytes(of: &addr.sun_path) { raw in
            raw.copyBytes(from: bytes)
            raw[bytes.count] = 0
        }
        let rc = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        guard rc == 0 else { throw Failure(path: path, message: "connect: \(String(cString: strerror(errno)))") }
        var tv = timeval(tv_sec: Int(timeout), tv_usec: Int((timeout - timeout.rounded(.down)) * 1_000_000))
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        try request.withUnsafeBytes { raw in
            var off = 0
            while off < raw.count {
                let n = write(fd, raw.baseAddress! + off, raw.count - off)
                if n < 0, errno == EINTR { continue }
                guard n > 0 else { throw Failure(path: path, message: "write: \(String(cString: strerror(errno)))") }
                off += n
            }
        }
        var answer = Data()
        var buffer = [UInt8](repeating: 0, count: 65536)
        while answer.last != UInt8(ascii: "\n") {
            let n = read(fd, &buffer, buffer.count)
            if n < 0, errno == EINTR { continue }
            if n < 0 { throw Failure(path: path, message: "read: \(String(cString: strerror(errno))) (no answer in \(timeout) s)") }
            if n == 0 { break }
            answer.append(contentsOf: buffer[0..<n])
        }
        guard !answer.isEmpty else { throw Failure(path: path, message: "closed without an answer") }
        return answer
    }

    /// A JSON object of heterogeneous Encodable fields.
    private struct AnyRequest: Encodable {
        var fields: [String: any Encodable & Sendable]
        struct Key: CodingKey {
            var stringValue: String
            var intValue: Int? { nil }
            init(stringValue: String) { self.stringValue = stringValue }
            init?(intValue: Int) { nil }
        }
        func encode(to encoder: any Encoder) throws {
            var c = encoder.container(keyedBy: Key.self)
            for (k, v) in fields { try c.encode(v, forKey: Key(stringValue: k)) }
        }
    }
}
