// One nf_tables transaction of any size. nfnetlink applies a batch only when BEGIN and END
// arrive in the same datagram (a batch is one skb; a second sendmsg starts a new one), so a
// large transaction is one large datagram: the send buffer is raised to fit it (SO_SNDBUFFORCE,
// CAP_NET_ADMIN) instead of splitting, which would give up atomicity.
//
// Replies: the kernel processes the whole batch inside sendmsg and queues an error for every
// failing message whether or not it asked for an ACK. Asking for an ACK per message would queue
// one reply per message (180k of them for a large cluster: far beyond any receive buffer), so
// messages ask for none; a GETGEN request sent right after acts as the barrier: once its
// answer arrives, every error of the batch has been read.
import CNetlink
import Glibc

extension NetlinkSession {
    /// Sends `requests` as ONE nf_tables transaction (all or nothing) and reports which of
    /// them failed, by index. An error of the batch itself (commit failure, permission) is thrown.
    public func nftablesTransaction(_ requests: [NetlinkRequest]) throws(NetlinkError) -> BatchResult {
        try exclusive { () throws(NetlinkError) -> BatchResult in try nftablesTransactionLocked(requests) }
    }

    private func nftablesTransactionLocked(_ requests: [NetlinkRequest]) throws(NetlinkError) -> BatchResult {
        var result = BatchResult(count: requests.count)
        guard !requests.isEmpty else { return result }
        var begin = NfnetlinkMessages.batchBegin()
        var end = NfnetlinkMessages.batchEnd()
        let first = takeSequence(requests.count + 3)
        begin.seq = first
        end.seq = first &+ UInt32(requests.count + 1)
        var size = begin.bytes.count + end.bytes.count
        for r in requests { size += r.bytes.count }
        var datagram: [UInt8] = []
        datagram.reserveCapacity(size)
        datagram += begin.bytes
        for (i, request) in requests.enumerated() {
            var r = request
            r.seq = first &+ UInt32(i + 1)
            r.flags = (r.flags | Netlink.fRequest) & ~Netlink.fAck
            datagram += r.bytes
        }
        datagram += end.bytes
        if let socket = transport as? NetlinkSocket { socket.reserveSendBuffer(datagram.count) }
        try transport.send(datagram)

        var barrier = NetlinkRequest(bytes: NfnetlinkMessages.builder(message: UInt16(NFT_MSG_GETGEN.rawValue), family: Netlink.afUnspec).finish(),
                                     operation: "read nftables generation", object: "barrier")
        barrier.seq = first &+ UInt32(requests.count + 2)
        barrier.flags |= Netlink.fRequest | Netlink.fAck
        try transport.send(barrier.bytes)
        while true {
            for m in try NetlinkMessage.parse(transport.receive()) where m.type == Netlink.error {
                let offset = Int(m.seq &- first)
                guard offset >= 0, offset <= requests.count + 2 else { continue }
                if offset == requests.count + 2 {
                    let ack = try Self.ack(m, barrier)
                    if ack.errno != 0 { throw Self.error(ack, barrier) }
                    return result
                }
                if offset == 0 || offset == requests.count + 1 {
                    let edge = offset == 0 ? begin : end
                    let ack = try Self.ack(m, edge)
                    // A batch-level failure after message errors just repeats them.
                    if ack.errno != 0, result.failures.isEmpty { throw Self.error(ack, edge) }
                    continue
                }
                let ack = try Self.ack(m, requests[offset - 1])
                if ack.errno != 0 { result.failures[offset - 1] = Self.error(ack, requests[offset - 1]) }
            }
        }
    }
}

extension NetlinkSocket {
    /// Raises the send buffer so one datagram of `bytes` fits (the kernel refuses larger ones
    /// with EMSGSIZE). SO_SNDBUFFORCE needs CAP_NET_ADMIN, which programming nf_tables needs anyway.
    public func reserveSendBuffer(_ bytes: Int) {
        let fd = fileDescriptor
        var current: Int32 = 0
        var length = socklen_t(MemoryLayout<Int32>.size)
        // getsockopt reports the doubled value the kernel uses for accounting.
        guard getsockopt(fd, SOL_SOCKET, SO_SNDBUF, &current, &length) == 0, Int(current) < bytes + 65536 else { return }
        var size = Int32(clamping: bytes / 2 + 65536)
        if setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, &size, socklen_t(MemoryLayout<Int32>.size)) != 0 {
            _ = setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &size, socklen_t(MemoryLayout<Int32>.size))
        }
    }
}
