// Who owns what inside nodenet's nftables tables, declared once. Every module that writes to
// the tables takes its names, hooks and marks from here instead of its own literals, and the
// service proxy (which owns everything not declared to someone else) reads the others' chains
// from here to leave them alone. Adding a chain anywhere means adding it here first.
//
//     table ip nodenet / table ip6 nodenet
//       pod-egress          NodeRoutes   nat postrouting srcnat       masquerade out of the cluster
//       hostports-hairpin   PodNetwork   nat prerouting dstnat-2      mark hairpin host port traffic
//       hostports           PodNetwork   nat prerouting dstnat-1      host port DNAT
//       hostports-output    PodNetwork   nat output dstnat-1          host port DNAT of the node's own connections
//       dns-notrack         DNS (Agent)  filter prerouting raw        no conntrack for queries to the DNS addresses
//       dns-notrack-out     DNS (Agent)  filter output raw            no conntrack for their answers
//       everything else     ServiceProxy (its chains, sets and maps)
//     mark 0x4000: "masquerade me", set by the proxy and by hostports-hairpin, masqueraded
//     by the proxy's nat-postrouting.
//
//     table ip nodenet-policy / table ip6 nodenet-policy
//       everything          PolicyEnforcement (NetworkPolicy and the ClusterNetworkPolicy tiers)
//     ct mark: the policy tables park a new connection's peer identity in it; nothing else in
//     nodenet reads or writes ct mark.

/// nodenet's nftables tables and their ownership.
public enum NodenetTables {
    /// The table name, the same in both families (`ip nodenet`, `ip6 nodenet`).
    public static let name = "nodenet"

    /// The NetworkPolicy tables (`ip nodenet-policy`, `ip6 nodenet-policy`), wholly the policy
    /// actor's: separate tables, so that neither actor's transactions or dumps see the other's.
    public static let policyTableName = "nodenet-policy"

    /// The packet mark bit that asks postrouting to masquerade (kube-proxy's default bit 14).
    public static let masqueradeMark: UInt32 = 0x4000

    /// The parts of nodenet that own objects in its tables.
    public enum Owner: String, Sendable, CaseIterable, Codable {
        case serviceProxy = "services"
        case nodeRoutes = "routes"
        case podNetwork = "pods"
        case dns
    }

    /// A base chain of one owner (each holds exactly its owner's rules; see `NFTablesOwnedChain`).
    public struct Chain: Sendable, Hashable {
        public var name: String
        public var owner: Owner
        public var hook: NFTablesHook

        /// The reconciling handle for this chain.
        public var owned: NFTablesOwnedChain { NFTablesOwnedChain(table: NodenetTables.name, chain: name, hook: hook) }
    }

    public static let podEgress = Chain(name: "pod-egress", owner: .nodeRoutes, hook: .natPostrouting)
    // nat hooks; dstnat is -100, where the service proxy dispatches: the first nat chain that
    // translates a connection ends the nat hook for it, so host ports win over NodePorts.
    public static let hostPortsHairpin = Chain(name: "hostports-hairpin", owner: .podNetwork,
                                               hook: NFTablesHook(type: "nat", hook: 0 /* NF_INET_PRE_ROUTING */, priority: -102))
    public static let hostPorts = Chain(name: "hostports", owner: .podNetwork,
                                        hook: NFTablesHook(type: "nat", hook: 0 /* NF_INET_PRE_ROUTING */, priority: -101))
    public static let hostPortsOutput = Chain(name: "hostports-output", owner: .podNetwork,
                                              hook: NFTablesHook(type: "nat", hook: 3 /* NF_INET_LOCAL_OUT */, priority: -101))
    public static let dnsNotrack = Chain(name: "dns-notrack", owner: .dns, hook: .rawPrerouting)
    public static let dnsNotrackOut = Chain(name: "dns-notrack-out", owner: .dns, hook: .rawOutput)

    /// Every chain declared to an owner other than the service proxy.
    public static let declared: [Chain] = [podEgress, hostPortsHairpin, hostPorts, hostPortsOutput, dnsNotrack, dnsNotrackOut]

    /// Who owns the chain, set or map called `name`: a declared chain's owner, else the proxy.
    public static func owner(of name: String) -> Owner {
        declared.first { $0.name == name }?.owner ?? .serviceProxy
    }

    /// The declared chains of `owner`.
    public static func chains(of owner: Owner) -> [Chain] { declared.filter { $0.owner == owner } }

    /// Names the service proxy must read back but never compare, flush or delete (its
    /// `ProxyConfiguration.foreignObjects`).
    public static var notServiceProxy: Set<String> { Set(declared.filter { $0.owner != .serviceProxy }.map(\.name)) }
}
