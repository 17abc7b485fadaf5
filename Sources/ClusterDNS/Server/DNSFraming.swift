import NIOCore

/// DNS over TCP framing (RFC 1035 §4.2.2): each message behind a 16-bit length.
struct DNSFrameDecoder: ByteToMessageDecoder {
    typealias InboundOut = ByteBuffer

    mutating func decode(context: ChannelHandlerContext, buffer: inout ByteBuffer) throws -> DecodingState {
        guard let length = buffer.getInteger(at: buffer.readerIndex, as: UInt16.self),
              buffer.readableBytes >= 2 + Int(length) else { return .needMoreData }
        buffer.moveReaderIndex(forwardBy: 2)
        context.fireChannelRead(wrapInboundOut(buffer.readSlice(length: Int(length))!))
        return .continue
    }
}

extension ByteBuffer {
    /// A length-prefixed frame for DNS over TCP.
    static func dnsFrame(_ bytes: [UInt8], allocator: ByteBufferAllocator) -> ByteBuffer {
        var b = allocator.buffer(capacity: bytes.count + 2)
        b.writeInteger(UInt16(bytes.count))
        b.writeBytes(bytes)
        return b
    }
}

func monotonicMilliseconds() -> Int64 { Int64(NIODeadline.now().uptimeNanoseconds / 1_000_000) }
