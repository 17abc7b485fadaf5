// nodenet's route protocol id. Every route the agent installs carries it, so a dump filtered
// by protocol finds exactly the agent's routes (and stale ones can be garbage-collected
// without touching anyone else's). 78 is unassigned in iproute2's rt_protos.
import Glibc

public enum RouteProtocol {
    /// rtm_protocol for nodenet's routes: 0x4e = 78, named "nodenet".
    public static let nodenet: UInt8 = 78
    /// RTPROT_KERNEL: routes the kernel adds for addresses (connected subnets).
    public static let kernel: UInt8 = 2
    /// RTPROT_BOOT: what `ip route add` uses without "proto".
    public static let boot: UInt8 = 3

    public static let defaultDirectory = "/etc/iproute2/rt_protos.d"

    /// Writes `<directory>/nodenet.conf` ("78 nodenet") so `ip route` shows "proto nodenet".
    /// Returns true when it created the file, false when an identical one was already there.
    @discardableResult
    public static func installName(directory: String = defaultDirectory) throws(NetlinkError) -> Bool {
        let path = directory + "/nodenet.conf"
        let content = "\(nodenet) nodenet\n"
        if let existing = readSmallFile(path), existing == content { return false }
        if mkdir(directory, 0o755) != 0, Glibc.errno != EEXIST { throw .system("create directory", directory) }
        // Write a temporary file and rename it, so a reader never sees a half-written line.
        let temp = path + ".tmp"
        let fd = open(temp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw .system("write", temp) }
        let bytes = Array(content.utf8)
        let written = bytes.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
        let writeErrno = Glibc.errno
        close(fd)
        guard written == bytes.count else { unlink(temp); throw .system("write", temp, errno: writeErrno) }
        guard rename(temp, path) == 0 else { let e = Glibc.errno; unlink(temp); throw .system("rename", path, errno: e) }
        return true
    }

    static func readSmallFile(_ path: String) -> String? {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var buffer = [UInt8](repeating: 0, count: 4096)
        let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
        guard n >= 0 else { return nil }
        return String(decoding: buffer[0..<n], as: UTF8.self)
    }
}
