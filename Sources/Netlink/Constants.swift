// Wire constants taken from the Linux uapi headers (through CNetlink), converted once to the
// integer widths the wire uses, so the rest of the module never sees C types.
import CNetlink

/// Namespace for netlink wire constants. Public so that the service-rules layer can build
/// nf_tables messages with the same builder.
public enum Netlink {
    // Protocols
    public static let route = Int32(NETLINK_ROUTE)
    public static let netfilter = Int32(NETLINK_NETFILTER)

    // nlmsghdr types and flags
    public static let noop = UInt16(NLMSG_NOOP)
    public static let error = UInt16(NLMSG_ERROR)
    public static let done = UInt16(NLMSG_DONE)
    public static let overrun = UInt16(NLMSG_OVERRUN)
    public static let fRequest = UInt16(NLM_F_REQUEST)
    public static let fMulti = UInt16(NLM_F_MULTI)
    public static let fAck = UInt16(NLM_F_ACK)
    public static let fDumpIntr = UInt16(NLM_F_DUMP_INTR)
    public static let fDump = UInt16(NLM_F_DUMP)
    public static let fReplace = UInt16(NLM_F_REPLACE)
    public static let fExcl = UInt16(NLM_F_EXCL)
    public static let fCreate = UInt16(NLM_F_CREATE)
    public static let fEcho = UInt16(NLM_F_ECHO)
    public static let fCapped = UInt16(NLM_F_CAPPED)
    public static let fAckTLVs = UInt16(NLM_F_ACK_TLVS)
    public static let nlaNested = UInt16(NLA_F_NESTED)
    public static let nlaNetByteOrder = UInt16(NLA_F_NET_BYTEORDER)
    static let errAttrMsg = UInt16(NLMSGERR_ATTR_MSG.rawValue)
    static let errAttrOffset = UInt16(NLMSGERR_ATTR_OFFS.rawValue)

    // Socket options (SOL_NETLINK)
    static let solNetlink = Int32(SOL_NETLINK)
    static let optAddMembership = Int32(NETLINK_ADD_MEMBERSHIP)
    static let optCapAck = Int32(NETLINK_CAP_ACK)
    static let optExtAck = Int32(NETLINK_EXT_ACK)
    static let optStrictCheck = Int32(NETLINK_GET_STRICT_CHK)

    // rtnetlink message types
    public static let newLink = UInt16(RTM_NEWLINK)
    public static let delLink = UInt16(RTM_DELLINK)
    public static let getLink = UInt16(RTM_GETLINK)
    public static let setLink = UInt16(RTM_SETLINK)
    public static let newAddr = UInt16(RTM_NEWADDR)
    public static let delAddr = UInt16(RTM_DELADDR)
    public static let getAddr = UInt16(RTM_GETADDR)
    public static let newRoute = UInt16(RTM_NEWROUTE)
    public static let delRoute = UInt16(RTM_DELROUTE)
    public static let getRoute = UInt16(RTM_GETROUTE)
    public static let newNeigh = UInt16(RTM_NEWNEIGH)
    public static let delNeigh = UInt16(RTM_DELNEIGH)
    public static let getNeigh = UInt16(RTM_GETNEIGH)

    // rtnetlink multicast groups (RTNLGRP_*)
    static let groupLink = UInt32(RTNLGRP_LINK.rawValue)
    static let groupNeigh = UInt32(RTNLGRP_NEIGH.rawValue)
    static let groupIPv4Addr = UInt32(RTNLGRP_IPV4_IFADDR.rawValue)
    static let groupIPv6Addr = UInt32(RTNLGRP_IPV6_IFADDR.rawValue)
    static let groupIPv4Route = UInt32(RTNLGRP_IPV4_ROUTE.rawValue)
    static let groupIPv6Route = UInt32(RTNLGRP_IPV6_ROUTE.rawValue)

    // Address families
    public static let afUnspec = UInt8(AF_UNSPEC)
    public static let afInet = UInt8(AF_INET)
    public static let afInet6 = UInt8(AF_INET6)
    public static let afBridge = UInt8(AF_BRIDGE)

    // Links
    static let iflaAddress = UInt16(IFLA_ADDRESS)
    static let iflaIfname = UInt16(IFLA_IFNAME)
    static let iflaMTU = UInt16(IFLA_MTU)
    static let iflaLink = UInt16(IFLA_LINK)
    static let iflaMaster = UInt16(IFLA_MASTER)
    static let iflaProtinfo = UInt16(IFLA_PROTINFO)
    static let iflaOperState = UInt16(IFLA_OPERSTATE)
    static let iflaLinkInfo = UInt16(IFLA_LINKINFO)
    static let iflaNetNSFD = UInt16(IFLA_NET_NS_FD)
    static let iflaInfoKind = UInt16(IFLA_INFO_KIND)
    static let iflaInfoData = UInt16(IFLA_INFO_DATA)
    static let iflaInfoSlaveKind = UInt16(IFLA_INFO_SLAVE_KIND)
    static let vethInfoPeer = UInt16(VETH_INFO_PEER)
    static let vxlanID = UInt16(IFLA_VXLAN_ID)
    static let vxlanLink = UInt16(IFLA_VXLAN_LINK)
    static let vxlanLocal = UInt16(IFLA_VXLAN_LOCAL)
    static let vxlanLocal6 = UInt16(IFLA_VXLAN_LOCAL6)
    static let vxlanLearning = UInt16(IFLA_VXLAN_LEARNING)
    static let vxlanPort = UInt16(IFLA_VXLAN_PORT)
    static let brportMode = UInt16(IFLA_BRPORT_MODE)
    static let iffUp: UInt32 = 1  // IFF_UP (net/if.h, not in the uapi set)
    static let iflaAfSpec = UInt16(IFLA_AF_SPEC)
    static let iflaInetConf = UInt16(IFLA_INET_CONF)
    /// IPV4_DEVCONF_ARP_NOTIFY (linux/ip.h, which clashes with netinet/ip.h in the shim).
    static let ipv4DevconfArpNotify: UInt16 = 22

    // Addresses
    static let ifaAddress = UInt16(IFA_ADDRESS)
    static let ifaLocal = UInt16(IFA_LOCAL)
    static let ifaLabel = UInt16(IFA_LABEL)
    static let ifaFlags = UInt16(IFA_FLAGS)
    static let ifaFNoDAD = UInt32(IFA_F_NODAD)

    // Routes
    static let rtaDst = UInt16(RTA_DST.rawValue)
    static let rtaOif = UInt16(RTA_OIF.rawValue)
    static let rtaGateway = UInt16(RTA_GATEWAY.rawValue)
    static let rtaPriority = UInt16(RTA_PRIORITY.rawValue)
    static let rtaPrefsrc = UInt16(RTA_PREFSRC.rawValue)
    static let rtaTable = UInt16(RTA_TABLE.rawValue)
    static let rtnUnicast = UInt8(RTN_UNICAST)
    static let rtnLocal = UInt8(RTN_LOCAL)
    static let rtnBlackhole = UInt8(RTN_BLACKHOLE)
    static let rtnhFOnlink = UInt32(RTNH_F_ONLINK)
    static let tableMain = UInt32(RT_TABLE_MAIN.rawValue)

    // Neighbours
    static let ndaDst = UInt16(NDA_DST)
    static let ndaLLAddr = UInt16(NDA_LLADDR)
    static let ndaMaster = UInt16(NDA_MASTER)
    static let ndaIfindex = UInt16(NDA_IFINDEX)
    static let nudPermanent = UInt16(NUD_PERMANENT)
    static let ntfSelf = UInt8(NTF_SELF)

    // nfnetlink
    public static let nfnlBatchBegin = UInt16(NFNL_MSG_BATCH_BEGIN)
    public static let nfnlBatchEnd = UInt16(NFNL_MSG_BATCH_END)
    public static let nfnlSubsysNFTables = UInt16(NFNL_SUBSYS_NFTABLES)
    public static let nfnetlinkV0 = UInt8(NFNETLINK_V0)
}

// Nexthop objects (linux/nexthop.h is not in CNetlink's header set; values from that header).
extension Netlink {
    public static let newNexthop = UInt16(RTM_NEWNEXTHOP)
    public static let delNexthop = UInt16(RTM_DELNEXTHOP)
    public static let getNexthop = UInt16(RTM_GETNEXTHOP)
    static let rtaNexthopID = UInt16(RTA_NH_ID.rawValue)
    static let nhaID: UInt16 = 1
    static let nhaOif: UInt16 = 5
    static let nhaGateway: UInt16 = 6
}
