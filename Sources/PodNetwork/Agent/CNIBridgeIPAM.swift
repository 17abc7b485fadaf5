// Where the CNI layer meets IPAM: allocations become result entries, IPAM errors become CNI
// error codes. Kept here so the agent's ADD handler is a few lines of glue.
import IPAM
import IPAddressing

extension CNIResult.IPConfig {
    /// An allocated address on the interface at `interface` (the pod's, index 2 in
    /// [bridge, host veth, pod interface]).
    public init(_ allocation: Allocation, interface: Int?) {
        self.init(address: allocation.address, gateway: allocation.gateway, interface: interface)
    }
}

extension CNIResult.Route {
    /// One default route per family, via that family's gateway.
    public static func defaultRoutes(via allocations: [Allocation]) -> [CNIResult.Route] {
        allocations.map { a in
            CNIResult.Route(dst: IPPrefix(address: a.gateway.family == .v4 ? .v4(IPv4Address(0)) : .v6(IPv6Address(high: 0, low: 0)), length: 0),
                            gw: a.gateway)
        }
    }
}

extension CNIAttachment {
    public var ipamID: AttachmentID { AttachmentID(containerID: containerID, ifname: ifname) }
}

extension CNIError {
    /// The CNI code for an IPAM failure: exhaustion and a repeated ADD get nodenet's own codes
    /// so a runtime log tells them apart; a requested address that cannot be had is an invalid
    /// config (7); a node without a usable pod subnet is "not available" (50).
    public init(_ error: IPAMError, version: CNIVersion) {
        let code: CNIErrorCode = switch error {
        case .exhausted: .addressesExhausted
        case .alreadyAllocated: .attachmentExists
        case .requestedTaken, .requestedOutside, .requestedReserved, .requestedTwice: .invalidConfig
        case .noSubnets, .invalidSubnet: .notAvailable
        case .invalidAttachment: .invalidEnvironment
        case .database: .ioFailure
        }
        self.init(code, error.description, version: version.rawValue)
    }
}

extension CNIResult {
    /// The ADD result for a pod on the node bridge, in the bridge plugin's layout:
    /// interfaces [bridge, host veth, pod interface], every allocation on the pod interface
    /// (index 2), a default route per family via its gateway, then `extraRoutes`.
    public static func podAttachment(bridge: Interface, hostVeth: Interface, pod: Interface, allocations: [Allocation],
                                     extraRoutes: [Route] = [], dns: DNS = DNS()) -> CNIResult {
        CNIResult(interfaces: [bridge, hostVeth, pod],
                  ips: allocations.map { IPConfig($0, interface: 2) },
                  routes: Route.defaultRoutes(via: allocations) + extraRoutes,
                  dns: dns)
    }
}
