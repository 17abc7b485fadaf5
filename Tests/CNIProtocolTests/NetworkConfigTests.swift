import IPAddressing
import NodenetTestSupport
import Testing
@testable import CNIProtocol

/// Every case runs for every supported version, as the reference plugins' tests do.
@Suite struct NetworkConfigTests {
    @Test(arguments: CNIVersion.supported)
    func minimalConfigGetsDefaults(version: CNIVersion) throws {
        let c = try NetworkConfig.parse(minimalConfig(version), for: .add)
        #expect(c.cniVersion == version && c.name == "nodenet" && c.type == "nodenet")
        #expect(c.socket == "/run/nodenet/nodenet.sock" && c.bridge == "nodenet0")
        #expect(c.mtu == nil && c.hairpinMode && c.ipam == nil && c.prevResult == nil)
        #expect(c.runtimeConfig == NetworkConfig.RuntimeConfig())
        #expect(try NetworkConfig.parse(minimalConfig(version, extra: #","mtu":0,"prevResult":null,"dns":null"#), for: .add).mtu == nil)
    }

    @Test(arguments: CNIVersion.supported)
    func fullConfigWithCapabilities(version: CNIVersion) throws {
        let json = #"""
        {"cniVersion":"\#(version.rawValue)","name":"k8s-pod-network","type":"nodenet",
         "socket":"/run/test/nodenet.sock","bridge":"br-pods","mtu":1450,"hairpinMode":false,
         "ipam":{"type":"nodenet","subnets":["10.244.1.0/24","fd00:10:244:1::/64"],"routes":[{"dst":"192.168.0.0/16","gw":"10.244.1.254"}]},
         "dns":{"nameservers":["10.96.0.10"],"search":["svc.cluster.local"]},
         "runtimeConfig":{
            "portMappings":[{"hostPort":8080,"containerPort":80,"protocol":"TCP"},{"hostPort":53,"containerPort":53,"protocol":"udp","hostIP":"192.168.1.11"}],
            "ips":["10.244.1.50/24","fd00:10:244:1::50"],
            "mac":"02:42:ac:11:00:02",
            "dns":{"servers":["10.96.0.10"],"searches":["apps.svc.cluster.local"],"options":["ndots:5"]},
            "bandwidth":{"ingressRate":1000}},
         "args":{"cni":{"ips":["10.244.1.60"]},"other":{"x":1}},
         "some-future-key":[1,2,3]}
        """#
        let c = try NetworkConfig.parse(bytes(json), for: .add)
        #expect(c.name == "k8s-pod-network" && c.socket == "/run/test/nodenet.sock" && c.bridge == "br-pods")
        #expect(c.mtu == 1450 && !c.hairpinMode)
        #expect(c.ipam?.subnets == [IPPrefix("10.244.1.0/24")!, IPPrefix("fd00:10:244:1::/64")!])
        #expect(c.ipam?.routes == [CNIResult.Route(dst: IPPrefix("192.168.0.0/16")!, gw: IPAddress("10.244.1.254"))])
        #expect(c.dns?.nameservers == ["10.96.0.10"])
        #expect(c.runtimeConfig.portMappings == [
            .init(hostPort: 8080, containerPort: 80, protocol: "tcp"),
            .init(hostPort: 53, containerPort: 53, protocol: "udp", hostIP: IPAddress("192.168.1.11")),
        ])
        #expect(c.runtimeConfig.ips == [IPAddress("10.244.1.50")!, IPAddress("fd00:10:244:1::50")!])
        #expect(c.runtimeConfig.mac == "02:42:ac:11:00:02")
        #expect(c.runtimeConfig.dns?.searches == ["apps.svc.cluster.local"] && c.runtimeConfig.dns?.options == ["ndots:5"])
        #expect(c.argsIPs == [IPAddress("10.244.1.60")!])
    }

    /// The stdin containerd 1.6's CRI plugin gives the plugin for a pod with a hostPort and the
    /// kubelet's dnsConfig: go-cni marshals its PortMapping and DNS structs without JSON tags,
    /// so the keys are Go field names, and an unset HostIP is "". Go's decoder matches keys
    /// in any case (the portmap plugin reads this), so nodenet must too.
    @Test func containerdRuntimeConfigWithGoFieldNames() throws {
        let json = #"""
        {"cniVersion":"1.0.0","name":"nodenet","type":"nodenet","socket":"/run/nodenet/nodenet.sock","bridge":"nodenet0",
         "capabilities":{"dns":true,"ips":true,"mac":true,"portMappings":true},
         "runtimeConfig":{
            "dns":{"Servers":["169.254.20.10"],"Searches":["web-frontend.svc.cluster.local","svc.cluster.local","cluster.local"],"Options":["ndots:5"]},
            "portMappings":[{"HostPort":8080,"ContainerPort":80,"Protocol":"tcp","HostIP":""},
                            {"HostPort":5353,"ContainerPort":53,"Protocol":"udp","HostIP":"192.168.1.11"},
                            {"hostport":9090,"CONTAINERPORT":90,"protocol":"sctp"}]},
         "args":{"cni":{"IPs":["10.244.1.60"],"Mac":"02:42:ac:11:00:09"}}}
        """#
        let c = try NetworkConfig.parse(bytes(json), for: .add)
        #expect(c.runtimeConfig.portMappings == [
            .init(hostPort: 8080, containerPort: 80, protocol: "tcp", hostIP: nil),
            .init(hostPort: 5353, containerPort: 53, protocol: "udp", hostIP: IPAddress("192.168.1.11")),
            .init(hostPort: 9090, containerPort: 90, protocol: "sctp", hostIP: nil),
        ])
        #expect(c.runtimeConfig.dns == NetworkConfig.DNSCapability(
            servers: ["169.254.20.10"], searches: ["web-frontend.svc.cluster.local", "svc.cluster.local", "cluster.local"], options: ["ndots:5"]))
        #expect(c.argsIPs == [IPAddress("10.244.1.60")!])
        #expect(c.argsMAC == "02:42:ac:11:00:09")
        // An exact key wins over one that differs only in case, as in Go.
        let both = try NetworkConfig.parse(minimalConfig(.v1_0_0, extra: #","runtimeConfig":{"MAC":"02:00:00:00:00:02","mac":"02:00:00:00:00:01"}"#), for: .add)
        #expect(both.runtimeConfig.mac == "02:00:00:00:00:01")
        // A mapping without a host port is refused with the mapping named, whatever the key case.
        let err = cniError { _ = try NetworkConfig.parse(minimalConfig(.v1_0_0, extra: #","runtimeConfig":{"portMappings":[{"ContainerPort":80}]}"#), for: .add) }
        #expect(err?.code == .invalidConfig && err?.msg.contains("0->80") == true, "\(err?.msg ?? "no error")")
    }

    @Test(arguments: CNIVersion.supported)
    func malformedJSONIsCode6(version: CNIVersion) {
        for bad in [#"{"cniVersion":"\#(version.rawValue)","name":"#, "[1,2]", "\"text\"", ""] {
            #expect(cniError { _ = try NetworkConfig.parse(bytes(bad), for: .add) }?.code == .decodingFailure, "\(bad)")
        }
    }

    @Test(arguments: CNIVersion.supported)
    func invalidValuesAreCode7(version: CNIVersion) {
        let cases: [(String, String)] = [
            (#","mtu":"big""#, "mtu"),
            (#","mtu":20"#, "mtu 20"),
            (#","hairpinMode":"yes""#, "hairpinMode"),
            (#","bridge":"a-very-long-bridge-name""#, "bridge name"),
            (#","socket":"relative.sock""#, "socket"),
            (#","ipam":{"type":"host-local","subnet":"10.1.0.0/16"}"#, #"ipam.type "host-local" is not supported"#),
            (#","ipam":{"subnets":["10.244.1.0/33"]}"#, "ipam.subnets"),
            (#","ipam":{"subnets":["banana"]}"#, "ipam.subnets"),
            (#","ipam":{"subnets":["10.244.1.7/24"]}"#, "host bits"),
            (#","runtimeConfig":{"portMappings":[{"hostPort":0,"containerPort":80,"protocol":"tcp"}]}"#, "ports must be"),
            (#","runtimeConfig":{"portMappings":[{"hostPort":80,"containerPort":80,"protocol":"icmp"}]}"#, "protocol"),
            (#","runtimeConfig":{"ips":["10.1.2.999"]}"#, "runtimeConfig.ips"),
            (#","args":{"cni":{"ips":["nope"]}}"#, "args.cni.ips"),
        ]
        for (extra, mention) in cases {
            let err = cniError { _ = try NetworkConfig.parse(minimalConfig(version, extra: extra), for: .add) }
            #expect(err?.code == .invalidConfig, "\(extra)")
            #expect(err?.msg.contains(mention) == true, "\(extra): \(err?.msg ?? "no error")")
            #expect(err?.cniVersion == version.rawValue)
        }
        for name in ["", "bad name", "-x"] {
            let json = #"{"cniVersion":"\#(version.rawValue)","name":"\#(name)","type":"nodenet"}"#
            #expect(cniError { _ = try NetworkConfig.parse(bytes(json), for: .add) }?.code == .invalidConfig)
        }
    }

    @Test(arguments: ["0.1.0", "0.2.0", "2.0.0", "1.0", "banana"])
    func unsupportedVersionsAreCode1(version: String) {
        let err = cniError { _ = try NetworkConfig.parse(bytes(#"{"cniVersion":"\#(version)","name":"n","type":"nodenet"}"#), for: .add) }
        #expect(err?.code == .incompatibleVersion)
        #expect(err?.details == #"config is "\#(version)", plugin supports ["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"]"#)
    }

    @Test func missingVersionMeans010() {
        #expect(cniError { _ = try NetworkConfig.parse(bytes(#"{"name":"n","type":"nodenet"}"#), for: .add) }?.code == .incompatibleVersion)
    }

    @Test(arguments: CNIVersion.supported)
    func commandsNeedTheirMinimumVersion(version: CNIVersion) {
        for command in [CNICommand.add, .del, .check, .gc, .status] {
            let err = cniError { _ = try NetworkConfig.parse(minimalConfig(version), for: command) }
            let allowed = switch command {
            case .check: version >= .v0_4_0
            case .gc, .status: version >= .v1_1_0
            default: true
            }
            #expect((err == nil) == allowed, "\(command) at \(version)")
            if !allowed { #expect(err?.code == .incompatibleVersion && err?.msg == "config version does not allow \(command.rawValue)") }
        }
    }

    @Test func gcValidAttachmentsAndTheTypo() throws {
        let list = #"[{"containerID":"c1","ifname":"eth0"},{"containerID":"c2","ifname":"net1"}]"#
        let expected = [CNIAttachment(containerID: "c1", ifname: "eth0"), CNIAttachment(containerID: "c2", ifname: "net1")]
        let c1 = try NetworkConfig.parse(minimalConfig(.v1_1_0, extra: #","cni.dev/valid-attachments":\#(list)"#), for: .gc)
        #expect(c1.validAttachments == expected)
        let c2 = try NetworkConfig.parse(minimalConfig(.v1_1_0, extra: #","cni.dev/attachments":\#(list)"#), for: .gc)
        #expect(c2.validAttachments == expected)
        let c3 = try NetworkConfig.parse(minimalConfig(.v1_1_0, extra: #","cni.dev/valid-attachments":[]"#), for: .gc)
        #expect(c3.validAttachments == [])
        let c4 = try NetworkConfig.parse(minimalConfig(.v1_1_0), for: .gc)
        #expect(c4.validAttachments == nil)
        let bad = cniError { _ = try NetworkConfig.parse(minimalConfig(.v1_1_0, extra: #","cni.dev/valid-attachments":[{"containerID":"c1"}]"#), for: .gc) }
        #expect(bad?.code == .invalidConfig)
    }
}
