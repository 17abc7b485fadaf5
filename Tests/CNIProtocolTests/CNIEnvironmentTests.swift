import IPAddressing
import NodenetTestSupport
import Testing
@testable import CNIProtocol

@Suite struct CNIEnvironmentTests {
    @Test func kubernetesAddParses() throws {
        let r = try CNIRequest.parse(environment: addEnvironment(), stdin: minimalConfig(.v1_1_0))
        #expect(r.command == .add)
        #expect(r.attachment == CNIAttachment(containerID: "3f1c0ffee", ifname: "eth0"))
        #expect(r.netns == "/var/run/netns/cni-1234")
        #expect(r.path == ["/opt/cni/bin", "/usr/lib/cni"])
        #expect(r.args.podNamespace == "apps" && r.args.podName == "web-0" && r.args.podUID == "1234-abcd")
        #expect(r.args.infraContainerID == "3f1c0ffee")
        #expect(r.args.ignoreUnknown)
        #expect(r.config?.name == "nodenet")
    }

    @Test(arguments: [
        (CNICommand.add, ["CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME", "CNI_PATH"]),
        (.check, ["CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME", "CNI_PATH"]),
        (.del, ["CNI_CONTAINERID", "CNI_IFNAME", "CNI_PATH"]),
        (.gc, ["CNI_PATH"]),
        (.status, ["CNI_PATH"]),
    ])
    func eachRequiredVariableIsRequired(command: CNICommand, required: [String]) throws {
        let full = addEnvironment(["CNI_COMMAND": command.rawValue])
        #expect(throws: Never.self) { try CNIRequest.parse(environment: full, stdin: minimalConfig(.v1_1_0)) }
        for variable in required {
            var env = full
            env[variable] = nil
            let err = cniError { _ = try CNIRequest.parse(environment: env, stdin: minimalConfig(.v1_1_0)) }
            #expect(err?.code == .invalidEnvironment)
            #expect(err?.msg.contains(variable) == true, "message should name \(variable): \(err?.msg ?? "")")
        }
    }

    @Test func delWithoutNetnsIsFine() throws {
        var env = addEnvironment(["CNI_COMMAND": "DEL"])
        env["CNI_NETNS"] = nil
        let r = try CNIRequest.parse(environment: env, stdin: minimalConfig(.v1_0_0))
        #expect(r.netns == nil && r.command == .del)
    }

    @Test func versionNeedsNothingButTheCommand() throws {
        let r = try CNIRequest.parse(environment: ["CNI_COMMAND": "VERSION"], stdin: bytes(#"{"cniVersion":"0.4.0"}"#))
        #expect(r.command == .version && r.config == nil)
        let stale = try CNIRequest.parse(environment: ["CNI_COMMAND": "VERSION", "CNI_IFNAME": "a/b", "CNI_ARGS": "junk"], stdin: [])
        #expect(stale.command == .version)
    }

    @Test func missingOrUnknownCommand() {
        #expect(cniError { _ = try CNIRequest.parse(environment: [:], stdin: []) }?.msg == "required env variable CNI_COMMAND is missing")
        let err = cniError { _ = try CNIRequest.parse(environment: ["CNI_COMMAND": "ATTACH"], stdin: []) }
        #expect(err?.code == .invalidEnvironment && err?.msg == "unknown CNI_COMMAND \"ATTACH\"")
    }

    @Test(arguments: ["-abc", "", "a b", "a/b", "é1", "abc$"])
    func badContainerIDs(id: String) {
        let err = cniError { _ = try CNIRequest.parse(environment: addEnvironment(["CNI_CONTAINERID": id]), stdin: minimalConfig(.v1_1_0)) }
        #expect(err?.code == .invalidEnvironment)
        #expect(err?.msg.contains("CNI_CONTAINERID") == true)
    }

    @Test(arguments: ["a", "A1_b.c-d", "0123456789abcdef0123456789abcdef"])
    func goodContainerIDs(id: String) throws {
        _ = try CNIRequest.parse(environment: addEnvironment(["CNI_CONTAINERID": id]), stdin: minimalConfig(.v1_1_0))
    }

    @Test(arguments: ["0123456789abcdef", ".", "..", "eth/0", "eth:0", "eth 0", "eth\t0"])
    func badIfnames(name: String) {
        let err = cniError { _ = try CNIRequest.parse(environment: addEnvironment(["CNI_IFNAME": name]), stdin: minimalConfig(.v1_1_0)) }
        #expect(err?.code == .invalidEnvironment)
        #expect(err?.msg.contains("CNI_IFNAME") == true)
    }

    @Test func fifteenByteIfnameIsFine() throws {
        _ = try CNIRequest.parse(environment: addEnvironment(["CNI_IFNAME": "0123456789abcde"]), stdin: minimalConfig(.v1_1_0))
    }

    @Test func cniArgs() throws {
        let a = try CNIArgs(parsing: "IP=10.1.2.3,fd00::3;MAC=02:00:00:00:00:01")
        #expect(a.requestedIPs == [IPAddress("10.1.2.3")!, IPAddress("fd00::3")!])
        #expect(a.mac == "02:00:00:00:00:01" && !a.ignoreUnknown)
        #expect(try CNIArgs(parsing: "").pairs.isEmpty)
        #expect(try CNIArgs(parsing: "IgnoreUnknown=true;FOO=bar")["FOO"] == "bar")
        #expect(cniError { _ = try CNIArgs(parsing: "FOO=bar") }?.msg == "CNI_ARGS: unknown key \"FOO\" (add IgnoreUnknown=1 to allow it)")
        #expect(cniError { _ = try CNIArgs(parsing: "IgnoreUnknown=1;novalue") }?.code == .invalidEnvironment)
        #expect(cniError { _ = try CNIArgs(parsing: "IgnoreUnknown=maybe") }?.code == .invalidEnvironment)
        #expect(cniError { _ = try CNIArgs(parsing: "IP=10.1.2.300") }?.code == .invalidEnvironment)
        // A value may itself contain '='.
        #expect(try CNIArgs(parsing: "IgnoreUnknown=1;X=a=b")["X"] == "a=b")
    }

    @Test func requestedAddressAndMACPrecedence() throws {
        let env = addEnvironment(["CNI_ARGS": "IgnoreUnknown=1;IP=10.9.9.9;MAC=02:00:00:00:00:03"])
        let onlyArgs = try CNIRequest.parse(environment: env, stdin: minimalConfig(.v1_1_0))
        #expect(onlyArgs.requestedIPs == [IPAddress("10.9.9.9")!] && onlyArgs.requestedMAC == "02:00:00:00:00:03")
        let withArgsKey = try CNIRequest.parse(environment: env, stdin: minimalConfig(.v1_1_0, extra: #","args":{"cni":{"ips":["10.8.8.8"],"mac":"02:00:00:00:00:02"}}"#))
        #expect(withArgsKey.requestedIPs == [IPAddress("10.8.8.8")!] && withArgsKey.requestedMAC == "02:00:00:00:00:02")
        let all = try CNIRequest.parse(environment: env, stdin: minimalConfig(.v1_1_0, extra: #","args":{"cni":{"ips":["10.8.8.8"]}},"runtimeConfig":{"ips":["10.7.7.7/24"],"mac":"02:00:00:00:00:01"}"#))
        #expect(all.requestedIPs == [IPAddress("10.7.7.7")!] && all.requestedMAC == "02:00:00:00:00:01")
    }
}
