import CShims
#if canImport(Glibc)
import Glibc
#endif

/// Hands a CNI call to the full plugin: the `nodenet` binary next to this executable, which
/// runs the complete path (validation with the spec's error codes, the agent-down DEL that
/// tears the veth down over netlink and queues the release, the wait for a starting agent).
/// The lean executable keeps no netlink code, so it links statically and starts in about
/// 1.2 ms; the rare calls it does not decide pay one more exec.
public enum CNIDelegate {
    /// The full binary: `nodenet` beside the real path of this executable (through the
    /// /opt/cni/bin symlink: /usr/bin/nodenet-cni -> /usr/bin/nodenet).
    public static func fullBinary() -> String? {
        var buf = [CChar](repeating: 0, count: 4096)
        let n = readlink("/proc/self/exe", &buf, buf.count - 1)
        guard n > 0 else { return nil }
        let exe = String(decoding: buf[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
        guard let slash = exe.lastIndex(of: "/") else { return nil }
        return exe[..<slash] + "/nodenet"
    }

    /// Replaces this process with `binary`, the same environment and `stdin` as its standard
    /// input (read already, so it goes through an in-memory file). Returns only on failure,
    /// with a description.
    public static func exec(_ binary: String, stdin: [UInt8]) -> String {
        let fd = nodenet_memfd_create("nodenet-cni-stdin")
        guard fd >= 0 else { return "memfd_create: \(String(cString: strerror(errno)))" }
        var offset = 0
        while offset < stdin.count {
            let n = stdin[offset...].withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
            guard n > 0 else { return "writing the configuration for \(binary): \(String(cString: strerror(errno)))" }
            offset += n
        }
        guard lseek(fd, 0, SEEK_SET) == 0, dup2(fd, 0) == 0 else { return "redirecting stdin: \(String(cString: strerror(errno)))" }
        close(fd)
        let argv: [UnsafeMutablePointer<CChar>?] = [strdup(binary), nil]
        execv(binary, argv)
        return "cannot run \(binary): \(String(cString: strerror(errno)))"
    }
}
