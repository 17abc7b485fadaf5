import Foundation
import NodenetTestSupport
import Testing

/// `/metrics` of a running agent as Prometheus tooling reads it: scraped over HTTP inside the
/// node's namespace and checked by `promtool check metrics` (Debian's prometheus package;
/// scripts/setup.sh installs it), which fails on a family without HELP, a counter without
/// `_total`, a unit-less duration and malformed exposition. Then what operators alert and
/// graph on must be there from the start: error counters at zero, CNI and IPAM figures, the
/// source, the process and the build.
@Suite(.serialized, .enabled(if: isPrivileged, "needs root and iproute2"))
struct MetricsEndToEndTests {
    @Test func scrapeOfARunningAgentPassesPromtool() throws {
        let promtool = try #require(try? Shell.which("promtool"), "promtool is missing: scripts/setup.sh installs Debian's prometheus package")
        let ns = try TestNamespace("metrics")
        defer { ns.delete() }
        let dir = TempDirectory()
        let agent = AgentProcess(namespace: ns, directory: dir, args: [
            "--node-name", "node1", "--cluster-cidr", "10.244.0.0/16,fd00:10:244::/56", "--pod-cidrs", "10.244.1.0/24,fd00:10:244:1::/64",
            "--metrics-listen", "127.0.0.1:9154",
        ])
        try agent.start()
        defer { agent.stop() }
        // One pod attached and detached through the plugin, one call refused: operations by
        // command and result, and their latency.
        let pod = try TestNamespace("pod")
        defer { pod.delete() }
        let cni = CNIInvoker(node: ns, socket: agent.socket)
        let id = String(repeating: "ab12", count: 16)
        let add = try cni.run("ADD", containerID: id, netns: pod.path, args: "K8S_POD_NAMESPACE=apps;K8S_POD_NAME=web-1")
        try #require(add.ok, "\(add.stdout)\(add.stderr)")
        #expect(try !cni.run("CHECK", containerID: String(repeating: "cd34", count: 16), netns: pod.path).ok)

        func scrape() throws -> String {
            try ns.check(["curl", "-sf", "--max-time", "5", "http://127.0.0.1:9154/metrics"]).stdout
        }
        var text = try scrape()
        let deadline = Date().addingTimeInterval(10)
        while !text.contains("nodenet_ipam_addresses_used"), Date() < deadline { usleep(100_000); text = try scrape() }
        let file = dir.write("metrics.txt", text)
        let check = try Shell.run(["sh", "-c", "\"$0\" check metrics < \"$1\"", promtool, file])
        #expect(check.ok && check.stdout.isEmpty && check.stderr.isEmpty,
                "promtool check metrics (exit \(check.status)):\n\(check.stdout)\(check.stderr)")

        // Every family has HELP text (promtool's own check above, stated here too for clarity).
        let types = text.split(separator: "\n").filter { $0.hasPrefix("# TYPE ") }.map { $0.split(separator: " ")[2] }
        let helps = Set(text.split(separator: "\n").filter { $0.hasPrefix("# HELP ") }.map { $0.split(separator: " ")[2] })
        for family in types { #expect(helps.contains(family), "\(family) has no HELP") }

        func value(_ series: String) -> Double? {
            text.split(separator: "\n").first { $0.hasPrefix(series + " ") }.flatMap { Double($0.split(separator: " ").last!) }
        }
        #expect(text.contains("\nnodenet_build_info{version=\"0.1.0\","), "no nodenet_build_info")
        #expect(value("nodenet_ready") == 1)
        #expect(value("nodenet_cni_operations_total{command=\"ADD\",result=\"success\"}") == 1)
        #expect(value("nodenet_cni_operations_total{command=\"CHECK\",result=\"error\"}") == 1)
        #expect(value("nodenet_cni_operations_total{command=\"DEL\",result=\"error\"}") == 0, "error series exist at zero")
        #expect(value("nodenet_cni_operation_duration_seconds_count{command=\"ADD\"}") == 1)
        #expect(value("nodenet_cni_attachments") == 1)
        #expect(value("nodenet_ipam_addresses_used{subnet=\"10.244.1.0/24\"}") == 1)
        #expect(value("nodenet_ipam_addresses_free{subnet=\"10.244.1.0/24\"}") == 252)  // 256 - network, gateway, broadcast, the pod
        #expect(value("nodenet_ipam_addresses_used{subnet=\"fd00:10:244:1::/64\"}") == 1)
        #expect(value("nodenet_source_connected{source=\"embedded\"}") == 1)
        #expect(value("nodenet_source_watch_restarts_total{source=\"embedded\"}") == 0)
        #expect((value("nodenet_source_last_sync_timestamp_seconds{source=\"embedded\"}") ?? 0) > 1.7e9)
        #expect(value("nodenet_reconcile_errors_total{actor=\"pods\"}") == 0, "error counters exist at zero")
        #expect(value("nodenet_apply_errors_total") == 0)
        #expect(value("nodenet_routes_repairs_total") == 0)
        // Buckets that tell a 2 ms reconcile from a 5 ms one.
        for le in ["0.002", "0.003", "0.004", "0.005", "0.006"] {
            #expect(text.contains("nodenet_reconcile_duration_seconds_bucket{actor=\"pods\",le=\"\(le)\"}"), "no \(le) s bucket")
        }
        #expect(!text.contains("nodenet_reconcile_duration_bucket"), "durations carry their _seconds unit")
        #expect((value("process_resident_memory_bytes") ?? 0) > 1_000_000)
        #expect((value("process_open_fds") ?? 0) > 3)
        #expect((value("process_start_time_seconds") ?? 0) > 1.7e9)
        #expect(value("process_cpu_seconds_total") != nil)
        let del = try cni.run("DEL", containerID: id, netns: pod.path)
        #expect(del.ok, "\(del.stdout)\(del.stderr)")
    }
}
