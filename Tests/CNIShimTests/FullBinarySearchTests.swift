import CNIShim
import Foundation
import NodenetTestSupport
import Testing

/// Where the lean plugin looks for the full nodenet binary, layout by layout, and that it
/// never picks itself.
@Suite struct FullBinarySearchTests {
    typealias Verdict = CNIDelegate.Verdict

    /// A node's files as a table: path to what `verdict(of:)` would say.
    func search(realPath: String, invokedAs: String?, files: [String: Verdict]) -> CNIDelegate.Search {
        CNIDelegate.search(CNIDelegate.candidates(realPath: realPath, invokedAs: invokedAs)) { files[$0] ?? .missing }
    }

    @Test func packageLayoutFindsNodenetBesideTheRealPath() {
        // /opt/cni/bin/nodenet and /usr/lib/cni/nodenet are symlinks to /usr/bin/nodenet-cni.
        for invoked in ["/opt/cni/bin/nodenet", "/usr/lib/cni/nodenet"] {
            let r = search(realPath: "/usr/bin/nodenet-cni", invokedAs: invoked,
                           files: ["/usr/bin/nodenet": .usable, "/usr/local/bin/nodenet": .usable])
            #expect(r == .found("/usr/bin/nodenet"))
        }
    }

    @Test func plainCopyPrefersTheFullBinaryCopiedBesideIt() {
        for dir in ["/opt/cni/bin", "/usr/lib/cni"] {
            let r = search(realPath: "\(dir)/nodenet", invokedAs: "\(dir)/nodenet",
                           files: ["\(dir)/nodenet": .thisPlugin, "\(dir)/nodenet-full": .usable, "/usr/bin/nodenet": .usable])
            #expect(r == .found("\(dir)/nodenet-full"))
        }
    }

    @Test func plainCopyFallsBackToHostInstalls() {
        let usrBin = search(realPath: "/opt/cni/bin/nodenet", invokedAs: "/opt/cni/bin/nodenet",
                            files: ["/opt/cni/bin/nodenet": .thisPlugin, "/usr/bin/nodenet": .usable])
        #expect(usrBin == .found("/usr/bin/nodenet"))
        let usrLocal = search(realPath: "/opt/cni/bin/nodenet", invokedAs: "/opt/cni/bin/nodenet",
                              files: ["/opt/cni/bin/nodenet": .thisPlugin, "/usr/bin/nodenet": .notExecutable,
                                      "/usr/local/bin/nodenet": .usable])
        #expect(usrLocal == .found("/usr/local/bin/nodenet"))
    }

    @Test func aCopyInvokedThroughASymlinkLooksBesideBothPaths() {
        // /opt/cni/bin/nodenet -> /srv/plugins/nodenet (a copy): nodenet-full may sit in either place.
        let c = CNIDelegate.candidates(realPath: "/srv/plugins/nodenet", invokedAs: "/opt/cni/bin/nodenet")
        #expect(c == ["/srv/plugins/nodenet", "/opt/cni/bin/nodenet-full", "/srv/plugins/nodenet-full",
                      "/usr/bin/nodenet", "/usr/local/bin/nodenet"])
    }

    @Test func nothingUsableListsEverySearchedPathWithItsReason() {
        let r = search(realPath: "/opt/cni/bin/nodenet", invokedAs: "/opt/cni/bin/nodenet",
                       files: ["/opt/cni/bin/nodenet": .thisPlugin, "/usr/bin/nodenet": .notExecutable])
        let expected: [(path: String, verdict: Verdict)] = [
            ("/opt/cni/bin/nodenet", .thisPlugin), ("/opt/cni/bin/nodenet-full", .missing),
            ("/usr/bin/nodenet", .notExecutable), ("/usr/local/bin/nodenet", .missing),
        ]
        #expect(r == .notFound(expected))
        guard case .notFound(let passed) = r else { return }
        let message = CNIDelegate.notFoundMessage(passed, command: "DEL")
        #expect(message.contains("/opt/cni/bin/nodenet (this plugin itself)"))
        #expect(message.contains("/usr/bin/nodenet (not an executable file)"))
        #expect(message.contains("nodenet-full"))
    }

    @Test func relativeInvocationIsIgnored() {
        // A runtime that ran us by a bare name gives no directory: only the real path's.
        #expect(CNIDelegate.candidates(realPath: "/opt/cni/bin/nodenet", invokedAs: "nodenet")
            == ["/opt/cni/bin/nodenet", "/opt/cni/bin/nodenet-full", "/usr/bin/nodenet", "/usr/local/bin/nodenet"])
    }

    /// verdict(of:) on real files: a symlink or a hard link to the plugin is the plugin.
    @Test func verdictComparesDeviceAndInode() throws {
        let dir = TempDirectory()
        let plugin = dir.write("nodenet", "#!/bin/sh\n")
        let other = dir.write("nodenet-full", "#!/bin/sh\n")
        let plain = dir.write("notes.txt", "")
        for p in [plugin, other] { chmod(p, 0o755) }
        try FileManager.default.linkItem(atPath: plugin, toPath: dir.file("hardlink"))
        try FileManager.default.createSymbolicLink(atPath: dir.file("symlink"), withDestinationPath: plugin)
        try FileManager.default.createDirectory(atPath: dir.file("adir"), withIntermediateDirectories: false)
        let me = try #require(CNIDelegate.identity(of: plugin))
        #expect(CNIDelegate.verdict(of: plugin, plugin: me) == .thisPlugin)
        #expect(CNIDelegate.verdict(of: dir.file("hardlink"), plugin: me) == .thisPlugin)
        #expect(CNIDelegate.verdict(of: dir.file("symlink"), plugin: me) == .thisPlugin)
        #expect(CNIDelegate.verdict(of: other, plugin: me) == .usable)
        #expect(CNIDelegate.verdict(of: plain, plugin: me) == .notExecutable)
        #expect(CNIDelegate.verdict(of: dir.file("adir"), plugin: me) == .notExecutable)
        #expect(CNIDelegate.verdict(of: dir.file("absent"), plugin: me) == .missing)
    }
}
