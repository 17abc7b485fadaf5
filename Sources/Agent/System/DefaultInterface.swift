import Foundation
import IPAddressing

/// Finds the node's address the way an operator would expect when `nodeIP` is not set: the
/// IPv4 address of the interface that holds the default route (read from /proc/net/route,
/// which reflects the current network namespace), else the first global IPv4 address.
public enum DefaultInterface {
    public static func nodeIP() -> IPAddress? {
        let addresses = interfaceAddresses()
        if let iface = defaultRouteInterface(), let a = addresses.first(where: { $0.0 == iface && $0.1.isV4 }) {
            return a.1
        }
        return addresses.first { $0.1.isV4 && !isLoopback($0.1) }?.1
    }

    /// `primary` and, for each other family of `families`, the first global address of that
    /// family on the interface that holds `primary` (a dual-stack node's underlay address of
    /// the other family, as kubelet reports both InternalIPs). Link-local addresses are skipped.
    public static func nodeAddresses(primary: IPAddress, families: [IPFamily]) -> [IPAddress] {
        let addresses = interfaceAddresses()
        var out = [primary]
        guard let iface = addresses.first(where: { $0.1 == primary })?.0 else { return out }
        for family in families where !out.contains(where: { $0.family == family }) {
            if let a = addresses.first(where: { $0.0 == iface && $0.1.family == family && !isLoopback($0.1) && !isLinkLocal($0.1) }) {
                out.append(a.1)
            }
        }
        return out
    }

    static func isLinkLocal(_ a: IPAddress) -> Bool {
        switch a {
        case .v4(let v): return v.value >> 16 == 0xA9FE
        case .v6: return IPPrefix("fe80::/10")!.contains(a)
        }
    }

    static func isLoopback(_ a: IPAddress) -> Bool {
        if case .v4(let v) = a { return v.value >> 24 == 127 }
        return a == IPAddress("::1")
    }

    static func defaultRouteInterface() -> String? {
        guard let text = try? String(contentsOfFile: "/proc/net/route", encoding: .utf8) else { return nil }
        for line in text.split(separator: "\n").dropFirst() {
            let f = line.split(whereSeparator: { $0 == " " || $0 == "\t" })
            if f.count > 2, f[1] == "00000000" { return String(f[0]) }
        }
        return nil
    }

    /// (interface, address) for every configured address.
    public static func interfaceAddresses() -> [(String, IPAddress)] {
        var head: UnsafeMutablePointer<ifaddrs>?
        guard getifaddrs(&head) == 0, let first = head else { return [] }
        defer { freeifaddrs(head) }
        var out: [(String, IPAddress)] = []
        var cursor: UnsafeMutablePointer<ifaddrs>? = first
        while let p = cursor {
            defer { cursor = p.pointee.ifa_next }
            guard let sa = p.pointee.ifa_addr else { continue }
            let name = String(cString: p.pointee.ifa_name)
            switch Int32(sa.pointee.sa_family) {
            case AF_INET:
                let a = sa.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { $0.pointee.sin_addr.s_addr }
                out.append((name, .v4(IPv4Address(UInt32(bigEndian: a)))))
            case AF_INET6:
                let bytes = sa.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) { p in
                    withUnsafeBytes(of: p.pointee.sin6_addr) { Array($0) }
                }
                if let a = IPAddress(bytes: bytes) { out.append((name, a)) }
            default: break
            }
        }
        return out
    }
}
