/// A pod of the upstream model, written "x/a" as the cases file and upstream print it.
public struct ModelPod: Hashable, Comparable, Sendable, CustomStringConvertible {
    public var namespace: String
    public var name: String

    public init(_ namespace: String, _ name: String) {
        self.namespace = namespace
        self.name = name
    }

    /// "x/a"; nil unless it is exactly one "/" between two non-empty parts.
    public init?(_ text: String) {
        let parts = text.split(separator: "/", omittingEmptySubsequences: false)
        guard parts.count == 2, !parts[0].isEmpty, !parts[1].isEmpty else { return nil }
        self.init(String(parts[0]), String(parts[1]))
    }

    public var description: String { "\(namespace)/\(name)" }
    public static func < (l: ModelPod, r: ModelPod) -> Bool { (l.namespace, l.name) < (r.namespace, r.name) }
}

/// A port and protocol probed, "TCP/80".
public struct PortProtocol: Hashable, Comparable, Sendable, CustomStringConvertible {
    public enum Proto: String, Sendable, CaseIterable { case tcp = "TCP", udp = "UDP", sctp = "SCTP" }
    public var port: Int
    public var proto: Proto

    public init(_ port: Int, _ proto: Proto) {
        self.port = port
        self.proto = proto
    }

    /// "TCP/80" or "80/TCP" (case-insensitive protocol).
    public init?(_ text: String) {
        let parts = text.split(separator: "/").map { String($0) }
        guard parts.count == 2 else { return nil }
        if let p = Int(parts[1]), let proto = Proto(rawValue: parts[0].uppercased()) {
            self.init(p, proto)
        } else if let p = Int(parts[0]), let proto = Proto(rawValue: parts[1].uppercased()) {
            self.init(p, proto)
        } else {
            return nil
        }
        guard 1...65535 ~= port else { return nil }
    }

    public var description: String { "\(proto.rawValue)/\(port)" }
    public static func < (l: PortProtocol, r: PortProtocol) -> Bool { (l.proto.rawValue, l.port) < (r.proto.rawValue, r.port) }
}

/// How a probe reaches its destination: upstream's probeWorker dials the Service ClusterIP
/// (policy then sees post-DNAT traffic); cyclonus also dials the pod IP. Cases run both.
public enum ProbeMode: String, Sendable, CaseIterable, CustomStringConvertible {
    case podIP = "pod IP"
    case service = "Service ClusterIP"
    public var description: String { rawValue }
}

/// Who reaches whom for one port/protocol: rows are sources, columns destinations, `.`
/// connects, `X` blocked, the diagonal skipped (a pod dialing itself is not policy's business:
/// upstream compares with ignoreLoopback).
public struct ReachabilityMatrix: Equatable, Sendable {
    public let pods: [ModelPod]
    /// connected[from][to]; the diagonal is absent.
    public private(set) var connected: [ModelPod: [ModelPod: Bool]]

    public init(pods: [ModelPod], all value: Bool) {
        self.pods = pods
        var c: [ModelPod: [ModelPod: Bool]] = [:]
        for f in pods { for t in pods where t != f { c[f, default: [:]][t] = value } }
        connected = c
    }

    public subscript(from: ModelPod, to: ModelPod) -> Bool {
        get { connected[from]?[to] ?? false }
        set { if from != to { connected[from, default: [:]][to] = newValue } }
    }

    public struct ParseError: Error, CustomStringConvertible, Sendable {
        public var message: String
        public var description: String { message }
    }

    /// Parses the legend's text form: a header line of destination names, then one line per
    /// source: its name and one cell per destination (`.` connects, `X` blocked, `-` or any
    /// cell on the diagonal ignored). Every model pod must appear once as a row and a column.
    public static func parse(_ text: String, pods: [ModelPod]) throws(ParseError) -> ReachabilityMatrix {
        let lines = text.split(separator: "\n").map { $0.split(whereSeparator: { $0 == " " || $0 == "\t" }).map(String.init) }
            .filter { !$0.isEmpty }
        guard let header = lines.first else { throw ParseError(message: "empty matrix") }
        let columns = try header.map { (name: String) throws(ParseError) -> ModelPod in
            guard let p = ModelPod(name), pods.contains(p) else { throw ParseError(message: "unknown column \(name)") }
            return p
        }
        guard Set(columns) == Set(pods), columns.count == pods.count else {
            throw ParseError(message: "columns \(header.joined(separator: " ")) are not the model's pods \(pods.map(\.description).joined(separator: " "))")
        }
        var m = ReachabilityMatrix(pods: pods, all: false)
        var rows = Set<ModelPod>()
        for line in lines.dropFirst() {
            guard let from = ModelPod(line[0]), pods.contains(from) else { throw ParseError(message: "unknown row \(line[0])") }
            guard rows.insert(from).inserted else { throw ParseError(message: "row \(from) twice") }
            guard line.count == columns.count + 1 else {
                throw ParseError(message: "row \(from) has \(line.count - 1) cells for \(columns.count) columns")
            }
            for (to, cell) in zip(columns, line.dropFirst()) where to != from {
                switch cell {
                case ".": m[from, to] = true
                case "X", "x": m[from, to] = false
                default: throw ParseError(message: "row \(from), column \(to): cell \(cell) is neither . nor X")
                }
            }
        }
        guard rows.count == pods.count else {
            throw ParseError(message: "rows missing: \(pods.filter { !rows.contains($0) }.map(\.description).joined(separator: " "))")
        }
        return m
    }

    /// The text form (what `parse` reads); cells for which `mark` is true get a `*` after them.
    public func render(marking mark: (ModelPod, ModelPod) -> Bool = { _, _ in false }) -> [String] {
        let width = max(3, pods.map(\.description.count).max() ?? 3)
        func pad(_ s: String) -> String { s + String(repeating: " ", count: max(0, width - s.count)) }
        var out = [pad("") + " " + pods.map { pad($0.description) }.joined(separator: " ")]
        for f in pods {
            let cells = pods.map { t -> String in
                if t == f { return pad("-") }
                return pad((self[f, t] ? "." : "X") + (mark(f, t) ? "*" : ""))
            }
            out.append(pad(f.description) + " " + cells.joined(separator: " "))
        }
        return out
    }

    /// The pairs where two matrices disagree.
    public func mismatches(_ other: ReachabilityMatrix) -> [(from: ModelPod, to: ModelPod)] {
        var out: [(ModelPod, ModelPod)] = []
        for f in pods { for t in pods where t != f && self[f, t] != other[f, t] { out.append((f, t)) } }
        return out
    }

    /// Expected and actual next to each other, mismatches marked `*` on the actual side.
    public static func sideBySide(title: String, expected: ReachabilityMatrix, actual: ReachabilityMatrix) -> String {
        let bad = Set(expected.mismatches(actual).map { "\($0.from)>\($0.to)" })
        let left = expected.render()
        let right = actual.render { bad.contains("\($0)>\($1)") }
        let w = left.map(\.count).max() ?? 0
        var lines = [title, "expected" + String(repeating: " ", count: max(1, w - 8)) + " | actual (* differs)"]
        for (l, r) in zip(left, right) { lines.append(l + String(repeating: " ", count: w - l.count) + " | " + r) }
        return lines.joined(separator: "\n")
    }
}
