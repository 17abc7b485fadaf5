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

    @Test func ipamErrorCodes() {
        let subnet = IPPrefix("10.0.0.0/30")!
        #expect(CNIError(IPAMError.exhausted(family: .v4, subnets: [subnet], inUse: 1), version: .v1_0_0).code == .addressesExhausted)
        #expect(CNIError(IPAMError.exhausted(family: .v4, subnets: [subnet], inUse: 1), version: .v1_0_0).msg == "no free address in 10.0.0.0/30 (1 in use)")
        #expect(CNIError(IPAMError.requestedOutside(IPAddress("10.9.9.9")!, subnets: [subnet]), version: .v1_0_0).code == .invalidConfig)
        #expect(CNIError(IPAMError.noSubnets, version: .v1_1_0).code == .notAvailable)
    }
}
