import Foundation
import IPAddressing
import Netlink
import NodenetTestSupport
import Testing
@testable import PodNetwork

@Suite struct HostInterfaceNameTests {
    @Test func stableShortAndDistinct() {
        let a = HostInterfaceName.forAttachment(containerID: "abc123", ifname: "eth0")
        #expect(a == HostInterfaceName.forAttachment(containerID: "abc123", ifname: "eth0"))
        #expect(a.count == 10 && a.hasPrefix("nn"))
        #expect(a != HostInterfaceName.forAttachment(containerID: "abc123", ifname: "eth1"))
        #expect(a != HostInterfaceName.forAttachment(containerID: "abc124", ifname: "eth0"))
        let many = Set((0..<2000).map { HostInterfaceName.forAttachment(containerID: "c\($0)", ifname: "eth0") })
        #expect(many.count == 2000)
    }
}

/// Pod interfaces against the real kernel: a node namespace with the bridge, pod namespaces
/// attached by veth, real pings between them.
@Suite(.serialized, .enabled(if: isPrivileged, "needs root and iproute2"))
struct PodInterfacesTests {
    func spec(_ pod: TestNamespace, _ ip: String, ifname: String = "eth0") -> PodInterfaceSpec {
        PodInterfaceSpec(netnsPath: pod.path, ifname: ifname, hostName: HostInterfaceName.forAttachment(containerID: pod.name, ifname: ifname),
                         addresses: [(IPPrefix(ip + "/24")!, IPAddress("10.244.1.1")!)], mtu: 1500)
    }

    @Test func twoPodsOnTheBridgeReachEachOther() throws {
        let node = try TestNamespace("node")
        let p1 = try TestNamespace("pod")
        let p2 = try TestNamespace("pod")
        defer { p1.delete(); p2.delete(); node.delete() }
        let interfaces = PodInterfaces(host: try RouteClient(namespace: NetworkNamespace(path: node.path)), bridgeName: "nodenet0")
        let bridge = try interfaces.ensureBridge(gateways: [IPPrefix("10.244.1.1/24")!], mtu: nil)
        #expect(bridge.kind == "bridge" && bridge.isUp)
        // A second ensure changes nothing (and never flushes).
        #expect(try interfaces.ensureBridge(gateways: [IPPrefix("10.244.1.1/24")!], mtu: nil).index == bridge.index)

        let r1 = try interfaces.setUp(spec(p1, "10.244.1.2"), bridge: bridge)
        _ = try interfaces.setUp(spec(p2, "10.244.1.3"), bridge: bridge)
        #expect(r1.container.name == "eth0")
        #expect(r1.host.masterIndex == bridge.index)
        #expect(r1.container.mac != nil)
        #expect(interfaces.check(spec(p1, "10.244.1.2")).isEmpty)

        let ping = try p1.run(["ping", "-c", "1", "-W", "2", "10.244.1.3"])
        #expect(ping.ok, "pod to pod: \(ping.stdout)\(ping.stderr)")
        let gw = try p2.run(["ping", "-c", "1", "-W", "2", "10.244.1.1"])
        #expect(gw.ok, "pod to gateway")
        let route = try p1.check(["ip", "route", "show", "default"]).stdout
        #expect(route.contains("default via 10.244.1.1 dev eth0"))
        #expect(try p1.check(["cat", "/proc/sys/net/ipv4/conf/eth0/arp_notify"]).stdout.hasPrefix("1"))

        #expect(try interfaces.tearDown(hostName: spec(p1, "10.244.1.2").hostName))
        #expect(try interfaces.tearDown(hostName: spec(p1, "10.244.1.2").hostName) == false, "a second DEL finds nothing and is fine")
        #expect(try p1.run(["ip", "link", "show", "eth0"]).ok == false, "the container side went with the host side")
        #expect(!interfaces.check(spec(p1, "10.244.1.2")).isEmpty)
    }

    /// IPv6 addresses skip DAD (no "tentative" window in which the pod cannot talk), the
    /// loopback comes up, and a re-ADD of the same attachment replaces a leftover host side.
    @Test func dualStackAddressesAreUsableAtOnce() throws {
        let node = try TestNamespace("node")
        let p1 = try TestNamespace("pod")
        defer { p1.delete(); node.delete() }
        let interfaces = PodInterfaces(host: try RouteClient(namespace: NetworkNamespace(path: node.path)), bridgeName: "nodenet0")
        let bridge = try interfaces.ensureBridge(gateways: [IPPrefix("10.244.1.1/24")!, IPPrefix("fd00:10:244:1::1/64")!], mtu: nil)
        var dual = spec(p1, "10.244.1.2")
        dual.addresses.append((IPPrefix("fd00:10:244:1::2/64")!, IPAddress("fd00:10:244:1::1")!))
        _ = try interfaces.setUp(dual, bridge: bridge)
        let v6 = try p1.check(["ip", "-6", "addr", "show", "dev", "eth0", "scope", "global"]).stdout
        #expect(v6.contains("fd00:10:244:1::2/64") && !v6.contains("tentative"), "\(v6)")
        #expect(try p1.check(["ip", "-o", "link", "show", "lo"]).stdout.contains("UP"))
        #expect(try p1.check(["ip", "-6", "route", "show", "default"]).stdout.contains("via fd00:10:244:1::1 dev eth0"))
        let ping6 = try p1.run(["ping", "-6", "-c", "1", "-W", "2", "fd00:10:244:1::1"])
        #expect(ping6.ok, "pod to IPv6 gateway: \(ping6.stdout)\(ping6.stderr)")
        #expect(interfaces.check(dual).isEmpty)

        // The pod side gone (its namespace recreated, say) but the host side left: a new ADD
        // for the same attachment replaces it.
        try p1.check(["ip", "link", "del", "eth0"])
        try node.check(["ip", "link", "add", dual.hostName, "type", "veth", "peer", "name", "leftover0"])
        let again = try interfaces.setUp(dual, bridge: bridge)
        #expect(again.host.kind == "veth" && again.host.masterIndex == bridge.index)
        // An ifname already taken inside the pod is refused, and nothing is left behind.
        var other = dual
        other.hostName = "nnffffffff"
        #expect(throws: PodInterfaceError.self) { try interfaces.setUp(other, bridge: bridge) }
        #expect(try node.run(["ip", "link", "show", "nnffffffff"]).ok == false)
    }

    /// With a reaper, `release` returns before the veth is deleted; a new attachment in the
    /// same namespace set up at once (a runtime retrying a sandbox under another container id:
    /// DEL then ADD) waits for the queued delete instead of failing with "eth0 already exists".
    /// (The same attachment again needs no wait: its leftover host side is replaced.)
    @Test func releaseThenSetUpAnotherAtOnce() throws {
        let node = try TestNamespace("node")
        let p1 = try TestNamespace("pod")
        defer { p1.delete(); node.delete() }
        let ns = try NetworkNamespace(path: node.path)
        let interfaces = PodInterfaces(host: try RouteClient(namespace: ns), bridgeName: "nodenet0", reaperClient: try RouteClient(namespace: ns))
        let bridge = try interfaces.ensureBridge(gateways: [IPPrefix("10.244.1.1/24")!], mtu: nil)
        func attachment(_ round: Int) -> PodInterfaceSpec {
            var s = spec(p1, "10.244.1.2")
            s.hostName = HostInterfaceName.forAttachment(containerID: "sandbox\(round)", ifname: "eth0")
            return s
        }
        for round in 0..<5 {
            _ = try interfaces.setUp(attachment(round), bridge: bridge)
            #expect(try interfaces.release(hostName: attachment(round).hostName), "round \(round)")
        }
        _ = try interfaces.setUp(attachment(5), bridge: bridge)
        #expect(interfaces.check(attachment(5)).isEmpty)
        #expect(try interfaces.release(hostName: attachment(5).hostName))
        interfaces.drainReleases()
        #expect(try p1.run(["ip", "link", "show", "eth0"]).ok == false, "the queued delete ran")
    }

    @Test func failuresLeaveNothingBehind() throws {
        let node = try TestNamespace("node")
        let p1 = try TestNamespace("pod")
        defer { p1.delete(); node.delete() }
        let host = try RouteClient(namespace: NetworkNamespace(path: node.path))
        let interfaces = PodInterfaces(host: host, bridgeName: "nodenet0")
        let bridge = try interfaces.ensureBridge(gateways: [IPPrefix("10.244.1.1/24")!], mtu: nil)
        let linksBefore = try host.links().count

        #expect(throws: PodInterfaceError.self) {
            _ = try interfaces.setUp(PodInterfaceSpec(netnsPath: "/var/run/netns/nodenet-does-not-exist", ifname: "eth0",
                                                      hostName: "nnmissing0", addresses: [], mtu: 1500), bridge: bridge)
        }
        #expect(try host.links().count == linksBefore)

        _ = try interfaces.setUp(spec(p1, "10.244.1.2"), bridge: bridge)
        // The same ifname again in the same namespace: refused, the first one untouched.
        var again = spec(p1, "10.244.1.9")
        again.hostName = "nnother000"
        #expect(throws: PodInterfaceError.self) { _ = try interfaces.setUp(again, bridge: bridge) }
        #expect(try host.link(named: "nnother000") == nil)
        #expect(interfaces.check(spec(p1, "10.244.1.2")).isEmpty)

        // An address the kernel refuses (a duplicate on the same interface cannot happen, so use
        // an invalid gateway family mix): the veth is removed again.
        let p2 = try TestNamespace("pod")
        defer { p2.delete() }
        var bad = spec(p2, "10.244.1.4")
        bad.addresses = [(IPPrefix("10.244.1.4/24")!, IPAddress("fd00::1")!)]
        #expect(throws: PodInterfaceError.self) { _ = try interfaces.setUp(bad, bridge: bridge) }
        #expect(try host.link(named: bad.hostName) == nil, "rolled back")
    }

    @Test func bridgeNameTakenByAnotherKindIsRefused() throws {
        let node = try TestNamespace("node")
        defer { node.delete() }
        try node.check(["ip", "link", "add", "nodenet0", "type", "veth", "peer", "name", "x0"])
        let interfaces = PodInterfaces(host: try RouteClient(namespace: NetworkNamespace(path: node.path)), bridgeName: "nodenet0")
        #expect(throws: PodInterfaceError.self) { try interfaces.ensureBridge(gateways: [IPPrefix("10.244.1.1/24")!], mtu: nil) }
    }
}
