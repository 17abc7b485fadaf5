import Agent
import ArgumentParser
import ControlClient
import Foundation

/// `nodenet reset`: removes everything nodenet put on this node (NodeReset says what). The
/// package's prerm runs it when nodenet is removed, after stopping the agent.
struct ResetCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "reset",
        abstract: "Remove everything nodenet put on this node: bridge, DNS and vxlan devices, nftables tables, routes, state.",
        discussion: "Pods on this node lose their network. The agent must be stopped first (systemctl stop nodenet).")

    @Option(name: .long, help: "Configuration file (default /etc/nodenet/config.yaml): where stateDir and runDir are.")
    var config: String?

    @Flag(name: .long, help: "Keep stateDir and runDir (the stored objects and addresses); remove only what is in the kernel.")
    var keepState = false

    func run() throws {
        let path = config ?? AgentConfiguration.defaultPath
        let cfg: AgentConfiguration
        do {
            cfg = try ConfigLoader.load(path: path, required: config != nil, overrides: [:], defaultNodeName: "reset")
        } catch {
            throw CLIError(error.description)
        }
        // A running agent would put everything back at once.
        if (try? ControlClient(socketPath: cfg.socketPath, timeoutMilliseconds: 2_000).get("/healthz")) != nil {
            throw CLIError("the nodenet agent is running (\(cfg.socketPath)): stop it first (systemctl stop nodenet)")
        }
        let report = NodeReset.run(cfg, removeState: !keepState)
        for item in report.removed { print("removed \(item)") }
        if report.removed.isEmpty { print("nothing of nodenet's was left on this node") }
        guard report.failures.isEmpty else {
            throw CLIError("could not remove: " + report.failures.joined(separator: "; "))
        }
    }
}
