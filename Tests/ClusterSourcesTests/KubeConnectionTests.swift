import Foundation
import NodenetTestSupport
import Testing
@testable import ClusterSources

// kubeconfig and in-cluster parsing, with real PEM material made by openssl for the TLS part.

@Suite struct KubeConnectionTests {
    /// A self-signed EC certificate and its key, as PEM files in `dir`.
    func makeCertificate(in dir: TempDirectory, name: String) throws -> (cert: String, key: String) {
        let cert = dir.file(name + ".crt"), key = dir.file(name + ".key")
        try Shell.check(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                         "-keyout", key, "-out", cert, "-days", "1", "-subj", "/CN=\(name)"])
        return (cert, key)
    }

    @Test(.enabled(if: (try? Shell.which("openssl")) != nil)) func kubeconfigWithFilesAndInlineData() throws {
        let dir = TempDirectory()
        let ca = try makeCertificate(in: dir, name: "ca")
        let client = try makeCertificate(in: dir, name: "client")
        let clientCert = try Data(contentsOf: URL(fileURLWithPath: client.cert))
        let text = """
        apiVersion: v1
        kind: Config
        current-context: admin@prod
        clusters:
        - name: prod
          cluster:
            server: https://192.168.56.10:6443/
            certificate-authority: ca.crt
        - name: other
          cluster: {server: https://10.0.0.1:6443, insecure-skip-tls-verify: true}
        contexts:
        - name: admin@prod
          context: {cluster: prod, user: admin}
        - name: robot@other
          context: {cluster: other, user: robot}
        users:
        - name: admin
          user:
            client-certificate-data: \(clientCert.base64EncodedString())
            client-key: \(client.key)
        - name: robot
          user: {token: abc.def}
        """
        let path = dir.write("kubeconfig", text)
        let c = try KubeConnection.kubeconfig(path: path)
        #expect(c.server == "https://192.168.56.10:6443")
        #expect(c.certificateAuthorityPEM == (try Data(contentsOf: URL(fileURLWithPath: ca.cert))))
        #expect(c.clientCertificatePEM == clientCert)
        #expect(c.clientKeyPEM == (try Data(contentsOf: URL(fileURLWithPath: client.key))))
        #expect(c.token == nil)
        let tls = try #require(try c.tlsConfiguration())
        #expect(tls.certificateChain.count == 1)
        #expect(tls.privateKey != nil)
        #expect("\(tls.certificateVerification)" == "fullVerification")

        let robot = try KubeConnection.parseKubeconfig(text, baseDirectory: dir.path, context: "robot@other")
        #expect(robot.server == "https://10.0.0.1:6443")
        #expect(robot.currentToken() == "abc.def")
        #expect(robot.insecureSkipTLSVerify)
        let verification = try robot.tlsConfiguration().map { "\($0.certificateVerification)" }
        #expect(verification?.hasPrefix("none") == true, "\(verification ?? "nil")")

        // Garbage where a certificate should be: refused when building TLS, naming the server.
        var broken = c
        broken.clientKeyPEM = Data("-----BEGIN PRIVATE KEY-----\nnope\n-----END PRIVATE KEY-----\n".utf8)
        #expect(throws: KubeConfigError.self) { _ = try broken.tlsConfiguration() }
    }

    @Test func kubeconfigErrorsNameTheProblem() {
        func error(_ text: String) -> String {
            do { _ = try KubeConnection.parseKubeconfig(text); return "no error" } catch { return "\(error)" }
        }
        #expect(error("current-context: x\ncontexts: []").contains("context \"x\" not found"))
        #expect(error("clusters: []").contains("no current-context"))
        let exec = """
        current-context: c
        clusters: [{name: k, cluster: {server: https://h:6443}}]
        contexts: [{name: c, context: {cluster: k, user: u}}]
        users: [{name: u, user: {exec: {command: aws}}}]
        """
        #expect(error(exec).contains("exec credential plugin"))
        let halfCert = """
        current-context: c
        clusters: [{name: k, cluster: {server: https://h:6443}}]
        contexts: [{name: c, context: {cluster: k, user: u}}]
        users: [{name: u, user: {client-certificate-data: aGVsbG8=}}]
        """
        #expect(error(halfCert).contains("both client-certificate and client-key"))
        #expect(error("current-context: c\nclusters: [{name: k, cluster: {server: h}}]\ncontexts: [{name: c, context: {cluster: k}}]").contains("no https:// server"))
    }

    @Test func inClusterServiceAccount() throws {
        let dir = TempDirectory()
        _ = dir.write("ca.crt", "-----BEGIN CERTIFICATE-----\n")
        _ = dir.write("token", "token-1\n")
        let c = try KubeConnection.inCluster(environment: ["KUBERNETES_SERVICE_HOST": "10.96.0.1", "KUBERNETES_SERVICE_PORT": "443"],
                                             directory: dir.path)
        #expect(c.server == "https://10.96.0.1:443")
        #expect(c.currentToken() == "token-1")
        // Projected tokens rotate: the file is read again for each request.
        _ = dir.write("token", "token-2")
        #expect(c.currentToken() == "token-2")
        let v6 = try KubeConnection.inCluster(environment: ["KUBERNETES_SERVICE_HOST": "fd00::1", "KUBERNETES_SERVICE_PORT": "443"], directory: dir.path)
        #expect(v6.server == "https://[fd00::1]:443")
        #expect(throws: KubeConfigError.self) { _ = try KubeConnection.inCluster(environment: [:], directory: dir.path) }
    }
}
