import CNIProtocol
import ControlClient
import Netlink
#if canImport(Glibc)
import Glibc
#endif

/// The CNI plugin: the runtime executes it for every pod, so it only parses, forwards the
/// request to the agent over the control socket and prints the agent's answer. VERSION is
/// answered here. When the agent is down: ADD waits a bounded time then says "try again
/// later" (11), STATUS says "not available" (50), DEL tears the pod's interface down itself
/// and queues the address release for the agent to finish when it starts.
public enum CNIEntry {
    /// How long ADD keeps trying to reach an agent that is (re)starting.
    static let addWaitMilliseconds: Int64 = 10_000

    public static func run() -> Int32 {
        let environment = ProcessEnvironment.all()
        let stdin = readStdin()
        guard let command = environment["CNI_COMMAND"] else {
            print("nodenet CNI plugin; supported versions: \(CNIVersion.supported.map(\.rawValue).joined(separator: ", "))")
            return 0
        }
        var firstAttempt: ControlClientError?
        switch fastPath(command: command, environment: environment, stdin: stdin) {
        case .done(let code): return code
        case .notTaken: break
        case .failed(let error): firstAttempt = error
        }
        if command == "VERSION" {
            return emit(CNILocal.versionReply(stdin: stdin))
        }
        let request: CNIRequest
        do {
            request = try CNIRequest.parse(environment: environment, stdin: stdin)
        } catch {
            return emit(.failure(error))
        }
        let socket = request.config?.socket ?? NetworkConfig.defaultSocket
        let version = request.replyVersion.rawValue
        let body: [UInt8]
        do {
            body = try request.envelope()
        } catch {
            return emit(.failure(error))
        }
        // The fast path's request reached the agent and then failed: sending it again could
        // run an ADD twice.
        if let firstAttempt { return emit(agentDown(request, socket: socket, error: firstAttempt)) }
        let client = ControlClient(socketPath: socket, timeoutMilliseconds: 120_000)
        let deadline = now() + (request.command == .add ? addWaitMilliseconds : 0)
        while true {
            do {
                let response = try client.post("/v1/cni", body: body)
                if response.status == 200, let reply = try? CNIReply.fromEnvelope(response.body) {
                    return emit(reply)
                }
                if response.status == 404, now() < deadline {  // agent starting: its CNI route is not up yet
                    usleep(100_000)
                    continue
                }
                return emit(.failure(CNIError(response.status == 404 ? .tryAgainLater : .agentFailure,
                                              "the nodenet agent answered HTTP \(response.status): \(response.text)", version: version)))
            } catch {
                if case .agentUnreachable = error, now() < deadline {
                    usleep(100_000)
                    continue
                }
                return emit(agentDown(request, socket: socket, error: error))
            }
        }
    }

    static func agentDown(_ request: CNIRequest, socket: String, error: ControlClientError) -> CNIReply {
        let version = request.replyVersion.rawValue
        switch request.command {
        case .status:
            return .failure(CNIError(.notAvailable, "\(error)", version: version))
        case .del:
            guard let containerID = request.containerID, let ifname = request.ifname else { return .result(CNIResult(), for: request.replyVersion) }
            // Tear down what we can here (the runtime runs us in the node's namespace), then
            // queue the release for the agent.
            let hostName = HostInterfaceName.forAttachment(containerID: containerID, ifname: ifname)
            _ = try? RouteClient().deleteLink(named: hostName)
            let runDir = socket.split(separator: "/", omittingEmptySubsequences: false).dropLast().joined(separator: "/")
            do {
                try PendingDeletes(runDir: runDir.isEmpty ? "/" : runDir)
                    .enqueue(.init(containerID: containerID, ifname: ifname, network: request.config?.name ?? "nodenet"))
            } catch {
                return .failure(CNIError(.ioFailure, "agent down and the release could not be queued under \(runDir): \(error)", version: version))
            }
            return .result(CNIResult(), for: request.replyVersion)
        default:
            return .failure(CNIError(.tryAgainLater, "\(error)", version: version))
        }
    }

    enum FastOutcome {
        case done(Int32)
        /// Nothing was sent (agent not listening, route not up, or a config the scanner does
        /// not follow): the full path decides.
        case notTaken
        /// The request was sent and the exchange failed.
        case failed(ControlClientError)
    }

    /// VERSION, and one exchange with a running agent, without Codable (see CNIFastWire).
    static func fastPath(command: String, environment: [String: String], stdin: [UInt8]) -> FastOutcome {
        if command == "VERSION" {
            guard let reply = CNIFastWire.versionReply(stdin: stdin) else { return .notTaken }
            return .done(emit(stdout: reply, exitCode: 0))
        }
        guard !stdin.isEmpty, let scanned = CNIConfigScan.strings(["socket"], in: stdin) else { return .notTaken }
        let client = ControlClient(socketPath: scanned["socket"] ?? NetworkConfig.defaultSocket, timeoutMilliseconds: 120_000)
        do {
            let response = try client.post(CNIFastWire.path, body: CNIFastWire.envelope(environment: environment, stdin: stdin))
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

    static func emit(_ reply: CNIReply) -> Int32 {
        emit(stdout: reply.stdout, exitCode: reply.exitCode)
    }

    static func emit(stdout out: [UInt8], exitCode: Int32) -> Int32 {
        var offset = 0
        while offset < out.count {
            let n = out[offset...].withUnsafeBytes { write(1, $0.baseAddress, $0.count) }
            if n <= 0 { break }
            offset += n
        }
        return exitCode
    }

    static func readStdin() -> [UInt8] {
        var out: [UInt8] = []
        var buf = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = buf.withUnsafeMutableBytes { read(0, $0.baseAddress, $0.count) }
            if n <= 0 { break }
            out += buf[0..<n]
        }
        return out
    }

    static func now() -> Int64 {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return Int64(ts.tv_sec) * 1000 + Int64(ts.tv_nsec) / 1_000_000
    }
}
