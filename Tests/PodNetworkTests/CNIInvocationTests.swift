import Foundation
import NodenetTestSupport
import Testing

/// The plugin executables run the wrong way: no agent, no privileges needed.
@Suite struct CNIInvocationTests {
    static let config = #"{"cniVersion":"1.1.0","name":"nodenet","type":"nodenet","socket":"/nonexistent/nodenet.sock"}"#

    /// A plugin executed without CNI_COMMAND (a runtime or a person calling it wrongly) answers
    /// a CNI error (code 4, saying what it supports) and fails, rather than printing help or a
    /// banner and exiting 0, which a caller would take for success.
    @Test(arguments: [[AgentProcess.cniBinary], [AgentProcess.binary, "cni"]])
    func missingCommandIsAnErrorInCNIForm(argv: [String]) throws {
        let environment = [
            "CNI_CONTAINERID": String(repeating: "9f1c2d3e4b5a6978", count: 4), "CNI_NETNS": "/var/run/netns/cni-0b7c",
            "CNI_IFNAME": "eth0", "CNI_PATH": "/opt/cni/bin", "PATH": "/usr/bin:/bin",
        ]
        for stdin in [Self.config, nil] {
            let r = try Shell.run(argv, stdin: stdin, environment: environment, timeout: 30)
            #expect(!r.ok, "\(argv) exited 0: \(r.stdout)")
            let json = CNIInvoker.json(r)
            #expect(json["code"] as? Int == 4, "\(argv): \(r.stdout)\(r.stderr)")
            #expect(json["msg"] as? String == "CNI_COMMAND is not set", "\(argv): \(r.stdout)")
            let details = json["details"] as? String ?? ""
            #expect(details.contains("ADD") && details.contains("VERSION") && details.contains("1.1.0"), "says what it supports: \(details)")
        }
    }
}
