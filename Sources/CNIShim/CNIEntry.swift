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
        if environment["CNI_COMMAND"] == "VERSION" {
            return emit(CNILocal.versionReply(stdin: stdin))
        }
        if environment["CNI_COMMAND"] == nil {
            print("nodenet CNI plugin; supported versions: \(CNIVersion.supported.map(\.rawValue).joined(separator: ", "))")
            return 0
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

    static func emit(_ reply: CNIReply) -> Int32 {
        let out = reply.stdout
        var offset = 0
        while offset < out.count {
            let n = out[offset...].withUnsafeBytes { write(1, $0.baseAddress, $0.count) }
            if n <= 0 { break }
            offset += n
        }
        return reply.exitCode
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
