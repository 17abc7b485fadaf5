import ClusterState
import Foundation

// The Kubernetes API's list and watch envelopes. Items are decoded one by one so a single
// object nodenet cannot read is skipped (and named in the log) instead of failing the list.

/// Decodes T, keeping the failure instead of throwing it.
struct Lenient<T: Decodable>: Decodable {
    var result: Result<T, any Error>
    init(from decoder: any Decoder) throws {
        do { result = .success(try T(from: decoder)) } catch { result = .failure(error) }
    }
}

/// The parts of any object (or Status) that survive when the object itself does not decode.
struct PartialObject: Decodable {
    struct Meta: Decodable {
        var name: String?
        var namespace: String?
        var resourceVersion: String?
    }
    var kind: String?
    var metadata: Meta?
    /// Status objects (watch ERROR events).
    var code: Int?
    var reason: String?
    var message: String?
}

struct KubeList<T: Decodable>: Decodable {
    struct Meta: Decodable {
        var resourceVersion: String?
        var `continue`: String?
    }
    var metadata: Meta?
    var items: [Item]

    struct Item: Decodable {
        var object: Lenient<T>
        var partial: PartialObject?
        init(from decoder: any Decoder) throws {
            object = try Lenient<T>(from: decoder)
            partial = try? PartialObject(from: decoder)
        }
    }
}

struct KubeWatchEvent<T: Decodable>: Decodable {
    var type: String
    var object: Lenient<T>
    var partial: PartialObject
    enum CodingKeys: String, CodingKey { case type, object }
    init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        type = try c.decode(String.self, forKey: .type)
        object = try c.decode(Lenient<T>.self, forKey: .object)
        partial = try c.decode(PartialObject.self, forKey: .object)
    }
}

/// What the source keeps of a decoded object: the model type, minus resourceVersion, which
/// changes on every write (Node heartbeats included) and would make the store publish
/// changes that no actor cares about.
func storeObject(_ kind: ObjectKind, _ value: any Decodable) -> ClusterObject? {
    switch (kind, value) {
    case (.node, var o as Node): o.metadata.resourceVersion = nil; return .node(o)
    case (.service, var o as Service): o.metadata.resourceVersion = nil; return .service(o)
    case (.endpointSlice, var o as EndpointSlice): o.metadata.resourceVersion = nil; return .endpointSlice(o)
    case (.pod, var o as Pod): o.metadata.resourceVersion = nil; return .pod(o)
    case (.namespace, var o as Namespace): o.metadata.resourceVersion = nil; return .namespace(o)
    case (.networkPolicy, var o as NetworkPolicy): o.metadata.resourceVersion = nil; return .networkPolicy(o)
    case (.clusterNetworkPolicy, var o as ClusterNetworkPolicy): o.metadata.resourceVersion = nil; return .clusterNetworkPolicy(o)
    default: return nil
    }
}
