// /opt/cni/bin/nodenet: the CNI plugin a runtime execs for every pod. It answers VERSION and
// one exchange with a running agent itself (CNIFastPath: no Codable, no netlink, linked
// statically, so the exec costs about 1.2 ms against 2.4 ms dynamically linked and 5.9 ms for
// the full binary), and hands every other case to the full plugin, `nodenet cni`, by exec.
#if canImport(Glibc)
import Glibc
#endif
import CNIProtocol
import CNIShim

let environment = ProcessEnvironment.all()
guard environment["CNI_COMMAND"] != nil else { exit(CNIFastPath.emit(.failure(.commandNotSet))) }
let stdin = CNIFastPath.readStdin()
if let command = environment["CNI_COMMAND"] {
    switch CNIFastPath.attempt(command: command, environment: environment, stdin: stdin) {
    case .done(let code):
        exit(code)
    case .failed(let error) where command == "ADD":
        // The ADD reached the agent and the exchange broke: sending it again could attach the
        // pod twice, so the runtime is told to retry (its retry is a new ADD after a DEL).
        let version = (try? CNIRequest.parse(environment: environment, stdin: stdin))?.replyVersion.rawValue
        exit(CNIFastPath.emit(.failure(CNIError(.tryAgainLater, "\(error)", version: version))))
    case .failed, .notTaken:
        break  // DEL, CHECK, GC and STATUS are safe to send again
    }
}
let version = CNIConfigScan.strings(["cniVersion"], in: stdin)?["cniVersion"]
guard let full = CNIDelegate.fullBinary() else {
    exit(CNIFastPath.emit(.failure(CNIError(.tryAgainLater, "cannot find the nodenet binary beside this plugin", version: version))))
}
let problem = CNIDelegate.exec(full, stdin: stdin)
exit(CNIFastPath.emit(.failure(CNIError(.tryAgainLater, problem, version: version))))
