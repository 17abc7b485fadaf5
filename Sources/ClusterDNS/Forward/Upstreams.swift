import IPAddressing
import Synchronization

/// Reading upstreams from resolv.conf: `nameserver` lines only (at most 15, like CoreDNS).
enum ResolvConf {
    static func parse(_ text: String) -> [UpstreamServer] {
        var out: [UpstreamServer] = []
        for line in text.split(whereSeparator: \.isNewline) {
            let fields = line.split(whereSeparator: { $0 == " " || $0 == "\t" })
            guard fields.count >= 2, fields[0] == "nameserver" else { continue }
            // Drop a zone index (fe80::1%eth0): not routable from our sockets anyway.
            let addr = fields[1].split(separator: "%").first ?? fields[1]
            if let s = UpstreamServer(parsing: addr), !out.contains(s) { out.append(s) }
        }
        return Array(out.prefix(15))
    }
}

/// Upstream health, in-band like CoreDNS's forward plugin: a server that fails
/// `maxFails` times in a row (or once with garbage) is skipped for `cooldown` ms, then tried
/// again.
final class UpstreamHealth: Sendable {
    let servers: [UpstreamServer]
    private let state: Mutex<[(fails: Int, downUntil: Int64)]>
    private let requests: [AtomicBox]
    private let failures: [AtomicBox]
    let maxFails = 2
    let cooldownMilliseconds: Int64 = 5000

    init(_ servers: [UpstreamServer]) {
        self.servers = servers
        state = Mutex(Array(repeating: (0, 0), count: servers.count))
        requests = servers.map { _ in AtomicBox() }
        failures = servers.map { _ in AtomicBox() }
    }

    /// Server indices in the order to try: healthy ones first (sequential policy), then the rest.
    func order(now: Int64) -> [Int] {
        state.withLock { s in
            let up = s.indices.filter { s[$0].downUntil <= now }
            return up + s.indices.filter { s[$0].downUntil > now }
        }
    }

    func sent(_ i: Int) { requests[i].value.wrappingAdd(1, ordering: .relaxed) }

    func succeeded(_ i: Int) { state.withLock { $0[i] = (0, 0) } }

    func failed(_ i: Int, now: Int64, immediately: Bool = false) {
        failures[i].value.wrappingAdd(1, ordering: .relaxed)
        state.withLock { s in
            s[i].fails += 1
            if s[i].fails >= maxFails || immediately { s[i].downUntil = now + cooldownMilliseconds }
        }
    }

    func isHealthy(_ i: Int, now: Int64) -> Bool { state.withLock { $0[i].downUntil <= now } }

    /// True when every server is in its cooldown (none answered lately).
    func allDown(now: Int64) -> Bool { state.withLock { s in !s.isEmpty && s.allSatisfy { $0.downUntil > now } } }

    func stats(now: Int64) -> [UpstreamStats] {
        servers.indices.map { i in
            UpstreamStats(server: servers[i].description, requests: requests[i].value.load(ordering: .relaxed),
                          failures: failures[i].value.load(ordering: .relaxed), healthy: isHealthy(i, now: now))
        }
    }
}
