import Agent
import ArgumentParser
import ControlClient
import Foundation

struct StatusCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "status", abstract: "Show what the node's agent is doing.")

    @OptionGroup var socket: SocketOption
    @Flag(name: .long, help: "Print the stable JSON document instead of the table.") var json = false
    @Flag(name: .long, help: "Print the service rules the agent programs, in nft syntax.") var rules = false

    func run() throws {
        let client = ControlClient(socketPath: socket.path, timeoutMilliseconds: 10_000)
        if rules {
            let r: ControlResponse
            do { r = try client.get("/v1/rules") } catch { throw CLIError(error.description) }
            guard r.status == 200 else { throw CLIError(apiMessage(r)) }
            print(r.text, terminator: "")
            return
        }
        let response: ControlResponse
        do {
            response = try client.get("/v1/status")
        } catch {
            throw CLIError(error.description)
        }
        guard response.status == 200 else { throw CLIError(apiMessage(response)) }
        let status = try? AgentStatus.decoder().decode(AgentStatus.self, from: Data(response.body))
        if json {
            FileHandle.standardOutput.write(Data(response.body))
        } else if let status {
            print(StatusRenderer.render(status), terminator: "")
        } else {
            throw CLIError("cannot read the agent's status; try --json")
        }
        // Scripts and probes read the exit status: 0 only for a ready node.
        if status?.agent.ready != true { throw ExitCode(Self.notReadyExitCode) }
    }

    /// The agent answered and is not ready (an agent that does not answer is 1, as every error).
    static let notReadyExitCode: Int32 = 3
}

struct ManifestOptions: ParsableArguments {
    @Option(name: .shortAndLong, help: "Manifest file (YAML or JSON, several documents), or - for stdin.")
    var filename: String

    @Flag(name: .long, help: "Validate and show what would change; change nothing.") var dryRun = false

    func read() throws -> [UInt8] {
        if filename == "-" {
            return Array(FileHandle.standardInput.readDataToEndOfFile())
        }
        guard let data = FileManager.default.contents(atPath: filename) else {
            throw CLIError("cannot read \(filename)")
        }
        return Array(data)
    }
}

struct ApplyCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "apply", abstract: "Write Kubernetes manifests into the store (embedded and etcd sources).")

    @OptionGroup var socket: SocketOption
    @OptionGroup var manifest: ManifestOptions

    func run() throws {
        try send(path: "/v1/apply", manifest: manifest, socket: socket)
    }
}

struct DeleteCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "delete", abstract: "Remove the objects named in manifests from the store.")

    @OptionGroup var socket: SocketOption
    @OptionGroup var manifest: ManifestOptions

    func run() throws {
        try send(path: "/v1/delete", manifest: manifest, socket: socket)
    }
}

private func send(path: String, manifest: ManifestOptions, socket: SocketOption) throws {
    let body = try manifest.read()
    let client = ControlClient(socketPath: socket.path)
    let response: ControlResponse
    do {
        response = try client.post(path + (manifest.dryRun ? "?dryRun=true" : ""), body: body, contentType: "application/yaml")
    } catch {
        throw CLIError(error.description)
    }
    guard response.status == 200 else { throw CLIError(apiMessage(response)) }
    guard let result = try? JSONDecoder().decode(ApplyResult.self, from: Data(response.body)) else {
        throw CLIError("unexpected reply from the agent: \(response.text)")
    }
    for item in result.items {
        print("\(item.object) \(item.action)\(result.dryRun ? " (dry run)" : "")")
    }
}

/// The `error` field of an API error, else the raw body.
func apiMessage(_ response: ControlResponse) -> String {
    struct APIError: Decodable { var error: String }
    if let e = try? JSONDecoder().decode(APIError.self, from: Data(response.body)) { return e.error }
    return "agent answered HTTP \(response.status): \(response.text)"
}

struct CLIError: Error, CustomStringConvertible {
    var description: String
    init(_ message: String) { description = message }
}
