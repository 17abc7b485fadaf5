// nfnetlink transactions: NFNL_MSG_BATCH_BEGIN, the subsystem's messages, NFNL_MSG_BATCH_END
// in one datagram. nf_tables applies such a batch atomically (all or nothing). The
// nf_tables expression encoding lives with the service rules; this is the transport.

public enum NfnetlinkMessages {
    /// struct nfgenmsg: family, version, res_id (big endian: the subsystem for batch messages).
    static func nfgenmsg(_ b: inout MessageBuilder, family: UInt8, resID: UInt16 = 0) {
        b.appendInteger(family)
        b.appendInteger(Netlink.nfnetlinkV0)
        b.appendInteger(resID.bigEndian)
    }

    /// Starts a message of `subsystem` (NFNL_SUBSYS_NFTABLES) with nfgenmsg written; add the
    /// attributes, then `NetlinkRequest(bytes: builder.finish(), ...)`.
    public static func builder(subsystem: UInt16 = Netlink.nfnlSubsysNFTables, message: UInt16, family: UInt8,
                               flags: UInt16 = 0, resID: UInt16 = 0) -> MessageBuilder {
        var b = MessageBuilder(type: subsystem << 8 | message, flags: flags)
        nfgenmsg(&b, family: family, resID: resID)
        return b
    }

    public static func batchBegin(subsystem: UInt16 = Netlink.nfnlSubsysNFTables) -> NetlinkRequest {
        var b = MessageBuilder(type: Netlink.nfnlBatchBegin, flags: Netlink.fRequest)
        nfgenmsg(&b, family: Netlink.afUnspec, resID: subsystem)
        return NetlinkRequest(bytes: b.finish(), operation: "begin transaction", object: "subsystem \(subsystem)")
    }

    public static func batchEnd(subsystem: UInt16 = Netlink.nfnlSubsysNFTables) -> NetlinkRequest {
        var b = MessageBuilder(type: Netlink.nfnlBatchEnd, flags: Netlink.fRequest)
        nfgenmsg(&b, family: Netlink.afUnspec, resID: subsystem)
        return NetlinkRequest(bytes: b.finish(), operation: "commit transaction", object: "subsystem \(subsystem)")
    }
}

extension NetlinkSession {
    /// Sends `requests` as one nfnetlink transaction and waits for every answer. Each message
    /// asks for an ACK, so a failure maps back to the request (by index) that caused it; any
    /// failure means the kernel aborted the whole transaction. An error for the batch itself
    /// (permission, commit failure) is thrown.
    public func transaction(_ requests: [NetlinkRequest], subsystem: UInt16 = Netlink.nfnlSubsysNFTables) throws(NetlinkError) -> BatchResult {
        try exclusive { () throws(NetlinkError) -> BatchResult in try transactionLocked(requests, subsystem: subsystem) }
    }

    private func transactionLocked(_ requests: [NetlinkRequest], subsystem: UInt16) throws(NetlinkError) -> BatchResult {
        var result = BatchResult(count: requests.count)
        guard !requests.isEmpty else { return result }
        var begin = NfnetlinkMessages.batchBegin(subsystem: subsystem)
        var end = NfnetlinkMessages.batchEnd(subsystem: subsystem)
        let first = takeSequence(requests.count + 2)
        begin.seq = first
        end.seq = first &+ UInt32(requests.count + 1)
        var datagram = begin.bytes
        for (i, request) in requests.enumerated() {
            var r = request
            r.seq = first &+ UInt32(i + 1)
            r.flags |= Netlink.fRequest | Netlink.fAck
            datagram += r.bytes
        }
        datagram += end.bytes
        // The kernel queues every ACK before we read any (each costs about 1 KiB of buffer
        // accounting); without room, ACKs are dropped and the outcome is unknown (ENOBUFS).
        transport.reserveReceiveBuffer(requests.count * 1024 + (64 << 10))
        try transport.send(datagram)
        var answered = 0
        while answered < requests.count {
            for m in try NetlinkMessage.parse(transport.receive()) where m.type == Netlink.error {
                let offset = Int(m.seq &- first)
                guard offset >= 0, offset <= requests.count + 1 else { continue }
                if offset == 0 || offset == requests.count + 1 {
                    let edge = offset == 0 ? begin : end
                    let ack = try Self.ack(m, edge)
                    if ack.errno != 0 { throw Self.error(ack, edge) }
                    continue
                }
                let ack = try Self.ack(m, requests[offset - 1])
                if ack.errno != 0 { result.failures[offset - 1] = Self.error(ack, requests[offset - 1]) }
                answered += 1
            }
        }
        return result
    }
}
