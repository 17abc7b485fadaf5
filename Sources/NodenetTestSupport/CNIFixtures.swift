// CNI request fixtures shared by the protocol tests and the pod-network tests.
import CNIProtocol
import IPAddressing

public func bytes(_ s: String) -> [UInt8] { Array(s.utf8) }
public func text(_ b: [UInt8]) -> String { String(decoding: b, as: UTF8.self) }

/// An ADD environment as a Kubernetes runtime sends it.
public func addEnvironment(_ overrides: [String: String] = [:]) -> [String: String] {
    var env = [
        "CNI_COMMAND": "ADD", "CNI_CONTAINERID": "3f1c0ffee", "CNI_NETNS": "/var/run/netns/cni-1234",
        "CNI_IFNAME": "eth0", "CNI_PATH": "/opt/cni/bin:/usr/lib/cni",
        "CNI_ARGS": "IgnoreUnknown=1;K8S_POD_NAMESPACE=apps;K8S_POD_NAME=web-0;K8S_POD_INFRA_CONTAINER_ID=3f1c0ffee;K8S_POD_UID=1234-abcd",
    ]
    for (k, v) in overrides { env[k] = v }
    return env
}

public func minimalConfig(_ version: CNIVersion, extra: String = "") -> [UInt8] {
    bytes(#"{"cniVersion":"\#(version.rawValue)","name":"nodenet","type":"nodenet"\#(extra)}"#)
}

/// The CNIError a throwing call produced, or nil.
public func cniError(_ body: () throws -> Void) -> CNIError? {
    do { try body(); return nil } catch let e as CNIError { return e } catch {
        return CNIError(.init(rawValue: 999), "unexpected error type: \(error)")
    }
}

/// What an ADD on a dual-stack node returns: bridge, host veth, pod interface.
public let sampleResult = CNIResult(
    interfaces: [
        .init(name: "nodenet0", mac: "0a:58:0a:f4:01:01"),
        .init(name: "veth1a2b3c4d", mac: "ee:11:22:33:44:55"),
        .init(name: "eth0", mac: "0a:58:0a:f4:01:05", mtu: 1450, sandbox: "/var/run/netns/cni-1234"),
    ],
    ips: [
        .init(address: IPPrefix("10.244.1.5/24")!, gateway: IPAddress("10.244.1.1"), interface: 2),
        .init(address: IPPrefix("fd00:10:244:1::5/64")!, gateway: IPAddress("fd00:10:244:1::1"), interface: 2),
    ],
    routes: [
        .init(dst: IPPrefix("0.0.0.0/0")!, gw: IPAddress("10.244.1.1")),
        .init(dst: IPPrefix("::/0")!, gw: IPAddress("fd00:10:244:1::1"), mtu: 1400, priority: 100),
    ],
    dns: .init(nameservers: ["10.96.0.10"], search: ["apps.svc.cluster.local", "svc.cluster.local"], options: ["ndots:5"]))
