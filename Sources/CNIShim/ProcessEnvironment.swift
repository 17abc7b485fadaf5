#if canImport(Glibc)
import Glibc
#endif

/// The process environment without Foundation (the shim's start-up stays lean).
public enum ProcessEnvironment {
    public static func get(_ name: String) -> String? {
        getenv(name).map { String(cString: $0) }
    }

    /// Every variable, for forwarding a CNI request.
    public static func all() -> [String: String] {
        var out: [String: String] = [:]
        var p = environ
        while let entry = p.pointee {
            let s = String(cString: entry)
            if let eq = s.firstIndex(of: "=") { out[String(s[..<eq])] = String(s[s.index(after: eq)...]) }
            p += 1
        }
        return out
    }
}
