import Foundation
import NodenetTestSupport
import Testing

/// The built .deb as Debian's own checker sees it: no lintian error (warnings are shown, not
/// fatal; each deliberate exception is an override with its reason, packaging/lintian-overrides),
/// and the package metadata a Debian package must have. Runs on the package PackageSystemdTests
/// installs ($NODENET_DEB, else the newest dist/nodenet_*.deb); skipped without one unless
/// NODENET_REQUIRE_SYSTEMD_TEST=1 (CI builds it first).
@Suite(.enabled(if: PackageUnderTest.deb != nil || PackageUnderTest.required, "no dist/nodenet_*.deb (packaging/build-deb.sh)"))
struct LintianTests {
    static func deb() throws -> String {
        let deb = try #require(PackageUnderTest.deb, "no package: run packaging/build-deb.sh")
        try #require(FileManager.default.fileExists(atPath: deb), "\(deb) does not exist")
        return deb
    }

    @Test(.timeLimit(.minutes(5)))
    func lintianReportsNoError() throws {
        let deb = try Self.deb()
        let lintian = try #require(try? Shell.which("lintian"), "lintian is missing: scripts/setup.sh installs it")
        // --fail-on error: the exit status is 0 unless an error remains after the overrides.
        let r = try Shell.run([lintian, "--fail-on", "error", "--no-tag-display-limit", deb], timeout: 280)
        let errors = r.stdout.split(separator: "\n").filter { $0.hasPrefix("E: ") }
        #expect(r.ok && errors.isEmpty, "lintian (exit \(r.status)):\n\(r.stdout)\(r.stderr)")
    }

    @Test func packageHasDebianMetadata() throws {
        let deb = try Self.deb()
        let control = try Shell.check(["dpkg-deb", "-f", deb]).stdout
        // Depends as dpkg-shlibdeps computed them: the C library with the minimum version the
        // binary's symbols need (a hand-written list let it install where it cannot start).
        #expect(control.range(of: #"Depends: .*libc6 \(>= 2\.\d+\)"#, options: .regularExpression) != nil, "\(control)")
        #expect(control.contains("libsystemd0") && control.contains("libmnl0") && control.contains("procps"), "\(control)")
        #expect(control.range(of: #"Installed-Size: \d+"#, options: .regularExpression) != nil, "\(control)")
        let members = try Shell.check(["sh", "-c", "ar t \"$0\" && dpkg-deb --ctrl-tarfile \"$0\" | tar -t", deb]).stdout
        #expect(members.contains("./md5sums"), "no md5sums: \(members)")
        let files = try Shell.check(["dpkg-deb", "-c", deb]).stdout
        for f in ["./usr/share/doc/nodenet/copyright", "./usr/share/doc/nodenet/changelog.gz", "./usr/share/man/man1/nodenet.1.gz",
                  "./usr/share/man/man1/nodenet-agent.1.gz", "./usr/share/man/man1/nodenet-cni.1.gz",
                  "./usr/share/lintian/overrides/nodenet"] {
            #expect(files.contains(f), "missing \(f)")
        }
        // The runtime's conflist is written by the agent when ready, not shipped active.
        #expect(!files.contains("./etc/cni/net.d/10-nodenet.conflist"))
    }

    /// The copyright file names every Swift package this build resolved, with the version it
    /// resolved (Package.resolved of this checkout, which built the package in CI).
    @Test func copyrightListsTheResolvedVersions() throws {
        let deb = try Self.deb()
        let copyright = try Shell.check(["sh", "-c", "dpkg-deb --fsys-tarfile \"$0\" | tar -xO ./usr/share/doc/nodenet/copyright", deb]).stdout
        #expect(copyright.hasPrefix("Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/"))
        #expect(copyright.contains("License: Apache-2.0"))
        let data = try #require(FileManager.default.contents(atPath: "Package.resolved"), "no Package.resolved: swift build first")
        let pins = try #require((try JSONSerialization.jsonObject(with: data) as? [String: Any])?["pins"] as? [[String: Any]])
        try #require(!pins.isEmpty)
        for pin in pins {
            let identity = pin["identity"] as? String ?? "?"
            let version = (pin["state"] as? [String: Any])?["version"] as? String ?? "?"
            let location = pin["location"] as? String ?? "?"
            #expect(copyright.contains("Files: \(identity)/*"), "\(identity) is not in the copyright file")
            #expect(copyright.contains(" \(version) (\(location),"), "\(identity) \(version): not the version this build resolved")
        }
        // The code lintian finds vendored inside the binary.
        #expect(copyright.contains("libyaml") && copyright.contains("zlib"))
    }
}
