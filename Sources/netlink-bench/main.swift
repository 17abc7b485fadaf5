// netlink-bench: programs N routes via next hops on one link in a fresh namespace, the same
// workload as /work/shared/bench/routes-reference.sh (ip -batch), and prints the timings.
// Usage: netlink-bench [ROUTES] [plain]   (root; everything happens inside a throwaway namespace)
// "plain" installs ordinary gateway routes instead of routes through nexthop objects.
import Glibc
import IPAddressing
import Netlink

func now() -> Double {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
}

func fail(_ message: String) -> Never {
    let line = Array("netlink-bench: \(message)\n".utf8)
    _ = line.withUnsafeBytes { write(2, $0.baseAddress, $0.count) }
    exit(1)
}

let count = CommandLine.arguments.count > 1 ? Int(CommandLine.arguments[1]) ?? 5000 : 5000
guard count > 0, count <= 60_000 else { fail("ROUTES must be 1...60000") }
let plain = CommandLine.arguments.count > 2 && CommandLine.arguments[2] == "plain"
let name = "nlbench\(getpid())"

do {
    let ns = try NetworkNamespace.create(named: name)
    defer { try? NetworkNamespace.delete(named: name) }
    let setup = try RouteClient(namespace: ns)
    let u0 = try setup.createVeth(name: "u0", peerName: "u1")
    try setup.addAddress(InterfaceAddress(index: u0.index, prefix: IPPrefix("192.168.0.2/16")!))
    try setup.setLink(index: u0.index, LinkChange(up: true))
    try setup.setLink(named: "u1", LinkChange(up: true))

    // The same routes as the reference: 10.{100+i/256}.{i%256}.0/24 via 192.168.{1+i/250}.{1+i%250} dev u0.
    let routes = (0..<count).map { i -> Route in
        let dst = IPv4Address(10, UInt8(100 + i / 256), UInt8(i % 256), 0)
        let gw = IPv4Address(192, 168, UInt8(1 + i / 250), UInt8(1 + i % 250))
        return Route(destination: IPPrefix(address: .v4(dst), length: 24), gateway: .v4(gw), outputIndex: u0.index)
    }

    // Timed like the reference: from opening a socket in the namespace to the last ACK.
    var start = now()
    let client = try RouteClient(namespace: ns, useNexthopObjects: !plain)
    let installed = try client.apply(routes.map(RouteChange.replace))
    let install = now() - start
    try installed.check()

    start = now()
    let replaced = try client.apply(routes.map(RouteChange.replace))
    let replace = now() - start
    try replaced.check()

    let got = try client.routes(protocol: RouteProtocol.nodenet).count
    guard got == count else { fail("only \(got) of \(count) routes installed") }
    print("netlink-bench routes=\(count) mode=\(plain ? "plain" : "nexthop-objects") install_s=\(install) replace_s=\(replace)")
} catch {
    fail("\(error)")
}
