import NodenetTestSupport
import Testing
@testable import CNIProtocol

/// The shim's Codable-free path must say exactly what the Codable path says.
@Suite struct CNIFastWireTests {
    @Test func scannerFindsTopLevelStringsOnly() {
        let json = bytes(#"""
            { "cniVersion" : "1.0.0", "plugins": [{"socket": "/nested/not.sock"}], "ipam": {"a": [1, {"b": "}"}]},
              "mtu": 1450, "flag": true, "none": null, "socket": "/run/x\/y.sock\u0041", "name": "n\"et" }
            """#)
        let found = CNIConfigScan.strings(["cniVersion", "socket", "name", "mtu"], in: json)
        #expect(found == ["cniVersion": "1.0.0", "socket": "/run/x/y.sockA", "name": "n\"et"], "mtu is not a string: left out")
    }

    @Test(arguments: [#"{"socket": "/a"} trailing"#, #"{"socket": "/a""#, #"["socket"]"#, "", #"{"a": tru"#, "{\"a\": \"x\ny\"}",
                      #"{"socket": "\u00e9"}"#, #"{"a" "b"}"#])
    func scannerRefusesWhatItDoesNotFollow(_ text: String) {
        #expect(CNIConfigScan.strings(["socket"], in: bytes(text)) == nil)
    }

    @Test func handBuiltEnvelopeDecodesToTheSameRequest() throws {
        let config = bytes(#"{"cniVersion":"1.1.0","name":"nodenet","type":"nodenet","socket":"/tmp/a b/\"q\".sock","x":"tab\there é ✓"}"#)
        var env = addEnvironment()
        env["PATH"] = "/usr/bin"  // not a CNI variable: not forwarded
        env["CNI_ARGS"] = "IgnoreUnknown=1;K8S_POD_NAME=web\\0"
        let viaCodable = try CNIRequest.fromEnvelope(try CNIRequest.parse(environment: env, stdin: config).envelope())
        let viaHand = try CNIRequest.fromEnvelope(CNIFastWire.envelope(environment: env, stdin: config))
        #expect(viaHand == viaCodable)
        #expect(viaHand.config?.socket == "/tmp/a b/\"q\".sock")
        #expect(!text(CNIFastWire.envelope(environment: env, stdin: config)).contains("\"PATH\""))
        // Control characters are escaped, so the envelope stays valid JSON.
        let raw = CNIFastWire.envelope(environment: ["CNI_X": "a\u{1}b"], stdin: bytes("{\n}"))
        #expect(text(raw) == #"{"environment":{"CNI_X":"a\u0001b"},"stdin":"{\u000a}"}"#)
    }

    @Test func rawReplyCarriesExitCodeAndExactStdout() throws {
        let ok = CNIReply.success(bytes(#"{"cniVersion":"1.1.0"}"#))
        let parsedOK = try #require(CNIFastWire.parseReply(CNIFastWire.replyBody(ok)))
        #expect(parsedOK.exitCode == 0 && parsedOK.stdout == ok.stdout)
        let failed = CNIReply.failure(CNIError(.tryAgainLater, "agent busy", version: "1.1.0"))
        let parsedFailed = try #require(CNIFastWire.parseReply(CNIFastWire.replyBody(failed)))
        #expect(parsedFailed.exitCode == 1 && text(parsedFailed.stdout) == #"{"cniVersion":"1.1.0","code":11,"msg":"agent busy"}"#)
        #expect(CNIFastWire.parseReply(bytes("not a reply")) == nil)
        #expect(CNIFastWire.parseReply(CNIFastWire.replyBody(.success([]))).map { $0.stdout.isEmpty } == true)
    }

    @Test func versionAnswersMatchTheCodablePath() {
        for v in CNIVersion.supported {
            #expect(CNIFastWire.versionReply(stdin: minimalConfig(v)) == CNILocal.versionReply(stdin: minimalConfig(v)).stdout)
        }
        #expect(CNIFastWire.versionReply(stdin: []) == CNILocal.versionReply(stdin: []).stdout)
        // Not decided here: the full path answers (no cniVersion means 0.1.0 there).
        for text in [#"{"name":"x","type":"nodenet"}"#, #"{"cniVersion":"0.2.0"}"#, #"{"cniVersion": 1}"#, "not json"] {
            #expect(CNIFastWire.versionReply(stdin: bytes(text)) == nil, "\(text)")
        }
    }
}
