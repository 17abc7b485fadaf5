import Foundation
import NIOSSL
import Yams

public struct KubeConfigError: Error, CustomStringConvertible, Sendable {
    public var source: String
    public var message: String
    public var description: String { "\(source): \(message)" }
}

/// How to reach the API server: from a kubeconfig file or the in-cluster service account.
/// Holds the TLS material as PEM bytes (files are read once, when loading).
public struct KubeConnection: Sendable, Equatable {
    /// e.g. `https://10.0.0.1:6443`, without a trailing slash.
    public var server: String
    public var certificateAuthorityPEM: Data?
    public var insecureSkipTLSVerify: Bool = false
    public var clientCertificatePEM: Data?
    public var clientKeyPEM: Data?
    public var token: String?
    /// Re-read before each request when set: projected service account tokens rotate.
    public var tokenFile: String?

    public init(server: String) {
        var s = server
        while s.hasSuffix("/") { s.removeLast() }
        self.server = s
    }

    // MARK: kubeconfig

    private struct File: Decodable {
        var currentContext: String?
        var clusters: [Named<Cluster>]?
        var contexts: [Named<Context>]?
        var users: [Named<User>]?
        enum CodingKeys: String, CodingKey {
            case currentContext = "current-context", clusters, contexts, users
        }
    }
    private struct Named<T: Decodable>: Decodable {
        var name: String
        var value: T?
        init(from decoder: any Decoder) throws {
            let c = try decoder.container(keyedBy: DynamicKey.self)
            name = try c.decode(String.self, forKey: DynamicKey("name"))
            for k in ["cluster", "context", "user"] where c.contains(DynamicKey(k)) {
                value = try c.decode(T.self, forKey: DynamicKey(k))
            }
        }
    }
    private struct Cluster: Decodable {
        var server: String?
        var certificateAuthority: String?
        var certificateAuthorityData: String?
        var insecureSkipTLSVerify: Bool?
        enum CodingKeys: String, CodingKey {
            case server, certificateAuthority = "certificate-authority", certificateAuthorityData = "certificate-authority-data"
            case insecureSkipTLSVerify = "insecure-skip-tls-verify"
        }
    }
    private struct Context: Decodable {
        var cluster: String?
        var user: String?
    }
    private struct User: Decodable {
        var clientCertificate: String?
        var clientCertificateData: String?
        var clientKey: String?
        var clientKeyData: String?
        var token: String?
        var tokenFile: String?
        var exec: ExecStub?
        enum CodingKeys: String, CodingKey {
            case clientCertificate = "client-certificate", clientCertificateData = "client-certificate-data"
            case clientKey = "client-key", clientKeyData = "client-key-data", token, tokenFile, exec
        }
    }
    private struct ExecStub: Decodable { var command: String? }

    /// Loads a kubeconfig file; relative file paths in it are relative to its directory.
    public static func kubeconfig(path: String, context: String? = nil) throws -> KubeConnection {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw KubeConfigError(source: path, message: "cannot read the kubeconfig")
        }
        let base = (path as NSString).deletingLastPathComponent
        return try parseKubeconfig(String(decoding: data, as: UTF8.self), source: path, baseDirectory: base.isEmpty ? "." : base, context: context)
    }

    /// Parses kubeconfig text: the current (or given) context's cluster and user.
    public static func parseKubeconfig(_ text: String, source: String = "kubeconfig", baseDirectory: String = ".",
                                       context: String? = nil) throws -> KubeConnection {
        func fail(_ m: String) -> KubeConfigError { KubeConfigError(source: source, message: m) }
        let file: File
        do {
            file = try YAMLDecoder().decode(File.self, from: text)
        } catch {
            throw fail("not a valid kubeconfig: \(error)")
        }
        guard let contextName = context ?? file.currentContext, !contextName.isEmpty else { throw fail("no current-context") }
        guard let ctx = file.contexts?.first(where: { $0.name == contextName })?.value else { throw fail("context \"\(contextName)\" not found") }
        guard let clusterName = ctx.cluster, let cluster = file.clusters?.first(where: { $0.name == clusterName })?.value else {
            throw fail("cluster \"\(ctx.cluster ?? "")\" of context \"\(contextName)\" not found")
        }
        guard let server = cluster.server, server.hasPrefix("https://") || server.hasPrefix("http://") else {
            throw fail("cluster \"\(clusterName)\" has no https:// server")
        }
        var c = KubeConnection(server: server)
        c.insecureSkipTLSVerify = cluster.insecureSkipTLSVerify ?? false
        c.certificateAuthorityPEM = try material(data: cluster.certificateAuthorityData, file: cluster.certificateAuthority,
                                                 field: "certificate-authority", base: baseDirectory, fail: fail)
        if let userName = ctx.user {
            guard let user = file.users?.first(where: { $0.name == userName })?.value else { throw fail("user \"\(userName)\" not found") }
            c.clientCertificatePEM = try material(data: user.clientCertificateData, file: user.clientCertificate,
                                                  field: "client-certificate", base: baseDirectory, fail: fail)
            c.clientKeyPEM = try material(data: user.clientKeyData, file: user.clientKey, field: "client-key", base: baseDirectory, fail: fail)
            c.token = user.token
            c.tokenFile = user.tokenFile.map { resolve($0, base: baseDirectory) }
            if (c.clientCertificatePEM == nil) != (c.clientKeyPEM == nil) {
                throw fail("user \"\(userName)\" needs both client-certificate and client-key")
            }
            if user.exec != nil, c.token == nil, c.tokenFile == nil, c.clientCertificatePEM == nil {
                throw fail("user \"\(userName)\" uses an exec credential plugin, which nodenet does not run; use a token or client certificate")
            }
        }
        return c
    }

    /// The in-cluster service account: KUBERNETES_SERVICE_HOST/PORT, token and ca.crt.
    public static func inCluster(environment: [String: String] = ProcessInfo.processInfo.environment,
                                 directory: String = "/var/run/secrets/kubernetes.io/serviceaccount") throws -> KubeConnection {
        guard let host = environment["KUBERNETES_SERVICE_HOST"], let port = environment["KUBERNETES_SERVICE_PORT"] else {
            throw KubeConfigError(source: "in-cluster", message: "KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT are not set (not running in a pod)")
        }
        let hostPart = host.contains(":") ? "[\(host)]" : host
        var c = KubeConnection(server: "https://\(hostPart):\(port)")
        guard let ca = FileManager.default.contents(atPath: directory + "/ca.crt") else {
            throw KubeConfigError(source: "in-cluster", message: "cannot read \(directory)/ca.crt")
        }
        c.certificateAuthorityPEM = ca
        c.tokenFile = directory + "/token"
        guard c.currentToken() != nil else { throw KubeConfigError(source: "in-cluster", message: "cannot read \(directory)/token") }
        return c
    }

    /// The bearer token to send now, if any.
    public func currentToken() -> String? {
        if let tokenFile, let data = FileManager.default.contents(atPath: tokenFile) {
            let t = String(decoding: data, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
            if !t.isEmpty { return t }
        }
        return token
    }

    /// TLS settings for AsyncHTTPClient: the CA as the only trust root, and the client
    /// certificate when the user has one. Nil for plain http:// servers.
    public func tlsConfiguration() throws -> TLSConfiguration? {
        guard server.hasPrefix("https://") else { return nil }
        return try TLSMaterial(certificateAuthorityPEM: certificateAuthorityPEM, clientCertificatePEM: clientCertificatePEM,
                               clientKeyPEM: clientKeyPEM, insecureSkipVerify: insecureSkipTLSVerify).configuration(server: server)
    }

    private static func material(data: String?, file: String?, field: String, base: String,
                                 fail: (String) -> KubeConfigError) throws -> Data? {
        if let data {
            guard let d = Data(base64Encoded: data.filter { !$0.isWhitespace }) else { throw fail("\(field)-data is not base64") }
            return d
        }
        guard let file else { return nil }
        let path = resolve(file, base: base)
        guard let d = FileManager.default.contents(atPath: path) else { throw fail("cannot read \(field) \(path)") }
        return d
    }

    private static func resolve(_ path: String, base: String) -> String {
        path.hasPrefix("/") ? path : base + "/" + path
    }
}

private struct DynamicKey: CodingKey {
    var stringValue: String
    var intValue: Int? { nil }
    init(_ s: String) { stringValue = s }
    init?(stringValue: String) { self.stringValue = stringValue }
    init?(intValue: Int) { nil }
}
