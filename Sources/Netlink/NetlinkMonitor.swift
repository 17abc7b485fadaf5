// Change events: a socket joined to the rtnetlink multicast groups, read on its own thread,
// delivered as an AsyncSequence. When the kernel drops events (ENOBUFS), or the subscriber
// falls so far behind that the bounded queue fills, the subscriber gets `.overrun` and must
// re-dump: it can no longer know what changed. Memory stays bounded whatever the event rate.
import Synchronization

public enum NetlinkEvent: Sendable, Equatable {
    case link(Link, removed: Bool)
    case address(InterfaceAddress, removed: Bool)
    case route(Route, removed: Bool)
    case neighbour(Neighbour, removed: Bool)
    case fdb(FDBEntry, removed: Bool)
    /// Events were lost; re-read the state you care about.
    case overrun

    /// Decodes one multicast message; nil for kinds nodenet does not model.
    public static func decode(_ m: NetlinkMessage) throws(NetlinkError) -> NetlinkEvent? {
        switch m.type {
        case Netlink.newLink, Netlink.delLink:
            return .link(try RouteDecoding.link(m), removed: m.type == Netlink.delLink)
        case Netlink.newAddr, Netlink.delAddr:
            return .address(try RouteDecoding.address(m), removed: m.type == Netlink.delAddr)
        case Netlink.newRoute, Netlink.delRoute:
            return try RouteDecoding.route(m).map { .route($0, removed: m.type == Netlink.delRoute) }
        case Netlink.newNeigh, Netlink.delNeigh:
            if let f = try RouteDecoding.fdb(m) { return .fdb(f, removed: m.type == Netlink.delNeigh) }
            return try RouteDecoding.neighbour(m).map { .neighbour($0, removed: m.type == Netlink.delNeigh) }
        default:
            return nil
        }
    }
}

/// Subscribes to link, address, route and neighbour changes of one namespace.
///
///     let monitor = try NetlinkMonitor(namespace: ns)
///     for await event in monitor.events { ... }
///
/// The subscription is live once `init` returns, so a dump taken after creating the monitor
/// plus the events that follow describe the state without gaps.
public final class NetlinkMonitor: Sendable {
    public struct Groups: OptionSet, Sendable {
        public let rawValue: UInt8
        public init(rawValue: UInt8) { self.rawValue = rawValue }
        public static let links = Groups(rawValue: 1)
        public static let addresses = Groups(rawValue: 2)
        public static let routes = Groups(rawValue: 4)
        public static let neighbours = Groups(rawValue: 8)
        public static let all: Groups = [.links, .addresses, .routes, .neighbours]
    }

    public let events: AsyncStream<NetlinkEvent>
    private let stopped = StopFlag()

    /// Shared by the monitor, its stream and its reader thread; the thread never holds the
    /// monitor itself, so dropping the monitor (or ending iteration) stops the thread.
    final class StopFlag: Sendable {
        let value = Atomic<Bool>(false)
        /// Events that did not fit in the queue (each run of them became one `.overrun`).
        let dropped = Atomic<Int>(0)
    }

    /// Events dropped because the subscriber fell `queueLimit` behind (for status and tests).
    public var droppedEvents: Int { stopped.dropped.load(ordering: .relaxed) }

    /// Events queued for a subscriber that has not read them yet, at most; more become one `.overrun`.
    public static let defaultQueueLimit = 4096

    public convenience init(namespace: NetworkNamespace? = nil, groups: Groups = .all, receiveBuffer: Int = 4 << 20,
                            queueLimit: Int = NetlinkMonitor.defaultQueueLimit) throws {
        let numbers = Self.groupNumbers(groups)
        let socket: NetlinkSocket
        if let namespace {
            socket = try namespace.performSync { try NetlinkSocket(protocol: Netlink.route, groups: numbers, timeoutSeconds: 0, receiveBuffer: receiveBuffer) }
        } else {
            socket = try NetlinkSocket(protocol: Netlink.route, groups: numbers, timeoutSeconds: 0, receiveBuffer: receiveBuffer)
        }
        try self.init(socket: socket, queueLimit: queueLimit)
    }

    init(socket: NetlinkSocket, queueLimit: Int = NetlinkMonitor.defaultQueueLimit) throws(NetlinkError) {
        // Keeps the oldest: what is queued stays in order, and what does not fit is replaced by
        // one `.overrun` delivered as soon as there is room (see `Queue`).
        let (stream, continuation) = AsyncStream<NetlinkEvent>.makeStream(bufferingPolicy: .bufferingOldest(max(2, queueLimit)))
        events = stream
        let flag = stopped
        continuation.onTermination = { _ in flag.value.store(true, ordering: .relaxed) }
        // The reader thread holds the socket; it notices `stop()` within one poll interval.
        try ThreadRunner.runDetached {
            Self.read(socket, into: Queue(continuation: continuation, flag: flag), until: { flag.value.load(ordering: .relaxed) })
        }
    }

    deinit { stop() }

    /// Ends the event stream and closes the socket (within ~100 ms).
    public func stop() {
        stopped.value.store(true, ordering: .relaxed)
    }

    static func groupNumbers(_ g: Groups) -> [UInt32] {
        var out: [UInt32] = []
        if g.contains(.links) { out.append(Netlink.groupLink) }
        if g.contains(.addresses) { out += [Netlink.groupIPv4Addr, Netlink.groupIPv6Addr] }
        if g.contains(.routes) { out += [Netlink.groupIPv4Route, Netlink.groupIPv6Route] }
        if g.contains(.neighbours) { out.append(Netlink.groupNeigh) }
        return out
    }

    /// The reader's side of the bounded stream: once an event did not fit, later events are
    /// dropped until an `.overrun` fits (tried again on every event and every poll), so the
    /// subscriber sees what was queued, then `.overrun`, then only what followed it.
    struct Queue {
        let continuation: AsyncStream<NetlinkEvent>.Continuation
        let flag: StopFlag
        var lost = false

        mutating func yield(_ event: NetlinkEvent) {
            if lost {
                guard case .enqueued = continuation.yield(.overrun) else {
                    flag.dropped.add(1, ordering: .relaxed)
                    return
                }
                lost = false
                if event == .overrun { return }
            }
            if case .dropped = continuation.yield(event) {
                lost = true
                flag.dropped.add(1, ordering: .relaxed)
            }
        }

        /// A pending `.overrun`, delivered once there is room even if no new event comes.
        mutating func flush() {
            if lost, case .enqueued = continuation.yield(.overrun) { lost = false }
        }
    }

    private static func read(_ socket: NetlinkSocket, into queue: Queue, until isStopped: () -> Bool) {
        var queue = queue
        defer { queue.continuation.finish() }
        while !isStopped() {
            queue.flush()
            guard socket.waitReadable(milliseconds: 100) else { continue }
            do {
                for m in try NetlinkMessage.parse(socket.receive()) {
                    // A message that does not decode is skipped: one odd event must not end the stream.
                    if let e = try? NetlinkEvent.decode(m) { queue.yield(e) }
                }
            } catch let e where e.kind == .lostMessages {
                queue.yield(.overrun)
            } catch {
                queue.yield(.overrun)
                queue.flush()
                return
            }
        }
    }
}
