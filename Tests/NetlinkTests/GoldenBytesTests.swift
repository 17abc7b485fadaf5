// Golden bytes for every message kind the module builds, annotated field by field.
// nlmsghdr = len(4) type(2) flags(2) seq(4) pid(4), all little endian; seq is 0 before sending.
import IPAddressing
import Testing
@testable import Netlink

@Suite("golden request bytes")
struct GoldenBytesTests {
    let route = Route(destination: IPPrefix("10.244.2.0/24")!, gateway: IPAddress("192.168.1.12"), outputIndex: 2)
    let mac = MACAddress("0a:58:0a:f4:02:00")!

    @Test func vethWithPeerInAnotherNamespace() throws {
        let r = try RouteMessages.createVeth(name: "veth1", peerName: "eth0", peerNamespaceFD: 7, mtu: 1450)
        #expect(r.bytes == hex("""
            78000000 1000 0806 00000000 00000000   // len 120, RTM_NEWLINK, ECHO|CREATE|EXCL (the new link comes back with the ACK)
            00 00 0000 00000000 00000000 00000000  // ifinfomsg AF_UNSPEC, index 0
            0a00 0300 7665746831 00 0000           // IFLA_IFNAME "veth1\\0" + pad
            0800 0400 aa050000                     // IFLA_MTU 1450
            4400 1200                              // IFLA_LINKINFO (68)
              0900 0100 76657468 00 000000         //   IFLA_INFO_KIND "veth"
              3400 0200                            //   IFLA_INFO_DATA (52)
                3000 0100                          //     VETH_INFO_PEER (48)
                  00 00 0000 00000000 00000000 00000000  // ifinfomsg for the peer
                  0900 0300 65746830 00 000000     //       IFLA_IFNAME "eth0"
                  0800 0400 aa050000               //       IFLA_MTU 1450
                  0800 1c00 07000000               //       IFLA_NET_NS_FD 7
            """))
    }

    @Test func bridgeAndVxlan() throws {
        #expect(try RouteMessages.createBridge(name: "nodenet0").bytes == hex("""
            40000000 1000 0006 00000000 00000000   // len 64, RTM_NEWLINK, CREATE|EXCL
            00 00 0000 00000000 00000000 00000000  // ifinfomsg
            0d00 0300 6e6f64656e657430 00 000000   // IFLA_IFNAME "nodenet0"
            1000 1200                              // IFLA_LINKINFO
              0b00 0100 627269646765 00 00         //   IFLA_INFO_KIND "bridge"
            """))
        let settings = VxlanSettings(vni: 1, port: 8472, local: IPAddress("192.168.1.11"), underlayIndex: 2)
        #expect(try RouteMessages.createVxlan(name: "nodenet.1", settings: settings).bytes == hex("""
            6c000000 1000 0006 00000000 00000000   // len 108, RTM_NEWLINK, CREATE|EXCL
            00 00 0000 00000000 00000000 00000000  // ifinfomsg
            0e00 0300 6e6f64656e65742e31 00 0000   // IFLA_IFNAME "nodenet.1"
            3c00 1200                              // IFLA_LINKINFO
              0a00 0100 76786c616e 00 0000         //   IFLA_INFO_KIND "vxlan"
              2c00 0200                            //   IFLA_INFO_DATA
                0800 0100 01000000                 //     IFLA_VXLAN_ID 1
                0800 0300 02000000                 //     IFLA_VXLAN_LINK 2 (underlay)
                0800 0400 c0a8010b                 //     IFLA_VXLAN_LOCAL 192.168.1.11
                0600 0f00 2118 0000                //     IFLA_VXLAN_PORT 8472 in network order
                0500 0700 00 000000                //     IFLA_VXLAN_LEARNING 0
            """))
    }

    @Test func setMoveHairpinDeleteGetDump() throws {
        #expect(try RouteMessages.setLink(index: 5, LinkChange(up: true, mtu: 1450, masterIndex: 3)).bytes == hex("""
            30000000 1000 0000 00000000 00000000   // RTM_NEWLINK, no CREATE: change existing
            00 00 0000 05000000 01000000 01000000  // index 5, flags IFF_UP, change IFF_UP
            0800 0400 aa050000                     // IFLA_MTU 1450
            0800 0a00 03000000                     // IFLA_MASTER 3
            """))
        #expect(try RouteMessages.setLink(index: 5, LinkChange(up: true, arpNotify: true)).bytes == hex("""
            34000000 1000 0000 00000000 00000000
            00 00 0000 05000000 01000000 01000000  // index 5, up
            1400 1a00                              // IFLA_AF_SPEC
              1000 0200                            //   AF_INET
                0c00 0100                          //     IFLA_INET_CONF
                  0800 1600 01000000               //       IPV4_DEVCONF_ARP_NOTIFY (22) = 1
            """))
        #expect(try RouteMessages.setLink(index: 5, LinkChange(up: false)).bytes == hex("""
            20000000 1000 0000 00000000 00000000
            00 00 0000 05000000 00000000 01000000  // flags 0, change IFF_UP: down
            """))
        #expect(RouteMessages.moveLink(index: 5, toNamespaceFD: 9).bytes == hex("""
            28000000 1000 0000 00000000 00000000
            00 00 0000 05000000 00000000 00000000
            0800 1c00 09000000                     // IFLA_NET_NS_FD 9
            """))
        #expect(RouteMessages.setHairpin(portIndex: 5, enabled: true).bytes == hex("""
            2c000000 1300 0000 00000000 00000000   // RTM_SETLINK
            07 00 0000 05000000 00000000 00000000  // AF_BRIDGE, port index 5
            0c00 0c80                              // IFLA_PROTINFO | NLA_F_NESTED
              0500 0400 01 000000                  //   IFLA_BRPORT_MODE 1 (hairpin)
            """))
        #expect(RouteMessages.deleteLink(index: 5).bytes == hex("""
            20000000 1100 0000 00000000 00000000   // RTM_DELLINK
            00 00 0000 05000000 00000000 00000000
            """))
        #expect(try RouteMessages.getLink(name: "eth0").bytes == hex("""
            2c000000 1200 0000 00000000 00000000   // RTM_GETLINK (not a dump)
            00 00 0000 00000000 00000000 00000000
            0900 0300 65746830 00 000000           // IFLA_IFNAME "eth0"
            """))
        #expect(RouteMessages.dumpLinks().bytes == hex("""
            20000000 1200 0003 00000000 00000000   // RTM_GETLINK, NLM_F_DUMP (ROOT|MATCH)
            00 00 0000 00000000 00000000 00000000
            """))
    }

    @Test func addresses() throws {
        #expect(RouteMessages.address(InterfaceAddress(index: 3, prefix: IPPrefix("10.244.1.1/24")!), add: true).bytes == hex("""
            28000000 1400 0006 00000000 00000000   // RTM_NEWADDR, CREATE|EXCL
            02 18 00 00 03000000                   // ifaddrmsg AF_INET, /24, flags 0, scope 0, index 3
            0800 0200 0af40101                     // IFA_LOCAL 10.244.1.1
            0800 0100 0af40101                     // IFA_ADDRESS 10.244.1.1
            """))
        #expect(RouteMessages.address(InterfaceAddress(index: 3, prefix: IPPrefix("fd00::5/64")!, noDAD: true), add: true).bytes == hex("""
            48000000 1400 0006 00000000 00000000   // RTM_NEWADDR, CREATE|EXCL
            0a 40 00 00 03000000                   // AF_INET6, /64, index 3
            1400 0200 fd000000000000000000000000000005  // IFA_LOCAL fd00::5
            1400 0100 fd000000000000000000000000000005  // IFA_ADDRESS fd00::5
            0800 0800 02000000                     // IFA_FLAGS IFA_F_NODAD: usable at once
            """))
        #expect(RouteMessages.address(InterfaceAddress(index: 3, prefix: IPPrefix("fd00::1/64")!), add: false).bytes == hex("""
            40000000 1500 0000 00000000 00000000   // RTM_DELADDR
            0a 40 00 00 03000000                   // AF_INET6, /64, index 3
            1400 0200 fd000000000000000000000000000001  // IFA_LOCAL fd00::1
            1400 0100 fd000000000000000000000000000001  // IFA_ADDRESS fd00::1
            """))
        #expect(RouteMessages.dumpAddresses(family: .v4, index: 3).bytes == hex("""
            18000000 1600 0003 00000000 00000000   // RTM_GETADDR, DUMP
            02 00 00 00 03000000                   // AF_INET, index 3 (strict-check filter)
            """))
    }

    @Test func routes() throws {
        #expect(RouteMessages.route(.replace(route)).bytes == hex("""
            34000000 1800 0005 00000000 00000000   // RTM_NEWROUTE, CREATE|REPLACE
            02 18 00 00 fe 4e 00 01 00000000       // AF_INET /24, table main, proto 78, scope universe, unicast
            0800 0100 0af40200                     // RTA_DST 10.244.2.0
            0800 0500 c0a8010c                     // RTA_GATEWAY 192.168.1.12
            0800 0400 02000000                     // RTA_OIF 2
            """))
        let onlink = Route(destination: IPPrefix("10.244.3.0/24")!, gateway: IPAddress("10.244.3.0"), outputIndex: 4, table: 1000, onlink: true)
        #expect(RouteMessages.route(.add(onlink)).bytes == hex("""
            3c000000 1800 0006 00000000 00000000   // RTM_NEWROUTE, CREATE|EXCL
            02 18 00 00 00 4e 00 01 04000000       // table 0 (RT_TABLE_UNSPEC: see RTA_TABLE), flags RTNH_F_ONLINK
            0800 0f00 e8030000                     // RTA_TABLE 1000
            0800 0100 0af40300                     // RTA_DST 10.244.3.0
            0800 0500 0af40300                     // RTA_GATEWAY 10.244.3.0
            0800 0400 04000000                     // RTA_OIF 4
            """))
        #expect(RouteMessages.route(.delete(route)).bytes == hex("""
            24000000 1900 0000 00000000 00000000   // RTM_DELROUTE
            02 18 00 00 fe 4e ff 00 00000000       // proto 78 (only ours), scope NOWHERE, type unspec
            0800 0100 0af40200                     // RTA_DST only: gateway/device do not narrow a delete
            """))
        #expect(RouteMessages.route(.replace(route), nexthopID: 0x4e00_0001).bytes == hex("""
            2c000000 1800 0005 00000000 00000000
            02 18 00 00 fe 4e 00 01 00000000
            0800 0100 0af40200                     // RTA_DST
            0800 1e00 0100004e                     // RTA_NH_ID 0x4e000001 instead of gateway and device
            """))
        #expect(RouteMessages.dumpRoutes(family: .v4, table: 254, protocol: 78).bytes == hex("""
            1c000000 1a00 0003 00000000 00000000   // RTM_GETROUTE, DUMP
            02 00 00 00 fe 4e 00 00 00000000       // AF_INET, table main, protocol 78 (strict-check filters)
            """))
    }

    @Test func neighboursFDBAndNexthops() throws {
        #expect(RouteMessages.neighbour(Neighbour(index: 4, address: IPAddress("10.244.2.0")!, mac: mac), add: true).bytes == hex("""
            30000000 1c00 0005 00000000 00000000   // RTM_NEWNEIGH, CREATE|REPLACE
            02 00 0000 04000000 8000 00 00         // ndmsg AF_INET, index 4, NUD_PERMANENT
            0800 0100 0af40200                     // NDA_DST 10.244.2.0
            0a00 0200 0a580af40200 0000            // NDA_LLADDR
            """))
        #expect(RouteMessages.fdb(FDBEntry(index: 4, mac: mac, destination: IPAddress("192.168.1.12")), add: true).bytes == hex("""
            30000000 1c00 0005 00000000 00000000   // RTM_NEWNEIGH, CREATE|REPLACE
            07 00 0000 04000000 8000 02 00         // AF_BRIDGE, index 4, NUD_PERMANENT, NTF_SELF
            0a00 0200 0a580af40200 0000            // NDA_LLADDR (the remote VTEP's MAC)
            0800 0100 c0a8010c                     // NDA_DST 192.168.1.12 (the remote VTEP)
            """))
        #expect(RouteMessages.dumpNeighbours(family: .v4, index: 4).bytes == hex("""
            24000000 1e00 0003 00000000 00000000   // RTM_GETNEIGH, DUMP
            02 00 0000 00000000 0000 00 00         // AF_INET
            0800 0800 04000000                     // NDA_IFINDEX 4 (filter)
            """))
        #expect(RouteMessages.dumpFDB(index: 4).bytes == hex("""
            1c000000 1e00 0003 00000000 00000000
            07 00 0000 04000000 0000 00 00         // AF_BRIDGE, ndm_ifindex 4 = port filter
            """))
        let nh = Nexthop(id: 0x4e00_0001, gateway: IPAddress("192.168.1.12"), outputIndex: 2)
        #expect(RouteMessages.nexthop(nh, add: true).bytes == hex("""
            30000000 6800 0006 00000000 00000000   // RTM_NEWNEXTHOP, CREATE|EXCL
            02 00 4e 00 00000000                   // nhmsg AF_INET, scope 0, protocol 78
            0800 0100 0100004e                     // NHA_ID
            0800 0500 02000000                     // NHA_OIF 2
            0800 0600 c0a8010c                     // NHA_GATEWAY 192.168.1.12
            """))
        #expect(RouteMessages.nexthop(nh, add: false).bytes == hex("""
            20000000 6900 0000 00000000 00000000   // RTM_DELNEXTHOP
            00 00 00 00 00000000
            0800 0100 0100004e                     // NHA_ID
            """))
        #expect(RouteMessages.dumpNexthops().bytes == hex("18000000 6a00 0003 00000000 00000000  00 00 00 00 00000000"))
    }

    @Test func nfnetlinkBatchFraming() {
        #expect(NfnetlinkMessages.batchBegin().bytes == hex("""
            14000000 1000 0100 00000000 00000000   // NFNL_MSG_BATCH_BEGIN, REQUEST
            00 00 000a                             // nfgenmsg AF_UNSPEC, V0, res_id NFNL_SUBSYS_NFTABLES (big endian)
            """))
        #expect(NfnetlinkMessages.batchEnd().bytes == hex("14000000 1100 0100 00000000 00000000  00 00 000a"))
        var b = NfnetlinkMessages.builder(message: 0, family: Netlink.afInet, flags: Netlink.fCreate)
        b.attribute(1, string: "nodenet")
        #expect(b.finish() == hex("""
            20000000 000a 0004 00000000 00000000   // (NFTABLES << 8) | NFT_MSG_NEWTABLE, CREATE
            02 00 0000                             // nfgenmsg NFPROTO_IPV4
            0c00 0100 6e6f64656e6574 00            // NFTA_TABLE_NAME "nodenet"
            """))
    }

    @Test func invalidInterfaceNamesAreRefusedBeforeSending() {
        for bad in ["", "sixteen-bytes-xx", "a/b", "a b", "a:b", "new\nline", ".", ".."] {
            let e = #expect(throws: NetlinkError.self) { try RouteMessages.createBridge(name: bad) }
            #expect(e?.description.contains("create bridge") == true)
        }
        #expect(throws: Never.self) { try RouteMessages.createBridge(name: "fifteen-bytes-x") }
        #expect(throws: NetlinkError.self) { try RouteMessages.createVeth(name: "ok", peerName: "bad name") }
        #expect(throws: NetlinkError.self) { try RouteMessages.createVxlan(name: "vx", settings: VxlanSettings(vni: 1 << 24)) }
    }
}
