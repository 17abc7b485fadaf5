import Foundation
import Yams

/// Why a manifest was refused. Names the document (1-based, in file order) and the field.
public struct ManifestError: Error, CustomStringConvertible, Sendable, Equatable {
    public var document: Int
    /// "Service apps/web" when the document got that far.
    public var object: String?
    public var field: String?
    public var message: String

    public init(document: Int, object: String? = nil, field: String? = nil, message: String) {
        self.document = document
        self.object = object
        self.field = field
        self.message = message
    }

    public var description: String {
        var s = "document \(document)"
        if let object { s += " (\(object))" }
        if let field, !field.isEmpty { s += ": \(field)" }
        return s + ": " + message
    }
}

/// Decodes Kubernetes manifests (YAML or JSON; several documents; `kind: List` with items)
/// into validated store objects. All or nothing: the first invalid document fails the whole call.
public enum ManifestDecoder {
    /// Decodes every document in `text`. Empty documents are skipped.
    public static func decode(_ text: String) throws(ManifestError) -> [ClusterObject] {
        if let objects = decodeJSON(text) { return objects }
        return try decodeYAML(text)
    }

    /// The fast path for JSON (what `kubectl get -o json` and generators write): one object or
    /// a `List`, decoded straight from the bytes by JSONDecoder, without building a YAML node
    /// tree and guessing each scalar's type (which cost most of an apply's CPU). Nil when the
    /// text is not one JSON object or anything in it fails: the YAML path (a superset: JSON is
    /// YAML) then decodes it and reports errors exactly as always, so only bad input pays twice.
    static func decodeJSON(_ text: String) -> [ClusterObject]? {
        guard text.utf8.first(where: { $0 != 0x20 && $0 != 0x0a && $0 != 0x0d && $0 != 0x09 }) == UInt8(ascii: "{") else { return nil }
        return try? JSONDecoder().decode(JSONDocument.self, from: Data(text.utf8)).objects
    }

    /// One JSON document: an object, or a list (`kind: List` or `<Kind>List`) of them.
    private struct JSONDocument: Decodable {
        var objects: [ClusterObject]

        struct Item: Decodable {
            var object: ClusterObject
            init(from decoder: any Decoder) throws {
                let kind = try ManifestDecoder.objectKind(try TypeMeta(from: decoder), document: 1)
                object = try ManifestDecoder.decodeKind(kind) { try $0.init(from: decoder) }
            }
        }

        init(from decoder: any Decoder) throws {
            let meta = try TypeMeta(from: decoder)
            if let kind = meta.kind, kind.hasSuffix("List") {
                let c = try decoder.container(keyedBy: AnyKey.self)
                objects = try c.decode([Item].self, forKey: AnyKey("items")).map(\.object)
            } else {
                objects = [try Item(from: decoder).object]
            }
        }
    }

    static func decodeYAML(_ text: String) throws(ManifestError) -> [ClusterObject] {
        let nodes = try parseDocuments(text)
        var out: [ClusterObject] = []
        var index = 0
        for node in nodes {
            index += 1
            if case .scalar(let s) = node, s.string.isEmpty || s.tag == Tag(.null) { continue }
            guard case .mapping = node else {
                throw ManifestError(document: index, message: "expected an object with apiVersion and kind")
            }
            // kubectl-style lists: expand items in place.
            if let kind = node["kind"]?.string, kind == "List" || kind.hasSuffix("List") {
                guard let items = node["items"]?.sequence else {
                    throw ManifestError(document: index, field: "items", message: "a \(kind) needs items")
                }
                for item in items { out.append(try decodeOne(item, document: index)) }
                continue
            }
            out.append(try decodeOne(node, document: index))
        }
        return out
    }

    /// Every document's tree, or the parser's error naming the document it stopped in.
    /// `compose_all` is lazy and its iterator ends quietly on a parse error (the error is
    /// left on the sequence), so the documents before a syntax error would pass for the
    /// whole file: the sequence's error is checked after the last document.
    static func parseDocuments(_ text: String) throws(ManifestError) -> [Yams.Node] {
        var documents: YamlSequence<Yams.Node>
        do {
            documents = try Yams.compose_all(yaml: text)
        } catch {
            throw ManifestError(document: 1, message: "not valid YAML or JSON: \(error)")
        }
        var nodes: [Yams.Node] = []
        while let node = documents.next() { nodes.append(node) }
        if let error = documents.error {
            throw ManifestError(document: nodes.count + 1, message: "not valid YAML or JSON: \(error)")
        }
        return nodes
    }

    /// Decodes one object from Kubernetes JSON (the watch/list wire format). One parse: the
    /// type (apiVersion, kind) and the object are read from the same decoder (it parsed twice,
    /// once for the type and once for the object, which was most of an etcd list's CPU).
    public static func decode(json: Data, document: Int = 1) throws(ManifestError) -> ClusterObject {
        let seen = KindSeen()
        let decoder = JSONDecoder()
        decoder.userInfo[KindSeen.key] = seen
        do {
            return try decoder.decode(OneObject.self, from: json).object
        } catch let e as ManifestError {
            throw ManifestError(document: document, object: e.object, field: e.field, message: e.message)
        } catch {
            guard let kind = seen.kind else {
                throw ManifestError(document: document, message: "not valid JSON: \(describe(error))")
            }
            throw describeFailure(error, document: document, kind: kind, name: nil)
        }
    }

    /// Where `OneObject` leaves the kind it found, so a failure after that is reported as
    /// the kind's (field path and all), one before it as JSON that is not an object.
    private final class KindSeen: @unchecked Sendable {
        // @unchecked: written and read on the one thread running one decode call.
        static let key = CodingUserInfoKey(rawValue: "nodenet.kindSeen")!
        var kind: ObjectKind?
    }

    private struct OneObject: Decodable {
        var object: ClusterObject
        init(from decoder: any Decoder) throws {
            let kind = try ManifestDecoder.objectKind(try TypeMeta(from: decoder), document: 1)
            (decoder.userInfo[KindSeen.key] as? KindSeen)?.kind = kind
            object = try ManifestDecoder.decodeKind(kind) { try $0.init(from: decoder) }
        }
    }

    static func decodeOne(_ node: Yams.Node, document: Int) throws(ManifestError) -> ClusterObject {
        let meta = TypeMeta(apiVersion: node["apiVersion"]?.string, kind: node["kind"]?.string)
        let kind = try objectKind(meta, document: document)
        let name = node["metadata"]?["name"]?.string
        let namespace = node["metadata"]?["namespace"]?.string
        do {
            return try decodeKind(kind) { try YAMLDecoder().decode($0, from: node) }
        } catch {
            let label = name.map { kind.isNamespaced ? "\(namespace ?? "default")/\($0)" : $0 }
            throw describeFailure(error, document: document, kind: kind, name: label)
        }
    }

    static func objectKind(_ meta: TypeMeta, document: Int) throws(ManifestError) -> ObjectKind {
        guard let kindText = meta.kind else { throw ManifestError(document: document, field: "kind", message: "kind is required") }
        guard let kind = ObjectKind(rawValue: kindText), ObjectKind.manifestKinds.contains(kind) else {
            throw ManifestError(document: document, field: "kind",
                                message: "unsupported kind \"\(kindText)\" (nodenet accepts Namespace, Node, Service, EndpointSlice, Pod, NetworkPolicy, ClusterNetworkPolicy)")
        }
        guard let api = meta.apiVersion else {
            throw ManifestError(document: document, field: "apiVersion", message: "apiVersion is required")
        }
        guard api == kind.apiVersion else {
            throw ManifestError(document: document, field: "apiVersion", message: "\(kind.rawValue) must have apiVersion \(kind.apiVersion), not \(api)")
        }
        return kind
    }

    static func decodeKind(_ kind: ObjectKind, _ decode: (any Decodable.Type) throws -> any Decodable) throws -> ClusterObject {
        switch kind {
        case .node: return .node(try decode(Node.self) as! Node)
        case .service: return .service(try decode(Service.self) as! Service)
        case .endpointSlice: return .endpointSlice(try decode(EndpointSlice.self) as! EndpointSlice)
        case .pod: return .pod(try decode(Pod.self) as! Pod)
        case .namespace: return .namespace(try decode(Namespace.self) as! Namespace)
        case .networkPolicy: return .networkPolicy(try decode(NetworkPolicy.self) as! NetworkPolicy)
        case .clusterNetworkPolicy: return .clusterNetworkPolicy(try decode(ClusterNetworkPolicy.self) as! ClusterNetworkPolicy)
        case .attachment, .lease: preconditionFailure("not a manifest kind")
        }
    }

    private static func describeFailure(_ error: any Error, document: Int, kind: ObjectKind, name: String?) -> ManifestError {
        let object = name.map { "\(kind.rawValue) \($0)" } ?? kind.rawValue
        guard let d = error as? DecodingError else {
            return ManifestError(document: document, object: object, message: "\(error)")
        }
        let (path, message) = explain(d)
        return ManifestError(document: document, object: object, field: path, message: message)
    }

    /// DecodingError as "field.path" and a sentence.
    static func explain(_ error: DecodingError) -> (String, String) {
        func path(_ keys: [any CodingKey]) -> String {
            var s = ""
            for k in keys {
                if let i = k.intValue { s += "[\(i)]" } else { s += (s.isEmpty ? "" : ".") + k.stringValue }
            }
            return s
        }
        switch error {
        case .dataCorrupted(let c): return (path(c.codingPath), c.debugDescription)
        case .keyNotFound(let k, let c): return (path(c.codingPath + [k]), "is required")
        case .typeMismatch(let t, let c): return (path(c.codingPath), "expected \(typeName(t))")
        case .valueNotFound(let t, let c): return (path(c.codingPath), "expected \(typeName(t)), found null")
        @unknown default: return ("", "\(error)")
        }
    }

    private static func typeName(_ t: Any.Type) -> String {
        switch t {
        case is String.Type: "a string"
        case is Int.Type, is UInt16.Type: "a number"
        case is Bool.Type: "true or false"
        default: "\(t)".contains("Array") ? "a list" : (("\(t)".contains("Dictionary")) ? "a map" : "an object")
        }
    }

    private static func describe(_ error: any Error) -> String {
        if let d = error as? DecodingError { return explain(d).1 }
        return "\(error)"
    }
}

/// Encoding objects back to their Kubernetes JSON shape (persistence, etcd, `nodenet get`).
public enum ObjectCoding {
    public static func encode(_ object: ClusterObject) throws -> Data {
        let e = JSONEncoder()
        e.outputFormatting = [.sortedKeys]
        switch object {
        case .node(let o): return try e.encode(o)
        case .service(let o): return try e.encode(o)
        case .endpointSlice(let o): return try e.encode(o)
        case .pod(let o): return try e.encode(o)
        case .namespace(let o): return try e.encode(o)
        case .networkPolicy(let o): return try e.encode(o)
        case .clusterNetworkPolicy(let o): return try e.encode(o)
        case .attachment(let o): return try e.encode(o)
        case .lease(let o): return try e.encode(o)
        }
    }

    public static func decode(kind: ObjectKind, _ data: Data) throws -> ClusterObject {
        let d = JSONDecoder()
        switch kind {
        case .node: return .node(try d.decode(Node.self, from: data))
        case .service: return .service(try d.decode(Service.self, from: data))
        case .endpointSlice: return .endpointSlice(try d.decode(EndpointSlice.self, from: data))
        case .pod: return .pod(try d.decode(Pod.self, from: data))
        case .namespace: return .namespace(try d.decode(Namespace.self, from: data))
        case .networkPolicy: return .networkPolicy(try d.decode(NetworkPolicy.self, from: data))
        case .clusterNetworkPolicy: return .clusterNetworkPolicy(try d.decode(ClusterNetworkPolicy.self, from: data))
        case .attachment: return .attachment(try d.decode(PodAttachment.self, from: data))
        case .lease: return .lease(try d.decode(SubnetLease.self, from: data))
        }
    }
}
