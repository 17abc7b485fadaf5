import Agent
import Foundation
import NodenetTestSupport
import Testing

/// The files a node gets: the systemd unit verifies clean and the install script puts every
/// file where design.md says.
@Suite struct PackagingTests {
    @Test(.enabled(if: (try? Shell.which("systemd-analyze")) != nil, "needs systemd-analyze"))
    func unitVerifiesClean() throws {
        let dir = TempDirectory()
        // /usr/bin/nodenet does not exist on a build machine: point ExecStart at the built binary,
        // so the check covers everything else in the unit as written.
        let unit = try String(contentsOfFile: "packaging/nodenet.service", encoding: .utf8)
        #expect(unit.contains("Type=notify"))
        #expect(unit.contains("WatchdogSec="))
        #expect(unit.contains("Restart=always"))
        let path = dir.write("nodenet.service", unit.replacingOccurrences(of: "/usr/bin/nodenet", with: AgentProcess.binary))
        let r = try Shell.run(["systemd-analyze", "verify", path])
        #expect(r.ok && r.stderr.isEmpty && r.stdout.isEmpty, "systemd-analyze verify: \(r.stderr)\(r.stdout)")
    }

    /// The unit's sandbox as systemd rates it, offline (the booted-container test checks the
    /// installed unit and that the agent works under it): at most 5.2, down from 7.8, and only
    /// the capabilities the agent uses.
    @Test(.enabled(if: (try? Shell.which("systemd-analyze")) != nil, "needs systemd-analyze"))
    func unitExposureIsAtMost5_2() throws {
        let dir = TempDirectory()
        let unit = try String(contentsOfFile: "packaging/nodenet.service", encoding: .utf8)
        let path = dir.write("nodenet.service", unit)
        let r = try Shell.run(["systemd-analyze", "security", "--offline=true", "--no-pager", path])
        let line = r.stdout.split(separator: "\n").last { $0.contains("Overall exposure level") } ?? ""
        let score = Self.exposureScore(r.stdout)
        #expect(score != nil && score! <= 5.2, "systemd-analyze security: \(line) \(r.stderr)")
        let bounding = unit.split(separator: "\n").first { $0.hasPrefix("CapabilityBoundingSet=") } ?? ""
        for unused in ["CAP_DAC_OVERRIDE", "CAP_CHOWN", "CAP_FOWNER", "CAP_SYS_MODULE"] {
            #expect(!bounding.contains(unused), "\(unused) is needed by nothing")
        }
        // Every hardening line is explained: a comment precedes each group of settings.
        #expect(unit.contains("# Hardening"))
    }

    /// The number in "Overall exposure level for nodenet.service: 3.2 OK :-)" (the face varies).
    static func exposureScore(_ output: String) -> Double? {
        guard let match = output.firstMatch(of: /exposure level for [^:]+: ([0-9]+\.[0-9]+)/) else { return nil }
        return Double(match.1)
    }

    @Test func installScriptStagesTheDesignLayout() throws {
        let dir = TempDirectory()
        let stage = dir.file("root")
        try Shell.check(["packaging/install.sh", "--destdir", stage, "--binary", AgentProcess.binary])
        let fm = FileManager.default
        for f in ["usr/bin/nodenet", "usr/bin/nodenet-cni", "etc/nodenet/config.yaml", "usr/share/doc/nodenet/examples/10-nodenet.conflist",
                  "lib/systemd/system/nodenet.service", "etc/iproute2/rt_protos.d/nodenet.conf"] {
            #expect(fm.fileExists(atPath: "\(stage)/\(f)"), "missing /\(f)")
        }
        // The runtime's conflist is the agent's to write once it is ready, never the installer's.
        #expect(!fm.fileExists(atPath: "\(stage)/etc/cni/net.d/10-nodenet.conflist"), "a conflist active before the agent serves")
        // Upstream runtimes read /opt/cni/bin, Debian's containerd and podman /usr/lib/cni.
        for dir in ["opt/cni/bin", "usr/lib/cni"] {
            #expect(try fm.destinationOfSymbolicLink(atPath: "\(stage)/\(dir)/nodenet") == "/usr/bin/nodenet-cni")
        }
        #expect(fm.isExecutableFile(atPath: "\(stage)/usr/bin/nodenet"))
        #expect(fm.isExecutableFile(atPath: "\(stage)/usr/bin/nodenet-cni"))
    }

    /// systemd fails a unit (226/NAMESPACE) when a path it must mount is missing at start. A node
    /// has none of nodenet's paths before the package and no /run/netns before a runtime's first
    /// pod: every path the unit lists must be optional ("-") or made by the unit itself.
    @Test func unitNeedsNoPathThatMayBeMissingAtStart() throws {
        let unit = try String(contentsOfFile: "packaging/nodenet.service", encoding: .utf8)
        let lines = unit.split(separator: "\n").map(String.init)
        func values(_ key: String) -> [String] {
            lines.filter { $0.hasPrefix(key + "=") }.flatMap { $0.dropFirst(key.count + 1).split(separator: " ").map(String.init) }
        }
        let made = values("StateDirectory").map { "/var/lib/" + $0 } + values("RuntimeDirectory").map { "/run/" + $0 }
        #expect(made.contains("/var/lib/nodenet") && made.contains("/run/nodenet"))
        for key in ["ReadWritePaths", "ReadOnlyPaths", "InaccessiblePaths", "ExecPaths", "NoExecPaths", "BindPaths", "BindReadOnlyPaths"] {
            for path in values(key) {
                let bare = path.hasPrefix("-") ? String(path.dropFirst()) : path
                #expect(path.hasPrefix("-") || made.contains(bare), "\(key)=\(path) must exist at start: prefix it with '-'")
            }
        }
    }

    /// A binary that loads the Swift runtime from the toolchain (the debug build does) would
    /// install and then fail to start on every node: build-deb.sh refuses it, naming the fix.
    @Test func debRefusesABinaryThatLoadsTheSwiftRuntime() throws {
        let ldd = try Shell.run(["ldd", AgentProcess.binary])
        try #require(ldd.stdout.contains("libswiftCore"), "the test binary is expected to be the dynamically linked debug build")
        let r = try Shell.run(["packaging/build-deb.sh", "--binary", AgentProcess.binary])
        #expect(!r.ok)
        #expect(r.stderr.contains("loads the Swift runtime") && r.stderr.contains("--static-swift-stdlib"), "\(r.stderr)")
        #expect(r.stdout.isEmpty, "no package path printed")
    }

    /// What the agent writes is the reference file in the repository (which the runtime tests use).
    @Test func agentWritesTheReferenceConflist() throws {
        let reference = try String(contentsOfFile: "etc/cni/net.d/10-nodenet.conflist", encoding: .utf8)
        #expect(CNIConflist.document() == reference)
        #expect(CNIConflist.document(socket: "/tmp/x/nodenet.sock").contains("\"socket\": \"/tmp/x/nodenet.sock\""))
    }

    /// Written atomically beside its final name, under a name runtimes ignore; not rewritten
    /// when unchanged; replaced when changed; a missing directory is made.
    @Test func conflistWriteIsAtomicAndIdempotent() throws {
        let dir = TempDirectory()
        let path = dir.file("net.d/10-nodenet.conflist")
        #expect(try CNIConflist.write(CNIConflist.document(), to: path))
        #expect(try String(contentsOfFile: path, encoding: .utf8) == CNIConflist.document())
        #expect(try !CNIConflist.write(CNIConflist.document(), to: path), "unchanged: not rewritten")
        #expect(try CNIConflist.write(CNIConflist.document(socket: "/run/other.sock"), to: path))
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir.file("net.d")) == ["10-nodenet.conflist"], "no temporary left")
        let mode = try FileManager.default.attributesOfItem(atPath: path)[.posixPermissions] as? Int
        #expect(mode == 0o644)
        #expect(throws: CNIConflist.WriteError.self) { try CNIConflist.write("{}", to: "/proc/nodenet-test/10-nodenet.conflist") }
    }

    @Test func conflistIsValidJSONNamingThePlugin() throws {
        let data = try Data(contentsOf: URL(fileURLWithPath: "etc/cni/net.d/10-nodenet.conflist"))
        let obj = try JSONSerialization.jsonObject(with: data) as? [String: Any]
        // libcni before 1.2 (containerd 1.6 and 1.7, CRI-O before 1.30) reads only the top-level
        // version and cannot parse a 1.1.0 result: every pod would fail. Newer libcni picks the
        // highest of `cniVersions` it knows, so GC and STATUS (1.1.0) still reach those runtimes.
        #expect(obj?["cniVersion"] as? String == "1.0.0")
        #expect((obj?["cniVersions"] as? [String])?.contains("1.1.0") == true)
        let plugins = obj?["plugins"] as? [[String: Any]]
        #expect(plugins?.first?["type"] as? String == "nodenet")
    }
}
