// One error type for everything the kernel layer does: what was attempted (operation),
// on which object, and why (errno plus the kernel's extended ack text when it sent one).
import Glibc

public struct NetlinkError: Error, Sendable, Equatable, CustomStringConvertible {
    public enum Kind: Sendable, Equatable {
        /// The kernel answered the request with a negative errno (NLMSG_ERROR).
        case kernel(errno: Int32)
        /// A system call failed (socket, setns, mount, open...).
        case system(errno: Int32)
        /// The caller passed something the kernel would refuse; nothing was sent.
        case invalidArgument(String)
        /// The kernel's reply did not parse (truncated, bad lengths, unexpected type).
        case malformedReply(String)
        /// A lookup (link by name, namespace by path) found nothing.
        case notFound
        /// Replies were lost (ENOBUFS on the socket): the state is unknown, re-dump.
        case lostMessages
        /// A dump kept being interrupted by concurrent changes past the retry limit.
        case dumpInterrupted(attempts: Int)
    }

    public var operation: String
    public var object: String
    public var kind: Kind
    /// NLMSGERR_ATTR_MSG from the kernel's extended ack, when present.
    public var extAck: String?

    public init(operation: String, object: String, kind: Kind, extAck: String? = nil) {
        self.operation = operation
        self.object = object
        self.kind = kind
        self.extAck = extAck
    }

    /// The errno for kernel and system failures (ENOENT for `.notFound`), else nil.
    public var errno: Int32? {
        switch kind {
        case .kernel(let e), .system(let e): e
        case .notFound: ENOENT
        case .lostMessages: ENOBUFS
        case .dumpInterrupted: EINTR
        case .invalidArgument: EINVAL
        case .malformedReply: EPROTO
        }
    }

    public var errnoName: String { errno.map(Self.name(ofErrno:)) ?? "" }

    /// True when the object already exists (EEXIST): "create" raced with another creator.
    public var isExists: Bool { errno == EEXIST }
    /// True when the object is gone (ENOENT, ENODEV, ESRCH): deletes can treat this as done.
    public var isNotFound: Bool {
        guard let e = errno else { return false }
        return e == ENOENT || e == ENODEV || e == ESRCH || kind == .notFound
    }

    public var description: String {
        var s = "\(operation) \(object): "
        switch kind {
        case .kernel(let e), .system(let e): s += "\(Self.name(ofErrno: e)) (\(Self.message(ofErrno: e)))"
        case .invalidArgument(let why): s += "invalid argument: \(why)"
        case .malformedReply(let why): s += "malformed kernel reply: \(why)"
        case .notFound: s += "not found"
        case .lostMessages: s += "ENOBUFS: netlink messages were lost, state must be re-read"
        case .dumpInterrupted(let n): s += "dump interrupted by concurrent changes \(n) times in a row"
        }
        if let extAck, !extAck.isEmpty { s += ": kernel says \"\(extAck)\"" }
        return s
    }

    static func message(ofErrno e: Int32) -> String {
        guard let p = strerror(e) else { return "errno \(e)" }
        return String(cString: p)
    }

    /// Symbolic errno names for the values netlink and namespace work produce.
    public static func name(ofErrno e: Int32) -> String {
        switch e {
        case EPERM: "EPERM"
        case ENOENT: "ENOENT"
        case ESRCH: "ESRCH"
        case EINTR: "EINTR"
        case EIO: "EIO"
        case ENXIO: "ENXIO"
        case EBADF: "EBADF"
        case EAGAIN: "EAGAIN"
        case ENOMEM: "ENOMEM"
        case EACCES: "EACCES"
        case EBUSY: "EBUSY"
        case EEXIST: "EEXIST"
        case ENODEV: "ENODEV"
        case ENOTDIR: "ENOTDIR"
        case EINVAL: "EINVAL"
        case ENOSPC: "ENOSPC"
        case ERANGE: "ERANGE"
        case ENAMETOOLONG: "ENAMETOOLONG"
        case EPROTO: "EPROTO"
        case EMSGSIZE: "EMSGSIZE"
        case EPROTONOSUPPORT: "EPROTONOSUPPORT"
        case EOPNOTSUPP: "EOPNOTSUPP"
        case EAFNOSUPPORT: "EAFNOSUPPORT"
        case EADDRINUSE: "EADDRINUSE"
        case EADDRNOTAVAIL: "EADDRNOTAVAIL"
        case ENETDOWN: "ENETDOWN"
        case ENETUNREACH: "ENETUNREACH"
        case ENOBUFS: "ENOBUFS"
        case ETIMEDOUT: "ETIMEDOUT"
        case EHOSTUNREACH: "EHOSTUNREACH"
        case ENOTSUP: "ENOTSUP"
        case ENOTEMPTY: "ENOTEMPTY"
        default: "errno \(e)"
        }
    }
}

extension NetlinkError {
    /// A failed system call: reads the thread's errno now, so call it right after the failure.
    static func system(_ operation: String, _ object: String, errno e: Int32 = Glibc.errno) -> NetlinkError {
        NetlinkError(operation: operation, object: object, kind: .system(errno: e))
    }

    static func invalid(_ operation: String, _ object: String, _ why: String) -> NetlinkError {
        NetlinkError(operation: operation, object: object, kind: .invalidArgument(why))
    }

    static func malformed(_ operation: String, _ object: String, _ why: String) -> NetlinkError {
        NetlinkError(operation: operation, object: object, kind: .malformedReply(why))
    }
}
