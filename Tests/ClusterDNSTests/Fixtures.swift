import ClusterState
import IPAddressing
@testable import ClusterDNS

/// The CoreDNS handler_test fixture (shared/reference/dns.md §3), built in code.
enum Fixture {
    static func ip(_ s: String) -> IPAddress { IPAddress(s)! }

    static func service(_ name: String, ns: String = "testns", ips: [String] = [], headless: Bool = false,
                        ports: [ServicePort] = [], externalName: String? = nil) -> Service {
        Service(metadata: ObjectMeta(name: name, namespace: ns), type: externalName == nil ? .clusterIP : .externalName,
                clusterIPs: ips.map(ip), isHeadless: headless, ports: ports, externalName: externalName)
    }

    static func slice(_ name: String, service: String, ns: String = "testns", type: EndpointAddressType = .ipv4,
                      endpoints: [(String, String?, Bool)], ports: [EndpointPort] = []) -> EndpointSlice {
        EndpointSlice(metadata: ObjectMeta(name: name, namespace: ns, labels: [EndpointSlice.serviceNameLabel: service]),
                      addressType: type,
                      endpoints: endpoints.map { Endpoint(addresses: [ip($0.0)], conditions: EndpointConditions(ready: $0.2), hostname: $0.1) },
                      ports: ports)
    }

    static let http = [ServicePort(name: "http", protocol: .tcp, port: 80)]
    static let httpEP = [EndpointPort(name: "http", protocol: .tcp, port: 80)]

    static var objects: [ClusterObject] {
        [
            .service(service("svc1", ips: ["10.0.0.1"], ports: http)),
            .endpointSlice(slice("svc1-a", service: "svc1", endpoints: [("172.0.0.1", "ep1a", true)], ports: httpEP)),
            .service(service("svcempty", ips: ["10.0.0.1"], ports: http)),
            .service(service("svc6", ips: ["1234:abcd::1"], ports: http)),
            .service(service("svc-dual-stack", ips: ["10.0.0.3", "10::3"], ports: http)),
            .service(service("hdls1", headless: true, ports: http)),
            .endpointSlice(slice("hdls1-v4", service: "hdls1", endpoints: [
                ("172.0.0.2", nil, true), ("172.0.0.3", nil, true), ("172.0.0.4", "dup-name", true), ("172.0.0.5", "dup-name", true),
                ("172.0.0.9", "notready", false),
            ], ports: httpEP)),
            .endpointSlice(slice("hdls1-v6", service: "hdls1", type: .ipv6, endpoints: [("5678:abcd::1", nil, true), ("5678:abcd::2", nil, true)], ports: httpEP)),
            .service(service("hdlsprtls", headless: true)),
            .endpointSlice(slice("hdlsprtls-a", service: "hdlsprtls", endpoints: [("172.0.0.20", nil, true)])),
            .service(service("hdlsempty", headless: true, ports: http)),
            .service(service("external", externalName: "ext.interwebs.test")),
            .service(service("external-to-service", externalName: "svc1.testns.svc.cluster.local.")),
            .pod(Pod(metadata: ObjectMeta(name: "p1", namespace: "podns"), podIPs: [ip("10.240.0.1")])),
        ]
    }

    static func store(synced: Bool = true) async -> ClusterStore {
        let store = ClusterStore()
        await store.apply(objects.map(StoreChange.upsert))
        if synced { await store.markSynced() }
        return store
    }

    static func zone(podMode: PodRecordMode = .insecure, synced: Bool = true) async -> ClusterZone {
        let z = ClusterZone(configuration: DNSConfiguration(podMode: podMode))
        z.rebuild(from: await store(synced: synced).snapshot())
        return z
    }
}

extension ClusterZone {
    func ask(_ name: String, _ type: RRType, replica: Int = 0) -> ZoneResult? {
        resolve(DNSQuestion(name: DNSName(name)!, type: type), replica: replica)
    }
}

extension ZoneResult {
    /// Answer data as text, e.g. ["A 10.0.0.1"], for compact expectations.
    var answerText: [String] { answers.map(\.text) }
    var additionalText: [String] { additional.map(\.text) }
    var isNXDomain: Bool { rcode == .nxDomain && answers.isEmpty && authority.first?.type == .soa }
    var isNoData: Bool { rcode == .noError && answers.isEmpty && authority.first?.type == .soa }
}

extension DNSRecord {
    var text: String {
        switch data {
        case .a(let a): "A \(a)"
        case .aaaa(let a): "AAAA \(a)"
        case .cname(let n): "CNAME \(n)"
        case .ptr(let n): "PTR \(n)"
        case .ns(let n): "NS \(n)"
        case .srv(let p, let w, let port, let t): "SRV \(p) \(w) \(port) \(t)"
        case .txt(let s): "TXT " + s.map { String(decoding: $0, as: UTF8.self) }.joined(separator: " ")
        case .soa(let m, _, _, _, _, _, _): "SOA \(m)"
        default: "\(type)"
        }
    }
}
