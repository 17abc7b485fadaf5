// The plugin configuration the runtime writes to stdin: the spec's keys (with the
// runtime-injected runtimeConfig, args, prevResult and GC's valid attachments) and nodenet's own.
import IPAddressing

public struct NetworkConfig: Hashable, Sendable {
    public var cniVersion: CNIVersion
    public var name: String
    public var type: String
    public var prevResult: CNIResult?
    public var runtimeConfig: RuntimeConfig
    /// `args.cni.ips` and `args.cni.mac` (CONVENTIONS.md); other `args` keys are ignored.
    public var argsIPs: [IPAddress]
    public var argsMAC: String?
    /// GC only: `cni.dev/valid-attachments` (or the spec typo `cni.dev/attachments`).
    public var validAttachments: [CNIAttachment]?
    /// The well-known `dns` key of the network config.
    public var dns: CNIResult.DNS?

    // nodenet's keys
    public static let defaultSocket = "/run/nodenet/nodenet.sock"
    public static let defaultBridge = "nodenet0"
    /// The agent's control socket; the runtime passes no custom environment, so the config carries it.
    public var socket: String
    public var bridge: String
    /// Overrides the MTU the agent derives from the routing mode.
    public var mtu: Int?
    public var hairpinMode: Bool
    public var ipam: IPAMSection?

    public struct RuntimeConfig: Hashable, Sendable {
        public var portMappings: [PortMapping] = []
        public var ips: [IPAddress] = []
        public var mac: String?
        public var dns: DNSCapability?
        public init() {}
    }

    public struct PortMapping: Hashable, Sendable, Codable {
        public var hostPort: Int
        public var containerPort: Int
        /// Lower case: tcp, udp or sctp.
        public var `protocol`: String
        public var hostIP: IPAddress?

        public init(hostPort: Int, containerPort: Int, protocol: String = "tcp", hostIP: IPAddress? = nil) {
            self.hostPort = hostPort
            self.containerPort = containerPort
            self.protocol = `protocol`
            self.hostIP = hostIP
        }
    }

    /// The `dns` capability: note the names differ from the result's DNS (servers, searches).
    public struct DNSCapability: Hashable, Sendable, Codable {
        public var servers: [String]?
        public var searches: [String]?
        public var options: [String]?

        public init(servers: [String]? = nil, searches: [String]? = nil, options: [String]? = nil) {
            self.servers = servers
            self.searches = searches
            self.options = options
        }

        enum CodingKeys: String, CodingKey { case servers, searches, options }

        /// containerd sends `{"Servers":..,"Searches":..,"Options":..}` (Go field names): keys
        /// are matched as Go matches them.
        public init(from decoder: any Decoder) throws {
            let c = try decoder.container(keyedBy: AnyCodingKey.self)
            servers = try c.goDecode([String].self, "servers")
            searches = try c.goDecode([String].self, "searches")
            options = try c.goDecode([String].self, "options")
        }
    }

    /// nodenet allocates addresses itself; this section may only narrow what it does.
    public struct IPAMSection: Hashable, Sendable {
        /// Absent or "nodenet".
        public var type: String?
        /// Overrides the node's pod subnets (normally they come from the agent).
        public var subnets: [IPPrefix]?
        /// Extra routes for the pod besides the default routes.
        public var routes: [CNIResult.Route]
    }
}

public struct CNIAttachment: Hashable, Sendable, Codable {
    public var containerID: String
    public var ifname: String

    public init(containerID: String, ifname: String) {
        self.containerID = containerID
        self.ifname = ifname
    }
}

extension NetworkConfig {
    /// The `cniVersion` alone, read before anything else so that an unsupported version is
    /// reported as such (code 1) rather than as whatever else in the config it fails on.
    /// A config without one is 0.1.0, as libcni decides.
    static func version(of bytes: [UInt8]) throws(CNIError) -> String {
        struct Probe: Decodable { var cniVersion: String? }
        do {
            return try CNIJSON.decode(Probe.self, from: bytes).cniVersion ?? CNIVersion.v0_1_0.rawValue
        } catch {
            throw CNIJSON.error(error, decoding: "the network configuration", version: nil)
        }
    }

    /// Decodes and validates the config for `command`: code 1 for a version nodenet or the
    /// command does not support, 6 for malformed JSON, 7 for invalid values.
    public static func parse(_ bytes: [UInt8], for command: CNICommand) throws(CNIError) -> NetworkConfig {
        let text = try version(of: bytes)
        let supportedList = "[" + CNIVersion.supported.map { "\"\($0.rawValue)\"" }.joined(separator: ", ") + "]"
        guard let version = CNIVersion(rawValue: text), version.isSupported else {
            throw CNIError(.incompatibleVersion, "incompatible CNI versions",
                           details: "config is \"\(text)\", plugin supports \(supportedList)")
        }
        guard version.allows(command) else {
            throw CNIError(.incompatibleVersion, "config version does not allow \(command.rawValue)",
                           details: "config is \"\(text)\"; \(command.rawValue) needs \(command == .check ? "0.4.0" : "1.1.0") or later",
                           version: text)
        }
        let wire: Wire
        do {
            wire = try CNIJSON.decode(Wire.self, from: bytes)
        } catch let error as CNIError {
            throw CNIError(error.code, error.msg, details: error.details, version: text)
        } catch {
            throw CNIJSON.error(error, decoding: "the network configuration", version: text)
        }
        return try wire.validated(version: version)
    }
}
