// What the shim sends the agent, and what comes back. The shim parses and validates
// (so bad input fails fast, without the agent), then forwards the CNI_* variables and the
// stdin bytes; the agent re-parses them with the same code rather than trusting a second
// encoding of the config.
#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import IPAddressing

public struct CNIRequest: Hashable, Sendable {
    public var command: CNICommand
    public var containerID: String?
    public var netns: String?
    public var ifname: String?
    public var args: CNIArgs
    /// CNI_PATH split on ':'.
    public var path: [String]
    /// The parsed config; nil only for VERSION.
    public var config: NetworkConfig?
    /// The stdin bytes as the runtime wrote them.
    public var rawConfig: [UInt8]
    /// The CNI_* variables this request was parsed from (what the shim forwards).
    public var environment: [String: String]

    public static let variables = ["CNI_COMMAND", "CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME", "CNI_ARGS", "CNI_PATH"]

    /// Checks the environment for the command (code 4, naming the variable), then the config
    /// (codes 1, 6, 7; see `NetworkConfig.parse`).
    public static func parse(environment: [String: String], stdin: [UInt8]) throws(CNIError) -> CNIRequest {
        do {
            return try parseChecked(environment: environment, stdin: stdin)
        } catch var error {
            // Errors found before the config was read still speak the config's version when
            // it has a supported one, so the runtime reads them in the format it expects.
            if let v = try? NetworkConfig.version(of: stdin), CNIVersion(rawValue: v)?.isSupported == true { error.cniVersion = v }
            throw error
        }
    }

    private static func parseChecked(environment: [String: String], stdin: [UInt8]) throws(CNIError) -> CNIRequest {
        guard let commandText = environment["CNI_COMMAND"], !commandText.isEmpty else {
            throw CNIError(.invalidEnvironment, "required env variable CNI_COMMAND is missing")
        }
        guard let command = CNICommand(rawValue: commandText) else {
            throw CNIError(.invalidEnvironment, "unknown CNI_COMMAND \"\(commandText)\"",
                           details: "expected one of \(CNICommand.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        if command == .version {
            // VERSION is answered locally from stdin alone; stale variables must not fail it.
            return CNIRequest(command: .version, containerID: nil, netns: nil, ifname: nil, args: CNIArgs(), path: [],
                              config: nil, rawConfig: stdin, environment: ["CNI_COMMAND": commandText])
        }
        let missing = command.requiredVariables.filter { (environment[$0] ?? "").isEmpty }
        guard missing.isEmpty else {
            throw CNIError(.invalidEnvironment, "required env variables [\(missing.joined(separator: ","))] missing for \(command.rawValue)")
        }
        let containerID = environment["CNI_CONTAINERID"].flatMap { $0.isEmpty ? nil : $0 }
        if let containerID, !CNIValidation.isValidIdentifier(containerID) {
            throw CNIError(.invalidEnvironment, "invalid characters in CNI_CONTAINERID \"\(containerID)\"",
                           details: "a container id must match [a-zA-Z0-9][a-zA-Z0-9_.-]*")
        }
        let ifname = environment["CNI_IFNAME"].flatMap { $0.isEmpty ? nil : $0 }
        if let ifname, let problem = CNIValidation.interfaceNameProblem(ifname) {
            throw CNIError(.invalidEnvironment, "invalid CNI_IFNAME \"\(ifname)\": \(problem)")
        }
        let args = try CNIArgs(parsing: environment["CNI_ARGS"] ?? "")
        let path = (environment["CNI_PATH"] ?? "").split(separator: ":").map(String.init)
        let config = command == .version ? nil : try NetworkConfig.parse(stdin, for: command)
        var forwarded: [String: String] = [:]
        for key in variables { forwarded[key] = environment[key] }
        return CNIRequest(command: command, containerID: containerID, netns: environment["CNI_NETNS"].flatMap { $0.isEmpty ? nil : $0 },
                          ifname: ifname, args: args, path: path, config: config, rawConfig: stdin, environment: forwarded)
    }

    /// The attachment this request is about (ADD, DEL, CHECK).
    public var attachment: CNIAttachment? {
        guard let containerID, let ifname else { return nil }
        return CNIAttachment(containerID: containerID, ifname: ifname)
    }

    /// Addresses the runtime asked for: `runtimeConfig.ips`, else `args.cni.ips`, else
    /// CNI_ARGS `IP=` (the first source that names any wins).
    public var requestedIPs: [IPAddress] {
        if let c = config, !c.runtimeConfig.ips.isEmpty { return c.runtimeConfig.ips }
        if let c = config, !c.argsIPs.isEmpty { return c.argsIPs }
        return args.requestedIPs
    }

    /// MAC precedence as in the bridge plugin: runtimeConfig, then args, then CNI_ARGS.
    public var requestedMAC: String? { config?.runtimeConfig.mac ?? config?.argsMAC ?? args.mac }

    /// The version replies are written in: the config's, else the latest.
    public var replyVersion: CNIVersion { config?.cniVersion ?? .latest }
}

extension CNIRequest: Codable {
    enum CodingKeys: String, CodingKey { case environment, stdin }

    /// The envelope on the wire: `{"environment": {CNI_*...}, "stdin": "<config JSON text>"}`.
    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(environment, forKey: .environment)
        try c.encode(String(decoding: rawConfig, as: UTF8.self), forKey: .stdin)
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        let env = try c.decode([String: String].self, forKey: .environment)
        let stdin = Array(try c.decode(String.self, forKey: .stdin).utf8)
        self = try CNIRequest.parse(environment: env, stdin: stdin)
    }

    public func envelope() throws(CNIError) -> [UInt8] { try CNIJSON.encode(self) }

    /// Decodes an envelope; a request that fails validation comes back as that CNIError.
    public static func fromEnvelope(_ bytes: [UInt8]) throws(CNIError) -> CNIRequest {
        do {
            return try CNIJSON.decode(CNIRequest.self, from: bytes)
        } catch let error as CNIError {
            throw error
        } catch {
            throw CNIError(.decodingFailure, "cannot decode the request envelope", details: "\(error)")
        }
    }
}

/// The agent's answer: the exact stdout bytes for success, or an error.
public enum CNIReply: Hashable, Sendable {
    /// Result JSON in the requested version (ADD); empty for DEL, CHECK, GC and STATUS, which
    /// print nothing on success (the spec; libcni reads no result for them).
    case success([UInt8])
    case failure(CNIError)

    public static func result(_ result: CNIResult, for version: CNIVersion) -> CNIReply {
        do { return .success(try result.json(for: version)) } catch { return .failure(error) }
    }

    public var stdout: [UInt8] {
        switch self {
        case .success(let bytes): bytes
        case .failure(let error): error.json
        }
    }

    public var exitCode: Int32 {
        if case .success = self { 0 } else { 1 }
    }
}

extension CNIReply: Codable {
    enum CodingKeys: String, CodingKey { case result, error }

    /// `{"result": "<stdout text>"}` or `{"error": {cniVersion, code, msg, details}}`.
    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        switch self {
        case .success(let bytes): try c.encode(String(decoding: bytes, as: UTF8.self), forKey: .result)
        case .failure(let error): try c.encode(error, forKey: .error)
        }
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        if let error = try c.decodeIfPresent(CNIError.self, forKey: .error) {
            self = .failure(error)
        } else {
            self = .success(Array(try c.decodeIfPresent(String.self, forKey: .result)?.utf8 ?? "".utf8))
        }
    }

    public func envelope() throws(CNIError) -> [UInt8] { try CNIJSON.encode(self) }

    public static func fromEnvelope(_ bytes: [UInt8]) throws(CNIError) -> CNIReply {
        do { return try CNIJSON.decode(CNIReply.self, from: bytes) } catch {
            throw CNIError(.ioFailure, "cannot decode the agent's reply", details: "\(error)")
        }
    }
}

/// Answers that need no agent.
public enum CNILocal {
    /// VERSION: `{"cniVersion": <the request's, else latest>, "supportedVersions": [...]}`.
    public static func versionReply(stdin: [UInt8]) -> CNIReply {
        let asked = (try? NetworkConfig.version(of: stdin)).flatMap { stdin.isEmpty ? nil : $0 }
        return .success(CNIFastWire.versionJSON(asked ?? CNIVersion.latest.rawValue))
    }

    /// The reply when the request itself was invalid: the error in the config's version if it
    /// had a readable one.
    public static func failure(_ error: CNIError) -> CNIReply { .failure(error) }
}
