import IPAddressing
import NodenetTestSupport
import Testing
@testable import CNIProtocol

private let dnsJSON = #""dns":{"nameservers":["10.96.0.10"],"options":["ndots:5"],"search":["apps.svc.cluster.local","svc.cluster.local"]}"#
private let hostInterfacesJSON = #"{"mac":"0a:58:0a:f4:01:01","name":"nodenet0"},{"mac":"ee:11:22:33:44:55","name":"veth1a2b3c4d"}"#

@Suite struct CNIResultTests {
    @Test func golden110() throws {
        #expect(text(try sampleResult.json(for: .v1_1_0)) == #"{"cniVersion":"1.1.0",\#(dnsJSON),"interfaces":[\#(hostInterfacesJSON),{"mac":"0a:58:0a:f4:01:05","mtu":1450,"name":"eth0","sandbox":"/var/run/netns/cni-1234"}],"ips":[{"address":"10.244.1.5/24","gateway":"10.244.1.1","interface":2},{"address":"fd00:10:244:1::5/64","gateway":"fd00:10:244:1::1","interface":2}],"routes":[{"dst":"0.0.0.0/0","gw":"10.244.1.1"},{"dst":"::/0","gw":"fd00:10:244:1::1","mtu":1400,"priority":100}]}"#)
    }

    @Test func golden100DropsTheFieldsOf110() throws {
        #expect(text(try sampleResult.json(for: .v1_0_0)) == #"{"cniVersion":"1.0.0",\#(dnsJSON),"interfaces":[\#(hostInterfacesJSON),{"mac":"0a:58:0a:f4:01:05","name":"eth0","sandbox":"/var/run/netns/cni-1234"}],"ips":[{"address":"10.244.1.5/24","gateway":"10.244.1.1","interface":2},{"address":"fd00:10:244:1::5/64","gateway":"fd00:10:244:1::1","interface":2}],"routes":[{"dst":"0.0.0.0/0","gw":"10.244.1.1"},{"dst":"::/0","gw":"fd00:10:244:1::1"}]}"#)
    }

    @Test(arguments: [CNIVersion.v0_3_0, .v0_3_1, .v0_4_0])
    func goldenPre100AddsIPVersion(version: CNIVersion) throws {
        #expect(text(try sampleResult.json(for: version)) == #"{"cniVersion":"\#(version.rawValue)",\#(dnsJSON),"interfaces":[\#(hostInterfacesJSON),{"mac":"0a:58:0a:f4:01:05","name":"eth0","sandbox":"/var/run/netns/cni-1234"}],"ips":[{"address":"10.244.1.5/24","gateway":"10.244.1.1","interface":2,"version":"4"},{"address":"fd00:10:244:1::5/64","gateway":"fd00:10:244:1::1","interface":2,"version":"6"}],"routes":[{"dst":"0.0.0.0/0","gw":"10.244.1.1"},{"dst":"::/0","gw":"fd00:10:244:1::1"}]}"#)
    }

    @Test func emptyResultKeepsDNS() throws {
        #expect(text(try CNIResult().json(for: .v1_1_0)) == #"{"cniVersion":"1.1.0","dns":{}}"#)
    }

    @Test func unsupportedOutputVersion() {
        #expect(cniError { _ = try sampleResult.json(for: .v0_2_0) }?.code == .incompatibleVersion)
    }

    /// Written in one version, read back: equal to the original minus what that version cannot carry.
    @Test(arguments: CNIVersion.supported)
    func roundTrip(version: CNIVersion) throws {
        let back = try CNIResult.parse(try sampleResult.json(for: version))
        var expected = sampleResult
        if version < .v1_1_0 {
            expected.interfaces[2].mtu = nil
            expected.routes[1] = .init(dst: IPPrefix("::/0")!, gw: IPAddress("fd00:10:244:1::1"))
        }
        #expect(back == expected)
    }

    /// prevResult in each version inside a config of that version parses to the typed result.
    @Test(arguments: CNIVersion.supported)
    func prevResultInConfig(version: CNIVersion) throws {
        let prev = text(try sampleResult.json(for: version))
        let c = try NetworkConfig.parse(minimalConfig(version, extra: #","prevResult":\#(prev)"#), for: .add)
        #expect(c.prevResult?.ips.map(\.address) == sampleResult.ips.map(\.address))
        #expect(c.prevResult?.interfaces.count == 3 && c.prevResult?.dns == sampleResult.dns)
    }

    /// A 0.3.1 prevResult as an older plugin writes it (version strings, no interface index), converted to 1.1.0.
    @Test func legacyPrevResultConvertsToCurrent() throws {
        let legacy = #"{"cniVersion":"0.3.1","interfaces":[{"name":"eth0","sandbox":"/proc/1/ns/net"}],"ips":[{"version":"4","address":"10.1.2.3/24","gateway":"10.1.2.1"}],"routes":[{"dst":"0.0.0.0/0"}],"dns":{}}"#
        let r = try CNIResult.parse(bytes(legacy))
        #expect(text(try r.json(for: .v1_1_0)) == #"{"cniVersion":"1.1.0","dns":{},"interfaces":[{"name":"eth0","sandbox":"/proc/1/ns/net"}],"ips":[{"address":"10.1.2.3/24","gateway":"10.1.2.1"}],"routes":[{"dst":"0.0.0.0/0"}]}"#)
    }

    @Test func badPrevResult() {
        let err = cniError { _ = try NetworkConfig.parse(minimalConfig(.v1_0_0, extra: #","prevResult":{"ips":[{"address":"10.1.2.3"}]}"#), for: .add) }
        #expect(err?.code == .invalidConfig)
        #expect(err?.msg.contains("prevResult") == true)
    }
}
