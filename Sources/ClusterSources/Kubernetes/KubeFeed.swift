import AsyncHTTPClient
import ClusterState
import Foundation
import Logging
import NIOCore
import NIOSSL

public struct KubeAPIError: Error, CustomStringConvertible, Sendable {
    public var resource: String
    public var status: UInt?
    public var message: String
    public var description: String {
        "Kubernetes API \(resource): " + (status.map { "HTTP \($0): " } ?? "") + message
    }
}

/// GETs against the API server with its credentials.
struct KubeAPI: Sendable {
    let connection: KubeConnection
    let tls: TLSConfiguration?
    let requestTimeout: Duration

    init(connection: KubeConnection, requestTimeout: Duration) throws {
        self.connection = connection
        tls = try connection.tlsConfiguration()
        self.requestTimeout = requestTimeout
    }

    func get(_ pathAndQuery: String, streaming: Bool) async throws -> HTTPClientResponse {
        var request = HTTPClientRequest(url: connection.server + pathAndQuery)
        request.tlsConfiguration = tls
        request.headers.add(name: "Accept", value: "application/json")
        request.headers.add(name: "User-Agent", value: "nodenet")
        if let token = connection.currentToken() { request.headers.add(name: "Authorization", value: "Bearer \(token)") }
        return try await SourceHTTP.execute(request, timeout: requestTimeout, streaming: streaming)
    }
}

/// One API resource nodenet lists and watches.
struct KubeResource: Sendable {
    var kind: ObjectKind
    /// e.g. `/api/v1/nodes`.
    var path: String
    var fieldSelector: String?
    /// Served by a CRD that many clusters do not install: a 404 on the list means "none of
    /// them" (the feed counts as listed, so the first sync and readiness do not wait for it),
    /// and the list is tried again now and then so installing the CRD later starts the watch.
    var optional = false

    static func standard(podsOnNode node: String?) -> [KubeResource] {
        [
            KubeResource(kind: .node, path: "/api/v1/nodes"),
            KubeResource(kind: .service, path: "/api/v1/services"),
            KubeResource(kind: .endpointSlice, path: "/apis/discovery.k8s.io/v1/endpointslices"),
            KubeResource(kind: .pod, path: "/api/v1/pods", fieldSelector: node.map { "spec.nodeName=\($0)" }),
            // Policy selection: namespace labels (namespaceSelector) and the policies themselves.
            KubeResource(kind: .namespace, path: "/api/v1/namespaces"),
            KubeResource(kind: .networkPolicy, path: "/apis/networking.k8s.io/v1/networkpolicies"),
            // The cluster-wide tiers: a CRD (sig-network's network-policy-api), often absent.
            KubeResource(kind: .clusterNetworkPolicy, path: "/apis/policy.networking.k8s.io/v1alpha2/clusternetworkpolicies", optional: true),
        ]
    }
}

/// The Kubernetes half of the reconciler, for one resource: paged list, then watch from the
/// list's resourceVersion with bookmarks.
struct KubeFeed: Feed {
    let api: KubeAPI
    let resource: KubeResource
    let logger: Logger
    var pageSize = 500
    /// Server-side watch timeout: the stream ends cleanly after it and is started again.
    var watchTimeoutSeconds = 300

    var name: String { resource.path.split(separator: "/").last.map(String.init) ?? resource.path }
    var kinds: [ObjectKind] { [resource.kind] }
    var endpoint: String { api.connection.server }

    func owns(_ object: ClusterObject) -> Bool {
        guard object.kind == resource.kind else { return false }
        if case .endpointSlice(let s) = object, s.metadata.label(EndpointSlice.managedByLabel) == EndpointsController.managerName { return false }
        return true
    }

    private func query(_ items: [(String, String?)]) -> String {
        var allowed = CharacterSet.urlQueryAllowed
        allowed.remove(charactersIn: "&=+,")
        let parts = items.compactMap { k, v in v.map { "\(k)=\($0.addingPercentEncoding(withAllowedCharacters: allowed) ?? $0)" } }
        return parts.isEmpty ? "" : "?" + parts.joined(separator: "&")
    }

    /// Pages of `pageSize` items (`limit`/`continue`, one consistent list on the server),
    /// each handed over as it is decoded. An expired continue token lists from the start
    /// again, and the first page of that says so (`restart`).
    func list(page: (FeedPage) async throws -> Void) async throws -> String {
        var token: String?
        var restarts = 0
        var restart = false
        while true {
            let q = query([("limit", String(pageSize)), ("continue", token), ("fieldSelector", resource.fieldSelector)])
            let response = try await api.get(resource.path + q, streaming: false)
            let data = try await SourceHTTP.collect(response)
            if response.status.code == 410, token != nil, restarts < 3 {
                // The continue token expired between pages: list again from the start.
                logger.info("\(name): continue token expired, listing from the start")
                token = nil; restarts += 1; restart = true
                continue
            }
            if response.status.code == 404, resource.optional {
                // The API server does not serve the resource (its CRD is not installed): none.
                throw FeedResourceAbsent(reason: "\(resource.path) is not served (HTTP 404: CRD not installed?)")
            }
            guard response.status == .ok else { throw error(response.status.code, data) }
            let decoded = try decodeList(data)
            try await page(FeedPage(objects: decoded.objects, skippedNotes: decoded.notes, restart: restart))
            restart = false
            guard let next = decoded.continueToken, !next.isEmpty else {
                guard let rv = decoded.resourceVersion else { throw KubeAPIError(resource: resource.path, message: "the list has no resourceVersion") }
                return rv
            }
            token = next
        }
    }

    func watch(from resume: String) async throws -> AsyncThrowingStream<FeedEvent, any Error> {
        let q = query([("watch", "1"), ("resourceVersion", resume), ("allowWatchBookmarks", "true"),
                       ("timeoutSeconds", String(watchTimeoutSeconds)), ("fieldSelector", resource.fieldSelector)])
        let response = try await api.get(resource.path + q, streaming: true)
        if response.status.code == 410 {
            return AsyncThrowingStream { $0.yield(.expired("HTTP 410 Gone for resourceVersion \(resume)")); $0.finish() }
        }
        if response.status.code == 404, resource.optional {
            // The CRD was deleted: list again, which finds it absent (not an error).
            return AsyncThrowingStream { $0.yield(.expired("HTTP 404: \(resource.path) is no longer served")); $0.finish() }
        }
        guard response.status == .ok else { throw error(response.status.code, try await SourceHTTP.collect(response, limit: 1 << 20)) }
        let docs = SourceHTTP.documents(response)
        return relay { continuation in
            for try await doc in docs {
                for event in try translate(doc) {
                    try continuation.yield(event)
                    if case .expired = event { return }
                }
            }
        }
    }

    /// One watch event to feed events (none for events ignored; a skipped object is named
    /// before the change that removes it).
    func translate(_ doc: Data) throws -> [FeedEvent] {
        try translate(doc, as: modelType)
    }

    /// The model type of this resource (opened as the generic parameter where it is used).
    private var modelType: any Decodable.Type {
        switch resource.kind {
        case .node: Node.self
        case .service: Service.self
        case .endpointSlice: EndpointSlice.self
        case .pod: Pod.self
        case .networkPolicy: NetworkPolicy.self
        case .clusterNetworkPolicy: ClusterNetworkPolicy.self
        default: Namespace.self
        }
    }

    private func translate<T: Decodable>(_ doc: Data, as: T.Type) throws -> [FeedEvent] {
        let event: KubeWatchEvent<T>
        do {
            event = try JSONDecoder().decode(KubeWatchEvent<T>.self, from: doc)
        } catch {
            throw KubeAPIError(resource: resource.path, message: "unreadable watch event: \(error)")
        }
        let meta = event.partial.metadata
        let rv = meta?.resourceVersion
        switch event.type {
        case "BOOKMARK":
            return [.progress(resume: rv)]
        case "ERROR":
            if event.partial.code == 410 { return [.expired("watch ERROR 410 \(event.partial.reason ?? ""): \(event.partial.message ?? "")")] }
            throw KubeAPIError(resource: resource.path, status: event.partial.code.map(UInt.init), message: event.partial.message ?? "watch error")
        case "ADDED", "MODIFIED", "DELETED":
            guard let rv else { throw KubeAPIError(resource: resource.path, message: "\(event.type) event without resourceVersion") }
            let key = objectKey(meta)
            switch event.object.result {
            case .success(let value):
                guard let object = storeObject(resource.kind, value) else { return [] }
                return [.changes([event.type == "DELETED" ? .delete(object.key) : .upsert(object)], resume: rv)]
            case .failure(let error):
                let note = "\(key.map { "\($0)" } ?? "an object"): \(describe(error))"
                logger.warning("\(name): skipping \(note)")
                // A deletion still removes it; an update that no longer decodes removes it too
                // (what a re-list would do).
                return [.skipped(note), .changes(key.map { [.delete($0)] } ?? [], resume: rv)]
            }
        default:
            logger.warning("\(name): ignoring watch event of type \(event.type)")
            return []
        }
    }

    private func objectKey(_ meta: PartialObject.Meta?) -> ObjectKey? {
        guard let name = meta?.name else { return nil }
        return resource.kind.isNamespaced ? ObjectKey(resource.kind, namespace: meta?.namespace ?? "default", name: name)
            : ObjectKey(resource.kind, name: name)
    }

    struct Page {
        var objects: [ClusterObject]
        var skipped: Int
        var notes: [String] = []
        var resourceVersion: String?
        var continueToken: String?
    }

    func decodeList(_ data: Data) throws -> Page {
        try decodeList(data, as: modelType)
    }

    private func decodeList<T: Decodable>(_ data: Data, as: T.Type) throws -> Page {
        let list: KubeList<T>
        do {
            list = try JSONDecoder().decode(KubeList<T>.self, from: data)
        } catch {
            throw KubeAPIError(resource: resource.path, message: "unreadable list: \(error)")
        }
        var page = Page(objects: [], skipped: 0, resourceVersion: list.metadata?.resourceVersion, continueToken: list.metadata?.continue)
        for item in list.items {
            switch item.object.result {
            case .success(let value):
                if let object = storeObject(resource.kind, value) { page.objects.append(object) }
            case .failure(let error):
                page.skipped += 1
                let key = objectKey(item.partial?.metadata)
                let note = "\(key.map { "\($0)" } ?? "an object"): \(describe(error))"
                page.notes.append(note)
                logger.warning("\(name): skipping \(note)")
            }
        }
        return page
    }

    private func describe(_ error: any Error) -> String {
        guard let d = error as? DecodingError else { return "\(error)" }
        /// The field's path inside the object ("spec.ingress[0].from[1]"), without the list or
        /// watch envelope around it ("items[3]", "object").
        func path(_ keys: [any CodingKey]) -> String {
            var keys = keys[...]
            if keys.first?.stringValue == "items", keys.dropFirst().first?.intValue != nil { keys = keys.dropFirst(2) }
            else if keys.first?.stringValue == "object" { keys = keys.dropFirst() }
            var s = ""
            for k in keys {
                if let i = k.intValue { s += "[\(i)]" } else { s += (s.isEmpty ? "" : ".") + k.stringValue }
            }
            return s
        }
        switch d {
        case .dataCorrupted(let c): return "\(path(c.codingPath)): \(c.debugDescription)"
        case .keyNotFound(let k, let c): return "\(path(c.codingPath + [k])): is required"
        case .typeMismatch(_, let c), .valueNotFound(_, let c): return "\(path(c.codingPath)): \(c.debugDescription)"
        @unknown default: return "\(error)"
        }
    }

    private func error(_ status: UInt, _ data: Data) -> KubeAPIError {
        let s = try? JSONDecoder().decode(PartialObject.self, from: data)
        return KubeAPIError(resource: resource.path, status: status, message: s?.message ?? String(decoding: data.prefix(300), as: UTF8.self))
    }
}
