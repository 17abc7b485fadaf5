#if canImport(Glibc)
import Glibc
#endif
import CBatchUDP
import IPAddressing
import NIOCore
import Synchronization

/// The UDP fast path below NIO (`DNSConfiguration.udpBatchIO`): one SO_REUSEPORT socket served
/// by a thread of its own (not NIO's loops, not the cooperative pool) that blocks in recvmmsg
/// (MSG_WAITFORONE: one syscall per wakeup; `close` wakes it with shutdown) and takes up to
/// `batchSize` datagrams at once, answers each with the same `QueryProcessor` calls as `UDPQueryHandler` (so the
/// same bytes, counters, allow list and rate limiter), and sends the batch with one sendmmsg.
/// Why: NIO's datagram pipeline costs one envelope, NIOAny wrapping, a ByteBuffer and a
/// pending-write entry per query; here a query costs its answer. Queries that need the
/// upstream go to the forwarder from a task and are answered with sendto when it replies.
final class BatchUDPSocket: Sendable {
    /// Datagrams per recvmmsg/sendmmsg.
    static let batchSize: UInt32 = 32
    /// Bytes per received datagram, as NIO's path reads them (`FixedSizeRecvByteBufferAllocator`
    /// of 32 x 2048 over 32 messages), so an oversized query is cut the same way.
    static let receiveSize: UInt32 = 2048

    let port: Int
    private let processor: QueryProcessor
    private let rateLimit: Int
    private let sendSize: UInt32
    /// The socket; -1 once closed. Forwarded replies send under this lock so they never write
    /// to a closed (and maybe reused) descriptor; the serving thread owns it until it is joined.
    private let socket: Mutex<Int32>
    /// Set before `close` wakes the thread: what it reads after that is not a query.
    private let stopping = Atomic<Bool>(false)
    private let thread = Mutex<pthread_t?>(nil)

    /// Binds `address:port` (0: any free port). Throws with the errno text; nothing stays open.
    init(address: IPAddress, port: Int, processor: QueryProcessor, rateLimit: Int, maxResponse: Int) throws(BatchUDPError) {
        let family = address.isV4 ? AF_INET : AF_INET6
        let fd = address.bytes.withUnsafeBufferPointer { nn_udp_bind(family, $0.baseAddress, UInt16(clamping: port)) }
        guard fd >= 0 else { throw BatchUDPError.system("bind", -fd) }
        let bound = nn_udp_local_port(fd)
        guard bound > 0 else { Glibc.close(fd); throw BatchUDPError.system("getsockname", -bound) }
        self.port = Int(bound)
        self.processor = processor
        self.rateLimit = rateLimit
        sendSize = UInt32(max(maxResponse, DNSLimits.classicUDPSize, 4096))
        socket = Mutex(fd)
    }

    /// Starts the serving thread (named `name`, e.g. `dns-udp-0`).
    func start(name: String) throws(BatchUDPError) {
        let fd = socket.withLock { $0 }
        let body = ThreadBody { [self] in
            nn_set_thread_name(name)
            serve(fd)
        }
        var tid = pthread_t()
        let ctx = Unmanaged.passRetained(body).toOpaque()
        let rc = pthread_create(&tid, nil, { p in
            Unmanaged<ThreadBody>.fromOpaque(p!).takeRetainedValue().run()
            return nil
        }, ctx)
        guard rc == 0 else {
            Unmanaged<ThreadBody>.fromOpaque(ctx).release()
            throw BatchUDPError.system("pthread_create", rc)
        }
        thread.withLock { $0 = tid }
    }

    /// Stops the thread (it finishes the batch in hand), joins it and closes the socket. The
    /// join waits for at most one batch; callers are at shutdown or a failed bind.
    func close() {
        let fd = socket.withLock { $0 }
        guard fd >= 0 else { return }
        stopping.store(true, ordering: .releasing)
        nn_udp_wake(fd)
        if let tid = thread.withLock({ t in defer { t = nil }; return t }) { pthread_join(tid, nil) }
        socket.withLock { fd in
            if fd >= 0 { Glibc.close(fd) }
            fd = -1
        }
    }

    private func serve(_ fd: Int32) {
        guard let batch = nn_udp_batch_create(Self.batchSize, Self.receiveSize, sendSize) else { return }
        defer { nn_udp_batch_destroy(batch) }
        let limiter = ResponseRateLimiter(limit: rateLimit)
        let counters = processor.counters
        while true {
            let n = nn_udp_batch_recv(batch, fd, 1)
            if stopping.load(ordering: .acquiring) { return }
            guard n > 0 else { continue }
            var second: UInt32 = 0
            for i in 0..<UInt32(n) {
                let start = NIODeadline.now()
                var len: UInt32 = 0
                let data = nn_udp_batch_data(batch, i, &len)!
                let bytes = Array(UnsafeBufferPointer(start: data, count: Int(len)))
                var addrLength: UInt32 = 0
                guard let remote = Self.socketAddress(nn_udp_batch_peer(batch, i, &addrLength)!) else { continue }
                let type = processor.count(bytes, overTCP: false, client: remote)
                switch processor.handle(bytes, overTCP: false, client: remote) {
                case .drop: continue
                case .reply(var reply):
                    if limiter.limit > 0 {
                        if second == 0 { second = UInt32(truncatingIfNeeded: start.uptimeNanoseconds / 1_000_000_000) }
                        if !limiter.admit(reply: reply, to: remote, now: second) {
                            counters.bump(counters.rateLimited)
                            reply = ResponseRateLimiter.slip(reply)
                        }
                    }
                    _ = reply.withUnsafeBufferPointer { nn_udp_batch_reply(batch, i, $0.baseAddress, UInt32($0.count)) }
                    counters.observe(nanoseconds: NIODeadline.now().uptimeNanoseconds &- start.uptimeNanoseconds, type: type)
                case .forward(let query, let question, let prefix, let maxSize, let fallback):
                    let processor = processor
                    Task { [self] in
                        let reply = await processor.forward(query: query, question: question, prefix: prefix, maxSize: maxSize, fallback: fallback)
                        send(reply, to: remote)
                        processor.counters.observe(nanoseconds: NIODeadline.now().uptimeNanoseconds &- start.uptimeNanoseconds, type: type)
                    }
                }
            }
            nn_udp_batch_send(batch, fd)
        }
    }

    /// A forwarded query's reply, when the upstream answered (any thread).
    private func send(_ reply: [UInt8], to remote: SocketAddress) {
        socket.withLock { fd in
            guard fd >= 0 else { return }
            _ = remote.withSockAddr { sa, len in
                reply.withUnsafeBytes { sendto(fd, $0.baseAddress, $0.count, Int32(MSG_DONTWAIT), sa, socklen_t(len)) }
            }
        }
    }

    /// The peer as NIO's type, which the processor, allow list and rate limiter take (no host
    /// text: nothing here prints it).
    static func socketAddress(_ sa: UnsafePointer<sockaddr>) -> SocketAddress? {
        switch Int32(sa.pointee.sa_family) {
        case AF_INET: sa.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { SocketAddress($0.pointee, host: "") }
        case AF_INET6: sa.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) { SocketAddress($0.pointee, host: "") }
        default: nil
        }
    }
}

public enum BatchUDPError: Error, CustomStringConvertible {
    case system(String, Int32)

    public var description: String {
        switch self {
        case .system(let call, let e): "\(call): \(String(cString: strerror(e)))"
        }
    }
}

/// The closure a pthread runs (passed through its void* argument).
private final class ThreadBody {
    let run: () -> Void
    init(_ run: @escaping () -> Void) { self.run = run }
}
