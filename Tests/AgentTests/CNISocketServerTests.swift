import ControlClient
import Foundation
import Synchronization
import Logging
import NodenetTestSupport
import Testing
@testable import Agent

/// The CNI plugin's socket: the HTTP exchange with a descriptor handed over (SCM_RIGHTS), as
/// the plugin passes the pod's network namespace. No privileges needed: any open file will do.
@Suite struct CNISocketServerTests {
    @Test func descriptorArrivesWithTheRequestAndOnlyCNIRoutesAnswer() throws {
        let dir = TempDirectory()
        let path = dir.file("cni.sock")
        let server = try CNISocketServer(socketPath: path, logger: Logger(label: "test"))
        defer { server.stop() }
        // The handler names the inode it was handed (or "none") and which route asked.
        server.start { route, body, descriptor in
            var answer = "\(route) \(body.count) "
            if let descriptor {
                var st = stat()
                answer += fstat(descriptor, &st) == 0 ? "inode \(st.st_ino)" : "bad descriptor"
                close(descriptor)
            } else {
                answer += "none"
            }
            return Array(answer.utf8)
        }
        var st = stat()
        #expect(stat(path, &st) == 0 && st.st_mode & 0o777 == 0o600, "the socket is the owner's alone")

        let file = dir.write("netns-stand-in", "x")
        let fd = open(file, O_RDONLY | O_CLOEXEC)
        defer { close(fd) }
        var fileStat = stat()
        fstat(fd, &fileStat)
        let client = ControlClient(socketPath: path, timeoutMilliseconds: 5000)
        // A body larger than one read, so the descriptor rides on the first chunk only.
        let body = [UInt8](repeating: UInt8(ascii: "a"), count: 200_000)
        let passed = try client.post("/v1/cni/raw", body: body, passing: fd)
        #expect(passed.status == 200)
        #expect(passed.text == "/v1/cni/raw 200000 inode \(fileStat.st_ino)")
        #expect(try client.post("/v1/cni", body: Array("{}".utf8)).text == "/v1/cni 2 none")
        #expect(try client.get("/v1/status").status == 404, "only the CNI routes live here")
        // Requests at once each get their own answer.
        let answers = Mutex<[String]>([])
        DispatchQueue.concurrentPerform(iterations: 16) { i in
            let r = try? client.post("/v1/cni/raw", body: Array(repeating: 1, count: i), passing: fd)
            answers.withLock { $0.append(r?.text ?? "failed") }
        }
        #expect(Set(answers.withLock { $0 }) == Set((0..<16).map { "/v1/cni/raw \($0) inode \(fileStat.st_ino)" }))

        server.stop()
        #expect(stat(path, &st) != 0, "stop removes the socket file")
        #expect(throws: ControlClientError.self) { try client.post("/v1/cni/raw", body: []) }
    }

    @Test func requestReaderTakesAnyChunkingAndRefusesBadHeads() {
        let request = Array("POST /v1/cni/raw?x=1 HTTP/1.1\r\nHost: nodenet\r\ncontent-length: 5\r\n\r\nhello".utf8)
        var reader = HTTPRequestReader(maxBody: 100)
        for b in request {
            #expect(!reader.isComplete)
            reader.append([b][...])
        }
        #expect(reader.isComplete && reader.problem == nil)
        #expect(reader.head == .init(method: "POST", path: "/v1/cni/raw", contentLength: 5))
        #expect(reader.body == Array("hello".utf8))

        for (bad, problem) in [("GET /\r\n\r\n", "malformed request line"),
                               ("POST / HTTP/1.1\r\nContent-Length: -3\r\n\r\n", "bad Content-Length"),
                               ("POST / HTTP/1.1\r\nContent-Length: 101\r\n\r\n", "request body over 100 bytes")] {
            var r = HTTPRequestReader(maxBody: 100)
            r.append(Array(bad.utf8)[...])
            #expect(r.problem == problem && !r.isComplete, "\(bad)")
        }
    }
}
