// nftablesTransaction on a scripted transport: one datagram BEGIN..END with no per-message
// ACKs, a GETGEN barrier after it, kernel errors mapped back to the request that caused them.
import Glibc
import Testing
@testable import Netlink

@Suite("nf_tables transactions")
struct NFTablesTransactionTests {
    let requests = [NFTablesMessages.newTable("t", family: .v4), NFTablesMessages.newChain(table: "t", name: "a", family: .v4),
                    NFTablesMessages.newChain(table: "t", name: "b", family: .v4)]

    /// Answers like the kernel: for the batch datagram, an error for each message whose chain
    /// is named in `failing`; for the barrier, NEWGEN and its ACK.
    func kernel(failing: Set<String>) -> ScriptedTransport {
        ScriptedTransport { datagram in
            let messages = sentMessages(datagram)
            if messages.count == 1 {  // the barrier
                return [ackReply(for: datagram, seq: messages[0].seq)]
            }
            var out: [[UInt8]] = []
            for m in messages where m.type == (10 << 8 | 3) {
                let name = (try? Attributes(m.payload.dropFirst(4)).string(3)) ?? nil
                if let name, failing.contains(name) {
                    out.append(ackReply(for: Array(datagram[0..<16]), seq: m.seq, errno: 2, message: "no such chain"))
                }
            }
            return out
        }
    }

    @Test func oneDatagramWithoutPerMessageAcksThenABarrier() throws {
        let t = kernel(failing: [])
        let result = try NetlinkSession(transport: t).nftablesTransaction(requests)
        #expect(result.succeeded)
        #expect(t.sent.count == 2, "the batch, then the barrier")
        let batch = sentMessages(t.sent[0])
        #expect(batch.map(\.type) == [0x10, 10 << 8 | 0, 10 << 8 | 3, 10 << 8 | 3, 0x11], "BEGIN, messages, END")
        #expect(batch.allSatisfy { $0.flags & Netlink.fAck == 0 }, "no message asks for an ACK")
        #expect(Set(batch.map(\.seq)).count == 5, "distinct sequence numbers")
        let barrier = sentMessages(t.sent[1])
        #expect(barrier.map(\.type) == [10 << 8 | 16], "NFT_MSG_GETGEN")
        #expect(barrier[0].flags & Netlink.fAck != 0)
    }

    @Test func errorsMapToTheirRequest() throws {
        let result = try NetlinkSession(transport: kernel(failing: ["b"])).nftablesTransaction(requests)
        #expect(result.failures.keys.sorted() == [2])
        #expect(result.failures[2]?.object == "t b")
        #expect(result.failures[2]?.errno == 2)
    }

    /// A chain dump that fails (here EPERM) is not an empty chain: the owned-chain reconcile
    /// fails with the dump's error and adds nothing (adding would duplicate every rule the
    /// chain already holds).
    @Test func ownedChainFailsWhenItsDumpFails() {
        let getRule = UInt16(10 << 8 | 7), newRule = UInt16(10 << 8 | 6)
        let transport = ScriptedTransport { datagram in
            let messages = sentMessages(datagram)
            if messages.count == 1, messages[0].type == getRule {
                return [ackReply(for: datagram, seq: messages[0].seq, errno: EPERM, message: "Operation not permitted")]
            }
            return messages.count == 1 ? [ackReply(for: datagram, seq: messages[0].seq)] : []
        }
        let chain = NFTablesOwnedChain(table: "nodenet", chain: "pod-egress", hook: .natPostrouting)
        let e = #expect(throws: NetlinkError.self) {
            try chain.ensure(session: NetlinkSession(transport: transport), family: .v4,
                             wanted: [(comment: "masquerade 10.244.1.0/24", expressions: [.masquerade])])
        }
        #expect(e?.errnoName == "EPERM")
        #expect(e?.operation == "list nftables rules")
        let sent = transport.sent.flatMap(sentMessages)
        #expect(!sent.contains { $0.type == newRule }, "rules were added after a failed dump")
    }
}
