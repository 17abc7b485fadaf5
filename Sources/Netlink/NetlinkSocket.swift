// The socket seam. Sessions talk to a `NetlinkTransport` (send bytes, receive one datagram);
// `NetlinkSocket` is the real one over libmnl, tests use recorded bytes instead.
import CNetlink
import Glibc

/// What a session needs from a socket. Implementations must be safe to hand to another
/// thread (a socket opened inside a namespace is used from wherever the caller runs).
public protocol NetlinkTransport: Sendable {
    /// Sends one datagram (one or more netlink messages).
    func send(_ bytes: [UInt8]) throws(NetlinkError)
    /// Receives one datagram; throws `.lostMessages` on ENOBUFS.
    func receive() throws(NetlinkError) -> [UInt8]
    /// Makes room for `bytes` of queued replies (kernel accounting) before a large exchange.
    func reserveReceiveBuffer(_ bytes: Int)
}

extension NetlinkTransport {
    public func reserveReceiveBuffer(_ bytes: Int) {}
}

/// A netlink socket opened with libmnl. The socket belongs to the network namespace of the
/// thread that opened it, for its whole life, whichever thread later uses it.
///
/// `@unchecked Sendable`: the only state is the libmnl handle, written once in `init` and
/// closed in `deinit`; send and receive are plain syscalls on the fd, which the kernel
/// serialises. Sessions add their own lock so request/reply pairs do not interleave.
public final class NetlinkSocket: NetlinkTransport, @unchecked Sendable {
    private let handle: OpaquePointer
    public let protocolNumber: Int32
    private let receiveSize: Int

    /// Opens and binds a socket. `groups` are RTNLGRP_* numbers to join (for monitors).
    /// `timeoutSeconds` bounds a blocking receive so a lost reply cannot hang a caller (0: none).
    public init(protocol proto: Int32, groups: [UInt32] = [], timeoutSeconds: Int = 30, receiveBuffer: Int = 4 << 20) throws(NetlinkError) {
        let what = proto == Netlink.netfilter ? "NETLINK_NETFILTER" : "NETLINK_ROUTE"
        guard let h = mnl_socket_open2(proto, Int32(SOCK_CLOEXEC.rawValue)) else { throw .system("open netlink socket", what) }
        handle = h
        protocolNumber = proto
        receiveSize = 64 * 1024
        if mnl_socket_bind(h, 0, pid_t(MNL_SOCKET_AUTOPID)) < 0 {
            let e = Glibc.errno
            mnl_socket_close(h)
            throw .system("bind netlink socket", what, errno: e)
        }
        // Best effort options: older kernels lack some; none is required for correctness
        // except that without EXT_ACK errors carry no text and without CAP_ACK acks are larger.
        setOption(Netlink.optExtAck, 1)
        setOption(Netlink.optCapAck, 1)
        if proto == Netlink.route { setOption(Netlink.optStrictCheck, 1) }
        for g in groups where !setOption(Netlink.optAddMembership, Int32(bitPattern: g)) {
            let e = Glibc.errno
            mnl_socket_close(h)
            throw .system("join netlink group \(g)", what, errno: e)
        }
        // A large receive buffer keeps batch errors and event bursts from overflowing (ENOBUFS).
        // SO_RCVBUFFORCE needs CAP_NET_ADMIN; fall back to the capped SO_RCVBUF.
        var size = Int32(receiveBuffer)
        let fd = mnl_socket_get_fd(h)
        if setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &size, socklen_t(MemoryLayout<Int32>.size)) != 0 {
            _ = setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, socklen_t(MemoryLayout<Int32>.size))
        }
        // The kernel refuses a datagram larger than the send buffer (EMSGSIZE), and an nf_tables
        // transaction must be one datagram: allow large ones.
        if setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, &size, socklen_t(MemoryLayout<Int32>.size)) != 0 {
            _ = setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &size, socklen_t(MemoryLayout<Int32>.size))
        }
        if timeoutSeconds > 0 {
            var tv = timeval(tv_sec: timeoutSeconds, tv_usec: 0)
            _ = setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        }
    }

    deinit { mnl_socket_close(handle) }

    @discardableResult
    private func setOption(_ option: Int32, _ value: Int32) -> Bool {
        var v = value
        return mnl_socket_setsockopt(handle, option, &v, socklen_t(MemoryLayout<Int32>.size)) == 0
    }

    public var fileDescriptor: Int32 { mnl_socket_get_fd(handle) }

    public func reserveReceiveBuffer(_ bytes: Int) {
        let fd = fileDescriptor
        var current: Int32 = 0
        var length = socklen_t(MemoryLayout<Int32>.size)
        // getsockopt reports the doubled value the kernel uses for accounting.
        guard getsockopt(fd, SOL_SOCKET, SO_RCVBUF, &current, &length) == 0, Int(current) < bytes else { return }
        var size = Int32(clamping: bytes / 2 + 1)
        if setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &size, socklen_t(MemoryLayout<Int32>.size)) != 0 {
            _ = setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, socklen_t(MemoryLayout<Int32>.size))
        }
    }
    public var portID: UInt32 { mnl_socket_get_portid(handle) }

    public func send(_ bytes: [UInt8]) throws(NetlinkError) {
        while true {
            let n = bytes.withUnsafeBytes { mnl_socket_sendto(handle, $0.baseAddress, $0.count) }
            if n >= 0 { return }
            let e = Glibc.errno
            if e == EINTR { continue }
            throw .system("send netlink request", "\(bytes.count) bytes", errno: e)
        }
    }

    public func receive() throws(NetlinkError) -> [UInt8] {
        var buffer = [UInt8](repeating: 0, count: receiveSize)
        while true {
            let n = buffer.withUnsafeMutableBytes { mnl_socket_recvfrom(handle, $0.baseAddress, $0.count) }
            if n >= 0 {
                buffer.removeLast(buffer.count - n)
                return buffer
            }
            let e = Glibc.errno
            switch e {
            case EINTR: continue
            case ENOBUFS: throw NetlinkError(operation: "receive", object: "netlink socket", kind: .lostMessages)
            case EAGAIN: throw .system("receive (timed out waiting for the kernel)", "netlink socket", errno: ETIMEDOUT)
            default: throw .system("receive", "netlink socket", errno: e)
            }
        }
    }

    /// Waits up to `milliseconds` for something to read. Monitors use it to notice cancellation.
    public func waitReadable(milliseconds: Int32) -> Bool {
        var p = pollfd(fd: fileDescriptor, events: Int16(POLLIN), revents: 0)
        return poll(&p, 1, milliseconds) > 0
    }
}
