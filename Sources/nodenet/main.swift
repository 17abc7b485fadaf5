// The nodenet executable: argument parsing and the CNI entry point, nothing else.
import ArgumentParser
import CNIShim
#if canImport(Glibc)
import Glibc
#endif

// A runtime executes /opt/cni/bin/nodenet (a symlink to this binary) with no arguments and
// CNI_COMMAND set. Take that path before anything else is initialised: start-up time is part
// of every pod's CNI call.
if CommandLine.arguments.count == 1, getenv("CNI_COMMAND") != nil {
    exit(CNIEntry.run())
}

/// Runs the async `run()` of a command. In a function (not top-level code) overload
/// resolution picks the async requirement; top-level code picked the synchronous default,
/// which only prints help.
func runCommand(_ command: inout any AsyncParsableCommand) async throws {
    try await command.run()
}

do {
    var command = try await NodenetCommand.asyncParseAsRoot()
    if var asyncCommand = command as? any AsyncParsableCommand {
        try await runCommand(&asyncCommand)
    } else {
        try command.run()
    }
} catch {
    NodenetCommand.exit(withError: error)
}
