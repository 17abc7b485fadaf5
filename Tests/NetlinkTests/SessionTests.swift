// Session logic over a scripted transport (no privileges): sequence numbers, ACK matching,
// extended ack errors, dump retry on NLM_F_DUMP_INTR, batch error mapping, transactions.
import Glibc
import Synchronization
import IPAddressing
import Testing
@testable import Netlink

@Suite("session logic with recorded bytes")
struct SessionTests {
    let bridge = try! RouteMessages.createBridge(name: "br0")

    @Test func executeSendsAckedRequestWithSequenceAndMatchesTheAck() throws {
        let transport = ScriptedTransport { sent in
            let seq = sentMessages(sent)[0].seq
            // A stale ACK from an earlier request comes first and must be ignored.
            return [ackReply(for: sent, seq: seq &- 1, errno: EEXIST), ackReply(for: sent, seq: seq)]
        }
        let session = NetlinkSession(transport: transport, firstSeq: 500)
        try session.execute(bridge)
        let sent = try #require(transport.sent.first)
        #expect(sent.count == bridge.bytes.count)
        #expect(Array(sent[6..<8]) == [0x05, 0x06])    // REQUEST|ACK, CREATE|EXCL
        #expect(Array(sent[8..<12]) == [0xf4, 0x01, 0, 0])  // seq 500
        #expect(Array(sent[16...]) == Array(bridge.bytes[16...]))
    }

    @Test func kernelErrorsBecomeTypedErrorsWithExtAck() {
        let transport = ScriptedTransport { sent in
            [ackReply(for: sent, seq: sentMessages(sent)[0].seq, errno: EEXIST, message: "File exists")]
        }
        let session = NetlinkSession(transport: transport)
        let e = #expect(throws: NetlinkError.self) { try session.execute(bridge) }
        #expect(e?.kind == .kernel(errno: EEXIST))
        #expect(e?.isExists == true)
        #expect(e?.operation == "create bridge")
        #expect(e?.object == "br0")
        #expect(e?.extAck == "File exists")
    }

    @Test func interruptedDumpIsRetriedAndOnlyTheCleanRunIsReturned() throws {
        let link = try NetlinkMessage.parse(Fixtures.linkVeth)[0]
        let attempts = Attempts()
        let transport = ScriptedTransport { sent in
            let seq = sentMessages(sent)[0].seq
            let n = attempts.next()
            let flags: UInt16 = Netlink.fMulti | (n == 0 ? Netlink.fDumpIntr : 0)
            return [reply(type: Netlink.newLink, flags: flags, seq: seq, payload: Array(link.payload)),
                    reply(type: Netlink.done, flags: flags, seq: seq, payload: [0, 0, 0, 0])]
        }
        let client = RouteClient(session: NetlinkSession(transport: transport))
        let links = try client.links()
        #expect(links.map(\.name) == ["u0"])
        #expect(transport.sent.count == 2)
        #expect(client.session.dumpRetries == 1)
        // Each attempt is a new request with a new sequence number.
        #expect(sentMessages(transport.sent[0])[0].seq != sentMessages(transport.sent[1])[0].seq)
    }

    @Test func dumpThatNeverSettlesThrows() {
        let transport = ScriptedTransport { sent in
            [reply(type: Netlink.done, flags: Netlink.fMulti | Netlink.fDumpIntr, seq: sentMessages(sent)[0].seq, payload: [0, 0, 0, 0])]
        }
        let session = NetlinkSession(transport: transport)
        let e = #expect(throws: NetlinkError.self) { try session.dump(RouteMessages.dumpLinks(), attempts: 3) }
        #expect(e?.kind == .dumpInterrupted(attempts: 3))
    }

    @Test func dumpFailureInDoneIsReported() {
        let transport = ScriptedTransport { sent in
            [reply(type: Netlink.done, flags: Netlink.fMulti, seq: sentMessages(sent)[0].seq, payload: [0xfe, 0xff, 0xff, 0xff])]
        }
        let e = #expect(throws: NetlinkError.self) { try NetlinkSession(transport: transport).dump(RouteMessages.dumpLinks()) }
        #expect(e?.errnoName == "ENOENT")
    }

    /// The kernel's behaviour for a batch datagram: every failing message gets an error, and
    /// the message with NLM_F_ACK gets an ACK (or its error).
    static func kernelLike(failing: Set<String>) -> @Sendable ([UInt8]) -> [[UInt8]] {
        { sent in
            var replies: [[UInt8]] = []
            for m in sentMessages(sent) {
                let request = MessageBuilder(type: m.type, flags: m.flags).bytes
                let attrs = try? Attributes(m.payload.dropFirst(12))
                let dst = attrs?.address(Netlink.rtaDst).map { "\($0)" } ?? ""
                if failing.contains(dst) {
                    replies.append(ackReply(for: request, seq: m.seq, errno: EEXIST))
                } else if m.flags & Netlink.fAck != 0 {
                    replies.append(ackReply(for: request, seq: m.seq))
                }
            }
            return replies
        }
    }

    @Test func batchMapsErrorsToTheirRequestsAcrossDatagrams() throws {
        let routes = (0..<10).map { i in Route(destination: IPPrefix(address: .v4(IPv4Address(10, 0, UInt8(i), 0)), length: 24), outputIndex: 1) }
        let transport = ScriptedTransport(Self.kernelLike(failing: ["10.0.3.0", "10.0.7.0", "10.0.9.0"]))
        // Four requests per datagram: 10 requests in 3 sendmsg calls.
        let session = NetlinkSession(transport: transport, batchBytes: 1 << 20, batchCount: 4)
        let client = RouteClient(session: session, useNexthopObjects: false)
        let result = try client.apply(routes.map(RouteChange.add))
        #expect(transport.sent.count == 3)
        #expect(Set(result.failures.keys) == [3, 7, 9])
        #expect(result.failures[7]?.description.contains("add route 10.0.7.0/24") == true)
        #expect(throws: NetlinkError.self) { try result.check() }
        // Only the last message of each datagram asks for an ACK.
        let acks = transport.sent.map { sentMessages($0).map { $0.flags & Netlink.fAck != 0 } }
        #expect(acks == [[false, false, false, true], [false, false, false, true], [false, true]])
        // Sequence numbers are consecutive within a datagram.
        let seqs = sentMessages(transport.sent[0]).map(\.seq)
        #expect(seqs == Array(seqs[0]..<(seqs[0] + 4)))
    }

    @Test func transactionWrapsMessagesAndMapsErrors() throws {
        let transport = ScriptedTransport { sent in
            let ms = sentMessages(sent)
            // Second inner message fails; the others are acked; nothing for begin/end.
            return ms.dropFirst().dropLast().enumerated().map { i, m in
                ackReply(for: MessageBuilder(type: m.type, flags: m.flags).bytes, seq: m.seq, errno: i == 1 ? ENOENT : 0, message: i == 1 ? "No such table" : nil)
            }
        }
        let session = NetlinkSession(transport: transport)
        var b = NfnetlinkMessages.builder(message: 0, family: Netlink.afInet)
        b.attribute(1, string: "t")
        let m = NetlinkRequest(bytes: b.finish(), operation: "add table", object: "t")
        let result = try session.transaction([m, m, m])
        #expect(Set(result.failures.keys) == [1])
        #expect(result.failures[1]?.extAck == "No such table")
        let sent = sentMessages(try #require(transport.sent.first))
        #expect(sent.map(\.type) == [Netlink.nfnlBatchBegin, 0x0a00, 0x0a00, 0x0a00, Netlink.nfnlBatchEnd])
        #expect(sent.map { $0.flags & Netlink.fAck != 0 } == [false, true, true, true, false])
    }

    @Test func transactionRejectedAsAWholeThrows() {
        let transport = ScriptedTransport { sent in
            let begin = sentMessages(sent)[0]
            return [ackReply(for: MessageBuilder(type: begin.type, flags: begin.flags).bytes, seq: begin.seq, errno: EPERM)]
        }
        let e = #expect(throws: NetlinkError.self) {
            try NetlinkSession(transport: transport).transaction([NfnetlinkMessages.batchEnd()])
        }
        #expect(e?.errnoName == "EPERM")
        #expect(e?.operation == "begin transaction")
    }

    /// Another writer creates nexthop id 0x4e000001 between our dump and our batch: our
    /// exclusive create fails with EEXIST, and apply retries those routes with a fresh id.
    @Test func nexthopIdCollisionIsRetriedWithAFreshId() throws {
        let dumps = Attempts()
        let transport = ScriptedTransport { sent in
            var replies: [[UInt8]] = []
            for m in sentMessages(sent) {
                let request = MessageBuilder(type: m.type, flags: m.flags).bytes
                switch m.type {
                case Netlink.getNexthop:
                    if dumps.next() > 0 {  // the second dump sees the other writer's nexthop
                        let nh = hex("02 00 03 00 00000000  0800 0100 0100004e")  // AF_INET, proto boot, NHA_ID
                        replies.append(reply(type: Netlink.newNexthop, flags: Netlink.fMulti, seq: m.seq, payload: nh))
                    }
                    replies.append(reply(type: Netlink.done, flags: Netlink.fMulti, seq: m.seq, payload: [0, 0, 0, 0]))
                case Netlink.newNexthop:
                    let id = (try? Attributes(m.payload.dropFirst(8)))?.u32(Netlink.nhaID)
                    if id == Nexthop.idBase { replies.append(ackReply(for: request, seq: m.seq, errno: EEXIST)) }
                    else if m.flags & Netlink.fAck != 0 { replies.append(ackReply(for: request, seq: m.seq)) }
                default:
                    let nh = (try? Attributes(m.payload.dropFirst(12)))?.u32(Netlink.rtaNexthopID)
                    if nh == Nexthop.idBase { replies.append(ackReply(for: request, seq: m.seq, errno: EINVAL, message: "Nexthop id does not exist")) }
                    else if m.flags & Netlink.fAck != 0 { replies.append(ackReply(for: request, seq: m.seq)) }
                }
            }
            return replies
        }
        let client = RouteClient(session: NetlinkSession(transport: transport))
        let route = Route(destination: IPPrefix("10.244.2.0/24")!, gateway: IPAddress("192.168.1.12"), outputIndex: 2)
        let result = try client.apply([.add(route)])
        #expect(result.succeeded, "\(result.failures)")
        // dump, batch (collision), dump, batch with the next id
        #expect(transport.sent.count == 4)
        let retried = sentMessages(transport.sent[3])
        #expect(retried.map(\.type) == [Netlink.newNexthop, Netlink.newRoute])
        #expect((try? Attributes(retried[1].payload.dropFirst(12)))?.u32(Netlink.rtaNexthopID) == Nexthop.idBase + 1)
    }

    /// The nexthops are read once, not per change: a second and third apply send no dump, a
    /// new gateway gets the next free id and a known gateway reuses its object. A failure drops
    /// the memory (the next apply reads the kernel again).
    @Test func nexthopsAreReadOncePerClientNotPerChange() throws {
        let transport = ScriptedTransport { sent in
            var replies: [[UInt8]] = []
            for m in sentMessages(sent) {
                let request = MessageBuilder(type: m.type, flags: m.flags).bytes
                if m.type == Netlink.getNexthop {
                    replies.append(reply(type: Netlink.done, flags: Netlink.fMulti, seq: m.seq, payload: [0, 0, 0, 0]))
                } else if m.type == Netlink.delRoute {
                    replies.append(ackReply(for: request, seq: m.seq, errno: ESRCH))
                } else if m.flags & Netlink.fAck != 0 {
                    replies.append(ackReply(for: request, seq: m.seq))
                }
            }
            return replies
        }
        let client = RouteClient(session: NetlinkSession(transport: transport))
        func route(_ dst: String, _ gw: String) -> Route {
            Route(destination: IPPrefix(dst)!, gateway: IPAddress(gw), outputIndex: 2)
        }
        func dumps() -> Int { transport.sent.flatMap(sentMessages).filter { $0.type == Netlink.getNexthop }.count }
        func lastIDs() -> [UInt32] {
            sentMessages(transport.sent.last!).compactMap { m in
                m.type == Netlink.newNexthop ? (try? Attributes(m.payload.dropFirst(8)))?.u32(Netlink.nhaID)
                    : (try? Attributes(m.payload.dropFirst(12)))?.u32(Netlink.rtaNexthopID)
            }
        }
        #expect(try client.apply([.add(route("10.244.2.0/24", "192.168.1.12"))]).succeeded)
        #expect(dumps() == 1 && lastIDs() == [Nexthop.idBase, Nexthop.idBase])
        #expect(try client.apply([.add(route("10.244.3.0/24", "192.168.1.13"))]).succeeded)
        #expect(dumps() == 1, "the second change reads no nexthops")
        #expect(lastIDs() == [Nexthop.idBase + 1, Nexthop.idBase + 1])
        #expect(try client.apply([.add(route("fd00:10:244:2::/64", "fd00::12")), .add(route("10.96.0.0/24", "192.168.1.12"))]).succeeded)
        #expect(dumps() == 1 && lastIDs() == [Nexthop.idBase + 2, Nexthop.idBase + 2, Nexthop.idBase], "a known gateway reuses its object")
        // A failure (here a delete of a missing route) forgets: the retry and the next apply read again.
        #expect(try client.apply([.delete(route("10.244.9.0/24", "192.168.1.19"))]).failures.count == 1)
        let afterFailure = dumps()
        #expect(afterFailure >= 2, "a failed batch is retried from a fresh read")
        #expect(try client.apply([.add(route("10.244.4.0/24", "192.168.1.14"))]).succeeded)
        #expect(dumps() == afterFailure + 1, "and the memory is rebuilt from the kernel")
    }

    @Test func routeProtocolNameFile() throws {
        var template = Array("/tmp/nodenet-rtprotos-XXXXXX".utf8CString)
        let made: UnsafeMutablePointer<CChar>? = template.withUnsafeMutableBufferPointer { mkdtemp($0.baseAddress!) }
        let dir = String(cString: try #require(made))
        defer { _ = shell("rm -rf '\(dir)'") }
        let sub = dir + "/rt_protos.d"
        #expect(try RouteProtocol.installName(directory: sub))
        #expect(RouteProtocol.readSmallFile(sub + "/nodenet.conf") == "78 nodenet\n")
        #expect(try RouteProtocol.installName(directory: sub) == false)  // already there
        #expect(RouteProtocol.nodenet == 0x4e)
    }
}

/// Counts calls from the scripted transport's closure.
final class Attempts: Sendable {
    private let count = Mutex(0)
    func next() -> Int { count.withLock { c in defer { c += 1 }; return c } }
}
