import Foundation

/// Executes the built plugin the way a runtime does: from inside the node's namespace, with
/// CNI_* variables and the network configuration on stdin. `plugin` is the nodenet-cni
/// executable unless a test picks the full nodenet binary (which takes the same path).
public struct CNIInvoker: Sendable {
    public let node: TestNamespace
    public let socket: String
    public var version: String
    public var network: String
    public var plugin: String

    public init(node: TestNamespace, socket: String, version: String = "1.1.0", network: String = "nodenet",
                plugin: String = AgentProcess.cniBinary) {
        self.node = node
        self.socket = socket
        self.version = version
        self.network = network
        self.plugin = plugin
    }

    public var config: String {
        "{\"cniVersion\":\"\(version)\",\"name\":\"\(network)\",\"type\":\"nodenet\",\"socket\":\"\(socket)\"}"
    }

    /// Runs one command; `netns` is a path, `args` is CNI_ARGS.
    @discardableResult
    public func run(_ command: String, containerID: String = "", netns: String = "", ifname: String = "eth0", args: String = "",
                    stdin: String? = nil, extraEnvironment: [String: String] = [:], timeout: Double = 60) throws -> Shell.Result {
        var env = ["CNI_COMMAND": command, "CNI_PATH": "/opt/cni/bin", "PATH": ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin"]
        if !containerID.isEmpty { env["CNI_CONTAINERID"] = containerID }
        if !netns.isEmpty { env["CNI_NETNS"] = netns }
        if !ifname.isEmpty { env["CNI_IFNAME"] = ifname }
        if !args.isEmpty { env["CNI_ARGS"] = args }
        env.merge(extraEnvironment) { _, new in new }
        return try Shell.run(["/usr/bin/nsenter", "--net=\(node.path)", plugin], stdin: stdin ?? config,
                             environment: env, timeout: timeout)
    }

    /// The JSON object a command printed (result or error).
    public static func json(_ r: Shell.Result) -> [String: Any] {
        (try? JSONSerialization.jsonObject(with: Data(r.stdout.utf8))) as? [String: Any] ?? [:]
    }

    /// The first address of an ADD result, without its prefix length.
    public static func address(_ r: Shell.Result) -> String? {
        addresses(r).first
    }

    /// Every address of an ADD result in its order, without prefix lengths.
    public static func addresses(_ r: Shell.Result) -> [String] {
        let ips = json(r)["ips"] as? [[String: Any]] ?? []
        return ips.compactMap { ($0["address"] as? String)?.split(separator: "/").first.map(String.init) }
    }
}
