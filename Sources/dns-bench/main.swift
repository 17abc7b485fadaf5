// dns-bench: serves N synthetic ClusterIP services (svc<i>.ns<i%50>.svc.cluster.local ->
// 10.96.<i/250>.<i%250+1>, the names of shared/bench/dns-reference.sh), each with
// E endpoints, from an in-memory store.
// Runs until killed. Usage: dns-bench <address> <port> [services=10000] [endpointsPerService=5] [upstream ip:port]
#if canImport(Glibc)
import Glibc
#endif
import ClusterDNS
import ClusterState
import IPAddressing
import Logging

let args = CommandLine.arguments
guard args.count >= 3, let address = IPAddress(args[1]), let port = UInt16(args[2]) else {
    print("usage: dns-bench <address> <port> [services] [endpointsPerService] [upstream ip:port]")
    exit(2)
}
let services = args.count > 3 ? Int(args[3]) ?? 10000 : 10000
let perService = args.count > 4 ? Int(args[4]) ?? 5 : 5
let upstreams = args.count > 5 ? [UpstreamServer(parsing: args[5])].compactMap { $0 } : []

func objects(_ i: Int) -> [ClusterObject] {
    let ns = "ns\(i % 50)", name = "svc\(i)"
    let svc = Service(metadata: ObjectMeta(name: name, namespace: ns), clusterIPs: [.v4(IPv4Address(10, 96, UInt8(i / 250), UInt8(i % 250 + 1)))],
                      ports: [ServicePort(name: "http", port: 80)])
    let eps = (0..<perService).map { j -> Endpoint in
        let n = i * perService + j
        return Endpoint(addresses: [.v4(IPv4Address(10, 200 + UInt8(n >> 16), UInt8((n >> 8) & 0xFF), UInt8(n & 0xFF)))])
    }
    let slice = EndpointSlice(metadata: ObjectMeta(name: name + "-a", namespace: ns, labels: [EndpointSlice.serviceNameLabel: name]),
                              addressType: .ipv4, endpoints: eps, ports: [EndpointPort(name: "http", port: 8080)])
    return [.service(svc), .endpointSlice(slice)]
}

/// VmRSS in MB from /proc/self/status.
func residentMB() -> Int {
    let fd = open("/proc/self/status", O_RDONLY)
    guard fd >= 0 else { return -1 }
    defer { close(fd) }
    var buf = [UInt8](repeating: 0, count: 8192)
    let n = buf.withUnsafeMutableBytes { read(fd, $0.baseAddress, 8192) }
    guard n > 0 else { return -1 }
    let text = String(decoding: buf[0..<n], as: UTF8.self)
    guard let line = text.split(separator: "\n").first(where: { $0.hasPrefix("VmRSS:") }) else { return -1 }
    return (Int(line.split(separator: " ")[1]) ?? 0) / 1024
}

func say(_ line: String) { let b = Array((line + "\n").utf8); _ = b.withUnsafeBytes { write(1, $0.baseAddress, $0.count) } }

let store = ClusterStore()
var batch: [StoreChange] = []
for i in 0..<services {
    batch += objects(i).map(StoreChange.upsert)
    if batch.count >= 2000 { await store.apply(batch); batch = [] }
}
await store.apply(batch)
await store.markSynced()
let storeRSS = residentMB()

var logger = Logger(label: "dns-bench")
logger.logLevel = .notice
// DNS_BENCH_THREADS overrides the event-loop count (default: one per core).
let threads = getenv("DNS_BENCH_THREADS").flatMap { Int(String(cString: $0)) } ?? 0
var config = DNSConfiguration(listenAddresses: [address], port: port, upstreams: .servers(upstreams), lameDuckMilliseconds: 0,
                              eventLoopThreads: threads)
// DNS_BENCH_UDP_BATCH=1: UDP through the batch fast path (recvmmsg/sendmmsg threads) instead of NIO.
config.udpBatchIO = getenv("DNS_BENCH_UDP_BATCH").map { String(cString: $0) == "1" } ?? false
let server = ClusterDNSServer(configuration: config, store: store, logger: logger)
let task = Task.detached { try await server.run() }
// Runs until killed (SIGTERM/SIGINT end the process; the bench needs no graceful stop).
Task.detached {
    while !server.isReady { try await Task.sleep(for: .milliseconds(20)) }
    say("dns-bench ready services=\(services) endpoints=\(services * perService) port=\(server.boundPort ?? 0) rss_mb_store_only=\(storeRSS) rss_mb_serving=\(residentMB())")
}
try await task.value
