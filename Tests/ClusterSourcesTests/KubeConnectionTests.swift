import ClusterState
import Foundation
import NodenetTestSupport
import NIOSSL
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
        #expect(throws: TLSMaterialError.self) { _ = try broken.tlsConfiguration() }
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

/// The Kubernetes source over TLS: the stand-in API server (see StandInAPIServer) serves HTTPS
/// with a certificate from a test CA and requires a client certificate from the same CA, as
/// an API server does for a kubelet-style user.
@Suite(.enabled(if: (try? Shell.which("openssl")) != nil, "openssl is needed to make certificates"))
struct KubernetesTLSTests {
    /// A CA, a server certificate for 127.0.0.1 and a client certificate, as PEM files. The
    /// server certificate may also act as a client: etcd's JSON gateway presents it when it
    /// calls etcd's own gRPC port under --client-cert-auth.
    static func makePKI(in dir: TempDirectory) throws {
        func ssl(_ args: [String]) throws { try Shell.check(["openssl"] + args) }
        let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
        try ssl(["req", "-x509"] + ec + ["-keyout", dir.file("ca.key"), "-out", dir.file("ca.crt"), "-days", "1", "-subj", "/CN=test-ca"])
        for (name, subject, ext) in [("server", "/CN=kube-apiserver", "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth,clientAuth\n"),
                                     ("client", "/O=system:nodes/CN=system:node:worker-1", "extendedKeyUsage=clientAuth\n")] {
            try ssl(["req"] + ec + ["-keyout", dir.file(name + ".key"), "-out", dir.file(name + ".csr"), "-subj", subject])
            _ = dir.write(name + ".ext", ext)
            try ssl(["x509", "-req", "-in", dir.file(name + ".csr"), "-CA", dir.file("ca.crt"), "-CAkey", dir.file("ca.key"),
                     "-CAcreateserial", "-out", dir.file(name + ".crt"), "-days", "1", "-extfile", dir.file(name + ".ext")])
        }
    }

    @Test func clientCertificateAndCAFromAKubeconfig() async throws {
        let dir = TempDirectory()
        try Self.makePKI(in: dir)
        var serverTLS = TLSConfiguration.makeServerConfiguration(
            certificateChain: try NIOSSLCertificate.fromPEMFile(dir.file("server.crt")).map { .certificate($0) },
            privateKey: .privateKey(try NIOSSLPrivateKey(file: dir.file("server.key"), format: .pem)))
        serverTLS.trustRoots = .certificates(try NIOSSLCertificate.fromPEMFile(dir.file("ca.crt")))
        serverTLS.certificateVerification = .noHostnameVerification  // a client certificate is required
        let server = try await StandInAPIServer(tls: serverTLS)
        for path in ["/api/v1/nodes", "/api/v1/services", "/apis/discovery.k8s.io/v1/endpointslices", "/api/v1/pods",
                     "/api/v1/namespaces", "/apis/networking.k8s.io/v1/networkpolicies"] {
            server.script.set(path, [])
        }
        server.script.set("/api/v1/nodes", [Fixture.item(Fixture.object("node"))])

        func kubeconfig(withClientCertificate: Bool) -> String {
            let user = withClientCertificate
                ? "client-certificate: client.crt\n    client-key: client.key"
                : "token: not-enough"
            return dir.write("kubeconfig-\(withClientCertificate)", """
            apiVersion: v1
            kind: Config
            current-context: test
            clusters: [{name: test, cluster: {server: "\(server.url)", certificate-authority: ca.crt}}]
            contexts: [{name: test, context: {cluster: test, user: node}}]
            users:
            - name: node
              user:
                \(user)
            """)
        }

        let store = ClusterStore()
        let good = try KubernetesSource(configuration: .init(connection: try KubeConnection.kubeconfig(path: kubeconfig(withClientCertificate: true)),
                                                             nodeName: "worker-1", requestTimeout: .seconds(3)), store: store)
        let task = Task { try? await good.run() }
        defer { task.cancel() }
        #expect(await good.waitForFirstSync(timeout: .seconds(10)), "\(good.status)")
        #expect(await store.snapshot().nodes["worker-1"]?.podCIDRs.map(\.description) == ["10.244.1.0/24"])

        // Without the client certificate the server refuses the handshake: never synced, error shown.
        let refusedStore = ClusterStore()
        let refused = try KubernetesSource(configuration: .init(connection: try KubeConnection.kubeconfig(path: kubeconfig(withClientCertificate: false)),
                                                                nodeName: "worker-1", requestTimeout: .seconds(1)), store: refusedStore)
        let refusedTask = Task { try? await refused.run() }
        defer { refusedTask.cancel() }
        #expect(await !refused.waitForFirstSync(timeout: .seconds(2)))
        #expect(await eventually { refused.status.lastError != nil })
        await server.stop()
    }
}
