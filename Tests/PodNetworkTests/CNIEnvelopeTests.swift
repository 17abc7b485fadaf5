import IPAddressing
import Testing
@testable import PodNetwork
import IPAM

@Suite struct CNIEnvelopeTests {
    @Test func errorJSON() {
        let e = CNIError(.invalidEnvironment, "invalid CNI_IFNAME \"a/b\": contains '/', ':' or whitespace", version: "1.0.0")
        #expect(text(e.json) == #"{"cniVersion":"1.0.0","code":4,"msg":"invalid CNI_IFNAME \"a/b\": contains '/', ':' or whitespace"}"#)
        let d = CNIError(.notAvailable, "nodenet agent is not running", details: "connect /run/nodenet/nodenet.sock: no such file")
        #expect(text(d.json) == #"{"cniVersion":"1.1.0","code":50,"details":"connect /run/nodenet/nodenet.sock: no such file","msg":"nodenet agent is not running"}"#)
    }

    @Test func codesMatchTheSpec() {
        let codes: [CNIErrorCode] = [.incompatibleVersion, .unsupportedField, .unknownContainer, .invalidEnvironment, .ioFailure,
                                     .decodingFailure, .invalidConfig, .tryAgainLater, .notAvailable, .degraded]
        #expect(codes.map(\.rawValue) == [1, 2, 3, 4, 5, 6, 7, 11, 50, 51])
        #expect([CNIErrorCode.agentFailure, .addressesExhausted, .attachmentExists].allSatisfy { $0.rawValue >= 100 })
    }

    @Test func versionReply() {
        #expect(text(CNILocal.versionReply(stdin: bytes(#"{"cniVersion":"0.4.0"}"#)).stdout)
                == #"{"cniVersion":"0.4.0","supportedVersions":["0.3.0","0.3.1","0.4.0","1.0.0","1.1.0"]}"#)
        #expect(text(CNILocal.versionReply(stdin: []).stdout).hasPrefix(#"{"cniVersion":"1.1.0","#))
    }

    @Test func requestEnvelopeRoundTrip() throws {
        let stdin = minimalConfig(.v1_1_0, extra: #","runtimeConfig":{"portMappings":[{"hostPort":8080,"containerPort":80,"protocol":"tcp"}]}"#)
        var env = addEnvironment()
        env["HOME"] = "/root"  // not forwarded
        let request = try CNIRequest.parse(environment: env, stdin: stdin)
        #expect(request.environment["HOME"] == nil && request.environment.count == 6)
        let back = try CNIRequest.fromEnvelope(try request.envelope())
        #expect(back == request)
        #expect(back.config?.runtimeConfig.portMappings.first?.hostPort == 8080)
    }

    @Test func tamperedEnvelopeIsRevalidated() throws {
        let env = #"{"environment":{"CNI_COMMAND":"ADD","CNI_CONTAINERID":"x","CNI_NETNS":"/n","CNI_IFNAME":"../x","CNI_PATH":"/p"},"stdin":"{}"}"#
        #expect(cniError { _ = try CNIRequest.fromEnvelope(bytes(env)) }?.code == .invalidEnvironment)
        #expect(cniError { _ = try CNIRequest.fromEnvelope(bytes("garbage")) }?.code == .decodingFailure)
    }

    @Test func replyEnvelopes() throws {
        let ok = CNIReply.result(sampleResult, for: .v0_4_0)
        #expect(try CNIReply.fromEnvelope(try ok.envelope()) == ok)
        #expect(ok.exitCode == 0 && text(ok.stdout).hasPrefix(#"{"cniVersion":"0.4.0""#))
        let failed = CNIReply.failure(CNIError(.tryAgainLater, "agent busy"))
        #expect(try CNIReply.fromEnvelope(try failed.envelope()) == failed)
        #expect(failed.exitCode == 1 && text(failed.stdout) == #"{"cniVersion":"1.1.0","code":11,"msg":"agent busy"}"#)
        let empty = CNIReply.success([])
        #expect(try CNIReply.fromEnvelope(try empty.envelope()) == empty)
    }
}

@Suite struct CNIBridgeIPAMTests {
    @Test func errorsCarryTheConfigVersion() {
        let err = cniError { _ = try CNIRequest.parse(environment: addEnvironment(["CNI_IFNAME": "a/b"]), stdin: minimalConfig(.v0_4_0)) }
        #expect(err?.cniVersion == "0.4.0" && err?.code == .invalidEnvironment)
        let unsupported = cniError { _ = try CNIRequest.parse(environment: addEnvironment(["CNI_IFNAME": "a/b"]), stdin: bytes(#"{"cniVersion":"0.2.0"}"#)) }
        #expect(unsupported?.cniVersion == "1.1.0")
    }

    @Test func allocationsBecomeResultEntries() {
        let allocations = [
            Allocation(address: IPPrefix("10.244.1.5/24")!, gateway: IPAddress("10.244.1.1")!, subnet: IPPrefix("10.244.1.0/24")!),
            Allocation(address: IPPrefix("fd00::5/64")!, gateway: IPAddress("fd00::1")!, subnet: IPPrefix("fd00::/64")!),
        ]
        #expect(allocations.map { CNIResult.IPConfig($0, interface: 2) } == [
            .init(address: IPPrefix("10.244.1.5/24")!, gateway: IPAddress("10.244.1.1"), interface: 2),
            .init(address: IPPrefix("fd00::5/64")!, gateway: IPAddress("fd00::1"), interface: 2),
        ])
        #expect(CNIResult.Route.defaultRoutes(via: allocations).map(\.dst.description) == ["0.0.0.0/0", "::/0"])
        let result = CNIResult.podAttachment(
            bridge: .init(name: "nodenet0", mac: "0a:58:0a:f4:01:01"), hostVeth: .init(name: "veth1a2b3c4d", mac: "ee:11:22:33:44:55"),
            pod: .init(name: "eth0", mac: "0a:58:0a:f4:01:05", mtu: 1450, sandbox: "/var/run/netns/cni-1234"),
            allocations: [Allocation(address: IPPrefix("10.244.1.5/24")!, gateway: IPAddress("10.244.1.1")!, subnet: IPPrefix("10.244.1.0/24")!),
                          Allocation(address: IPPrefix("fd00:10:244:1::5/64")!, gateway: IPAddress("fd00:10:244:1::1")!, subnet: IPPrefix("fd00:10:244:1::/64")!)],
            extraRoutes: [], dns: sampleResult.dns)
        var expected = sampleResult
        expected.routes[1] = .init(dst: IPPrefix("::/0")!, gw: IPAddress("fd00:10:244:1::1"))
        #expect(result == expected)
    }

    @Test func ipamErrorCodes() {
        let subnet = IPPrefix("10.0.0.0/30")!
        #expect(CNIError(IPAMError.exhausted(family: .v4, subnets: [subnet], inUse: 1), version: .v1_0_0).code == .addressesExhausted)
        #expect(CNIError(IPAMError.exhausted(family: .v4, subnets: [subnet], inUse: 1), version: .v1_0_0).msg == "no free address in 10.0.0.0/30 (1 in use)")
        #expect(CNIError(IPAMError.requestedOutside(IPAddress("10.9.9.9")!, subnets: [subnet]), version: .v1_0_0).code == .invalidConfig)
        #expect(CNIError(IPAMError.noSubnets, version: .v1_1_0).code == .notAvailable)
    }
}
