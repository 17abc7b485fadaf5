import NodenetTestSupport
import Testing
@testable import PodNetwork

@Suite struct CNIRobustnessTests {
    /// Every truncation of a full config is either rejected with a spec code or parsed;
    /// never a crash, never a code outside the ones the parser documents.
    @Test func truncatedConfigsFailCleanly() throws {
        let full = Array(#"""
        {"cniVersion":"1.1.0","name":"n","type":"nodenet","mtu":1450,"ipam":{"subnets":["10.244.1.0/24"]},
         "runtimeConfig":{"portMappings":[{"hostPort":80,"containerPort":8080,"protocol":"tcp"}],"ips":["10.244.1.9"]},
         "prevResult":{"cniVersion":"1.1.0","ips":[{"address":"10.244.1.9/24","gateway":"10.244.1.1","interface":0}],"dns":{}}}
        """#.utf8)
        _ = try CNIRequest.parse(environment: addEnvironment(), stdin: full)
        for end in 0..<full.count {
            let err = cniError { _ = try CNIRequest.parse(environment: addEnvironment(), stdin: Array(full[..<end])) }
            #expect(err.map { [1, 6, 7].contains($0.code.rawValue) } ?? true, "cut at \(end): \(err?.description ?? "")")
        }
    }

    @Test func bytesThatAreNotUTF8() {
        let err = cniError { _ = try CNIRequest.parse(environment: addEnvironment(), stdin: [0x7b, 0xff, 0xfe, 0x7d]) }
        #expect(err?.code == .decodingFailure)
    }
}
