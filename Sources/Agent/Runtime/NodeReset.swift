import Glibc
import PolicyEnforcement
import IPAddressing
import Netlink

/// Removes from a node everything nodenet put there: the node bridge (and the pod veths still
/// on it), the DNS device, the vxlan device, the nftables tables `ip nodenet` and `ip6 nodenet`
/// and the policy tables `ip nodenet-policy` and `ip6 nodenet-policy`,
/// routes and nexthop objects of protocol nodenet (78) in every table, and, unless kept, the
/// state and run directories. The package runs it when it is removed (`nodenet reset`, from
/// prerm), with the agent already stopped. Nothing else is touched: every object is found by a
/// name or protocol that only nodenet uses. Each step is independent; what failed is reported
/// and the rest still done.
public enum NodeReset {

    public struct Report: Sendable {
        public var removed: [String] = []
        public var failures: [String] = []
    }

    public static func run(_ config: AgentConfiguration, removeState: Bool) -> Report {
        var report = Report()
        func step(_ what: String, _ body: () throws -> Bool) {
            do {
                if try body() { report.removed.append(what) }
            } catch {
                report.failures.append("\(what): \(error)")
            }
        }
        // The runtime's conflist first: from here on the runtime stops sending pods to nodenet.
        if let conflist = config.cni.conflist {
            step(conflist) {
                guard unlink(conflist) == 0 else {
                    if errno == ENOENT { return false }
                    throw ResetError(path: conflist, errno: errno)
                }
                return true
            }
        }
        do {
            let client = try RouteClient()
            // Routes first (a route through a nexthop object keeps it busy), then nexthops.
            for family in IPFamily.allCases {
                let routes = (try? client.routes(family: family, table: nil, protocol: RouteProtocol.nodenet)) ?? []
                for route in routes { step("route \(route.destination) (table \(route.table))") { try client.deleteRoute(route); return true } }
            }
            for nexthop in ((try? client.nexthops()) ?? []) where nexthop.protocol == RouteProtocol.nodenet {
                step("nexthop \(nexthop.id)") { try client.session.execute(RouteMessages.nexthop(nexthop, add: false)); return true }
            }
            let links = try client.links()
            let bridge = links.first { $0.name == PodNetworkService.bridgeName }
            if let bridge {
                for port in links where port.masterIndex == bridge.index {
                    step("pod interface \(port.name)") { try client.deleteLink(index: port.index); return true }
                }
            }
            for name in [PodNetworkService.bridgeName, DNSService.deviceName, "nodenet.\(config.vxlan.vni)"] {
                step("link \(name)") { try client.deleteLink(named: name) }
            }
        } catch {
            report.failures.append("rtnetlink: \(error)")
        }
        do {
            let nftables = try NetlinkSession(protocol: Netlink.netfilter)
            for (table, family) in [NodenetTables.name, PolicyTables.tableName].flatMap({ t in IPFamily.allCases.map { (t, $0) } }) {
                let name = "table \(family == .v4 ? "ip" : "ip6") \(table)"
                step(name) {
                    let result = try nftables.nftablesTransaction([NFTablesMessages.deleteTable(table, family: family)])
                    if let failure = result.failures.values.first {
                        if failure.errno == ENOENT { return false }
                        throw failure
                    }
                    return true
                }
            }
        } catch {
            report.failures.append("nf_tables: \(error)")
        }
        if removeState {
            for dir in [config.stateDir, config.runDir] {
                step(dir) { try removeTree(dir) }
            }
        }
        return report
    }

    /// rm -r without following symlinks; false when there was nothing.
    static func removeTree(_ path: String) throws -> Bool {
        var st = stat()
        guard lstat(path, &st) == 0 else { return false }
        if (st.st_mode & S_IFMT) == S_IFDIR, let dir = opendir(path) {
            defer { closedir(dir) }
            while let entry = readdir(dir) {
                let name = withUnsafeBytes(of: entry.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
                if name == "." || name == ".." { continue }
                _ = try removeTree(path + "/" + name)
            }
            guard rmdir(path) == 0 else { throw ResetError(path: path, errno: errno) }
        } else if unlink(path) != 0 {
            throw ResetError(path: path, errno: errno)
        }
        return true
    }

    struct ResetError: Error, CustomStringConvertible {
        var path: String
        var errno: Int32
        var description: String { "cannot remove \(path): \(String(cString: strerror(errno)))" }
    }
}
