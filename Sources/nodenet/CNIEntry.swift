import CNIProtocol
import CNIShim
import PodNetwork
import ControlClient
import Netlink
#if canImport(Glibc)
import Glibc
#endif

/// The CNI plugin's full path, in the nodenet binary: `nodenet cni`, a runtime exec'ing the
/// binary with CNI_COMMAND set, and the lean `nodenet-cni` when the fast path
/// (`CNIFastPath`) does not decide. Parses and validates itself, forwards the request to the
/// agent over the control socket and prints the agent's answer. When the agent is down: ADD
/// waits a bounded time then says "try again later" (11), STATUS says "not available" (50),
/// DEL tears the pod's interface down itself and queues the address release for the agent to
/// finish when it starts.
enum CNIEntry {
    /// How long ADD keeps trying to reach an agent that is (re)starting.
    static let addWaitMilliseconds: Int64 = 10_000

    static func run() -> Int32 {
        let environment = ProcessEnvironment.all()
        let stdin = CNIFastPath.readStdin()
        guard let command = environment["CNI_COMMAND"] else {
            print("nodenet CNI plugin; supported versions: \(CNIVersion.supported.map(\.rawValue).joined(separator: ", "))")
            return 0
        }
        var firstAttempt: ControlClientError?
        switch CNIFastPath.attempt(command: command, environment: environment, stdin: stdin) {
        case .done(let code): return code
        case .notTaken: break
        case .failed(let error): firstAttempt = error
        }
        if command == "VERSION" {
            return CNIFastPath.emit(CNILocal.versionReply(stdin: stdin))
        }
        let request: CNIRequest
        do {
            request = try CNIRequest.parse(environment: environment, stdin: stdin)
        } catch {
            return CNIFastPath.emit(.failure(error))
        }
        let socket = request.config?.socket ?? NetworkConfig.defaultSocket
        let version = request.replyVersion.rawValue
        let body: [UInt8]
        do {
            body = try request.envelope()
        } catch {
            return CNIFastPath.emit(.failure(error))
        }
        // The fast path's request reached the agent and then failed: sending it again could
        // run an ADD twice.
        if let firstAttempt { return CNIFastPath.emit(agentDown(request, socket: socket, error: firstAttempt)) }
        // The agent's CNI socket with the pod's namespace handed over; an agent without it
        // (older, or starting up) through the control socket, where it opens CNI_NETNS itself.
        let cniSocket = ControlClient(socketPath: CNIAgentSocket.path(besides: socket), timeoutMilliseconds: 120_000)
        let client = ControlClient(socketPath: socket, timeoutMilliseconds: 120_000)
        let namespace = CNIAgentSocket.openNamespace(command: command, environment: environment)
        defer { if let namespace { close(namespace) } }
        func exchange() throws(ControlClientError) -> ControlResponse {
            do {
                return try cniSocket.post("/v1/cni", body: body, passing: namespace)
            } catch {
                guard case .agentUnreachable = error else { throw error }
                return try client.post("/v1/cni", body: body)
            }
        }
        let deadline = now() + (request.command == .add ? addWaitMilliseconds : 0)
        while true {
            do {
                let response = try exchange()
                if response.status == 200, let reply = try? CNIReply.fromEnvelope(response.body) {
                    return CNIFastPath.emit(reply)
                }
                if response.status == 404, now() < deadline {  // agent starting: its CNI route is not up yet
                    usleep(100_000)
                    continue
                }
                return CNIFastPath.emit(.failure(CNIError(response.status == 404 ? .tryAgainLater : .agentFailure,
                                              "the nodenet agent answered HTTP \(response.status): \(response.text)", version: version)))
            } catch {
                if case .agentUnreachable = error, now() < deadline {
                    usleep(100_000)
                    continue
                }
                return CNIFastPath.emit(agentDown(request, socket: socket, error: error))
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

    static func now() -> Int64 {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return Int64(ts.tv_sec) * 1000 + Int64(ts.tv_nsec) / 1_000_000
    }
}
