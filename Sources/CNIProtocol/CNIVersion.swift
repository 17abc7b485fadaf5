// Spec versions nodenet speaks. Results are written in the format of the config's version.

public enum CNIVersion: String, CaseIterable, Comparable, Sendable, Codable {
    case v0_1_0 = "0.1.0"
    case v0_2_0 = "0.2.0"
    case v0_3_0 = "0.3.0"
    case v0_3_1 = "0.3.1"
    case v0_4_0 = "0.4.0"
    case v1_0_0 = "1.0.0"
    case v1_1_0 = "1.1.0"

    public static let latest = CNIVersion.v1_1_0
    /// What ADD, DEL, CHECK, GC and STATUS accept and what VERSION reports. 0.1.0 and 0.2.0
    /// had a different result shape (ip4/ip6 objects) that no current runtime asks for.
    public static let supported: [CNIVersion] = [.v0_3_0, .v0_3_1, .v0_4_0, .v1_0_0, .v1_1_0]

    public var isSupported: Bool { Self.supported.contains(self) }

    /// CHECK appeared in 0.4.0; GC and STATUS in 1.1.0.
    public func allows(_ command: CNICommand) -> Bool {
        switch command {
        case .check: self >= .v0_4_0
        case .gc, .status: self >= .v1_1_0
        case .add, .del, .version: true
        }
    }

    private var order: Int { Self.allCases.firstIndex(of: self)! }
    public static func < (lhs: Self, rhs: Self) -> Bool { lhs.order < rhs.order }
}
