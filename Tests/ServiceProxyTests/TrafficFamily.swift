import ClusterState
import Testing

/// The address family a traffic test runs in: the same dual-stack topology (see
/// `TrafficTests.Topology`), the addresses of that family. Pod N is 10.244.N.5 or
/// fd00:10:244:N::5 (pod1, pod2, the client pod3); cluster IPs are 10.96.0.X or fd00:10:96::X.
enum TrafficFamily: String, CaseIterable, Sendable, CustomTestStringConvertible {
    case ipv4, ipv6

    var testDescription: String { rawValue }

    func pod(_ n: Int) -> String { self == .ipv4 ? "10.244.\(n).5" : "fd00:10:244:\(n)::5" }

    func clusterIP(_ last: Int) -> String { self == .ipv4 ? "10.96.0.\(last)" : "fd00:10:96::\(last)" }

    /// `address:port` as socat takes it (IPv6 in brackets).
    func target(_ address: String, _ port: Int) -> String { self == .ipv4 ? "\(address):\(port)" : "[\(address)]:\(port)" }

    var sliceFamily: EndpointAddressType { self == .ipv4 ? .ipv4 : .ipv6 }

    /// The slice of `service` in this family (named `<service>-ipv4` / `-ipv6`).
    func slice(_ service: String, _ eps: [EP]) -> EndpointSlice { ServiceProxyTests.slice(service, family: sliceFamily, eps) }
}
