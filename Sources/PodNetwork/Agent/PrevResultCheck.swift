// CHECK's comparison of the runtime's prevResult (its cached ADD result) with what the agent
// gave the attachment (CNI spec 1.1.0, CHECK: "the plugin must consult the prevResult to
// determine the expected interfaces and addresses"). Pure, so it is tested without a kernel.
import IPAM
import IPAddressing

extension CNIResult {
    /// What this result (a CHECK's prevResult) claims about the attachment that is not so,
    /// one sentence per difference; empty when it describes the attachment: the container-side
    /// interface `ifname` in `sandbox` (with `mac` when both name one), exactly the addresses of
    /// `allocations`, on that interface, and exactly the default routes via their gateways.
    public func differences(ifname: String, sandbox: String, mac: String?, allocations: [Allocation]) -> [String] {
        var out: [String] = []
        let pod = interfaces.firstIndex { $0.name == ifname && !($0.sandbox ?? "").isEmpty }
        if let pod {
            let claimed = interfaces[pod]
            if let s = claimed.sandbox, s != sandbox {
                out.append("prevResult puts \(ifname) in sandbox \(s), the attachment's is \(sandbox)")
            }
            if let m = claimed.mac, let mac, m.lowercased() != mac.lowercased() {
                out.append("prevResult gives \(ifname) MAC \(m), the attachment's is \(mac)")
            }
            for ip in ips {
                if let i = ip.interface, i != pod {
                    out.append("prevResult puts \(ip.address) on interface \(i), not on \(ifname) (\(pod))")
                }
            }
        } else {
            out.append("prevResult has no interface \(ifname) in a sandbox")
        }

        let claimedAddresses = Set(ips.map(\.address)), held = Set(allocations.map(\.address))
        if claimedAddresses != held {
            out.append("prevResult has addresses \(Self.list(claimedAddresses)), the attachment has \(Self.list(held))")
        }

        func text(_ r: Route) -> String { r.gw.map { "\(r.dst) via \($0)" } ?? "\(r.dst)" }
        let claimedRoutes = Set(routes.map(text)), given = Set(Route.defaultRoutes(via: allocations).map(text))
        if claimedRoutes != given {
            out.append("prevResult has routes \(Self.list(claimedRoutes)), the attachment has \(Self.list(given))")
        }
        return out
    }

    private static func list(_ items: Set<some CustomStringConvertible>) -> String {
        "[" + items.map(\.description).sorted().joined(separator: ", ") + "]"
    }
}
