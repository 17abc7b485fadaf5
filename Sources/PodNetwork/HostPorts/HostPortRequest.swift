// What an ADD's `runtimeConfig.portMappings` may ask for. The shim already refused ports
// outside 1-65535, unknown protocols and unparsable hostIPs (NetworkConfigWire); this checks
// what needs the node: the pod's address families and the host ports other pods hold.
import CNIProtocol
import ClusterState
import IPAddressing

public enum HostPortRequest {
    /// The requested mappings as the attachment records them. Exact duplicates collapse (a
    /// runtime may repeat one); two mappings of one request that claim the same host port
    /// are an error, as is a hostIP of a family the pod has no address in, or a loopback one.
    public static func mappings(_ requested: [NetworkConfig.PortMapping], podFamilies: Set<IPFamily>,
                                version: String) throws(CNIError) -> [PodAttachment.PortMapping] {
        var out: [PodAttachment.PortMapping] = []
        for r in requested {
            let what = "port mapping \(r.hostPort)->\(r.containerPort)/\(r.protocol)"
            guard let host = UInt16(exactly: r.hostPort), let container = UInt16(exactly: r.containerPort), host > 0, container > 0 else {
                throw CNIError(.invalidConfig, "invalid \(what): ports must be 1-65535", version: version)
            }
            guard let proto = L4Protocol(rawValue: r.protocol.uppercased()) else {
                throw CNIError(.invalidConfig, "invalid \(what): protocol \"\(r.protocol)\" is not tcp, udp or sctp", version: version)
            }
            if let ip = r.hostIP {
                guard podFamilies.contains(ip.family) else {
                    throw CNIError(.invalidConfig, "invalid \(what): hostIP \(ip) is \(ip.family.rawValue) but the pod gets no \(ip.family.rawValue) address on this node",
                                   version: version)
                }
                guard !HostPortRules.loopback(ip.family).contains(ip) else {
                    throw CNIError(.invalidConfig, "invalid \(what): hostIP \(ip) is a loopback address (not supported)", version: version)
                }
            }
            let m = PodAttachment.PortMapping(hostPort: host, containerPort: container, protocol: proto, hostIP: r.hostIP)
            if out.contains(m) { continue }
            if let other = out.first(where: { overlaps($0, m) }) {
                throw CNIError(.invalidConfig, "invalid \(what): host port \(describe(other)) is requested twice", version: version)
            }
            out.append(m)
        }
        return out
    }

    /// Two mappings catch the same packets: same protocol and host port, and the same hostIP
    /// or either one on every address.
    public static func overlaps(_ a: PodAttachment.PortMapping, _ b: PodAttachment.PortMapping) -> Bool {
        guard a.protocol == b.protocol, a.hostPort == b.hostPort else { return false }
        guard let x = a.hostIP, let y = b.hostIP else { return true }
        return x == y
    }

    /// The first mapping of `mappings` that another attachment in `held` (key -> mappings)
    /// already holds, as an error; nil when all are free.
    public static func conflict(_ mappings: [PodAttachment.PortMapping], held: [String: [PodAttachment.PortMapping]],
                                version: String) -> CNIError? {
        for m in mappings {
            for (owner, theirs) in held.sorted(by: { $0.key < $1.key }) {
                if let t = theirs.first(where: { overlaps($0, m) }) {
                    return CNIError(.hostPortTaken, "host port \(describe(m)) is already mapped to attachment \(owner) (\(describe(t)))",
                                    version: version)
                }
            }
        }
        return nil
    }

    static func describe(_ m: PodAttachment.PortMapping) -> String {
        let host = m.hostIP.map { $0.family == .v4 ? "\($0):" : "[\($0)]:" } ?? ""
        return "\(host)\(m.hostPort)/\(m.protocol.rawValue.lowercased())"
    }
}
