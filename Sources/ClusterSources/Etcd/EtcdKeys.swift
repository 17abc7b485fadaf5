import ClusterState
import IPAddressing

/// Where nodenet keeps things in etcd, under one prefix (default `/nodenet`):
///
///     <prefix>/objects/<Kind>/<name>                 Node, Namespace, ClusterNetworkPolicy (cluster-scoped)
///     <prefix>/objects/<Kind>/<namespace>/<name>     Service, EndpointSlice, Pod, NetworkPolicy
///     <prefix>/subnets/<network>-<length>            a node's pod subnet, e.g. 10.244.3.0-24
///
/// Objects are stored as JSON in their Kubernetes shape (what `nodenet apply` accepts).
/// A subnet key holds `{"node": ..., "cidr": ...}` and, like that node's Node object, is
/// attached to the node's etcd lease: when the node stops renewing it, both disappear.
public struct EtcdKeys: Sendable, Hashable {
    /// Without a trailing slash.
    public let prefix: String

    public init(prefix: String = "/nodenet") {
        var p = prefix
        while p.hasSuffix("/") { p.removeLast() }
        self.prefix = p
    }

    public var objects: String { prefix + "/objects/" }
    public var subnets: String { prefix + "/subnets/" }

    public func key(for object: ObjectKey) -> String {
        object.kind.isNamespaced
            ? "\(objects)\(object.kind.rawValue)/\(object.namespace)/\(object.name)"
            : "\(objects)\(object.kind.rawValue)/\(object.name)"
    }

    /// The object key an etcd key names, nil for keys outside the layout.
    public func objectKey(_ key: String) -> ObjectKey? {
        guard key.hasPrefix(objects) else { return nil }
        let parts = key.dropFirst(objects.count).split(separator: "/", omittingEmptySubsequences: false).map(String.init)
        guard let kindName = parts.first, let kind = ObjectKind(rawValue: kindName), ObjectKind.manifestKinds.contains(kind) else { return nil }
        if kind.isNamespaced {
            guard parts.count == 3, !parts[1].isEmpty, !parts[2].isEmpty else { return nil }
            return ObjectKey(kind, namespace: parts[1], name: parts[2])
        }
        guard parts.count == 2, !parts[1].isEmpty else { return nil }
        return ObjectKey(kind, name: parts[1])
    }

    public func subnetKey(_ subnet: IPPrefix) -> String {
        "\(subnets)\(subnet.address)-\(subnet.length)"
    }
}
