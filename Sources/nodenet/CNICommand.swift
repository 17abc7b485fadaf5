import ArgumentParser
import CNIShim

/// `nodenet cni`: the same entry point, for runtimes or people that call it explicitly.
struct CNICommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "cni", abstract: "Act as the CNI plugin (reads CNI_* from the environment, config on stdin).")

    func run() throws {
        let code = CNIEntry.run()
        if code != 0 { throw ExitCode(code) }
    }
}
