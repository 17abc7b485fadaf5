import Foundation
import ServiceProxy
import Synchronization

/// The service proxy's health as kube-proxy's healthz server judges it: healthy once the rules
/// have been synced and while they keep being synced.
///
/// `observe` is fed the status the proxy pushes after each sync. The last success is the actor's
/// `lastSuccessfulSync`; a status without one (an older actor) is stamped when the success
/// counter moves. Failures are stamped when they start.
/// Healthy means:
/// - a sync has succeeded, and the last one is at most `fullSyncInterval + grace` old (the
///   proxy re-syncs at least every `fullSyncInterval`, so an older one means it is stuck);
/// - and the proxy is not failing for longer than `grace` (a failed sync is retried within a
///   second; one that keeps failing leaves the kernel behind the store).
public final class ProxyHealth: Sendable {
    struct State {
        var syncs = -1
        var failures = -1
        var lastSuccess: Date?
        var failingSince: Date?
        var nodeEligible = true
    }

    private let state = Mutex(State())

    public init() {}

    /// Notes a status read at `now`. A new actor (the proxy restarts when the node's zone
    /// changes) starts its counters at 0: only a change of the counter while in sync counts.
    public func observe(_ status: ServiceProxyStatus, at now: Date = Date()) {
        state.withLock { s in
            var success: Date?
            if let t = status.lastSuccessfulSync {
                success = Date(timeIntervalSince1970: t)
            } else if status.syncs != s.syncs, status.inSync, status.syncs > 0 {
                success = now
            }
            // Only a newer success counts: a replaced actor reports none until its first sync.
            if let success, success > (s.lastSuccess ?? .distantPast) {
                s.lastSuccess = success
                s.failingSince = nil
            }
            if status.failures != s.failures, !status.inSync, status.failures > 0 {
                s.failingSince = s.failingSince ?? now
            }
            s.syncs = status.syncs
            s.failures = status.failures
        }
    }

    /// Whether this node should take load balancer traffic: false while its Node object is
    /// being deleted (kube-proxy's `nodeEligible`, KEP-3836), so `/healthz` fails and load
    /// balancers drain the node before it goes; `/livez` ignores it.
    public func setNodeEligible(_ eligible: Bool) {
        state.withLock { $0.nodeEligible = eligible }
    }

    public struct Verdict: Sendable, Equatable {
        /// The rules are synced and recent (what `/livez` and the health check node ports use).
        public var healthy: Bool
        public var nodeEligible: Bool
        public var lastUpdated: Date?
        public var currentTime: Date
    }

    public func verdict(now: Date = Date(), fullSyncInterval: Duration, grace: Duration) -> Verdict {
        let s = state.withLock { $0 }
        let interval = Double(fullSyncInterval.components.seconds), g = Double(grace.components.seconds)
        var healthy = false
        if let last = s.lastSuccess {
            healthy = now.timeIntervalSince(last) <= interval + g
            if let failing = s.failingSince, now.timeIntervalSince(failing) > g { healthy = false }
        }
        return Verdict(healthy: healthy, nodeEligible: s.nodeEligible, lastUpdated: s.lastSuccess, currentTime: now)
    }
}

/// The JSON bodies of the health endpoints, in kube-proxy's shapes.
enum HealthBodies {
    /// `/healthz` and `/livez`: `{"lastUpdated": ..., "currentTime": ...}`, RFC 3339 UTC with
    /// milliseconds; lastUpdated is "" before the first sync (kube-proxy prints Go's zero time).
    /// `/healthz` adds `"nodeEligible"`, as kube-proxy's does.
    static func proxy(_ v: ProxyHealth.Verdict, eligibility: Bool) -> [UInt8] {
        let last = v.lastUpdated.map(timestamp) ?? ""
        let eligible = eligibility ? #", "nodeEligible": \#(v.nodeEligible)"# : ""
        return Array(#"{"lastUpdated": "\#(last)","currentTime": "\#(timestamp(v.currentTime))"\#(eligible)}"#.utf8) + [10]
    }

    /// A health check node port: the service, its local endpoint count and the proxy's health.
    static func service(_ t: HealthCheckTarget, proxyHealthy: Bool) -> [UInt8] {
        struct Body: Encodable {
            struct Name: Encodable { var namespace: String; var name: String }
            var service: Name
            var localEndpoints: Int
            var serviceProxyHealthy: Bool
        }
        let e = JSONEncoder()
        e.outputFormatting = [.sortedKeys]
        let body = Body(service: .init(namespace: t.service.namespace, name: t.service.name), localEndpoints: t.localEndpoints,
                        serviceProxyHealthy: proxyHealthy)
        return ((try? e.encode(body)).map(Array.init) ?? []) + [10]
    }

    static func timestamp(_ d: Date) -> String {
        let f = ISO8601DateFormatter()
        f.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        return f.string(from: d)
    }
}
