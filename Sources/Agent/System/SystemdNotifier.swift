import CSystemd
import Foundation

/// The sd_notify protocol through libsystemd. Without `NOTIFY_SOCKET` (not under systemd)
/// every call is a cheap no-op, which is what libsystemd does too.
public struct SystemdNotifier: Sendable {
    public init() {}

    public var isEnabled: Bool { ProcessInfo.processInfo.environment["NOTIFY_SOCKET"] != nil }

    @discardableResult
    public func notify(_ state: String) -> Bool {
        sd_notify(0, state) > 0
    }

    public func ready(status: String) { notify("READY=1\nSTATUS=\(status)") }
    public func status(_ line: String) { notify("STATUS=\(line)") }
    public func stopping() { notify("STOPPING=1") }
    public func reloading() { notify("RELOADING=1") }
    public func watchdog() { notify("WATCHDOG=1") }

    /// The watchdog interval when the unit sets WatchdogSec (and it is meant for this process).
    public var watchdogInterval: Duration? {
        var usec: UInt64 = 0
        guard sd_watchdog_enabled(0, &usec) > 0, usec > 0 else { return nil }
        return .microseconds(Int64(usec))
    }
}
