// Request/reply logic over a transport: sequence numbers, ACK matching, dumps with retry on
// NLM_F_DUMP_INTR, and batches (many requests per sendmsg, errors mapped back by sequence).
import Glibc
import Synchronization

/// A conversation with the kernel over one socket. Thread-safe: a lock keeps each exchange
/// (send plus the replies that belong to it) together.
public final class NetlinkSession: Sendable {
    private struct State {
        var nextSeq: UInt32
    }

    public let transport: any NetlinkTransport
    private let state: Mutex<State>
    private let retries = Atomic<Int>(0)
    /// Held for a whole exchange (send plus its replies): two threads reading one socket
    /// would each swallow the other's replies.
    private let exchangeLock = Mutex(())
    /// How many dumps were thrown away and rerun because of NLM_F_DUMP_INTR (for metrics).
    public var dumpRetries: Int { retries.load(ordering: .relaxed) }
    /// Upper bound on one batch datagram; the kernel refuses datagrams over its send buffer.
    let batchBytes: Int
    /// Upper bound on requests per datagram, which bounds how many error replies can queue up.
    let batchCount: Int

    public init(transport: any NetlinkTransport, firstSeq: UInt32 = 1, batchBytes: Int = 64 * 1024, batchCount: Int = 1024) {
        self.transport = transport
        self.state = Mutex(State(nextSeq: firstSeq))
        self.batchBytes = batchBytes
        self.batchCount = batchCount
    }

    /// A session on a fresh socket in the calling thread's network namespace.
    public convenience init(protocol proto: Int32) throws(NetlinkError) {
        self.init(transport: try NetlinkSocket(protocol: proto), firstSeq: Self.seedSeq())
    }

    /// A session on a socket opened inside `namespace` (e.g. `Netlink.netfilter` for a node's
    /// nftables); it keeps acting on that namespace from any thread.
    public convenience init(protocol proto: Int32, namespace: NetworkNamespace) throws {
        let socket = try namespace.performSync { try NetlinkSocket(protocol: proto) }
        self.init(transport: socket, firstSeq: Self.seedSeq())
    }

    /// Sequence numbers start from the clock so a reused port id never matches stale replies.
    static func seedSeq() -> UInt32 {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return UInt32(truncatingIfNeeded: ts.tv_nsec ^ ts.tv_sec) | 1
    }

    func takeSequence(_ count: Int = 1) -> UInt32 {
        state.withLock { s in
            let first = s.nextSeq
            s.nextSeq &+= UInt32(count)
            return first
        }
    }

    /// Runs one exchange with the socket to itself.
    func exclusive<T: Sendable>(_ body: () throws(NetlinkError) -> T) throws(NetlinkError) -> T {
        try exchangeLock.withLock { (_: inout ()) throws(NetlinkError) -> T in try body() }
    }

    // MARK: single requests

    /// Sends a request with NLM_F_ACK and waits for its ACK. Replies other than the ACK with
    /// the same sequence (NLM_F_ECHO answers) are returned.
    @discardableResult
    public func execute(_ request: NetlinkRequest) throws(NetlinkError) -> [NetlinkMessage] {
        try exclusive { () throws(NetlinkError) -> [NetlinkMessage] in try executeLocked(request) }
    }

    private func executeLocked(_ request: NetlinkRequest) throws(NetlinkError) -> [NetlinkMessage] {
        var req = request
        req.flags |= Netlink.fRequest | Netlink.fAck
        req.seq = takeSequence()
        try transport.send(req.bytes)
        var replies: [NetlinkMessage] = []
        while true {
            for m in try NetlinkMessage.parse(transport.receive()) where m.seq == req.seq {
                if m.type == Netlink.error {
                    let ack = try Self.ack(m, request)
                    if ack.errno != 0 { throw Self.error(ack, request) }
                    return replies
                }
                if m.type == Netlink.done { return replies }
                replies.append(m)
            }
        }
    }

    // MARK: dumps

    /// Runs a dump and returns every message of it. A dump the kernel flags as interrupted by
    /// a concurrent change (NLM_F_DUMP_INTR) is thrown away and run again, up to `attempts`.
    public func dump(_ request: NetlinkRequest, attempts: Int = 8) throws(NetlinkError) -> [NetlinkMessage] {
        try exclusive { () throws(NetlinkError) -> [NetlinkMessage] in try dumpLocked(request, attempts: attempts) }
    }

    private func dumpLocked(_ request: NetlinkRequest, attempts: Int) throws(NetlinkError) -> [NetlinkMessage] {
        for _ in 0..<attempts {
            var req = request
            req.flags = (req.flags | Netlink.fRequest | Netlink.fDump) & ~Netlink.fAck
            req.seq = takeSequence()
            try transport.send(req.bytes)
            var messages: [NetlinkMessage] = []
            var interrupted = false
            receiving: while true {
                for m in try NetlinkMessage.parse(transport.receive()) where m.seq == req.seq {
                    if m.flags & Netlink.fDumpIntr != 0 { interrupted = true }
                    if m.type == Netlink.error {
                        let ack = try Self.ack(m, request)
                        if ack.errno != 0 { throw Self.error(ack, request) }
                        break receiving
                    }
                    if m.type == Netlink.done {
                        // NLMSG_DONE carries an int32: a negative errno when the dump failed midway.
                        if let status = try? ByteReader(m.payload).s32(0), status < 0 {
                            throw NetlinkError(operation: request.operation, object: request.object, kind: .kernel(errno: -status))
                        }
                        break receiving
                    }
                    messages.append(m)
                }
            }
            if !interrupted { return messages }
            retries.add(1, ordering: .relaxed)
        }
        throw NetlinkError(operation: request.operation, object: request.object, kind: .dumpInterrupted(attempts: attempts))
    }

    // MARK: batches

    /// Sends many requests in as few datagrams as possible and reports each one's outcome.
    /// Only the last request of each datagram asks for an ACK: the kernel processes a datagram
    /// in order, answers every failing request with an error regardless, and continues with
    /// the next one, so the final ACK (or error) marks the datagram as fully processed.
    public func batch(_ requests: [NetlinkRequest]) throws(NetlinkError) -> BatchResult {
        try exclusive { () throws(NetlinkError) -> BatchResult in try batchLocked(requests) }
    }

    private func batchLocked(_ requests: [NetlinkRequest]) throws(NetlinkError) -> BatchResult {
        var result = BatchResult(count: requests.count)
        var start = 0
        while start < requests.count {
            var end = start
            var size = 0
            while end < requests.count, end - start < batchCount,
                  end == start || size + requests[end].bytes.count <= batchBytes {
                size += requests[end].bytes.count
                end += 1
            }
            let first = takeSequence(end - start)
            var datagram: [UInt8] = []
            datagram.reserveCapacity(size)
            for i in start..<end {
                var req = requests[i]
                req.seq = first &+ UInt32(i - start)
                req.flags = (req.flags | Netlink.fRequest) & ~Netlink.fAck
                if i == end - 1 { req.flags |= Netlink.fAck }
                datagram.append(contentsOf: req.bytes)
            }
            try transport.send(datagram)
            let lastSeq = first &+ UInt32(end - start - 1)
            var finished = false
            while !finished {
                for m in try NetlinkMessage.parse(transport.receive()) where m.type == Netlink.error {
                    let offset = Int(m.seq &- first)
                    guard offset >= 0, offset < end - start else { continue }
                    let ack = try Self.ack(m, requests[start + offset])
                    if ack.errno != 0 { result.failures[start + offset] = Self.error(ack, requests[start + offset]) }
                    if m.seq == lastSeq { finished = true }
                }
            }
            start = end
        }
        return result
    }

    // MARK: helpers

    static func ack(_ m: NetlinkMessage, _ request: NetlinkRequest) throws(NetlinkError) -> NetlinkAck {
        do {
            return try NetlinkAck(m)
        } catch {
            throw .malformed(request.operation, request.object, "unreadable NLMSG_ERROR: \(error.kind)")
        }
    }

    static func error(_ ack: NetlinkAck, _ request: NetlinkRequest) -> NetlinkError {
        NetlinkError(operation: request.operation, object: request.object, kind: .kernel(errno: ack.errno), extAck: ack.extAck)
    }
}

/// The outcome of a batch: which requests failed (by their index in the batch) and why.
public struct BatchResult: Sendable {
    public let count: Int
    public var failures: [Int: NetlinkError] = [:]

    public init(count: Int) { self.count = count }

    public var succeeded: Bool { failures.isEmpty }

    /// Throws the first failure (by index) when any request failed.
    public func check() throws(NetlinkError) {
        if let first = failures.keys.min(), let e = failures[first] { throw e }
    }
}
