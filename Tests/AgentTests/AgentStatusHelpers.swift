import Agent
import Foundation
import NodenetTestSupport
import Testing

/// `nodenet status --json` of a running test agent, decoded (an expectation fails when the CLI
/// does). Shared by the suites that read the agent's rows and object counts.
func status(_ agent: AgentProcess) throws -> AgentStatus {
    let r = try agent.cli(["status", "--json"])
    #expect(r.ok, "\(r.stderr)")
    return try AgentStatus.decoder().decode(AgentStatus.self, from: Data(r.stdout.utf8))
}

/// The store's objects of one kind, as the control API lists them (Kubernetes JSON).
func storedObjects(_ agent: AgentProcess, _ kind: String) throws -> [[String: Any]] {
    let r = try Shell.run(["curl", "-sS", "--max-time", "5", "--unix-socket", agent.socket, "http://agent/v1/objects?kind=\(kind)"])
    let list = try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any]
    return list?["items"] as? [[String: Any]] ?? []
}

/// Polls (bounded: `seconds`) until the agent's store holds `count` objects of `kind`.
func waitForObjects(_ agent: AgentProcess, _ kind: String, count: Int, seconds: Double = 10) -> Bool {
    let deadline = Date().addingTimeInterval(seconds)
    while Date() < deadline {
        if (try? status(agent))?.objects[kind] == count { return true }
        usleep(100_000)
    }
    return (try? status(agent))?.objects[kind] == count
}
