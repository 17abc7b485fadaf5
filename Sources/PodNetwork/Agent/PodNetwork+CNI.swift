import ClusterState
import Foundation
import IPAddressing
import IPAM
import Netlink

extension PodNetwork {
    /// Answers one CNI request (already parsed and validated by `CNIRequest`). `namespace`:
    /// the pod's network namespace as the plugin opened it (CNI_NETNS in the runtime's mount
    /// namespace, passed over the socket); nil: the agent opens CNI_NETNS itself.
    ///
    /// Runs on the blocking-work threads (`BlockingWork.perform`), not on the cooperative
    /// pool: an ADD's IPAM transaction, its netlink exchanges inside the pod's namespace and
    /// its nftables writes block, and two slow ADDs on the pool's two threads stalled every
    /// actor of the agent.
    public func handle(_ request: CNIRequest, namespace: NetworkNamespace? = nil) async -> CNIReply {
        await BlockingWork.perform { await handleBlocking(request, namespace: namespace) }
    }

    private func handleBlocking(_ request: CNIRequest, namespace: NetworkNamespace?) async -> CNIReply {
        let version = request.replyVersion
        do {
            switch request.command {
            case .add:
                guard let containerID = request.containerID, let ifname = request.ifname else {
                    return .result(try await add(request, namespace: namespace), for: version)  // refused: names what is missing
                }
                let id = AttachmentID(containerID: containerID, ifname: ifname)
                return .result(try await inFlight(id) { try await add(request, namespace: namespace) }, for: version)
            // The other commands print nothing on success (spec; what the reference plugins do).
            case .del: try await del(request); return .success([])
            case .check: try await check(request, namespace: namespace); return .success([])
            case .gc: try await gc(request); return .success([])
            case .status: try status(request); return .success([])
            case .version: return CNILocal.versionReply(stdin: request.rawConfig)
            }
        } catch let e as CNIError {
            logger.warning("CNI \(request.command.rawValue) failed", metadata: [
                "container": "\(request.containerID ?? "")", "code": "\(e.code)", "error": "\(e.msg)",
            ])
            return .failure(e)
        } catch {
            return .failure(CNIError(.agentFailure, "\(error)", version: version.rawValue))
        }
    }

    private func add(_ request: CNIRequest, namespace: NetworkNamespace?) async throws -> CNIResult {
        let version = request.replyVersion.rawValue
        guard let containerID = request.containerID, let ifname = request.ifname, let netns = request.netns else {
            throw CNIError(.invalidEnvironment, "ADD needs CNI_CONTAINERID, CNI_NETNS and CNI_IFNAME", version: version)
        }
        let clock = ContinuousClock(), started = clock.now
        let key = ObjectKey(.attachment, name: "\(containerID)/\(ifname)")
        if await store.snapshot()[key] != nil {
            throw CNIError(.attachmentExists, "container \(containerID) already has \(ifname) on this network: DEL it first (CNI forbids a second ADD)",
                           version: version)
        }
        let podNamespace: NetworkNamespace
        if let namespace {
            podNamespace = namespace
        } else {
            do {
                podNamespace = try NetworkNamespace(path: netns)
            } catch {
                throw CNIError(.invalidEnvironment, "\(PodInterfaceError.namespaceMissing(netns, error))", version: version)
            }
        }
        let (allocatorOpt, bridgeOpt) = current()
        guard let allocator = allocatorOpt, let bridge = bridgeOpt else {
            throw CNIError(.tryAgainLater, "this node has no pod subnet yet (set podCIDRs, or apply its Node object)", version: version)
        }
        let mac: MACAddress?
        if let text = request.requestedMAC {
            guard let m = MACAddress(text) else { throw CNIError(.invalidConfig, "\"\(text)\" is not a MAC address", version: version) }
            mac = m
        } else {
            mac = nil
        }

        // Host ports are claimed before anything is made, so a conflict changes nothing; the
        // claim is dropped on every failure below.
        let mappings = try await claimHostPorts(request, key: key.name)
        var attached = false
        defer { if !attached, !mappings.isEmpty { hostPorts.release(key: key.name) } }

        let allocations: [Allocation]
        do {
            allocations = try allocator.allocate(containerID: containerID, ifname: ifname, requested: request.requestedIPs)
        } catch {
            throw CNIError(error, version: request.replyVersion)
        }
        if let hook = testHooks.withLock({ $0.afterAllocation }) { await hook(AttachmentID(containerID: containerID, ifname: ifname)) }
        let allocated = clock.now
        let hostName = HostInterfaceName.forAttachment(containerID: containerID, ifname: ifname)
        let spec = PodInterfaceSpec(netnsPath: netns, ifname: ifname, hostName: hostName,
                                    addresses: allocations.map { ($0.address, $0.gateway) },
                                    mtu: UInt32(request.config?.mtu ?? Int(configuration.mtu)), mac: mac,
                                    hairpin: request.config?.hairpinMode ?? true, namespace: podNamespace)
        let created: PodInterfaceResult
        do {
            created = try interfaces.setUp(spec, bridge: bridge)
        } catch {
            _ = try? allocator.release(containerID: containerID, ifname: ifname)
            let code: CNIErrorCode = (error as? PodInterfaceError).map {
                if case .namespaceMissing = $0 { return .invalidEnvironment } else { return .agentFailure }
            } ?? .agentFailure
            throw CNIError(code, "\(error)", version: version)
        }

        let wired = clock.now
        let attachment = PodAttachment(
            containerID: containerID, ifname: ifname, netns: netns,
            podNamespace: request.args.podNamespace, podName: request.args.podName, podUID: request.args.podUID,
            ips: allocations.map(\.address), hostInterface: hostName, mac: created.container.mac?.description,
            network: request.config?.name ?? "nodenet", portMappings: mappings)
        do {
            try await store.commit([.upsert(.attachment(attachment))])
        } catch {
            _ = try? interfaces.tearDown(hostName: hostName)
            _ = try? allocator.release(containerID: containerID, ifname: ifname)
            throw CNIError(.ioFailure, "cannot record the attachment: \(error)", version: version)
        }
        attached = true
        if !mappings.isEmpty {
            hostPorts.bind(key: key.name, ips: attachment.ips)
            guard syncHostPorts(reason: "attachment \(key.name) added") else {
                _ = await removeLogged(containerID: containerID, ifname: ifname, reason: "host ports could not be programmed")
                throw CNIError(.agentFailure, "cannot program the host port rules of \(key.name) (see the agent's log); nothing was attached",
                               version: version)
            }
        }
        if let gate = admissionGate {
            do {
                try await gate(attachment, await store.version)
            } catch {
                _ = await removeLogged(containerID: containerID, ifname: ifname, reason: "network policy not programmed")
                throw CNIError(.agentFailure, "\(error); nothing was attached", version: version)
            }
        }
        logger.info("pod attached", metadata: [
            "container": "\(containerID.prefix(12))", "pod": "\(attachment.pod?.description ?? "-")",
            "ips": "\(allocations.map(\.address.description))", "host": "\(hostName)",
            // Where an ADD's time goes: checks and addresses, kernel interfaces, store record.
            "ms": "\(Self.ms(allocated - started))/\(Self.ms(wired - allocated))/\(Self.ms(clock.now - wired))",
        ])
        return CNIResult.podAttachment(
            bridge: .init(name: created.bridge.name, mac: created.bridge.mac?.description),
            hostVeth: .init(name: created.host.name, mac: created.host.mac?.description),
            pod: .init(name: ifname, mac: created.container.mac?.description, sandbox: netns),
            allocations: allocations,
            dns: dnsBlock(namespace: request.args.podNamespace, request: request, families: Set(allocations.map(\.address.family))))
    }

    static func ms(_ d: Duration) -> String {
        let us = d.components.seconds * 1_000_000 + d.components.attoseconds / 1_000_000_000_000
        return "\(us / 1000).\(String(us % 1000 / 100))"
    }

    /// The ADD's port mappings, validated and claimed for `key` (empty when it asks for none).
    private func claimHostPorts(_ request: CNIRequest, key: String) async throws(CNIError) -> [PodAttachment.PortMapping] {
        let version = request.replyVersion.rawValue
        let requested = request.config?.runtimeConfig.portMappings ?? []
        guard !requested.isEmpty else { return [] }
        guard hostPorts.session != nil else {
            throw CNIError(.agentFailure, "host ports are not available on this node (no nftables session)", version: version)
        }
        let mappings = try HostPortRequest.mappings(requested, podFamilies: Set(podCIDRs.map(\.family)), version: version)
        try hostPorts.claim(key: key, mappings, version: version)
        // The table mirrors the store; the store is checked too, after claiming (a concurrent ADD
        // either still holds its claim or has already recorded its attachment).
        let held = await store.snapshot().attachments.values.filter { $0.keyName != key && !$0.portMappings.isEmpty }
        if let e = HostPortRequest.conflict(mappings, held: Dictionary(held.map { ($0.keyName, $0.portMappings) }) { a, _ in a }, version: version) {
            hostPorts.release(key: key)
            throw e
        }
        return mappings
    }

    /// The pod's resolv.conf: the node-local DNS address of each of the pod's families and the
    /// Kubernetes search path.
    func dnsBlock(namespace: String?, request: CNIRequest, families: Set<IPFamily>) -> CNIResult.DNS {
        // The runtime's own DNS settings (the kubelet's dnsConfig, passed by containerd and CRI-O
        // as the `dns` capability) are what it writes into the pod's resolv.conf: report those.
        if let dns = request.config?.runtimeConfig.dns,
           [dns.servers, dns.searches, dns.options].contains(where: { !($0 ?? []).isEmpty }) {
            return CNIResult.DNS(nameservers: dns.servers, search: dns.searches, options: dns.options)
        }
        let zone = configuration.clusterDomain
        // A runtime outside Kubernetes (podman) names no namespace: such containers live in
        // "default", as a pod without one would.
        let search = ["\(namespace ?? "default").svc.\(zone)", "svc.\(zone)", zone]
        let servers = Self.nameservers(configuration.dnsServers, podFamilies: families)
        return CNIResult.DNS(nameservers: servers.isEmpty ? nil : servers, search: search, options: ["ndots:5"])
    }

    /// The node-local nameservers a pod can reach: those of its own address families (an
    /// IPv6-only pod has no IPv4 address to reach 169.254.20.10 from), in configured order.
    static func nameservers(_ servers: [String], podFamilies: Set<IPFamily>) -> [String] {
        servers.filter { s in IPAddress(s).map { podFamilies.contains($0.family) } ?? false }
    }

    private func del(_ request: CNIRequest) async throws {
        guard let containerID = request.containerID, let ifname = request.ifname else {
            throw CNIError(.invalidEnvironment, "DEL needs CNI_CONTAINERID and CNI_IFNAME", version: request.replyVersion.rawValue)
        }
        do {
            try await remove(containerID: containerID, ifname: ifname, reason: "CNI DEL")
        } catch {
            throw CNIError(.ioFailure, "DEL of \(containerID)/\(ifname): \(error); its addresses stay reserved, retry DEL",
                           version: request.replyVersion.rawValue)
        }
    }

    private func check(_ request: CNIRequest, namespace: NetworkNamespace?) async throws {
        let version = request.replyVersion.rawValue
        guard let containerID = request.containerID, let ifname = request.ifname, let netns = request.netns else {
            throw CNIError(.invalidEnvironment, "CHECK needs CNI_CONTAINERID, CNI_NETNS and CNI_IFNAME", version: version)
        }
        guard case .attachment(let attachment)? = await store.snapshot()[ObjectKey(.attachment, name: "\(containerID)/\(ifname)")] else {
            throw CNIError(.unknownContainer, "no attachment \(containerID)/\(ifname) on this node", version: version)
        }
        let (allocator, _) = current()
        let allocations = (try? allocator?.check(containerID: containerID, ifname: ifname)) ?? nil
        guard let allocations, Set(allocations.map(\.address)) == Set(attachment.ips) else {
            throw CNIError(.agentFailure, "the address reservation of \(containerID)/\(ifname) does not match its interface", version: version)
        }
        // The runtime's record of the ADD (spec 1.1.0 CHECK): it must describe this attachment.
        if let prev = request.config?.prevResult {
            let differences = prev.differences(ifname: ifname, sandbox: netns, mac: attachment.mac, allocations: allocations)
            guard differences.isEmpty else {
                throw CNIError(.prevResultMismatch, "prevResult does not match attachment \(containerID)/\(ifname): "
                               + differences.joined(separator: "; "), version: version)
            }
        }
        let spec = PodInterfaceSpec(netnsPath: netns, ifname: ifname, hostName: attachment.hostInterface,
                                    addresses: allocations.map { ($0.address, $0.gateway) }, mtu: configuration.mtu,
                                    namespace: namespace)
        let problems = interfaces.check(spec)
            + hostPorts.missing(HostPortBinding(attachment), podCIDRs: podCIDRs).map { "host port rule missing: \($0)" }
        guard problems.isEmpty else {
            throw CNIError(.agentFailure, problems.joined(separator: "; "), version: version)
        }
    }

    private func gc(_ request: CNIRequest) async throws {
        // ADDs this GC cannot see keep their addresses: those already between allocation and
        // record are read before the store (so each is either in flight or in the snapshot),
        // and reservations made after the GC started are spared by time.
        let started = Int64(Date().timeIntervalSince1970)
        let addsInFlight = addsInProgress
        let valid = Set((request.config?.validAttachments ?? []).map { "\($0.containerID)/\($0.ifname)" })
        let network = request.config?.name ?? "nodenet"
        let snapshot = await store.snapshot()
        var failures: [String] = []
        for attachment in snapshot.attachments.values where attachment.network == network && !valid.contains(attachment.keyName) {
            do {
                try await remove(containerID: attachment.containerID, ifname: attachment.ifname, reason: "CNI GC")
            } catch {
                failures.append("\(attachment.keyName): \(error)")
            }
        }
        // Reservations without any attachment record (an ADD cut short) go too.
        if let allocator = current().0 {
            let keep = Set(valid.compactMap { k -> AttachmentID? in
                let parts = k.split(separator: "/", maxSplits: 1)
                return parts.count == 2 ? AttachmentID(containerID: String(parts[0]), ifname: String(parts[1])) : nil
            }).union(snapshot.attachments.values.filter { $0.network != network }.map { AttachmentID(containerID: $0.containerID, ifname: $0.ifname) })
                .union(addsInFlight)
            do {
                _ = try allocator.garbageCollect(keeping: keep, allocatedBefore: started)
            } catch {
                failures.append("reservations: \(error)")
            }
        }
        guard failures.isEmpty else {
            throw CNIError(.ioFailure, "GC could not release everything: " + failures.joined(separator: "; "),
                           version: request.replyVersion.rawValue)
        }
    }

    private func status(_ request: CNIRequest) throws {
        let version = request.replyVersion.rawValue
        let (allocator, bridge) = current()
        guard let allocator, bridge != nil else {
            throw CNIError(.notAvailable, "this node has no pod subnet yet", version: version)
        }
        let usage = (try? allocator.stats()) ?? []
        if !usage.isEmpty, usage.allSatisfy({ $0.free == 0 }) {
            throw CNIError(.degraded, "no free pod address left in \(usage.map(\.subnet.description).joined(separator: ", "))", version: version)
        }
    }
}
