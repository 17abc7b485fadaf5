// Helpers for the privileged tests: node namespaces with an underlay, the actor run as a
// task, polling with a deadline, and kernel read-backs.
import ClusterState
import Foundation
import IPAddressing
import Logging
import Netlink
import NodenetTestSupport
import Testing
@testable import NodeRoutes

let isRoot = getuid() == 0

/// A node namespace whose eth0 (a veth with its peer left in the same namespace, up) holds
/// `address`: next hops in its subnet are on-link without any other namespace.
func standaloneNode(_ label: String, address: String) throws -> TestNamespace {
    let ns = try TestNamespace(label)
    try Shell.check(["ip", "-n", ns.name, "link", "add", "eth0", "type", "veth", "peer", "name", "eth0p"])
    try Shell.check(["ip", "-n", ns.name, "addr", "add", address, "dev", "eth0"])
    try Shell.check(["ip", "-n", ns.name, "link", "set", "eth0p", "up"])
    try Shell.check(["ip", "-n", ns.name, "link", "set", "eth0", "up"])
    return ns
}

func makeNode(_ name: String, _ ip: String, _ cidr: String) -> Node {
    Node(metadata: ObjectMeta(name: name), podCIDRs: [IPPrefix(cidr)!], addresses: [NodeAddress(type: "InternalIP", address: ip)])
}

func store(_ nodes: [Node]) async -> ClusterStore {
    let s = ClusterStore()
    await s.apply(nodes.map { .upsert(.node($0)) })
    await s.markSynced()
    return s
}

/// A NodeRoutesActor running in a task, with one masquerade pass beside it as the agent runs
/// them (masquerade is a reconciler of its own); `stop()` cancels it (the dataplane stays).
final class RunningActor: Sendable {
    let actor: NodeRoutesActor
    let task: Task<Void, any Error>

    init(_ configuration: NodeRoutesConfiguration, store: ClusterStore) async throws {
        var logger = Logger(label: "test.noderoutes.\(configuration.nodeName)")
        logger.logLevel = .warning
        let a = NodeRoutesActor(configuration: configuration, store: store, logger: logger)
        actor = a
        task = Task { try await a.run() }
        try await waitFor("first reconcile of \(configuration.nodeName)", limit: .seconds(20)) { a.status.reconciled }
        let session = try configuration.namespace.map { try NetlinkSession(protocol: Netlink.netfilter, namespace: $0) }
            ?? NetlinkSession(protocol: Netlink.netfilter)
        let masquerade = Masquerade.reconcile(session: session, clusterCIDRs: configuration.clusterCIDRs)
        #expect(masquerade.objects.allSatisfy { $0.state == .inSync }, "masquerade: \(masquerade.objects)")
    }

    func stop() async {
        task.cancel()
        _ = try? await task.value
    }
}

struct Timeout: Error, CustomStringConvertible {
    var description: String
}

/// Polls `condition` every millisecond until it holds; returns how long that took, or throws
/// after `limit`.
@discardableResult
func waitFor(_ what: String, limit: Duration = .seconds(5), _ condition: () throws -> Bool) async throws -> Duration {
    let clock = ContinuousClock()
    let start = clock.now
    while clock.now - start < limit {
        if try condition() { return clock.now - start }
        try await Task.sleep(for: .milliseconds(1))
    }
    throw Timeout(description: "timed out after \(limit) waiting for \(what)")
}

func ms(_ d: Duration) -> Double {
    Double(d.components.seconds) * 1000 + Double(d.components.attoseconds) / 1e15
}

func nodenetRoutes(_ client: RouteClient) throws -> [IPPrefix: Route] {
    var out: [IPPrefix: Route] = [:]
    for r in try client.routes(protocol: RouteProtocol.nodenet) { out[r.destination] = r }
    return out
}

func sh(_ command: String) -> String {
    (try? Shell.run(["/bin/sh", "-c", command]).stdout) ?? ""
}
