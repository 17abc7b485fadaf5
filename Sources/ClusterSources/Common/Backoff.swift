/// Exponential backoff with jitter, so a fleet of agents that lost etcd or the API server at
/// the same moment does not reconnect in lockstep.
public struct Backoff: Sendable {
    public var initial: Duration
    public var maximum: Duration
    private var current: Duration

    /// The default bound (5 s) keeps recovery after a long outage quick: the delay never grows
    /// past what a source takes to notice its server is back; jitter keeps a fleet apart.
    public init(initial: Duration = .milliseconds(200), maximum: Duration = .seconds(5)) {
        self.initial = initial
        self.maximum = maximum
        self.current = initial
    }

    /// The next delay: uniformly random in [d/2, d] where d doubles each call up to `maximum`.
    public mutating func next() -> Duration {
        let d = current
        current = min(current * 2, maximum)
        let ms = max(1, Int(d / .milliseconds(1)))
        return .milliseconds(Int.random(in: (ms / 2)...ms))
    }

    /// After a success: the next failure starts small again.
    public mutating func reset() { current = initial }
}
