import Agent
import ArgumentParser
import CNIShim

@available(macOS 10.15, *)
struct NodenetCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "nodenet",
        abstract: "Kubernetes node networking in one agent: CNI and IPAM, node routes, service proxy, cluster DNS.",
        version: nodenetVersion,
        subcommands: [AgentCommand.self, CNICommand.self, StatusCommand.self, ApplyCommand.self, DeleteCommand.self, PolicyCommand.self, ResetCommand.self,
                      VersionCommand.self])
}

/// Where commands find the agent: --socket, else $NODENET_SOCKET, else the default.
struct SocketOption: ParsableArguments {
    @Option(name: .long, help: "The agent's control socket (default: $NODENET_SOCKET or /run/nodenet/nodenet.sock).")
    var socket: String?

    var path: String {
        if let socket { return socket }
        if let env = ProcessEnvironment.get("NODENET_SOCKET"), !env.isEmpty { return env }
        return "/run/nodenet/nodenet.sock"
    }
}

struct VersionCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "version", abstract: "Print the version.")

    func run() {
        print("nodenet \(nodenetVersion)")
    }
}
