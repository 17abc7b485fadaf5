import Foundation
import NodenetTestSupport
import Testing

enum ManifestValidator {
    static let path = "/opt/nodenet-test/venv/bin/kubernetes-validate"
}

/// Every Kubernetes manifest the repository ships is a valid object for the API server:
/// deploy/ (the DaemonSet and its RBAC), the demo's cluster manifest and the Pods it applies,
/// and the API fixtures the Kubernetes source tests decode (which must look like what an API
/// server sends). Checked with kubernetes-validate (PyPI, in the test venv scripts/setup.sh
/// makes) against the Kubernetes schemas it bundles, strictly: unknown fields are errors too.
@Suite(.enabled(if: FileManager.default.isExecutableFile(atPath: ManifestValidator.path) || PackageUnderTest.required,
                "needs kubernetes-validate in /opt/nodenet-test/venv (scripts/setup.sh)"))
struct ManifestValidationTests {
    static let validator = ManifestValidator.path

    /// The demo's manifests: its YAML here-documents, and the Pod it prints per pod (with
    /// production-looking values for the printf arguments).
    static func demoManifests(_ dir: TempDirectory) throws -> [String] {
        let script = try String(contentsOfFile: "scripts/demo.sh", encoding: .utf8)
        var files: [String] = []
        var lines = script.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)[...]
        while let start = lines.firstIndex(where: { $0.contains("<<'YAML'") }) {
            let body = lines[(start + 1)...]
            guard let end = body.firstIndex(of: "YAML") else { break }
            files.append(dir.write("demo-\(files.count).yaml", body[..<end].joined(separator: "\n") + "\n"))
            lines = lines[(end + 1)...]
        }
        for line in script.split(separator: "\n") where line.contains("printf 'apiVersion:") {
            let format = String(line.split(separator: "'")[1])
            let printed = try Shell.check(["bash", "-c", "printf \"$0\" web-1 web web-1 10.244.2.5", format]).stdout
            files.append(dir.write("demo-\(files.count).yaml", printed))
        }
        return files
    }

    @Test func everyShippedManifestValidates() throws {
        try #require(FileManager.default.isExecutableFile(atPath: Self.validator), "kubernetes-validate is missing: run scripts/setup.sh")
        let dir = TempDirectory()
        let fm = FileManager.default
        let deploy = try fm.contentsOfDirectory(atPath: "deploy").filter { $0.hasSuffix(".yaml") }.map { "deploy/\($0)" }
        let fixtures = try fm.contentsOfDirectory(atPath: "Tests/ClusterSourcesTests/Fixtures").filter { $0.hasSuffix(".json") }
            .map { "Tests/ClusterSourcesTests/Fixtures/\($0)" }
        let demo = try Self.demoManifests(dir)
        #expect(deploy.contains("deploy/nodenet.yaml"))
        #expect(demo.count >= 2, "the demo's cluster manifest and its per-pod manifest")
        #expect(fixtures.count >= 4)
        for file in deploy + demo + fixtures {
            let r = try Shell.run([Self.validator, "--strict", "--quiet", file], timeout: 120)
            #expect(r.ok && !r.stdout.contains("ERROR") && !r.stderr.contains("ERROR"),
                    "\(file) is not a valid Kubernetes manifest:\n\(r.stdout)\(r.stderr)")
        }
    }

    /// The check can fail: a Pod without containers (what the demo shipped) is refused.
    @Test func aPodWithoutContainersIsRefused() throws {
        try #require(FileManager.default.isExecutableFile(atPath: Self.validator), "kubernetes-validate is missing: run scripts/setup.sh")
        let dir = TempDirectory()
        let file = dir.write("pod.yaml", "apiVersion: v1\nkind: Pod\nmetadata: {name: client, namespace: apps}\nspec: {nodeName: node1}\n")
        let r = try Shell.run([Self.validator, "--strict", "--quiet", file], timeout: 120)
        #expect(!r.ok || r.stdout.contains("ERROR"), "\(r.stdout)\(r.stderr)")
        #expect((r.stdout + r.stderr).contains("containers"))
    }
}
