import Foundation
import Glibc

/// The container runtime's network configuration, which the agent writes once it is ready
/// (`cni.conflist`), as Calico and Cilium do: a runtime sends pods to the first conflist in
/// its directory, and one present before the agent serves would fail every pod on the node
/// (the kubelet keeps the node NotReady while there is none). `nodenet reset` removes it.
///
/// The text is etc/cni/net.d/10-nodenet.conflist, the reference kept in the repository (and
/// the one the runtime tests use), with the `socket` this agent listens on;
/// PackagingTests checks the two are the same.
public enum CNIConflist {
    public static let defaultSocket = "/run/nodenet/nodenet.sock"

    public static func document(socket: String = defaultSocket) -> String {
        """
        {
          "cniVersion": "1.0.0",
          "cniVersions": ["0.3.1", "0.4.0", "1.0.0", "1.1.0"],
          "name": "nodenet",
          "plugins": [
            {
              "type": "nodenet",
              "socket": "\(socket)",
              "bridge": "nodenet0",
              "capabilities": { "portMappings": true, "ips": true, "mac": true, "dns": true }
            }
          ]
        }

        """
    }

    public struct WriteError: Error, CustomStringConvertible {
        public var description: String
    }

    /// Replaces `path` atomically: a runtime reading the directory sees the old file or the
    /// new one, never a partial one. The temporary name starts with a dot and has no .conflist
    /// suffix, so runtimes ignore it; it is fsynced before the rename, and the directory after.
    /// Does nothing when the file already holds `text`. Returns true when it wrote.
    @discardableResult
    public static func write(_ text: String, to path: String) throws(WriteError) -> Bool {
        if let current = try? String(contentsOfFile: path, encoding: .utf8), current == text { return false }
        let dir = (path as NSString).deletingLastPathComponent
        do {
            try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true,
                                                    attributes: [.posixPermissions: 0o755])
        } catch {
            throw WriteError(description: "cannot create \(dir): \(error)")
        }
        let temp = dir + "/." + (path as NSString).lastPathComponent + ".tmp-\(getpid())"
        let fd = open(temp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw WriteError(description: "cannot create \(temp): \(String(cString: strerror(errno)))") }
        let bytes = Array(text.utf8)
        let written = bytes.withUnsafeBytes { Glibc.write(fd, $0.baseAddress, $0.count) }
        let synced = fsync(fd) == 0
        let failure = String(cString: strerror(errno))
        close(fd)
        guard written == bytes.count, synced, fchmodat(AT_FDCWD, temp, 0o644, 0) == 0 else {
            unlink(temp)
            throw WriteError(description: "cannot write \(temp): \(failure)")
        }
        guard rename(temp, path) == 0 else {
            let why = String(cString: strerror(errno))
            unlink(temp)
            throw WriteError(description: "cannot rename \(temp) to \(path): \(why)")
        }
        let dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        if dirfd >= 0 { fsync(dirfd); close(dirfd) }
        return true
    }
}
