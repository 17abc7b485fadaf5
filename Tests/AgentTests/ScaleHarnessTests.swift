import Foundation
import NodenetTestSupport
import Testing

/// The scale harness (bench/scale/run.py) at its CI size, as a test of correctness, not of time:
/// 500 nodes, 1,500 pods, 200 services applied through `nodenet apply` and through etcd; the
/// kernel must hold exactly the desired routes and every cluster IP and endpoint; `nodenet
/// status` must tell the truth (every actor in sync, route counters equal to the kernel's);
/// a Node and an EndpointSlice change must reach the kernel; a restart must rewrite nothing in
/// the kernel; a fresh agent must reach the same kernel state from etcd. Times are printed.
@Suite(.serialized, .enabled(if: isPrivileged && hasEtcd, "needs root, iproute2, nft and etcd"))
struct ScaleHarnessTests {
    static var harness: String {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("bench/scale/run.py").path
    }

    @Test func ciSizeClusterReachesTheKernelAndStatusTellsTheTruth() throws {
        let r = try Shell.run(["python3", Self.harness, "--size", "ci", "--check", "--events", "3", "--timeout", "180",
                               "--bin", AgentProcess.binary], timeout: 900)
        // The JSON report on stdout, the progress and any failed check on stderr.
        print(r.stderr)
        #expect(r.status == 0, "harness checks failed:\n\(r.stderr.split(separator: "\n").filter { $0.contains("CHECK FAILED") || $0.contains("Error") }.joined(separator: "\n"))\n\(r.stderr.suffix(3000))")
        #expect(r.stdout.contains("\"failures\": []"), "\(r.stdout.suffix(2000))")
    }
}

private let hasEtcd = FileManager.default.isExecutableFile(atPath: "/usr/bin/etcd") && FileManager.default.isExecutableFile(atPath: "/usr/bin/etcdctl")
