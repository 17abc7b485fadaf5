import Foundation

public struct AgentLockError: Error, CustomStringConvertible {
    public var message: String
    public var description: String { message }
}

/// An exclusive flock on `runDir/nodenet.lock`, held for the process lifetime: a second agent
/// on the same runDir refuses to start instead of fighting the first over the socket and the
/// kernel state. The kernel drops the lock when the process dies, even on kill -9.
public final class AgentLock: Sendable {
    public let path: String
    private let fd: Int32

    public init(path: String) throws(AgentLockError) {
        self.path = path
        let dir = (path as NSString).deletingLastPathComponent
        try? FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        let fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o600)
        guard fd >= 0 else {
            throw AgentLockError(message: "cannot open lock file \(path): \(String(cString: strerror(errno)))")
        }
        guard flock(fd, LOCK_EX | LOCK_NB) == 0 else {
            let holder = (try? String(contentsOfFile: path, encoding: .utf8))?.trimmingCharacters(in: .whitespacesAndNewlines) ?? ""
            close(fd)
            throw AgentLockError(message: "another nodenet agent is running on \(dir)" + (holder.isEmpty ? "" : " (pid \(holder))")
                + "; stop it first or use a different runDir")
        }
        ftruncate(fd, 0)
        let pid = "\(getpid())\n"
        _ = pid.withCString { write(fd, $0, strlen($0)) }
        self.fd = fd
    }

    deinit {
        close(fd)
    }
}
