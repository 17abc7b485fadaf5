import ClusterState
import Foundation
import Metrics
import NIOHTTP1

/// What `POST /v1/apply` and `/v1/delete` answer: one line per object, kubectl-style.
public struct ApplyResult: Codable, Sendable {
    public struct Item: Codable, Sendable {
        public var object: String
        /// created, configured, unchanged, deleted, not found
        public var action: String
    }

    public var dryRun: Bool
    public var items: [Item]
    public var storeVersion: UInt64
    /// When the store published this apply's change (CLOCK_MONOTONIC seconds; absent for a
    /// dry run, a no-op, or the etcd source, where the change comes back through the watch):
    /// lets a benchmark time the path from the store to the kernel alone (`bench/scale`).
    public var committedAt: Double?
}

/// Routes of the control API. Core routes live here; actors add theirs with `NodeAgent.route`.
///
///   GET  /healthz, /readyz          liveness and readiness (503 until READY)
///   GET  /v1/status                 the status document (`nodenet status --json`)
///   POST /v1/apply[?dryRun=true]    Kubernetes manifests (YAML or JSON) into the store
///   POST /v1/delete[?dryRun=true]   the same objects out of the store
///   GET  /v1/objects[?kind=K]       stored objects as a Kubernetes List
struct ControlAPI: Sendable {
    let agent: NodeAgent

    private static let applies = Counter(label: "nodenet_apply_requests_total")
    private static let applyErrors = Counter(label: "nodenet_apply_errors_total")

    func handle(_ request: ControlRequest) async -> ControlReply {
        let key = "\(request.method.rawValue) \(request.path)"
        // Probes and status answer while the stored objects load (status says so); everything
        // else reads or writes them, or belongs to an actor that starts after: it waits.
        if !["GET /healthz", "GET /readyz", "GET /v1/status"].contains(key) { await agent.waitForState() }
        if let extra = agent.routes.withLock({ $0[key] }) { return await extra(request) }
        switch key {
        case "GET /healthz", "GET /readyz":
            return Self.probe(request.path, board: agent.board)!
        case "GET /v1/status":
            return await statusReply()
        case "POST /v1/apply":
            return await write(request, delete: false)
        case "POST /v1/delete":
            return await write(request, delete: true)
        case "GET /v1/objects":
            return await objects(kind: request.query["kind"])
        default:
            let known = ["/healthz", "/readyz", "/v1/status", "/v1/apply", "/v1/delete", "/v1/objects"] + agent.routes.withLock { Array($0.keys) }
            if known.contains(where: { $0.hasSuffix(request.path) }) {
                return .error(.methodNotAllowed, "\(request.method.rawValue) is not allowed on \(request.path)")
            }
            return .error(.notFound, "no such endpoint: \(request.path)")
        }
    }

    /// Liveness (`/healthz`: the agent answers) and readiness (`/readyz`: 503 until every gating
    /// actor reconciled once, as READY=1), on the control socket and on the metrics listener
    /// (for HTTP probes and load balancers that cannot reach a unix socket); nil for other paths.
    static func probe(_ path: String, board: StatusBoard) -> ControlReply? {
        switch path {
        case "/healthz":
            return ControlReply(body: Array("ok\n".utf8), contentType: "text/plain")
        case "/readyz":
            return board.isReady ? ControlReply(body: Array("ready\n".utf8), contentType: "text/plain")
                : ControlReply(status: .serviceUnavailable, body: Array("waiting for \(board.waitingFor.joined(separator: ","))\n".utf8),
                               contentType: "text/plain")
        default:
            return nil
        }
    }

    private func statusReply() async -> ControlReply {
        let status = await agent.status()
        do {
            return ControlReply(body: Array(try AgentStatus.encoder().encode(status)) + [10])
        } catch {
            return .error(.internalServerError, "cannot encode status: \(error)")
        }
    }

    private func write(_ request: ControlRequest, delete: Bool) async -> ControlReply {
        Self.applies.increment()
        let config = agent.config
        guard config.source != .kubernetes else {
            Self.applyErrors.increment()
            return .error(.conflict, "this agent's source is kubernetes: change objects through the API server (kubectl), not nodenet \(delete ? "delete" : "apply")")
        }
        let remoteWrite = config.source == .etcd ? agent.remoteSource?.write : nil
        if config.source == .etcd, remoteWrite == nil {
            Self.applyErrors.increment()
            return .error(.serviceUnavailable, "the etcd source is still starting; try again")
        }
        let dryRun = request.query["dryRun"] == "true" || request.query["dryRun"] == ""
        let text = String(decoding: request.body, as: UTF8.self)
        var snapshot: ClusterSnapshot? = await agent.store.snapshot()
        let objects: [ClusterObject]
        do {
            let decoded = try ManifestDecoder.decode(text)
            guard !decoded.isEmpty else { return .error(.badRequest, "the manifest holds no objects") }
            objects = delete ? decoded : try Admission(serviceCIDRs: config.serviceCIDRs, nodePortRange: config.nodePortRange)
                .admit(decoded, in: snapshot!)
        } catch {
            Self.applyErrors.increment()
            return .error(.unprocessableEntity, error.description)
        }
        var items: [ApplyResult.Item] = []
        var changes: [StoreChange] = []
        for object in objects {
            let existing = snapshot![object.key]
            let action: String
            if delete {
                action = existing == nil ? "not found" : "deleted"
                changes.append(.delete(object.key))
            } else {
                action = existing == nil ? "created" : (existing == object ? "unchanged" : "configured")
                changes.append(.upsert(object))
            }
            items.append(.init(object: object.key.description, action: action))
        }
        var version = snapshot!.version
        var committedAt: Double?
        // Dropped before the commit: a snapshot still held while the store changes makes the
        // store copy each changed dictionary whole (every EndpointSlice: O(cluster) per apply).
        snapshot = nil
        if !dryRun {
            do {
                if let remoteWrite {
                    // etcd is the store of record: the change comes back through the watch.
                    try await remoteWrite(changes)
                    version = await agent.store.version
                } else {
                    (version, committedAt) = try await agent.store.commitTimed(changes)
                }
            } catch {
                Self.applyErrors.increment()
                return .error(.internalServerError, "nothing was applied: \(error)")
            }
            agent.logger.info(delete ? "manifest deleted" : "manifest applied", metadata: [
                "objects": "\(objects.count)", "storeVersion": "\(version)",
            ])
        }
        return .json(ApplyResult(dryRun: dryRun, items: items, storeVersion: version, committedAt: committedAt))
    }

    private func objects(kind: String?) async -> ControlReply {
        let snapshot = await agent.store.snapshot()
        var filter: ObjectKind?
        if let kind {
            guard let k = ObjectKind.allCases.first(where: { $0.rawValue.lowercased() == kind.lowercased() }) else {
                return .error(.badRequest, "unknown kind \(kind)")
            }
            filter = k
        }
        var items: [String] = []
        for object in snapshot.allObjects where filter == nil || object.kind == filter {
            guard let data = try? ObjectCoding.encode(object) else { continue }
            items.append(String(decoding: data, as: UTF8.self))
        }
        let body = "{\"apiVersion\":\"v1\",\"kind\":\"List\",\"items\":[" + items.joined(separator: ",") + "]}\n"
        return ControlReply(body: Array(body.utf8))
    }
}
