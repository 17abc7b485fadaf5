// Privileged: links, addresses, bridge ports and namespaces against the real kernel, each
// test inside namespaces it creates and deletes itself.
import Glibc
import IPAddressing
import Testing
@testable import Netlink

@Suite("links and namespaces (root)", .enabled(if: isRoot))
struct PrivilegedLinkTests {
    @Test func vethBridgeVxlanCreateReadBackAndDelete() throws {
        try withTestNamespace("link") { ns, name in
            let client = try RouteClient(namespace: ns)
            let mac = MACAddress("02:00:00:00:00:01")!
            let veth = try client.createVeth(name: "h0", peerName: "p0", mtu: 1400, mac: mac)
            #expect(veth.kind == "veth")
            #expect(veth.mtu == 1400)
            #expect(veth.mac == mac)
            #expect(!veth.isUp)
            let peer = try #require(try client.link(named: "p0"))
            #expect(peer.parentIndex == veth.index)

            let bridge = try client.createBridge(name: "br0", mtu: 1400)
            #expect(bridge.kind == "bridge")
            try client.setLink(named: "h0", LinkChange(up: true, mtu: 1300, mac: MACAddress("02:00:00:00:00:02"), masterIndex: bridge.index))
            try client.setLink(index: bridge.index, LinkChange(up: true))
            let changed = try #require(try client.link(index: veth.index))
            #expect(changed.isUp)
            #expect(changed.mtu == 1300)
            #expect(changed.mac == MACAddress("02:00:00:00:00:02"))
            #expect(changed.masterIndex == bridge.index)
            try client.setHairpin(portIndex: veth.index, enabled: true)
            #expect(shell("ip netns exec \(name) cat /sys/class/net/h0/brport/hairpin_mode").output.hasPrefix("1"))

            let vx = try client.createVxlan(name: "vx0", settings: VxlanSettings(vni: 4242, port: 8472, local: IPAddress("192.168.9.1"),
                                                                                 underlayIndex: peer.index, learning: false))
            #expect(vx.kind == "vxlan")
            #expect(vx.vxlan == VxlanSettings(vni: 4242, port: 8472, local: IPAddress("192.168.9.1"), underlayIndex: peer.index, learning: false))
            // Cross-check with iproute2's view.
            let detail = shell("ip -n \(name) -d link show vx0").output
            #expect(detail.contains("vxlan id 4242"))
            #expect(detail.contains("dstport 8472"))
            #expect(detail.contains("nolearning"))

            let names = try client.links().map(\.name).sorted()
            #expect(names == ["br0", "h0", "lo", "p0", "vx0"])
            try client.setLink(named: "h0", LinkChange(masterIndex: 0))
            #expect(try client.link(named: "h0")?.masterIndex == nil)
            #expect(try client.deleteLink(named: "h0"))
            #expect(try client.link(named: "p0") == nil)  // deleting one end removes the pair
            #expect(try client.deleteLink(named: "h0") == false)
        }
    }

    @Test func errorsNameTheObjectAndCarryErrnoAndExtAck() throws {
        try withTestNamespace("err") { ns, _ in
            let client = try RouteClient(namespace: ns)
            try client.createBridge(name: "br0")
            do {
                try client.createBridge(name: "br0")
                Issue.record("second create must fail")
            } catch let error as NetlinkError {
                #expect(error.isExists)
                #expect(error.errnoName == "EEXIST")
                #expect(error.description.contains("create bridge br0"))
            }
            for bad in ["", "0123456789abcdef", "a/b", "a b", "a:b", "tab\t"] {
                #expect(throws: NetlinkError.self) { try client.createBridge(name: bad) }
            }
            do {
                try client.setLink(named: "missing0", LinkChange(up: true))
                Issue.record("missing link must fail")
            } catch let error as NetlinkError {
                #expect(error.kind == .notFound)
                #expect(error.description.contains("missing0"))
            }
            // A gateway that is not on the link: the kernel explains itself in the ext ack.
            let br = try #require(try client.link(named: "br0"))
            do {
                try client.addRoute(Route(destination: IPPrefix("10.9.0.0/16")!, gateway: IPAddress("10.1.1.1"), outputIndex: br.index))
                Issue.record("route via an unreachable gateway must fail")
            } catch let error as NetlinkError {
                #expect(error.errnoName == "ENETUNREACH")
                #expect(error.extAck == "Nexthop has invalid gateway", "\(error)")
                #expect(error.description.contains("add route 10.9.0.0/16 via 10.1.1.1"))
            }
        }
    }

    @Test func oneClientSharedByManyTasks() async throws {
        try await withTestNamespace("share") { ns, _ in
            let client = try RouteClient(namespace: ns)
            let br = try client.createBridge(name: "br0")
            // 8 tasks x 50 requests on one socket: replies must never cross.
            try await withThrowingTaskGroup(of: Void.self) { group in
                for t in 0..<8 {
                    group.addTask {
                        for i in 0..<50 {
                            let a = InterfaceAddress(index: br.index, prefix: IPPrefix(address: .v4(IPv4Address(10, 60, UInt8(t), UInt8(i + 1))), length: 32))
                            try client.addAddress(a)
                            #expect(try client.link(named: "br0")?.index == br.index)
                            #expect(try client.addresses(family: .v4, index: br.index).contains(a))
                        }
                    }
                }
                try await group.waitForAll()
            }
            #expect(try client.addresses(family: .v4, index: br.index).count == 400)
        }
    }

    @Test func addressesAddListDelete() throws {
        try withTestNamespace("addr") { ns, _ in
            let client = try RouteClient(namespace: ns)
            let br = try client.createBridge(name: "br0")
            let a4 = InterfaceAddress(index: br.index, prefix: IPPrefix("10.244.1.1/24")!)
            let a6 = InterfaceAddress(index: br.index, prefix: IPPrefix("fd00:10:244:1::1/64")!)
            try client.addAddress(a4)
            try client.addAddress(a6)
            #expect(throws: NetlinkError.self) { try client.addAddress(a4) }
            try client.addAddress(a4, replace: true)
            #expect(try client.addresses(family: .v4, index: br.index) == [a4])
            #expect(try client.addresses(family: .v6, index: br.index).contains(a6))
            try client.deleteAddress(a4)
            #expect(try client.addresses(family: .v4, index: br.index).isEmpty)
        }
    }

    @Test func vethPeerLandsInAnotherNamespace() throws {
        try withTestNamespace("node") { node, _ in
            try withTestNamespace("pod") { pod, podName in
                let host = try RouteClient(namespace: node)
                try host.createVeth(name: "vethpod1", peerName: "eth0", peerNamespace: pod, mtu: 1450)
                #expect(try host.link(named: "eth0") == nil)
                let inPod = try RouteClient(namespace: pod)
                let eth0 = try #require(try inPod.link(named: "eth0"))
                #expect(eth0.mtu == 1450)
                #expect(shell("ip -n \(podName) link show eth0").status == 0)
                // Move back and forth with IFLA_NET_NS_FD.
                try inPod.moveLink(index: eth0.index, to: node)
                #expect(try host.link(named: "eth0") != nil)
            }
        }
    }

    @Test func namespacePerformReturnsToOriginalNamespace() async throws {
        let before = try readlinkText("/proc/thread-self/ns/net")
        try await withTestNamespace("ns") { ns, name in
            let inside = try await ns.perform { try readlinkText("/proc/thread-self/ns/net") }
            let insideSync = try ns.performSync { try readlinkText("/proc/thread-self/ns/net") }
            #expect(inside == insideSync)
            #expect(inside != before)
            #expect(try readlinkText("/proc/thread-self/ns/net") == before)
            try ns.setSysctl("net.ipv4.ip_forward", "1")
            #expect(try ns.performSync { try Sysctl.read("net.ipv4.ip_forward") } == "1")
            #expect(shell("ip netns exec \(name) sysctl -n net.ipv4.ip_forward").output.hasPrefix("1"))
            // Opening by /proc/PID/ns/net works too.
            #expect(throws: Never.self) { try NetworkNamespace(path: "/proc/self/ns/net") }
        }
    }

    @Test func vanishedNamespaceIsATypedError() throws {
        let name = TestNamespaces.makeName("gone")
        try NetworkNamespace.create(named: name)
        #expect(throws: NetlinkError.self) { try NetworkNamespace.create(named: name) }
        try NetworkNamespace.delete(named: name)
        let error = #expect(throws: NetlinkError.self) { try NetworkNamespace(named: name) }
        #expect(error?.errnoName == "ENOENT")
        #expect(error?.description.contains(name) == true)
        #expect(throws: NetlinkError.self) { try NetworkNamespace.delete(named: name) }
    }
}

func readlinkText(_ path: String) throws -> String {
    var buffer = [Int8](repeating: 0, count: 256)
    let n = readlink(path, &buffer, buffer.count - 1)
    guard n > 0 else { throw NetlinkError.system("readlink", path) }
    return String(decoding: buffer[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
}
