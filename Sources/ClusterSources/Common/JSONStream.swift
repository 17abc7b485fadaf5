import Foundation

/// Cuts a byte stream into whole JSON documents: both the etcd gateway's watch stream and the
/// Kubernetes watch stream are JSON objects one after another (newline separated in practice,
/// but chunk boundaries fall anywhere, and nothing guarantees the newline).
struct JSONStreamSplitter {
    private var buffer: [UInt8] = []
    private var depth = 0
    private var inString = false
    private var escaped = false
    private var start: Int?
    private var scanned = 0
    /// Refuses a single document larger than this (a broken or hostile peer).
    var limit = 64 << 20

    struct TooLarge: Error, CustomStringConvertible {
        var size: Int
        var description: String { "a streamed JSON document exceeds \(size) bytes" }
    }

    /// Appends bytes and returns the documents they completed.
    mutating func feed(_ bytes: some Sequence<UInt8>) throws -> [Data] {
        buffer.append(contentsOf: bytes)
        var out: [Data] = []
        var i = scanned
        while i < buffer.count {
            let c = buffer[i]
            if inString {
                if escaped { escaped = false } else if c == UInt8(ascii: "\\") { escaped = true } else if c == UInt8(ascii: "\"") { inString = false }
            } else if c == UInt8(ascii: "\"") {
                inString = true
            } else if c == UInt8(ascii: "{") || c == UInt8(ascii: "[") {
                if depth == 0 { start = i }
                depth += 1
            } else if c == UInt8(ascii: "}") || c == UInt8(ascii: "]") {
                depth -= 1
                if depth == 0, let s = start {
                    out.append(Data(buffer[s...i]))
                    start = nil
                }
            }
            i += 1
        }
        // Drop what is consumed so the buffer holds at most one partial document.
        let keepFrom = start ?? buffer.count
        buffer.removeFirst(keepFrom)
        scanned = buffer.count
        if start != nil { start = 0 }
        if buffer.count > limit { throw TooLarge(size: limit) }
        return out
    }
}
