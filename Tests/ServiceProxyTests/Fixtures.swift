import ClusterState
import IPAddressing
@testable import ServiceProxy

let nodeName = "node1"

let testConfig = ProxyConfiguration(
    nodeName: nodeName, nodeAddresses: [IPAddress("192.168.1.11")!], nodePortRange: 30000...32767,
    clusterCIDRs: [IPPrefix("10.244.0.0/16")!, IPPrefix("fd00:10:244::/56")!],
    serviceCIDRs: [IPPrefix("10.96.0.0/12")!])

func ip(_ s: String) -> IPAddress { IPAddress(s)! }

func service(_ name: String, ns: String = "ns1", type: ServiceType = .clusterIP, ips: [String] = ["10.96.0.10"],
             ports: [ServicePort] = [ServicePort(name: "http", port: 80, targetPort: .int(8080))],
             affinity: Int? = nil, etp: TrafficPolicy = .cluster, itp: TrafficPolicy = .cluster,
             externalIPs: [String] = [], ingress: [String] = [], sourceRanges: [String] = [],
             labels: [String: String]? = nil) -> Service {
    var s = Service(metadata: ObjectMeta(name: name, namespace: ns, labels: labels), type: type, clusterIPs: ips.map(ip),
                    ports: ports, selector: ["app": name], sessionAffinityTimeout: affinity,
                    externalTrafficPolicy: etp, internalTrafficPolicy: itp,
                    externalIPs: externalIPs.map(ip), loadBalancerIngress: ingress.map(ip),
                    loadBalancerSourceRanges: sourceRanges.map { IPPrefix($0)! })
    s.ipFamilies = s.clusterIPs.map(\.family)
    return s
}

struct EP {
    var ip: String
    var node: String = nodeName
    var ready = true
    var serving: Bool? = nil
    var terminating = false
}

func slice(_ service: String, ns: String = "ns1", name: String? = nil, family: EndpointAddressType = .ipv4,
           ports: [EndpointPort] = [EndpointPort(name: "http", port: 8080)], _ eps: [EP]) -> EndpointSlice {
    EndpointSlice(metadata: ObjectMeta(name: name ?? "\(service)-\(family.rawValue.lowercased())", namespace: ns,
                                       labels: [EndpointSlice.serviceNameLabel: service]),
                  addressType: family,
                  endpoints: eps.map {
                      Endpoint(addresses: [ip($0.ip)], conditions: EndpointConditions(ready: $0.ready, serving: $0.serving, terminating: $0.terminating),
                               nodeName: $0.node)
                  },
                  ports: ports)
}

/// A snapshot holding these objects (through a memory-only store, as the agent would).
func snapshot(_ services: [Service], _ slices: [EndpointSlice]) async -> ClusterSnapshot {
    let store = ClusterStore()
    await store.apply(services.map { .upsert(.service($0)) } + slices.map { .upsert(.endpointSlice($0)) })
    return await store.snapshot()
}

/// The rendered ruleset lines of one family, sorted (kube-proxy's tests compare the same way).
func lines(_ model: RulesetModel, _ family: TableFamily = .ip) -> [String] {
    var m = RulesetModel()
    m.tables[family] = model.tables[family]
    return NftRenderer().ruleset(m).split(separator: "\n").map(String.init).sorted()
}

/// The lines that mention a service (its chains, sets and map elements).
func serviceLines(_ model: RulesetModel, _ key: String, _ family: TableFamily = .ip) -> [String] {
    lines(model, family).filter { $0.contains(key) }
}

func desired(_ services: [Service], _ slices: [EndpointSlice], config: ProxyConfiguration = testConfig) async -> DesiredState {
    DesiredState(snapshot: await snapshot(services, slices), configuration: config)
}

/// The elements of one set or map as nft writes them (`key` or `key : value`), sorted.
func elements(_ model: RulesetModel, _ set: String, _ family: TableFamily = .ip) -> [String] {
    (model.tables[family]?.sets[set]?.elements ?? [:]).map { NftRenderer.element($0.key, $0.value) }.sorted()
}

/// Every element of the table as `set: element`, for services' golden comparisons.
func allElements(_ model: RulesetModel, _ family: TableFamily = .ip) -> [String] {
    (model.tables[family]?.sets ?? [:]).flatMap { name, set in set.elements.map { "\(name): " + NftRenderer.element($0.key, $0.value) } }.sorted()
}
