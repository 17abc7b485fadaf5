import IPAddressing
@testable import PodNetwork

func bytes(_ s: String) -> [UInt8] { Array(s.utf8) }
func text(_ b: [UInt8]) -> String { String(decoding: b, as: UTF8.self) }

/// An ADD environment as a Kubernetes runtime sends it.
func addEnvironment(_ overrides: [String: String] = [:]) -> [String: String] {
    var env = [
        "CNI_COMMAND": "ADD", "CNI_CONTAINERID": "3f1c0ffee", "CNI_NETNS": "/var/run/netns/cni-1234",
        "CNI_IFNAME": "eth0", "CNI_PATH": "/opt/cni/bin:/usr/lib/cni",
        "CNI_ARGS": "IgnoreUnknown=1;K8S_POD_NAMESPACE=apps;K8S_POD_NAME=web-0;K8S_POD_INFRA_CONTAINER_ID=3f1c0ffee;K8S_POD_UID=1234-abcd",
    ]
    for (k, v) in overrides { env[k] = v }
    return env
}

func minimalConfig(_ version: CNIVersion, extra: String = "") -> [UInt8] {
    bytes(#"{"cniVersion":"\#(version.rawValue)","name":"nodenet","type":"nodenet"\#(extra)}"#)
}

/// The CNIError a throwing call produced, or nil.
func cniError(_ body: () throws -> Void) -> CNIError? {
    do { try body(); return nil } catch let e as CNIError { return e } catch {
        return CNIError(.init(rawValue: 999), "unexpected error type: \(error)")
    }
}
