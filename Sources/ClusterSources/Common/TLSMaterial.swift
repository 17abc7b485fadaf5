import Foundation
import NIOSSL

public struct TLSMaterialError: Error, CustomStringConvertible, Sendable {
    public var source: String
    public var message: String
    public var description: String { "\(source): \(message)" }
}

/// PEM bytes for a TLS client: the CA to trust (instead of the system's) and an optional
/// client certificate and key. Shared by the Kubernetes connection and etcd over https.
public struct TLSMaterial: Sendable, Equatable {
    public var certificateAuthorityPEM: Data?
    public var clientCertificatePEM: Data?
    public var clientKeyPEM: Data?
    public var insecureSkipVerify: Bool

    public init(certificateAuthorityPEM: Data? = nil, clientCertificatePEM: Data? = nil, clientKeyPEM: Data? = nil,
                insecureSkipVerify: Bool = false) {
        self.certificateAuthorityPEM = certificateAuthorityPEM
        self.clientCertificatePEM = clientCertificatePEM
        self.clientKeyPEM = clientKeyPEM
        self.insecureSkipVerify = insecureSkipVerify
    }

    /// Reads PEM files (any may be nil).
    public static func files(ca: String?, certificate: String?, key: String?) throws -> TLSMaterial {
        func read(_ path: String?, _ what: String) throws -> Data? {
            guard let path else { return nil }
            guard let data = FileManager.default.contents(atPath: path) else {
                throw TLSMaterialError(source: path, message: "cannot read the \(what)")
            }
            return data
        }
        return TLSMaterial(certificateAuthorityPEM: try read(ca, "CA certificate"),
                           clientCertificatePEM: try read(certificate, "client certificate"),
                           clientKeyPEM: try read(key, "client key"))
    }

    /// The AsyncHTTPClient TLS configuration; `server` names the peer in errors.
    public func configuration(server: String) throws -> TLSConfiguration {
        var tls = TLSConfiguration.makeClientConfiguration()
        do {
            if let ca = certificateAuthorityPEM {
                tls.trustRoots = .certificates(try NIOSSLCertificate.fromPEMBytes(Array(ca)))
            }
            if insecureSkipVerify { tls.certificateVerification = .none }
            if let cert = clientCertificatePEM, let key = clientKeyPEM {
                tls.certificateChain = try NIOSSLCertificate.fromPEMBytes(Array(cert)).map { .certificate($0) }
                tls.privateKey = .privateKey(try NIOSSLPrivateKey(bytes: Array(key), format: .pem))
            }
        } catch {
            throw TLSMaterialError(source: server, message: "invalid TLS material: \(error)")
        }
        return tls
    }
}
