// Test helpers: private namespaces for privileged tests, a scripted transport for unit tests,
// and hex helpers for golden bytes.
import Glibc
import IPAddressing
import Synchronization
import Testing
@testable import Netlink

let isRoot = getuid() == 0

/// Runs `body` with a fresh, uniquely named network namespace that is deleted afterwards,
/// also when `body` throws or an expectation fails.
func withTestNamespace<T>(_ tag: String = "t", _ body: (NetworkNamespace, String) throws -> T) throws -> T {
    TestNamespaces.cleanLeftovers
    let name = TestNamespaces.makeName(tag)
    let ns = try NetworkNamespace.create(named: name)
    defer { try? NetworkNamespace.delete(named: name) }
    return try body(ns, name)
}

func withTestNamespace<T>(_ tag: String = "t", _ body: (NetworkNamespace, String) async throws -> T) async throws -> T {
    TestNamespaces.cleanLeftovers
    let name = TestNamespaces.makeName(tag)
    let ns = try NetworkNamespace.create(named: name)
    defer { try? NetworkNamespace.delete(named: name) }
    return try await body(ns, name)
}

enum TestNamespaces {
    static let prefix = "nltest-"
    static let counter = Atomic<Int>(0)

    /// nltest-PID-N-TAG: per run unique; PID lets a later run tell leftovers of dead runs.
    static func makeName(_ tag: String) -> String {
        let n = counter.add(1, ordering: .relaxed).newValue
        return "\(prefix)\(getpid())-\(n)-\(tag)"
    }

    /// Deletes namespaces of earlier runs whose process is gone (once per run).
    static let cleanLeftovers: Void = {
        for name in NetworkNamespace.names() where name.hasPrefix(prefix) {
            let pidText = name.dropFirst(prefix.count).prefix { $0 != "-" }
            if let pid = Int32(pidText), pid != getpid(), kill(pid, 0) != 0 {
                try? NetworkNamespace.delete(named: name)
            }
        }
    }()
}

/// Runs a shell command (for `ip -n NS ...` cross-checks); returns exit status and stdout.
@discardableResult
func shell(_ command: String) -> (status: Int32, output: String) {
    guard let p = popen(command + " 2>&1", "r") else { return (-1, "") }
    var out: [UInt8] = []
    var buffer = [UInt8](repeating: 0, count: 4096)
    while true {
        let n = fread(&buffer, 1, buffer.count, p)
        if n <= 0 { break }
        out += buffer[0..<n]
    }
    let status = pclose(p)
    return (status >> 8, String(decoding: out, as: UTF8.self))
}

/// Parses hex with any whitespace, and `//` comments to the end of the line, so golden bytes
/// can be annotated field by field.
func hex(_ text: String) -> [UInt8] {
    var out: [UInt8] = []
    for line in text.split(separator: "\n") {
        var code = line[...]
        if let slash = line.indices.first(where: { line[$0] == "/" && line.index(after: $0) < line.endIndex && line[line.index(after: $0)] == "/" }) {
            code = line[..<slash]
        }
        let digits = code.filter { $0.isHexDigit }
        var i = digits.startIndex
        while i < digits.endIndex {
            let j = digits.index(i, offsetBy: 2)
            out.append(UInt8(digits[i..<j], radix: 16)!)
            i = j
        }
    }
    return out
}

func hexString(_ bytes: some Collection<UInt8>) -> String {
    bytes.map { ($0 < 16 ? "0" : "") + String($0, radix: 16) }.joined()
}

/// A transport that records what is sent and answers from a script: for each datagram
/// sent, `respond` returns the datagrams to queue for receive.
final class ScriptedTransport: NetlinkTransport {
    private struct State {
        var sent: [[UInt8]] = []
        var queue: [[UInt8]] = []
    }
    private let state = Mutex(State())
    let respond: @Sendable ([UInt8]) -> [[UInt8]]

    init(_ respond: @escaping @Sendable ([UInt8]) -> [[UInt8]]) { self.respond = respond }

    var sent: [[UInt8]] { state.withLock { $0.sent } }

    func send(_ bytes: [UInt8]) throws(NetlinkError) {
        let replies = respond(bytes)
        state.withLock { $0.sent.append(bytes); $0.queue += replies }
    }

    func receive() throws(NetlinkError) -> [UInt8] {
        let next: [UInt8]? = state.withLock { $0.queue.isEmpty ? nil : $0.queue.removeFirst() }
        guard let next else { throw NetlinkError(operation: "receive", object: "scripted transport", kind: .system(errno: ETIMEDOUT)) }
        return next
    }
}

/// Builds a kernel-style reply message (for scripted answers).
func reply(type: UInt16, flags: UInt16 = 0, seq: UInt32, payload: [UInt8]) -> [UInt8] {
    var b = MessageBuilder(type: type, flags: flags)
    b.appendBytes(payload)
    var r = NetlinkRequest(bytes: b.finish(), operation: "", object: "")
    r.seq = seq
    return r.bytes
}

/// An NLMSG_ERROR answering `request` (capped, as with NETLINK_CAP_ACK), optionally with
/// an extended ack message.
func ackReply(for request: [UInt8], seq: UInt32, errno e: Int32 = 0, message: String? = nil) -> [UInt8] {
    var b = MessageBuilder(type: Netlink.error, flags: Netlink.fCapped | (message == nil ? 0 : Netlink.fAckTLVs))
    b.appendInteger(-e)
    var header = Array(request[0..<16])
    for i in 0..<4 { header[8 + i] = UInt8(truncatingIfNeeded: seq >> (8 * UInt32(i))) }
    b.appendBytes(header)
    if let message { b.attribute(Netlink.errAttrMsg, string: message) }
    var r = NetlinkRequest(bytes: b.finish(), operation: "", object: "")
    r.seq = seq
    return r.bytes
}

/// The sequence numbers of the messages in a sent datagram, with their flags.
func sentMessages(_ datagram: [UInt8]) -> [NetlinkMessage] {
    (try? NetlinkMessage.parse(datagram)) ?? []
}
