import CNIProtocol
import ControlClient
#if canImport(Glibc)
import Glibc
#endif

/// What the lean plugin executable does for nearly every call, without Codable and without
/// netlink (see CNIFastWire): VERSION, and one exchange with a running agent. Whatever it
/// does not decide goes to the full path (`nodenet cni`).
public enum CNIFastPath {
    public enum Outcome: Sendable {
        case done(Int32)
        /// Nothing was sent (agent not listening, route not up, or a config the scanner does
        /// not follow): the full path decides.
        case notTaken
        /// The request was sent and the exchange failed.
        case failed(ControlClientError)
    }

    /// VERSION, and one exchange with a running agent; prints the answer when it has one.
    public static func attempt(command: String, environment: [String: String], stdin: [UInt8]) -> Outcome {
        if command == "VERSION" {
            guard let reply = CNIFastWire.versionReply(stdin: stdin) else { return .notTaken }
            return .done(emit(stdout: reply, exitCode: 0))
        }
        guard !stdin.isEmpty, let scanned = CNIConfigScan.strings(["socket"], in: stdin) else { return .notTaken }
        // The agent's CNI socket, with the pod's namespace handed over. An agent without it
        // (starting, or older) is the full path's case.
        let control = scanned["socket"] ?? NetworkConfig.defaultSocket
        let client = ControlClient(socketPath: CNIAgentSocket.path(besides: control), timeoutMilliseconds: 120_000)
        let namespace = CNIAgentSocket.openNamespace(command: command, environment: environment)
        defer { if let namespace { close(namespace) } }
        do {
            let response = try client.post(CNIFastWire.path, body: CNIFastWire.envelope(environment: environment, stdin: stdin),
                                           passing: namespace)
            if response.status == 404 { return .notTaken }  // agent starting: its CNI routes are not up yet
            guard response.status == 200, let reply = CNIFastWire.parseReply(response.body) else {
                return .failed(.malformedResponse("HTTP \(response.status): \(response.text)"))
            }
            return .done(emit(stdout: reply.stdout, exitCode: reply.exitCode))
        } catch {
            if case .agentUnreachable = error { return .notTaken }
            return .failed(error)
        }
    }

    public static func emit(_ reply: CNIReply) -> Int32 {
        emit(stdout: reply.stdout, exitCode: reply.exitCode)
    }

    public static func emit(stdout out: [UInt8], exitCode: Int32) -> Int32 {
        var offset = 0
        while offset < out.count {
            let n = out[offset...].withUnsafeBytes { write(1, $0.baseAddress, $0.count) }
            if n <= 0 { break }
            offset += n
        }
        return exitCode
    }

    public static func readStdin() -> [UInt8] {
        var out: [UInt8] = []
        var buf = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = buf.withUnsafeMutableBytes { read(0, $0.baseAddress, $0.count) }
            if n <= 0 { break }
            out += buf[0..<n]
        }
        return out
    }
}
