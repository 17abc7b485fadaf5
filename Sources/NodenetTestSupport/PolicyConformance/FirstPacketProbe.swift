import Foundation

/// "A new pod selected by a deny policy cannot send or receive a single packet before its
/// policy applies" (issue 13). Out of the pod: a sender waits inside the new pod's network
/// namespace before its CNI ADD and is released the instant ADD returns, while the peer
/// counts, below netfilter (a packet socket, as tcpdump would), every IPv4 packet from the new
/// pod's address. Into the pod: a capture runs in the new pod's namespace before the ADD (on
/// every interface, so it sees eth0 the moment ADD creates it) and the peer floods the new
/// address the instant ADD returns. Under a deny policy the count must be zero; without one it
/// must not be (which proves the check sees a leak).
public struct FirstPacketReport: Sendable, CustomStringConvertible {
    public var podIP: String
    /// Datagrams the sender handed to the kernel, sends it refused, TCP connects it started.
    public var sent: Int
    public var failed: Int
    public var connectAttempts: Int
    /// From release to the first send the kernel accepted (the sender in the new pod only).
    public var firstSendSeconds: Double?
    /// IPv4 packets of the flow that reached the receiving side (the peer for traffic out of
    /// the new pod, the new pod for traffic into it).
    public var delivered: Int

    public var description: String {
        "pod \(podIP): \(sent) datagrams sent (\(failed) refused, \(connectAttempts) TCP connects)"
            + (firstSendSeconds.map { String(format: ", first send %.1f ms after ADD returned", $0 * 1000) } ?? "")
            + "; \(delivered) packets delivered"
    }
}

extension PolicyConformanceModel {
    /// Adds pod `name` in `namespace` on node `node` with `labels`, releases a sender in it the
    /// moment the CNI ADD returns, lets it send UDP (and TCP SYNs) to `peer`'s pod IP on `port`
    /// for `seconds`, and reports what reached the peer. The pod is removed again (CNI DEL and
    /// its object) before returning.
    public func firstPackets(newPod name: String, namespace: String, on node: Int, labels: [String: String],
                             to peer: ModelPod, port: Int = 80, seconds: Double = 1) throws -> FirstPacketReport {
        let peerAgent = agent(peer)
        struct OK: Decodable { var ok: Bool }
        _ = try peerAgent.call(["op": "capture-start", "ifname": "eth0"], timeout: 5, as: OK.self)

        let ns = try TestNamespace("pod")
        let fifo = cluster.dir.file("release-\(name)")
        unlink(fifo)
        guard mkfifo(fifo, 0o600) == 0 else { throw PolicyCaseError(message: "mkfifo \(fifo): \(String(cString: strerror(errno)))") }
        let script = cluster.dir.write("first-packet-sender.py", PodAgentScript.sender)
        let log = cluster.dir.file("sender-\(name).log")
        let sender = try Shell.spawn(["/usr/bin/nsenter", "--net=\(ns.path)", "/usr/bin/python3", script, fifo, pods[peer]!.ip, "\(port)", "\(seconds)"],
                                     log: log)
        var reaped = false
        defer { if !reaped { kill(sender, SIGKILL); waitpid(sender, nil, 0) } }

        // The sender is blocked opening the FIFO for reading; wait until it is (an open for
        // writing without a reader fails with ENXIO), so the release below is instant.
        var release: Int32 = -1
        _ = try poll(seconds: 10, "the sender in the new pod to start (\(log))") { () -> Bool? in
            release = open(fifo, O_WRONLY | O_NONBLOCK)
            return release >= 0 ? true : nil
        }
        let added: NewPod
        do {
            added = try addNewPod(name, namespace: namespace, on: node, labels: labels, netns: ns) { _ in
                // ADD returned: release the sender now, before anything else.
                _ = write(release, "g", 1)
            }
        } catch {
            Glibc.close(release)
            throw error
        }
        Glibc.close(release)
        defer { removeNewPod(added) }

        let deadline = Date().addingTimeInterval(seconds + 10)
        var status: Int32 = 0
        while waitpid(sender, &status, WNOHANG) == 0 {
            guard Date() < deadline else { throw PolicyCaseError(message: "the sender did not finish within \(seconds + 10) s") }
            usleep(20_000)
        }
        reaped = true
        struct Summary: Decodable { var sent: Int; var failed: Int; var connectAttempts: Int; var firstSendSeconds: Double? }
        let output = (try? String(contentsOfFile: log, encoding: .utf8)) ?? ""
        guard let line = output.split(separator: "\n").last, let summary = try? JSONDecoder().decode(Summary.self, from: Data(line.utf8)) else {
            throw PolicyCaseError(message: "the sender printed no summary: \(output)")
        }
        return FirstPacketReport(podIP: added.pod.ip, sent: summary.sent, failed: summary.failed, connectAttempts: summary.connectAttempts,
                                 firstSendSeconds: summary.firstSendSeconds, delivered: try settledCount(at: peerAgent, from: added.pod.ip))
    }

    /// Adds pod `name` as `firstPackets` does, with a capture running in its namespace before
    /// the ADD; the instant ADD returns, `peer` floods the new pod's address on `port` for
    /// `seconds`. Reports what reached the new pod from the peer.
    public func firstPacketsInto(newPod name: String, namespace: String, on node: Int, labels: [String: String],
                                 from peer: ModelPod, port: Int = 80, seconds: Double = 1) throws -> FirstPacketReport {
        let ns = try TestNamespace("pod")
        let socket = cluster.dir.file("agent-new-\(name).sock")
        let log = cluster.dir.file("agent-new-\(name).log")
        let capture = try Shell.spawn(["/usr/bin/nsenter", "--net=\(ns.path)", "/usr/bin/python3", cluster.dir.file("pod-agent.py"),
                                       "\(namespace)/\(name)", socket, shape.ports.map(String.init).joined(separator: ",")], log: log)
        defer { kill(capture, SIGKILL); waitpid(capture, nil, 0) }
        let newAgent = PodAgentClient(path: socket)
        struct OK: Decodable { var ok: Bool }
        _ = try poll(seconds: 10, "the capture in the new pod to start (\(log))") { () -> Bool? in
            FileManager.default.fileExists(atPath: socket) ? (try? newAgent.call(["op": "capture-start", "ifname": ""], timeout: 5, as: OK.self))?.ok : nil
        }
        struct Flood: Decodable { var sent: Int; var failed: Int; var connectAttempts: Int }
        var flood: Result<Flood, any Error> = .failure(PolicyCaseError(message: "the peer did not flood"))
        let added = try addNewPod(name, namespace: namespace, on: node, labels: labels, netns: ns) { ip in
            // ADD returned: the peer starts at once (its answer comes after `seconds`).
            flood = Result {
                try agent(peer).call(["op": "flood", "host": ip, "port": port, "seconds": seconds], timeout: seconds + 10, as: Flood.self)
            }
        }
        defer { removeNewPod(added) }
        let f = try flood.get()
        return FirstPacketReport(podIP: added.pod.ip, sent: f.sent, failed: f.failed, connectAttempts: f.connectAttempts,
                                 firstSendSeconds: nil, delivered: try settledCount(at: newAgent, from: pods[peer]!.ip))
    }

    struct NewPod {
        var pod: TestCluster.Pod
        var containerID: String
        var namespace: String
        var node: Int
    }

    /// The Pod object (with its labels, no address yet) on every node, as a scheduled pod's
    /// is before the kubelet runs it; the CNI ADD; `onAdded` with the address at once; then
    /// the address in the Pod's status on every node, as a control plane writes it.
    private func addNewPod(_ name: String, namespace: String, on node: Int, labels: [String: String], netns: TestNamespace,
                           onAdded: (String) throws -> Void) throws -> NewPod {
        let meta = "metadata: {name: \(name), namespace: \(namespace), labels: \(Self.flow(labels))}\n"
        let spec = "spec: {nodeName: \(cluster.nodes[node].name)}\n"
        try cluster.applyEverywhere("apiVersion: v1\nkind: Pod\n" + meta + spec)
        let containerID = Self.containerID()
        let pod = try cluster.addPod(name, namespace: namespace, on: node, netns: netns, containerID: containerID)
        let added = NewPod(pod: pod, containerID: containerID, namespace: namespace, node: node)
        do {
            try onAdded(pod.ip)
            try cluster.applyEverywhere("apiVersion: v1\nkind: Pod\n" + meta + spec + "status: {podIPs: [{ip: \(pod.ip)}]}\n")
        } catch {
            removeNewPod(added)
            throw error
        }
        return added
    }

    private func removeNewPod(_ p: NewPod) {
        _ = try? cluster.nodes[p.node].cni.run("DEL", containerID: p.containerID, netns: p.pod.ns.path,
                                               args: "K8S_POD_NAMESPACE=\(p.namespace);K8S_POD_NAME=\(p.pod.name)")
        try? cluster.deleteEverywhere("apiVersion: v1\nkind: Pod\nmetadata: {name: \(p.pod.name), namespace: \(p.namespace)}\n")
    }

    /// The capture's count for `source` once packets still in flight have landed: read until
    /// two reads 100 ms apart agree (bounded).
    private func settledCount(at capture: PodAgentClient, from source: String) throws -> Int {
        struct Counts: Decodable { var counts: [String: Int] }
        var last = -1, count = 0
        for _ in 0..<20 {
            count = try capture.call(["op": "capture-count"], timeout: 5, as: Counts.self).counts[source] ?? 0
            if count == last { break }
            last = count
            usleep(100_000)
        }
        return count
    }
}
