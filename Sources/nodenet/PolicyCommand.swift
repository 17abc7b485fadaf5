import ArgumentParser
import ControlClient
import Foundation

struct PolicyCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "policy", abstract: "NetworkPolicy: explain verdicts, show the programmed tables.",
        subcommands: [PolicyCheckCommand.self, PolicyRulesCommand.self])
}

struct PolicyCheckCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "check",
        abstract: "Would a new connection be allowed? Names the policy and rule that decided.",
        discussion: """
            Computed by the agent from the same desired state it programs (every node's pods \
            included). Exit status: 0 allowed, 4 denied, 1 error.
            """)

    @OptionGroup var socket: SocketOption
    @Option(name: .long, help: "The client pod, NAMESPACE/POD.") var from: String
    @Option(name: .long, help: "The server: NAMESPACE/POD or an IP address.") var to: String
    @Option(name: .long, help: "PORT[/PROTOCOL] on the server (protocol TCP, UDP or SCTP; TCP when absent).") var port: String
    @Flag(name: .long, help: "Print the JSON answer.") var json = false

    static let deniedExitCode: Int32 = 4

    func run() throws {
        let client = ControlClient(socketPath: socket.path, timeoutMilliseconds: 10_000)
        func escape(_ s: String) -> String { s.addingPercentEncoding(withAllowedCharacters: .alphanumerics.union(CharacterSet(charactersIn: "-._~/:"))) ?? s }
        let response: ControlResponse
        do {
            response = try client.get("/v1/policy/check?from=\(escape(from))&to=\(escape(to))&port=\(escape(port))")
        } catch {
            throw CLIError(error.description)
        }
        guard response.status == 200 else { throw CLIError(apiMessage(response)) }
        struct Direction: Decodable {
            var isolated: Bool; var isolatingPolicies: [String]; var allowingRules: [String]
            var decidedBy: String?; var clusterNetworkPolicy: String?; var rule: String?; var action: String?; var passedBy: String?
        }
        struct Answer: Decodable {
            var allowed: Bool; var source: String; var destination: String; var port: String; var deniedBy: String?
            var egress: Direction; var ingress: Direction; var summary: String
        }
        guard let a = try? JSONDecoder().decode(Answer.self, from: Data(response.body)) else {
            throw CLIError("unexpected reply from the agent: \(response.text)")
        }
        if json {
            print(response.text)
        } else {
            print("\(a.allowed ? "ALLOWED" : "DENIED")  \(a.source) -> \(a.destination) \(a.port)")
            for (name, d) in [("egress", a.egress), ("ingress", a.ingress)] {
                if let cnp = d.clusterNetworkPolicy, let tier = d.decidedBy, tier == "Admin" || tier == "Baseline" {
                    print("  \(name): \(d.action ?? "?") by ClusterNetworkPolicy \(cnp) (\(tier) tier) rule \(d.rule ?? "?")")
                } else if !d.isolated {
                    print("  \(name): not isolated (no policy selects the pod for \(name))")
                } else if d.allowingRules.isEmpty {
                    print("  \(name): DENIED: isolated by \(d.isolatingPolicies.joined(separator: ", ")); no rule allows it")
                } else {
                    print("  \(name): allowed by \(d.allowingRules.joined(separator: ", "))")
                }
                if let pass = d.passedBy { print("    (after Admin Pass: \(pass))") }
            }
        }
        if !a.allowed { throw ExitCode(Self.deniedExitCode) }
    }
}

struct PolicyRulesCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "rules", abstract: "Print the policy tables the agent programs, in nft syntax.")
    @OptionGroup var socket: SocketOption

    func run() throws {
        let client = ControlClient(socketPath: socket.path, timeoutMilliseconds: 10_000)
        let r: ControlResponse
        do { r = try client.get("/v1/policy/rules") } catch { throw CLIError(error.description) }
        guard r.status == 200 else { throw CLIError(apiMessage(r)) }
        print(r.text, terminator: "")
    }
}
