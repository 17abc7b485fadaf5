import IPAddressing
import NodenetTestSupport
import Testing
@testable import CNIProtocol

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
        // An unsupported version is echoed, escaped: the answer stays valid JSON.
        #expect(text(CNILocal.versionReply(stdin: bytes(#"{"cniVersion":"0.2\"x"}"#)).stdout).hasPrefix(#"{"cniVersion":"0.2\"x","#))
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
