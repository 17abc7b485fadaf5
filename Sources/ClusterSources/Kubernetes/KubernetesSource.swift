import ClusterState
import Logging

public struct KubernetesSourceConfiguration: Sendable {
    public var connection: KubeConnection
    public var nodeName: String
    /// All pods (pod DNS records, endpoints of every node) or only this node's
    /// (`spec.nodeName=<node>`), which is enough when pod records are not served.
    public var allPods: Bool
    public var requestTimeout: Duration
    /// Server-side watch timeout; the watch is then started again from where it was.
    public var watchTimeoutSeconds: Int
    /// A watch with no event or bookmark for this long is restarted.
    public var stallBound: Duration
    /// Items per list page (`limit`); the rest come with `continue`.
    public var pageSize: Int
    /// How often a resource the API server does not serve (the ClusterNetworkPolicy CRD not
    /// installed) is listed again, so installing it later starts its watch.
    public var absentRecheck: Duration = .seconds(60)

    public init(connection: KubeConnection, nodeName: String, allPods: Bool = true, requestTimeout: Duration = .seconds(30),
                watchTimeoutSeconds: Int = 300, stallBound: Duration? = nil, pageSize: Int = 500) {
        self.pageSize = pageSize
        self.connection = connection
        self.nodeName = nodeName
        self.allPods = allPods
        self.requestTimeout = requestTimeout
        self.watchTimeoutSeconds = watchTimeoutSeconds
        self.stallBound = stallBound ?? .seconds(watchTimeoutSeconds + 60)
    }
}

/// Feeds the store from the Kubernetes API: Nodes, Services, EndpointSlices, Pods, Namespaces,
/// NetworkPolicies and ClusterNetworkPolicies, each listed, applied as a difference, and watched
/// from the list's resourceVersion. The store is marked synced once all of them have listed
/// (a ClusterNetworkPolicy CRD that is not installed counts as an empty list, checked again
/// every `absentRecheck`).
public final class KubernetesSource: Sendable {
    public let configuration: KubernetesSourceConfiguration
    private let store: ClusterStore
    private let logger: Logger
    private let feeds: [KubeFeed]
    private let tracker: StatusTracker

    public init(configuration: KubernetesSourceConfiguration, store: ClusterStore,
                logger: Logger = Logger(label: "nodenet.kubernetes")) throws {
        self.configuration = configuration
        self.store = store
        self.logger = logger
        let api = try KubeAPI(connection: configuration.connection, requestTimeout: configuration.requestTimeout)
        feeds = KubeResource.standard(podsOnNode: configuration.allPods ? nil : configuration.nodeName).map {
            KubeFeed(api: api, resource: $0, logger: logger, pageSize: configuration.pageSize,
                     watchTimeoutSeconds: configuration.watchTimeoutSeconds)
        }
        tracker = StatusTracker(kind: "kubernetes", feeds: feeds.map(\.name))
        tracker.update { $0.endpoint = configuration.connection.server }
    }

    /// Lists and watches every resource until cancelled; failures are retried with backoff.
    public func run() async throws {
        await withTaskGroup(of: Void.self) { group in
            for feed in feeds {
                var reconciler = Reconciler(feed: feed, store: store, tracker: tracker, logger: logger, stallBound: configuration.stallBound)
                reconciler.absentRecheck = configuration.absentRecheck
                group.addTask { await reconciler.run() }
            }
        }
    }

    public var status: SourceStatus { tracker.status }

    public func waitForFirstSync(timeout: Duration) async -> Bool {
        await tracker.waitForFirstSync(timeout: timeout)
    }
}
