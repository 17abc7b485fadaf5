import Foundation

/// "A new pod selected by a deny policy cannot send a single packet before its policy
/// applies" (issue 13): a sender waits inside the new pod's network namespace before its CNI
/// ADD and is released the instant ADD returns; the peer counts, below netfilter (a packet
/// socket, as tcpdump would), every IPv4 packet that arrives from the new pod's address.
/// With a deny-egress policy selecting the new pod the count must be zero; without one it
/// must not be (which proves the check can see a leak).
public struct FirstPacketReport: Sendable, CustomStringConvertible {
    public var podIP: String
    /// Datagrams the sender handed to the kernel, sends it refused, TCP connects it started.
    public var sent: Int
    public var failed: Int
    public var connectAttempts: Int
    /// From release to the first send the kernel accepted; nil when none was.
    public var firstSendSeconds: Double?
    /// IPv4 packets from `podIP` that reached the peer's interface.
    public var packetsAtPeer: Int

    public var description: String {
        "pod \(podIP): \(sent) datagrams sent (\(failed) refused, \(connectAttempts) TCP connects), first send after "
            + (firstSendSeconds.map { String(format: "%.1f ms", $0 * 1000) } ?? "never") + "; \(packetsAtPeer) packets at the peer"
    }
}

extension PolicyConformanceModel {
    /// Adds pod `name` in `namespace` on node `node` with `labels` (its Pod object is in the
    /// store before the ADD, as a scheduled pod's is), releases a sender in it the moment the
    /// CNI ADD returns, lets it send UDP (and TCP SYNs) to `peer`'s pod IP on `port` for
    /// `seconds`, and reports what reached the peer. The pod is deleted again (CNI DEL and its
    /// object) before returning.
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
        let meta = "metadata: {name: \(name), namespace: \(namespace), labels: \(Self.flow(labels))}\n"
        let spec = "spec: {nodeName: \(cluster.nodes[node].name)}\n"
        try cluster.applyEverywhere("apiVersion: v1\nkind: Pod\n" + meta + spec)

        let containerID = Self.containerID()
        let pod: TestCluster.Pod
        do {
            pod = try cluster.addPod(name, namespace: namespace, on: node, netns: ns, containerID: containerID)
        } catch {
            Glibc.close(release)
            throw error
        }
        // ADD returned: release the sender now, before anything else.
        _ = write(release, "g", 1)
        Glibc.close(release)
        // What a control plane does next: the pod's address in its status, on every node.
        try cluster.applyEverywhere("apiVersion: v1\nkind: Pod\n" + meta + spec + "status: {podIPs: [{ip: \(pod.ip)}]}\n")

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
        // Packets still in flight when the sender stopped: read until two counts 100 ms apart
        // agree (bounded).
        struct Counts: Decodable { var counts: [String: Int] }
        var last = -1, count = 0
        for _ in 0..<20 {
            count = try peerAgent.call(["op": "capture-count"], timeout: 5, as: Counts.self).counts[pod.ip] ?? 0
            if count == last { break }
            last = count
            usleep(100_000)
        }

        _ = try? cluster.nodes[node].cni.run("DEL", containerID: containerID, netns: ns.path,
                                            args: "K8S_POD_NAMESPACE=\(namespace);K8S_POD_NAME=\(name)")
        try? cluster.deleteEverywhere("apiVersion: v1\nkind: Pod\nmetadata: {name: \(name), namespace: \(namespace)}\n")
        return FirstPacketReport(podIP: pod.ip, sent: summary.sent, failed: summary.failed, connectAttempts: summary.connectAttempts,
                                 firstSendSeconds: summary.firstSendSeconds, packetsAtPeer: count)
    }
}
