// Object keys matched the way Go's encoding/json matches them. Runtimes are Go programs, and
// what they inject into the plugin config (`runtimeConfig`, `args`) is marshalled from their own
// structs: containerd's CNI library sends port mappings as `{"HostPort":8080,"ContainerPort":80,
// "Protocol":"tcp","HostIP":""}` and the DNS capability as `{"Servers":[..],"Searches":[..],
// "Options":[..]}` (structs without JSON tags, so the Go field names). Go's decoder accepts any
// case for a field name, so every plugin written in Go does too; nodenet must read them alike.

/// Any string key, for containers whose keys are matched by `GoKeys`.
struct AnyCodingKey: CodingKey {
    var stringValue: String
    var intValue: Int? { nil }
    init(_ string: String) { stringValue = string }
    init?(stringValue: String) { self.stringValue = stringValue }
    init?(intValue: Int) { nil }
}

extension KeyedDecodingContainer where Key == AnyCodingKey {
    /// The key of this object that Go would decode into a field named `name`: the exact name
    /// when present, else the first key equal to it ignoring case (Go's `EqualFold`; ASCII and
    /// the simple Unicode case mappings, which `lowercased()` covers for field names).
    func goKey(_ name: String) -> AnyCodingKey? {
        if contains(AnyCodingKey(name)) { return AnyCodingKey(name) }
        let folded = name.lowercased()
        return allKeys.first { $0.stringValue.lowercased() == folded }
    }

    /// `decodeIfPresent` under Go's key matching. A JSON `null` is absent, as in Go.
    func goDecode<T: Decodable>(_ type: T.Type, _ name: String) throws -> T? {
        guard let key = goKey(name) else { return nil }
        return try decodeIfPresent(type, forKey: key)
    }
}
