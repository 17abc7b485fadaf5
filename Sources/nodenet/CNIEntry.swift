import ArgumentParser
#if canImport(Glibc)
import Glibc
#endif

/// The CNI plugin entry point. VERSION is answered here, without the agent; the other
/// commands are forwarded to the agent (the CNI issue fills that in).
enum CNIEntry {
    static let supportedVersions = ["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"]

    static func run() -> Int32 {
        let command = ProcessEnvironment.get("CNI_COMMAND") ?? ""
        let stdin = readStdin()
        let requested = requestedVersion(stdin) ?? "1.1.0"
        switch command {
        case "VERSION":
            let list = supportedVersions.map { "\"\($0)\"" }.joined(separator: ",")
            print("{\"cniVersion\":\"\(requested)\",\"supportedVersions\":[\(list)]}")
            return 0
        case "":
            print("nodenet CNI plugin; supported versions: \(supportedVersions.joined(separator: ", "))")
            return 0
        default:
            return fail(code: 50, version: requested, "CNI \(command) is not available in this build of nodenet")
        }
    }

    static func fail(code: Int, version: String, _ message: String) -> Int32 {
        let escaped = message.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"")
        print("{\"cniVersion\":\"\(version)\",\"code\":\(code),\"msg\":\"\(escaped)\"}")
        return 1
    }

    static func readStdin() -> [UInt8] {
        var out: [UInt8] = []
        var buf = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = buf.withUnsafeMutableBytes { read(0, $0.baseAddress, $0.count) }
            if n <= 0 { break }
            out += buf[0..<n]
        }
        return out
    }

    /// The cniVersion in the config, found without a JSON parser (VERSION must be cheap).
    static func requestedVersion(_ stdin: [UInt8]) -> String? {
        let s = String(decoding: stdin, as: UTF8.self)
        guard let r = s.range(of: "\"cniVersion\"") else { return nil }
        let rest = s[r.upperBound...].drop { $0 == " " || $0 == ":" || $0 == "\t" || $0 == "\n" }
        guard rest.first == "\"" else { return nil }
        let value = rest.dropFirst().prefix { $0 != "\"" }
        return value.isEmpty ? nil : String(value)
    }

    /// `nodenet cni`: the same entry point, for runtimes or people that call it explicitly.
}

struct CNICommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "cni", abstract: "Act as the CNI plugin (reads CNI_* from the environment, config on stdin).")

    func run() throws {
        throw ExitCode(CNIEntry.run())
    }
}
