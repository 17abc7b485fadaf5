// CNI error results: {"cniVersion","code","msg","details"} on stdout with a non-zero exit.

/// A CNI error code. 0-99 are the spec's; nodenet's own start at 100.
public struct CNIErrorCode: RawRepresentable, Hashable, Sendable, Codable, CustomStringConvertible {
    public var rawValue: UInt
    public init(rawValue: UInt) { self.rawValue = rawValue }

    public static let incompatibleVersion = Self(rawValue: 1)
    public static let unsupportedField = Self(rawValue: 2)
    public static let unknownContainer = Self(rawValue: 3)
    public static let invalidEnvironment = Self(rawValue: 4)
    public static let ioFailure = Self(rawValue: 5)
    public static let decodingFailure = Self(rawValue: 6)
    public static let invalidConfig = Self(rawValue: 7)
    public static let tryAgainLater = Self(rawValue: 11)
    public static let notAvailable = Self(rawValue: 50)
    public static let degraded = Self(rawValue: 51)
    /// nodenet: the agent refused or failed the operation (details say why).
    public static let agentFailure = Self(rawValue: 100)
    /// nodenet: no free address in the node's pod subnets.
    public static let addressesExhausted = Self(rawValue: 101)
    /// nodenet: the attachment already exists (ADD without DEL).
    public static let attachmentExists = Self(rawValue: 102)
    /// nodenet: a requested host port is mapped to another attachment already.
    public static let hostPortTaken = Self(rawValue: 103)
    /// nodenet: CHECK's prevResult is not what the agent gave the attachment (details name
    /// each difference).
    public static let prevResultMismatch = Self(rawValue: 104)

    public init(from decoder: any Decoder) throws { rawValue = try decoder.singleValueContainer().decode(UInt.self) }
    public func encode(to encoder: any Encoder) throws {
        var c = encoder.singleValueContainer()
        try c.encode(rawValue)
    }
    public var description: String { String(rawValue) }
}

public struct CNIError: Error, Hashable, Sendable, Codable, CustomStringConvertible {
    public var cniVersion: String
    public var code: CNIErrorCode
    public var msg: String
    public var details: String

    public init(_ code: CNIErrorCode, _ msg: String, details: String = "", version: String? = nil) {
        self.code = code
        self.msg = msg
        self.details = details
        cniVersion = version ?? CNIVersion.latest.rawValue
    }

    enum CodingKeys: String, CodingKey { case cniVersion, code, msg, details }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        cniVersion = try c.decodeIfPresent(String.self, forKey: .cniVersion) ?? CNIVersion.latest.rawValue
        code = try c.decode(CNIErrorCode.self, forKey: .code)
        msg = try c.decodeIfPresent(String.self, forKey: .msg) ?? ""
        details = try c.decodeIfPresent(String.self, forKey: .details) ?? ""
    }

    /// `details` is omitted when empty, as libcni does.
    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(cniVersion, forKey: .cniVersion)
        try c.encode(code, forKey: .code)
        try c.encode(msg, forKey: .msg)
        if !details.isEmpty { try c.encode(details, forKey: .details) }
    }

    /// The bytes for stdout. Encoding four strings cannot fail; the fallback keeps the
    /// contract (a JSON error object) even so.
    public var json: [UInt8] {
        (try? CNIJSON.encode(self)) ?? Array(#"{"cniVersion":"1.1.0","code":999,"msg":"internal error"}"#.utf8)
    }

    public var description: String {
        details.isEmpty ? "CNI error \(code): \(msg)" : "CNI error \(code): \(msg) (\(details))"
    }

    /// The answer of a plugin executed without CNI_COMMAND (a runtime or a person running it
    /// wrongly): an error in CNI form, so that no caller takes a banner and exit 0 for success.
    public static var commandNotSet: CNIError {
        CNIError(.invalidEnvironment, "CNI_COMMAND is not set",
                 details: "nodenet is a CNI plugin: run it with CNI_COMMAND set to one of "
                     + CNICommand.allCases.map(\.rawValue).joined(separator: ", ")
                     + " and the network configuration on stdin; CNI versions "
                     + CNIVersion.supported.map(\.rawValue).joined(separator: ", "))
    }
}
