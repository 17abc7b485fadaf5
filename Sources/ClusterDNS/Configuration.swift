import IPAddressing

/// How `<a-b-c-d>.<ns>.pod.<zone>` names are answered (CoreDNS `pods`).
public enum PodRecordMode: String, Sendable, Hashable, CaseIterable {
    /// Always NXDOMAIN.
    case disabled
    /// Any well-formed dashed address answers with itself (kube-dns compatibility).
    case insecure
    /// Only addresses of a pod in that namespace (pods, or this node's attachments).
    case verified
}

/// Where forwarded queries go: a resolv.conf to read, or an explicit list.
public enum UpstreamSource: Sendable, Hashable {
    case resolvConf(path: String)
    case servers([UpstreamServer])
}

public struct UpstreamServer: Sendable, Hashable, CustomStringConvertible {
    public var address: IPAddress
    public var port: UInt16

    public init(address: IPAddress, port: UInt16 = 53) {
        self.address = address
        self.port = port
    }

    /// "ip", "ip:port", "[v6]:port" or a bare IPv6 address.
    public init?(parsing text: some StringProtocol) {
        let s = String(text)
        if let a = IPAddress(s) { self.init(address: a); return }
        if s.hasPrefix("["), let close = s.firstIndex(of: "]") {
            guard let a = IPAddress(s[s.index(after: s.startIndex)..<close]) else { return nil }
            let rest = s[s.index(after: close)...]
            if rest.isEmpty { self.init(address: a); return }
            guard rest.hasPrefix(":"), let p = UInt16(rest.dropFirst()), p > 0 else { return nil }
            self.init(address: a, port: p); return
        }
        let parts = s.split(separator: ":")
        guard parts.count == 2, let a = IPAddress(parts[0]), a.isV4, let p = UInt16(parts[1]), p > 0 else { return nil }
        self.init(address: a, port: p)
    }

    public var description: String { address.isV4 ? "\(address):\(port)" : "[\(address)]:\(port)" }
}

/// Upstreams for the names under one zone (`dns.zones`).
public struct ZoneForward: Sendable, Hashable {
    public var zone: String
    public var servers: [UpstreamServer]

    public init(zone: String, servers: [UpstreamServer]) {
        self.zone = zone
        self.servers = servers
    }
}

public struct DNSConfiguration: Sendable, Hashable {
    /// Addresses to serve on (UDP and TCP each). The agent binds them on its own device.
    public var listenAddresses: [IPAddress]
    public var port: UInt16
    public var clusterDomain: String
    /// TTL of cluster records (CoreDNS default 5, range 0-3600).
    public var ttl: UInt32
    public var podMode: PodRecordMode
    public var upstreams: UpstreamSource
    /// Addresses published as glue for `ns.dns.<zone>` in apex NS answers (usually the listen addresses).
    public var nameserverAddresses: [IPAddress]
    /// Forwarder cache: entries, and TTL caps for positive and negative answers.
    public var cacheCapacity: Int
    public var cacheMaxTTL: UInt32
    public var cacheMaxNegativeTTL: UInt32
    /// Forwarded queries in flight at most; beyond that clients get REFUSED (CoreDNS `max_concurrent`).
    public var maxConcurrentForwards: Int
    /// Per-try timeout towards an upstream, in milliseconds.
    public var upstreamTimeoutMilliseconds: Int64
    /// How long to keep answering after shutdown starts (isReady is false meanwhile).
    public var lameDuckMilliseconds: Int64
    /// Event-loop threads; 0 means one per core.
    public var eventLoopThreads: Int
    /// UDP sockets per address (SO_REUSEPORT); 0 means one per event loop.
    public var udpSocketsPerAddress: Int
    public var maxTCPConnections: Int
    public var tcpIdleTimeoutMilliseconds: Int64
    /// Largest UDP response regardless of what the client advertises.
    public var maxUDPResponseSize: Int
    /// A listen address that cannot be bound is retried, backing off from 250 ms to this.
    public var listenerRetryMaxMilliseconds: Int64
    /// TCP connections from one client address at most (more are closed at accept).
    public var maxTCPConnectionsPerClient = 32
    /// A TCP message must arrive whole within this many milliseconds of its first byte.
    public var tcpMessageTimeoutMilliseconds: Int64 = 3000
    /// Clients allowed to query; the rest get REFUSED. Empty: everyone (the agent always sets it).
    public var allowedClients: [IPPrefix] = []
    /// UDP responses per second per client network and identical answer; beyond that they go
    /// out truncated (empty, TC). 0: no limit.
    public var responseRateLimit = 0
    /// Server-side search path: a pod's first search-list query is answered with what its
    /// resolver would end up with (CoreDNS `autopath`), the pod's namespace known from its address.
    public var autopath = false
    /// Per-zone upstreams (kube-dns stubDomains): names under a zone go to its servers.
    public var zones: [ZoneForward] = []
    /// Expired cache entries are kept this long and answered (TTL 30) while no upstream answers.
    public var serveStaleSeconds: UInt32 = 3600
    /// UDP served below NIO: per socket a thread of its own reading and answering batches with
    /// recvmmsg/sendmmsg (`Server/BatchUDPSocket.swift`). Same answers, counters and limits.
    public var udpBatchIO = false
    /// Entries asked this many times are refreshed before they expire (in their last 10 %); 0: off.
    public var prefetchHits = 2

    public init(listenAddresses: [IPAddress] = [IPAddress("127.0.0.1")!], port: UInt16 = 53,
                clusterDomain: String = "cluster.local", ttl: UInt32 = 5, podMode: PodRecordMode = .insecure,
                upstreams: UpstreamSource = .resolvConf(path: "/etc/resolv.conf"), nameserverAddresses: [IPAddress] = [],
                cacheCapacity: Int = 10_000, cacheMaxTTL: UInt32 = 3600, cacheMaxNegativeTTL: UInt32 = 300,
                maxConcurrentForwards: Int = 1000, upstreamTimeoutMilliseconds: Int64 = 2000, lameDuckMilliseconds: Int64 = 5000,
                eventLoopThreads: Int = 0, udpSocketsPerAddress: Int = 0, maxTCPConnections: Int = 1000, tcpIdleTimeoutMilliseconds: Int64 = 10_000,
                maxUDPResponseSize: Int = 4096, listenerRetryMaxMilliseconds: Int64 = 5000) {
        self.listenAddresses = listenAddresses
        self.port = port
        self.clusterDomain = clusterDomain
        self.ttl = min(ttl, 3600)
        self.podMode = podMode
        self.upstreams = upstreams
        self.nameserverAddresses = nameserverAddresses
        self.cacheCapacity = cacheCapacity
        self.cacheMaxTTL = cacheMaxTTL
        self.cacheMaxNegativeTTL = cacheMaxNegativeTTL
        self.maxConcurrentForwards = maxConcurrentForwards
        self.upstreamTimeoutMilliseconds = upstreamTimeoutMilliseconds
        self.lameDuckMilliseconds = lameDuckMilliseconds
        self.eventLoopThreads = eventLoopThreads
        self.udpSocketsPerAddress = udpSocketsPerAddress
        self.maxTCPConnections = maxTCPConnections
        self.tcpIdleTimeoutMilliseconds = tcpIdleTimeoutMilliseconds
        self.maxUDPResponseSize = maxUDPResponseSize
        self.listenerRetryMaxMilliseconds = listenerRetryMaxMilliseconds
    }
}
