// Decoding and validation of the network configuration. Kept apart from the public shape
// because the JSON has aliases, defaults and runtime-injected keys.
import IPAddressing

extension NetworkConfig {
    struct Wire: Decodable {
        var name: String?
        var type: String?
        var prevResult: CNIResult.Wire?
        var runtimeConfig: RuntimeWire?
        var args: ArgsWire?
        var validAttachments: [CNIAttachment]?
        var attachmentsTypo: [CNIAttachment]?
        var dns: CNIResult.DNS?
        var socket: String?
        var bridge: String?
        var mtu: Int?
        var hairpinMode: Bool?
        var ipam: IPAMWire?

        enum CodingKeys: String, CodingKey {
            case name, type, prevResult, runtimeConfig, args, dns, socket, bridge, mtu, hairpinMode, ipam
            case validAttachments = "cni.dev/valid-attachments"
            case attachmentsTypo = "cni.dev/attachments"
        }

        // What runtimes inject (`runtimeConfig`, `args`) is marshalled from Go structs, often
        // without JSON tags: keys are matched as Go matches them (GoJSONKeys.swift).
        struct RuntimeWire: Decodable {
            var portMappings: [PortMappingWire]?
            var ips: [String]?
            var mac: String?
            var dns: DNSCapability?

            init(from decoder: any Decoder) throws {
                let c = try decoder.container(keyedBy: AnyCodingKey.self)
                portMappings = try c.goDecode([PortMappingWire].self, "portMappings")
                ips = try c.goDecode([String].self, "ips")
                mac = try c.goDecode(String.self, "mac")
                dns = try c.goDecode(DNSCapability.self, "dns")
            }
        }

        struct PortMappingWire: Decodable {
            var hostPort: Int
            var containerPort: Int
            var `protocol`: String?
            var hostIP: String?

            init(from decoder: any Decoder) throws {
                let c = try decoder.container(keyedBy: AnyCodingKey.self)
                // Go leaves a missing number at 0, which validation then refuses with the mapping named.
                hostPort = try c.goDecode(Int.self, "hostPort") ?? 0
                containerPort = try c.goDecode(Int.self, "containerPort") ?? 0
                `protocol` = try c.goDecode(String.self, "protocol")
                hostIP = try c.goDecode(String.self, "hostIP")
            }
        }

        struct ArgsWire: Decodable {
            struct CNI: Decodable {
                var ips: [String]?
                var mac: String?

                init(from decoder: any Decoder) throws {
                    let c = try decoder.container(keyedBy: AnyCodingKey.self)
                    ips = try c.goDecode([String].self, "ips")
                    mac = try c.goDecode(String.self, "mac")
                }
            }
            var cni: CNI?

            init(from decoder: any Decoder) throws {
                cni = try decoder.container(keyedBy: AnyCodingKey.self).goDecode(CNI.self, "cni")
            }
        }

        struct IPAMWire: Decodable {
            var type: String?
            var subnets: [IPPrefix]?
            var routes: [RouteWire]?
        }

        struct RouteWire: Decodable { var dst: IPPrefix; var gw: IPAddress? }

        func validated(version: CNIVersion) throws(CNIError) -> NetworkConfig {
            let v = version.rawValue
            func invalid(_ msg: String) -> CNIError { CNIError(.invalidConfig, msg, version: v) }

            guard let name, !name.isEmpty else { throw invalid("invalid network configuration: missing network name (\"name\")") }
            guard CNIValidation.isValidIdentifier(name) else {
                throw invalid("invalid network configuration: network name \"\(name)\" has characters outside [a-zA-Z0-9_.-]")
            }
            let bridge = self.bridge ?? NetworkConfig.defaultBridge
            if let problem = CNIValidation.interfaceNameProblem(bridge) {
                throw invalid("invalid network configuration: bridge name \"\(bridge)\" \(problem)")
            }
            // 0 means "not set", as in the bridge plugin.
            let mtu = self.mtu == 0 ? nil : self.mtu
            if let mtu, !(68...65535).contains(mtu) {
                throw invalid("invalid network configuration: mtu \(mtu) is outside 68-65535")
            }
            let socket = self.socket ?? NetworkConfig.defaultSocket
            guard socket.hasPrefix("/") else {
                throw invalid("invalid network configuration: socket \"\(socket)\" is not an absolute path")
            }
            var ipamSection: IPAMSection?
            if let ipam {
                if let type = ipam.type, type != "nodenet" {
                    throw invalid("invalid network configuration: ipam.type \"\(type)\" is not supported: nodenet allocates pod addresses itself; remove the \"ipam\" section or set its type to \"nodenet\"")
                }
                if let subnets = ipam.subnets, let bad = subnets.first(where: { !$0.isNetwork }) {
                    throw invalid("invalid network configuration: ipam subnet \(bad) has host bits set (did you mean \(bad.network)?)")
                }
                ipamSection = IPAMSection(type: ipam.type, subnets: ipam.subnets,
                                          routes: (ipam.routes ?? []).map { CNIResult.Route(dst: $0.dst, gw: $0.gw) })
            }

            var runtime = RuntimeConfig()
            if let rc = runtimeConfig {
                runtime.portMappings = try (rc.portMappings ?? []).map { pm throws(CNIError) in try Self.portMapping(pm, version: v) }
                runtime.ips = try Self.addresses(rc.ips ?? [], key: "runtimeConfig.ips", version: v)
                runtime.mac = rc.mac
                runtime.dns = rc.dns
            }
            let attachments = validAttachments ?? attachmentsTypo
            for a in attachments ?? [] where a.containerID.isEmpty || a.ifname.isEmpty {
                throw invalid("invalid network configuration: cni.dev/valid-attachments has an entry without containerID or ifname")
            }

            return NetworkConfig(
                cniVersion: version, name: name, type: type ?? "", prevResult: prevResult?.result, runtimeConfig: runtime,
                argsIPs: try Self.addresses(args?.cni?.ips ?? [], key: "args.cni.ips", version: v), argsMAC: args?.cni?.mac,
                validAttachments: attachments, dns: dns, socket: socket, bridge: bridge, mtu: mtu,
                hairpinMode: hairpinMode ?? true, ipam: ipamSection)
        }

        /// `ips` entries may be bare addresses or CIDRs ("10.0.0.1/24"); the address is what counts.
        static func addresses(_ list: [String], key: String, version: String) throws(CNIError) -> [IPAddress] {
            var out: [IPAddress] = []
            for item in list {
                if let a = IPAddress(item) { out.append(a) } else if let p = IPPrefix(item) { out.append(p.address) } else {
                    throw CNIError(.invalidConfig, "invalid network configuration: \(key) entry \"\(item)\" is not an IP address", version: version)
                }
            }
            return out
        }

        static func portMapping(_ pm: PortMappingWire, version: String) throws(CNIError) -> PortMapping {
            let proto = (pm.protocol ?? "tcp").lowercased()
            guard (1...65535).contains(pm.hostPort), (1...65535).contains(pm.containerPort) else {
                throw CNIError(.invalidConfig, "invalid port mapping \(pm.hostPort)->\(pm.containerPort): ports must be 1-65535", version: version)
            }
            guard ["tcp", "udp", "sctp"].contains(proto) else {
                throw CNIError(.invalidConfig, "invalid port mapping \(pm.hostPort)->\(pm.containerPort): protocol \"\(pm.protocol ?? "")\" is not tcp, udp or sctp", version: version)
            }
            var hostIP: IPAddress?
            if let text = pm.hostIP, !text.isEmpty {
                guard let a = IPAddress(text) else {
                    throw CNIError(.invalidConfig, "invalid port mapping \(pm.hostPort)->\(pm.containerPort): hostIP \"\(text)\" is not an IP address", version: version)
                }
                hostIP = a
            }
            return PortMapping(hostPort: pm.hostPort, containerPort: pm.containerPort, protocol: proto, hostIP: hostIP)
        }
    }
}
