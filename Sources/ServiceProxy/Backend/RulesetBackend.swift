/// Where rules go. The netlink encoder (nf_tables over nfnetlink batches) implements this;
/// `NftCommandBackend` is the `nft -f` fallback used by tests.
public protocol RulesetBackend: Sendable {
    /// Applies every operation in ONE transaction: all or nothing.
    func apply(_ ops: [RulesetOperation]) async throws(BackendError)
    /// What the kernel holds now in nodenet's tables (nil: neither table exists). Backends that
    /// cannot decode rules return chains with `rules == nil`.
    func currentState() async throws(BackendError) -> RulesetModel?
    /// Deletes conntrack entries matching the filters (stale UDP flows); returns how many.
    @discardableResult
    func deleteConntrack(_ filters: [ConntrackFilter]) async throws(BackendError) -> Int
    /// True when rules using a `typeof` map can only be written together with the map's
    /// declaration (the `nft -f` backend; see `RulesetDiff.operations(recreatingTypeofMaps:)`).
    var recreatesTypeofMaps: Bool { get }
    /// Fails, naming the feature, when the kernel lacks something the ruleset shape needs.
    func checkKernelFeatures() async throws(BackendError)
}

extension RulesetBackend {
    public var recreatesTypeofMaps: Bool { false }
    public func checkKernelFeatures() async throws(BackendError) {}
}

public struct BackendError: Error, CustomStringConvertible, Sendable {
    public var operation: String
    public var message: String
    /// The first lines of the failed transaction (what to look at).
    public var context: String

    public init(operation: String, message: String, context: String = "") {
        self.operation = operation
        self.message = message
        self.context = context
    }

    public var description: String {
        "\(operation) failed: \(message)" + (context.isEmpty ? "" : " [\(context)]")
    }
}
