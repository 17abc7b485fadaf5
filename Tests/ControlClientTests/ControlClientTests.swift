import Testing
@testable import ControlClient

@Suite struct ControlClientTests {
    @Test func parsesResponseWithContentLength() throws {
        let raw = Array("HTTP/1.1 422 Unprocessable Entity\r\ncontent-length: 5\r\n\r\nhelloEXTRA".utf8)
        let r = try ControlClient.parse(raw)
        #expect(r.status == 422)
        #expect(r.text == "hello")
    }

    @Test func rejectsGarbage() {
        #expect(throws: ControlClientError.self) { try ControlClient.parse(Array("garbage".utf8)) }
        #expect(throws: ControlClientError.self) { try ControlClient.parse(Array("SMTP 200\r\n\r\n".utf8)) }
    }

    @Test func unreachableAgentIsNamed() {
        let client = ControlClient(socketPath: "/nonexistent/nodenet-test.sock", timeoutMilliseconds: 200)
        #expect(throws: ControlClientError.agentUnreachable(path: "/nonexistent/nodenet-test.sock", errno: 2)) {
            _ = try client.get("/v1/status")
        }
    }
}
