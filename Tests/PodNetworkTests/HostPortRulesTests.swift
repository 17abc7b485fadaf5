import ClusterState
import IPAddressing
import Netlink
import NodenetTestSupport
import Testing
@testable import PodNetwork

@Suite struct HostPortRulesTests {
    let cidrs = [IPPrefix("10.244.1.0/24")!, IPPrefix("fd00:10:244:1::/64")!]
    let dual = [IPPrefix("10.244.1.5/24")!, IPPrefix("fd00:10:244:1::5/64")!]

    func binding(_ mappings: [PodAttachment.PortMapping], ips: [IPPrefix]? = nil, key: String = "c1/eth0") -> HostPortBinding {
        HostPortBinding(key: key, ips: ips ?? dual, mappings: mappings)
    }

    /// Host port status is per mapping: a mapping is in error exactly when a chain that should
    /// hold one of its rules failed (here the IPv4 DNAT chain: the any-address and the IPv4
    /// mapping, not the IPv6 one), with that chain's error; a failing chain no mapping uses is
    /// its own object; an attachment still without addresses has no rules and no status yet.
    @Test func statusIsPerMappingFromTheChainsThatHoldItsRules() {
        let id = String(repeating: "5e0c4d1a", count: 8)
        let any = PodAttachment.PortMapping(hostPort: 8080, containerPort: 80)
        let v4 = PodAttachment.PortMapping(hostPort: 8081, containerPort: 81, protocol: .udp, hostIP: IPAddress("192.168.1.11"))
        let v6 = PodAttachment.PortMapping(hostPort: 8443, containerPort: 443, hostIP: IPAddress("fd00::11"))
        let bindings = [binding([any, v4, v6], key: "\(id)/eth0"), binding([any], ips: [], key: "pending/eth0")]
        let failed = ["ip nodenet hostports": "EEXIST (File exists)", "ip6 nodenet hostports-output": "ENOMEM"]
        let objects = HostPortTable.mappingStatuses(bindings, podCIDRs: cidrs, chainErrors: ["ip nodenet hostports": "EEXIST (File exists)"])
        #expect(objects.map(\.name) == ["\(id)/eth0 *:8080/tcp>80", "\(id)/eth0 192.168.1.11:8081/udp>81", "\(id)/eth0 [fd00::11]:8443/tcp>443"])
        #expect(objects.map(\.kind) == ["hostport", "hostport", "hostport"])
        #expect(objects.map(\.error) == ["ip nodenet hostports: EEXIST (File exists)", "ip nodenet hostports: EEXIST (File exists)", nil])
        // The IPv6 output chain holds rules of the any-address and the IPv6 mapping.
        let both = HostPortTable.mappingStatuses(bindings, podCIDRs: cidrs, chainErrors: failed)
        #expect(both.map(\.error) == ["ip nodenet hostports: EEXIST (File exists); ip6 nodenet hostports-output: ENOMEM",
                                      "ip nodenet hostports: EEXIST (File exists)", "ip6 nodenet hostports-output: ENOMEM"])
        // No mappings: a failing chain is reported as itself.
        let none = HostPortTable.mappingStatuses([], podCIDRs: cidrs, chainErrors: failed)
        #expect(none.map(\.id) == ["chain ip nodenet hostports", "chain ip6 nodenet hostports-output"])
        #expect(HostPortTable.mappingStatuses(bindings, podCIDRs: cidrs, chainErrors: [:]).allSatisfy { $0.state == .inSync })
    }

    @Test func anyAddressMappingInBothFamilies() {
        let b = binding([.init(hostPort: 8080, containerPort: 80)])
        let v4 = HostPortRules.rules(.dnat, family: .v4, bindings: [b], podCIDRs: cidrs)
        #expect(v4.map(\.comment) == ["c1/eth0 tcp *:8080>10.244.1.5:80"])
        let r1 = NFTablesExpression.register1
        let local: [NFTablesExpression] = [.fibAddressType(source: false, dreg: r1), .cmp(sreg: r1, equal: true, data: HostPortRules.host32(2))]
        #expect(v4.first?.expressions == local + NFTablesExpression.transportPort(6, port: 8080, destination: true)
            + [.immediate(dreg: r1, data: [10, 244, 1, 5]), .immediate(dreg: r1 + 1, data: [0, 80]),
               .nat(destination: true, family: .v4, addressRegister: r1, portRegister: r1 + 1)])
        let v6 = HostPortRules.rules(.dnat, family: .v6, bindings: [b], podCIDRs: cidrs)
        #expect(v6.map(\.comment) == ["c1/eth0 tcp *:8080>[fd00:10:244:1::5]:80"])
        #expect(v6.first?.expressions.last == .nat(destination: true, family: .v6, addressRegister: r1, portRegister: r1 + 1))
        // A pod with only an IPv4 address gets no IPv6 rule.
        #expect(HostPortRules.rules(.dnat, family: .v6, bindings: [binding([.init(hostPort: 8080, containerPort: 80)], ips: [dual[0]])],
                                    podCIDRs: cidrs).isEmpty)
    }

    @Test func hostIPMatchesOnlyThatAddressAndFamily() {
        let b = binding([.init(hostPort: 53, containerPort: 5353, protocol: .udp, hostIP: IPAddress("fd00::11"))])
        #expect(HostPortRules.rules(.dnat, family: .v4, bindings: [b], podCIDRs: cidrs).isEmpty)
        let v6 = HostPortRules.rules(.dnat, family: .v6, bindings: [b], podCIDRs: cidrs)
        #expect(v6.map(\.comment) == ["c1/eth0 udp [fd00::11]:53>[fd00:10:244:1::5]:5353"])
        let e = v6.first?.expressions ?? []
        #expect(Array(e.prefix(2)) == NFTablesExpression.match(IPPrefix("fd00::11/128")!, source: false))
        #expect(!e.contains(.fibAddressType(source: false, dreg: NFTablesExpression.register1)))
        #expect(e.contains(.cmp(sreg: NFTablesExpression.register1, equal: true, data: [17])), "udp")
        // The output chain does the same for the node's own connections (no loopback exclusion needed).
        #expect(HostPortRules.rules(.output, family: .v6, bindings: [b], podCIDRs: cidrs).map(\.expressions) == v6.map(\.expressions))
    }

    @Test func outputChainSkipsLoopbackAndHairpinMarksPodSources() {
        let b = binding([.init(hostPort: 9000, containerPort: 9000, protocol: .sctp)])
        let out = HostPortRules.rules(.output, family: .v4, bindings: [b], podCIDRs: cidrs)
        let e = out.first?.expressions ?? []
        #expect(e.contains(.cmp(sreg: NFTablesExpression.register1, equal: false, data: [127])), "daddr != 127.0.0.0/8")
        #expect(e.contains(.cmp(sreg: NFTablesExpression.register1, equal: true, data: [132])), "sctp")
        let hairpin = HostPortRules.rules(.hairpin, family: .v4, bindings: [b], podCIDRs: cidrs + [IPPrefix("10.245.0.0/16")!])
        #expect(hairpin.map(\.comment) == ["c1/eth0 sctp *:9000>10.244.1.5:9000 from 10.244.1.0/24",
                                           "c1/eth0 sctp *:9000>10.244.1.5:9000 from 10.245.0.0/16"])
        let r1 = NFTablesExpression.register1
        #expect(Array(hairpin[0].expressions.suffix(5)) == [
            .loadNetworkHeader(offset: 12, length: 3), .compare(equal: true, data: [10, 244, 1]),
            .meta(.mark, dreg: r1), .bitwise(sreg: r1, dreg: r1, mask: HostPortRules.host32(~0x4000), xor: HostPortRules.host32(0x4000)),
            .metaSet(.mark, sreg: r1),
        ])
        #expect(!hairpin[0].expressions.contains { if case .nat = $0 { true } else { false } }, "the mark chain translates nothing")
    }

    @Test func rulesAreOrderedByAttachmentAndChainsAreDistinct() {
        let a = binding([.init(hostPort: 1, containerPort: 1)], key: "b/eth0")
        let b = binding([.init(hostPort: 2, containerPort: 2)], key: "a/eth0")
        #expect(HostPortRules.rules(.dnat, family: .v4, bindings: [a, b], podCIDRs: cidrs).map(\.comment).map { $0.prefix(6) } == ["a/eth0", "b/eth0"])
        #expect(Set(HostPortRules.chainNames).count == 3)
        #expect(HostPortRules.Role.hairpin.hook.priority < HostPortRules.Role.dnat.hook.priority)
        #expect(HostPortRules.Role.dnat.hook.priority < -100, "before the service proxy's dispatch at dstnat")
        // A claim without addresses yet writes nothing.
        #expect(HostPortRules.rules(.dnat, family: .v4, bindings: [binding([.init(hostPort: 1, containerPort: 1)], ips: [])], podCIDRs: cidrs).isEmpty)
    }
}

@Suite struct HostPortRequestTests {
    typealias M = PodAttachment.PortMapping

    func mappings(_ r: [NetworkConfig.PortMapping], families: Set<IPFamily> = [.v4]) throws(CNIError) -> [M] {
        try HostPortRequest.mappings(r, podFamilies: families, version: "1.1.0")
    }

    @Test func validMappingsBecomeRecords() throws {
        let m = try mappings([.init(hostPort: 8080, containerPort: 80), .init(hostPort: 8080, containerPort: 80, protocol: "udp"),
                              .init(hostPort: 8080, containerPort: 80), .init(hostPort: 53, containerPort: 53, protocol: "sctp", hostIP: IPAddress("192.168.1.11"))])
        #expect(m == [M(hostPort: 8080, containerPort: 80), M(hostPort: 8080, containerPort: 80, protocol: .udp),
                      M(hostPort: 53, containerPort: 53, protocol: .sctp, hostIP: IPAddress("192.168.1.11"))], "exact duplicates collapse")
    }

    @Test func invalidMappingsAreRefusedWithTheirReason() {
        let cases: [(NetworkConfig.PortMapping, String)] = [
            (.init(hostPort: 0, containerPort: 80), "1-65535"),
            (.init(hostPort: 80, containerPort: 70000), "1-65535"),
            (.init(hostPort: 80, containerPort: 80, protocol: "icmp"), "not tcp, udp or sctp"),
            (.init(hostPort: 80, containerPort: 80, hostIP: IPAddress("fd00::1")), "no IPv6 address"),
            (.init(hostPort: 80, containerPort: 80, hostIP: IPAddress("127.0.0.1")), "loopback"),
        ]
        for (mapping, reason) in cases {
            let e = cniError { _ = try mappings([mapping]) }
            #expect(e?.code == .invalidConfig, "\(mapping)")
            #expect(e?.msg.contains(reason) == true, "\(e?.msg ?? "accepted")")
        }
        let twice = cniError { _ = try mappings([.init(hostPort: 80, containerPort: 80), .init(hostPort: 80, containerPort: 81)]) }
        #expect(twice?.msg.contains("requested twice") == true)
    }

    @Test func conflictsNeedSameProtocolPortAndOverlappingAddress() {
        let held: [String: [M]] = ["other/eth0": [M(hostPort: 8080, containerPort: 80, hostIP: IPAddress("192.168.1.11"))]]
        func conflict(_ m: M) -> CNIError? { HostPortRequest.conflict([m], held: held, version: "1.1.0") }
        #expect(conflict(M(hostPort: 8080, containerPort: 9)) != nil, "any address covers the held hostIP")
        #expect(conflict(M(hostPort: 8080, containerPort: 9, hostIP: IPAddress("192.168.1.11")))?.code == .hostPortTaken)
        #expect(conflict(M(hostPort: 8080, containerPort: 9))?.msg.contains("other/eth0") == true, "names the holder")
        #expect(conflict(M(hostPort: 8080, containerPort: 9, hostIP: IPAddress("192.168.1.12"))) == nil)
        #expect(conflict(M(hostPort: 8080, containerPort: 9, protocol: .udp)) == nil)
        #expect(conflict(M(hostPort: 8081, containerPort: 80)) == nil)
    }
}
