import Netlink
import NodeRoutes
import PodNetwork
import ServiceProxy
import Testing
@testable import Agent

/// Ownership inside nodenet's nftables tables is declared once (`NodenetTables`); every module
/// that writes there must agree with the declaration, and the service proxy must leave every
/// chain declared to someone else alone.
@Suite struct NodenetTablesTests {
    @Test func everyModuleUsesTheDeclaredNamesAndMarks() {
        #expect(Masquerade.table == NodenetTables.name && Masquerade.chain == NodenetTables.podEgress.name)
        #expect(HostPortRules.table == NodenetTables.name && HostPortRules.masqueradeMark == NodenetTables.masqueradeMark)
        #expect(Set(HostPortRules.chainNames) == Set(NodenetTables.chains(of: .podNetwork).map(\.name)))
        #expect(Set(DNSNotrack.chains.map(\.declaration.name)) == Set(NodenetTables.chains(of: .dns).map(\.name)))
        #expect(NodenetTables.chains(of: .nodeRoutes).map(\.name) == [Masquerade.chain])
        let names = NodenetTables.declared.map(\.name)
        #expect(Set(names).count == names.count, "a chain declared twice")
    }

    @Test func theServiceProxyLeavesEveryOtherOwnersChainsAlone() {
        let proxy = ProxyConfiguration(nodeName: "node1")
        #expect(proxy.tableName == NodenetTables.name)
        #expect(proxy.masqueradeMark == NodenetTables.masqueradeMark)
        #expect(proxy.foreignObjects == NodenetTables.notServiceProxy,
                "ProxyConfiguration.foreignObjects must be NodenetTables.notServiceProxy")
        #expect(NodenetTables.owner(of: "services") == .serviceProxy)
        #expect(NodenetTables.owner(of: "hostports") == .podNetwork)
    }
}
