import IPAddressing
import IPAM
import NodenetTestSupport
import Testing
@testable import PodNetwork

@Suite struct CNIBridgeIPAMTests {
    /// A pod is given the node-local nameservers of its own address families only.
    @Test func nameserversFollowThePodFamilies() {
        let node = ["169.254.20.10", "fd5f:8dcc:e9bf::a"]
        #expect(PodNetwork.nameservers(node, podFamilies: [.v4]) == ["169.254.20.10"])
        #expect(PodNetwork.nameservers(node, podFamilies: [.v6]) == ["fd5f:8dcc:e9bf::a"])
        #expect(PodNetwork.nameservers(node, podFamilies: [.v4, .v6]) == node)
        #expect(PodNetwork.nameservers(["169.254.20.10"], podFamilies: [.v6]) == [], "none it could reach: the runtime's default")
        #expect(PodNetwork.nameservers(node, podFamilies: []) == [])
    }

    @Test func errorsCarryTheConfigVersion() {
        let err = cniError { _ = try CNIRequest.parse(environment: addEnvironment(["CNI_IFNAME": "a/b"]), stdin: minimalConfig(.v0_4_0)) }
        #expect(err?.cniVersion == "0.4.0" && err?.code == .invalidEnvironment)
        let unsupported = cniError { _ = try CNIRequest.parse(environment: addEnvironment(["CNI_IFNAME": "a/b"]), stdin: bytes(#"{"cniVersion":"0.2.0"}"#)) }
        #expect(unsupported?.cniVersion == "1.1.0")
    }

    @Test func allocationsBecomeResultEntries() {
        let allocations = [
            Allocation(address: IPPrefix("10.244.1.5/24")!, gateway: IPAddress("10.244.1.1")!, subnet: IPPrefix("10.244.1.0/24")!),
            Allocation(address: IPPrefix("fd00::5/64")!, gateway: IPAddress("fd00::1")!, subnet: IPPrefix("fd00::/64")!),
        ]
        #expect(allocations.map { CNIResult.IPConfig($0, interface: 2) } == [
            .init(address: IPPrefix("10.244.1.5/24")!, gateway: IPAddress("10.244.1.1"), interface: 2),
            .init(address: IPPrefix("fd00::5/64")!, gateway: IPAddress("fd00::1"), interface: 2),
        ])
        #expect(CNIResult.Route.defaultRoutes(via: allocations).map(\.dst.description) == ["0.0.0.0/0", "::/0"])
        let result = CNIResult.podAttachment(
            bridge: .init(name: "nodenet0", mac: "0a:58:0a:f4:01:01"), hostVeth: .init(name: "veth1a2b3c4d", mac: "ee:11:22:33:44:55"),
            pod: .init(name: "eth0", mac: "0a:58:0a:f4:01:05", mtu: 1450, sandbox: "/var/run/netns/cni-1234"),
            allocations: [Allocation(address: IPPrefix("10.244.1.5/24")!, gateway: IPAddress("10.244.1.1")!, subnet: IPPrefix("10.244.1.0/24")!),
                          Allocation(address: IPPrefix("fd00:10:244:1::5/64")!, gateway: IPAddress("fd00:10:244:1::1")!, subnet: IPPrefix("fd00:10:244:1::/64")!)],
            extraRoutes: [], dns: sampleResult.dns)
        var expected = sampleResult
        expected.routes[1] = .init(dst: IPPrefix("::/0")!, gw: IPAddress("fd00:10:244:1::1"))
        #expect(result == expected)
    }

    /// CHECK's prevResult against the attachment: every version's result of the ADD matches;
    /// each kind of difference is named.
    @Test(arguments: CNIVersion.supported)
    func prevResultDifferences(version: CNIVersion) throws {
        let sandbox = "/var/run/netns/cni-7d3e0c4a-91f2-4b8e-a6d5-2c1f0e9b8a77"
        let allocations = [
            Allocation(address: IPPrefix("10.244.1.5/24")!, gateway: IPAddress("10.244.1.1")!, subnet: IPPrefix("10.244.1.0/24")!),
            Allocation(address: IPPrefix("fd00:10:244:1::5/64")!, gateway: IPAddress("fd00:10:244:1::1")!, subnet: IPPrefix("fd00:10:244:1::/64")!),
        ]
        let added = CNIResult.podAttachment(
            bridge: .init(name: "nodenet0", mac: "0a:58:0a:f4:01:01"), hostVeth: .init(name: "nn3f9c2a1b", mac: "ee:11:22:33:44:55"),
            pod: .init(name: "eth0", mac: "0a:58:0a:f4:01:05", sandbox: sandbox), allocations: allocations)
        // What the runtime cached (the ADD's output in its version) and hands back.
        let prev = try CNIResult.parse(try added.json(for: version))
        #expect(prev.differences(ifname: "eth0", sandbox: sandbox, mac: "0A:58:0A:F4:01:05", allocations: allocations).isEmpty)

        let other = [Allocation(address: IPPrefix("10.244.1.9/24")!, gateway: IPAddress("10.244.1.1")!, subnet: IPPrefix("10.244.1.0/24")!)]
        let d = prev.differences(ifname: "eth1", sandbox: "/var/run/netns/cni-other", mac: nil, allocations: other)
        #expect(d.contains("prevResult has no interface eth1 in a sandbox"), "\(d)")
        #expect(d.contains("prevResult has addresses [10.244.1.5/24, fd00:10:244:1::5/64], the attachment has [10.244.1.9/24]"), "\(d)")
        #expect(d.contains("prevResult has routes [0.0.0.0/0 via 10.244.1.1, ::/0 via fd00:10:244:1::1], the attachment has [0.0.0.0/0 via 10.244.1.1]"), "\(d)")
        let moved = prev.differences(ifname: "eth0", sandbox: "/var/run/netns/cni-other", mac: "0a:58:0a:f4:01:06", allocations: allocations)
        #expect(moved == ["prevResult puts eth0 in sandbox \(sandbox), the attachment's is /var/run/netns/cni-other",
                          "prevResult gives eth0 MAC 0a:58:0a:f4:01:05, the attachment's is 0a:58:0a:f4:01:06"])
        var misplaced = prev
        misplaced.ips[0].interface = 1
        #expect(misplaced.differences(ifname: "eth0", sandbox: sandbox, mac: nil, allocations: allocations)
                    == ["prevResult puts 10.244.1.5/24 on interface 1, not on eth0 (2)"])
    }

    @Test func ipamErrorCodes() {
        let subnet = IPPrefix("10.0.0.0/30")!
        #expect(CNIError(IPAMError.exhausted(family: .v4, subnets: [subnet], inUse: 1), version: .v1_0_0).code == .addressesExhausted)
        #expect(CNIError(IPAMError.exhausted(family: .v4, subnets: [subnet], inUse: 1), version: .v1_0_0).msg == "no free address in 10.0.0.0/30 (1 in use)")
        #expect(CNIError(IPAMError.requestedOutside(IPAddress("10.9.9.9")!, subnets: [subnet]), version: .v1_0_0).code == .invalidConfig)
        #expect(CNIError(IPAMError.noSubnets, version: .v1_1_0).code == .notAvailable)
    }
}
