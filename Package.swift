// swift-tools-version:6.1
// nodenet: one node networking agent (CNI + IPAM, node routes, service proxy, cluster DNS).
// Module map and dependency direction: see ARCHITECTURE.md. Dependencies point downward only.
import PackageDescription

let strict: [SwiftSetting] = [.enableUpcomingFeature("ExistentialAny")]

let package = Package(
    name: "nodenet",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "nodenet", targets: ["nodenet"]),
        // The CNI plugin alone, installed as /opt/cni/bin/nodenet: the same code as `nodenet cni`
        // without the agent's modules, so each pod's exec starts as fast as a Go plugin.
        .executable(name: "nodenet-cni", targets: ["nodenet-cni"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-metrics", from: "2.13.0"),
        .package(url: "https://github.com/apple/swift-nio", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-atomics", from: "1.3.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.4.1"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.13.0"),
        .package(url: "https://github.com/jpsim/Yams", from: "6.2.2"),
        .package(url: "https://github.com/groue/GRDB.swift", from: "7.10.0"),
        .package(url: "https://github.com/swift-server/async-http-client", from: "1.37.0"),
        .package(url: "https://github.com/apple/swift-nio-ssl.git", from: "2.29.0"),
    ],
    targets: [
        // System libraries and C shims: the only places that see C headers.
        .systemLibrary(name: "CNetlink", pkgConfig: "libmnl", providers: [.apt(["libmnl-dev"])]),
        .systemLibrary(name: "CSystemd", pkgConfig: "libsystemd", providers: [.apt(["libsystemd-dev"])]),
        .target(name: "CShims"),

        // Value types for IP addresses and prefixes, shared by the kernel layer and the model.
        .target(name: "IPAddressing", swiftSettings: strict),
        .testTarget(name: "IPAddressingTests", dependencies: ["IPAddressing"]),

        // The kernel seam: rtnetlink, nfnetlink/nf_tables, namespaces, change events.
        .target(name: "Netlink", dependencies: ["CNetlink", "CShims", "IPAddressing"], exclude: ["README.md"], swiftSettings: strict),
        .testTarget(name: "NetlinkTests", dependencies: ["Netlink"]),
        // Route programming benchmark against `ip -batch` (bench/routes/run.sh); not shipped.
        .executableTarget(name: "netlink-bench", dependencies: ["Netlink", "IPAddressing"], swiftSettings: strict),

        // The one store every actor reads: object model, store actor, sources.
        .target(name: "ClusterState", dependencies: [
            "IPAddressing",
            .product(name: "Logging", package: "swift-log"),
            .product(name: "Yams", package: "Yams"),
            .product(name: "GRDB", package: "GRDB.swift"),
        ], swiftSettings: strict),
        .testTarget(name: "ClusterStateTests", dependencies: ["ClusterState", "NodenetTestSupport"]),

        // Where cluster objects come from besides the embedded store: etcd and the Kubernetes API.
        // Separate from ClusterState so the model and store stay free of HTTP and TLS.
        .target(name: "ClusterSources", dependencies: [
            "ClusterState", "IPAddressing",
            .product(name: "Logging", package: "swift-log"),
            .product(name: "AsyncHTTPClient", package: "async-http-client"),
            .product(name: "NIOCore", package: "swift-nio"),
            .product(name: "NIOFoundationCompat", package: "swift-nio"),
            // TLS material from kubeconfigs (CA, client certificate and key) for AsyncHTTPClient.
            .product(name: "NIOSSL", package: "swift-nio-ssl"),
            // kubeconfig files are YAML.
            .product(name: "Yams", package: "Yams"),
        ], exclude: ["README.md"], swiftSettings: strict),
        .testTarget(name: "ClusterSourcesTests", dependencies: [
            "ClusterSources", "NodenetTestSupport",
            // The stand-in API server in the Kubernetes source tests.
            .product(name: "NIOCore", package: "swift-nio"),
            .product(name: "NIOPosix", package: "swift-nio"),
            .product(name: "NIOHTTP1", package: "swift-nio"),
            .product(name: "NIOSSL", package: "swift-nio-ssl"),
        ], exclude: ["Fixtures"]),

        .target(name: "IPAM", dependencies: [
            "IPAddressing",
            .product(name: "GRDB", package: "GRDB.swift"),
        ], exclude: ["README.md"], swiftSettings: strict),
        .testTarget(name: "IPAMTests", dependencies: ["IPAM", "NodenetTestSupport"]),

        // Blocking HTTP over the control socket: for the CLI and the CNI shim (no event loop, fast start).
        // CShims: SCM_RIGHTS (the CNI plugin hands the pod's network namespace to the agent).
        .target(name: "ControlClient", dependencies: ["CShims"], swiftSettings: strict),
        .testTarget(name: "ControlClientTests", dependencies: ["ControlClient"]),

        // The CNI spec's types: config, env, results per version, errors, the shim-agent envelope.
        // FoundationEssentials only (no ICU), because the plugin executable links it.
        .target(name: "CNIProtocol", dependencies: ["IPAddressing"], exclude: ["README.md"], swiftSettings: strict),
        .testTarget(name: "CNIProtocolTests", dependencies: ["CNIProtocol", "NodenetTestSupport"]),
        // What the runtime executes: parse, forward to the agent, print; the agent-down paths.
        // What the runtime executes per pod: the fast path to a running agent and the hand-over
        // to the full plugin (`nodenet cni`) for everything else. No netlink, so the plugin
        // executable links statically (no dynamic loader: half the start-up time).
        .target(name: "CNIShim", dependencies: ["CNIProtocol", "ControlClient", "CShims"], swiftSettings: strict),
        // Where the plugin finds the full binary (unit) and plain copies of the built plugin run
        // with the agent down (end to end).
        .testTarget(name: "CNIShimTests", dependencies: ["CNIShim", "NodenetTestSupport"]),
        .executableTarget(name: "nodenet-cni", dependencies: ["CNIShim", "CNIProtocol"], swiftSettings: strict,
                          linkerSettings: [.unsafeFlags(["-static-executable", "-l_FoundationCollections", "-l_FoundationCShims", "-lswiftSynchronization"])]),

        .target(name: "PodNetwork", dependencies: [
            "CNIProtocol", "IPAddressing", "ControlClient", "Netlink", "IPAM", "ClusterState", "CShims",
            .product(name: "Logging", package: "swift-log"),
            .product(name: "GRDB", package: "GRDB.swift"),
        ], swiftSettings: strict),
        // Fixtures: the containerd test's CRI proto, Python client, pause program and image packer.
        .testTarget(name: "PodNetworkTests", dependencies: ["PodNetwork", "NodenetTestSupport"], exclude: ["Fixtures"]),

        .target(name: "NodeRoutes", dependencies: [
            "IPAddressing", "Netlink", "ClusterState",
            .product(name: "Logging", package: "swift-log"),
            .product(name: "Metrics", package: "swift-metrics"),
        ], swiftSettings: strict),
        .testTarget(name: "NodeRoutesTests", dependencies: ["NodeRoutes", "Netlink", "ClusterState", "IPAddressing", "NodenetTestSupport"]),
        // Node-routes convergence and repair benchmark against `ip -batch` (bench/node-routes/run.sh); not shipped.
        .executableTarget(name: "routes-bench", dependencies: [
            "NodeRoutes", "Netlink", "ClusterState", "IPAddressing",
            .product(name: "Logging", package: "swift-log"),
        ], swiftSettings: strict),

        .target(name: "ServiceProxy", dependencies: [
            "IPAddressing", "Netlink", "ClusterState",
            .product(name: "Logging", package: "swift-log"),
            .product(name: "Metrics", package: "swift-metrics"),
        ], exclude: ["README.md"], swiftSettings: strict),
        .testTarget(name: "ServiceProxyTests", dependencies: ["ServiceProxy", "NodenetTestSupport"]),
        // Desired-state and diff timing at scale (bench/services).
        .executableTarget(name: "proxy-bench", dependencies: ["ServiceProxy", "ClusterState"], path: "bench/services/proxy-bench",
                          swiftSettings: strict),

        // NetworkPolicy: selection into identities and allow sets, enforced in nftables tables of
        // its own (the nft model, diff and netlink backend are ServiceProxy's).
        .target(name: "PolicyEnforcement", dependencies: [
            "IPAddressing", "Netlink", "ClusterState", "ServiceProxy",
            .product(name: "Logging", package: "swift-log"),
            .product(name: "Metrics", package: "swift-metrics"),
        ], exclude: ["README.md"], swiftSettings: strict),
        .testTarget(name: "PolicyEnforcementTests", dependencies: ["PolicyEnforcement", "NodenetTestSupport"]),

        // recvmmsg/sendmmsg for the DNS server's UDP fast path (need _GNU_SOURCE).
        .target(name: "CBatchUDP"),
        .target(name: "ClusterDNS", dependencies: [
            "IPAddressing", "ClusterState", "CBatchUDP",
            .product(name: "Logging", package: "swift-log"),
            .product(name: "NIOCore", package: "swift-nio"),
            .product(name: "NIOPosix", package: "swift-nio"),
        ], exclude: ["README.md"], swiftSettings: strict),
        .testTarget(name: "ClusterDNSTests", dependencies: ["ClusterDNS"]),
        // DNS benchmark server: loads N synthetic services into a store and serves them (bench/dns/run.sh).
        .executableTarget(name: "dns-bench", dependencies: [
            "ClusterDNS", "ClusterState", "IPAddressing",
            .product(name: "Logging", package: "swift-log"),
        ], swiftSettings: strict),

        // Composition: configuration, lifecycle, control API, status, metrics, systemd.
        .target(name: "Agent", dependencies: [
            "IPAddressing", "ClusterState", "ClusterSources", "IPAM", "PodNetwork", "NodeRoutes", "ServiceProxy", "ClusterDNS",
            "PolicyEnforcement", "Netlink", "CSystemd", "CShims", "ControlClient",
            .product(name: "Logging", package: "swift-log"),
            .product(name: "Metrics", package: "swift-metrics"),
            .product(name: "Prometheus", package: "swift-prometheus"),
            .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            .product(name: "UnixSignals", package: "swift-service-lifecycle"),
            .product(name: "NIOCore", package: "swift-nio"),
            .product(name: "NIOPosix", package: "swift-nio"),
            .product(name: "NIOHTTP1", package: "swift-nio"),
            .product(name: "Atomics", package: "swift-atomics"),
            .product(name: "Yams", package: "Yams"),
        ], swiftSettings: strict),
        .testTarget(name: "AgentTests", dependencies: [
            "Agent", "NodenetTestSupport", "ControlClient", .product(name: "Logging", package: "swift-log"),
            // The control API's HTTP handler on a test channel.
            .product(name: "NIOCore", package: "swift-nio"),
            .product(name: "NIOEmbedded", package: "swift-nio"),
            .product(name: "NIOHTTP1", package: "swift-nio"),
        ], exclude: ["NetworkPolicyCases"]),

        // Helpers for tests that touch the kernel: namespaces, the built binary as a process.
        // Yams: the NetworkPolicy conformance cases file (netpol-cases.yaml).
        .target(name: "NodenetTestSupport", dependencies: ["CNIProtocol", "IPAddressing", .product(name: "Yams", package: "Yams")],
                swiftSettings: strict),

        // The executable: argument parsing and the CNI entry point, nothing else.
        .executableTarget(name: "nodenet", dependencies: [
            "Agent", "PodNetwork", "ControlClient", "CNIShim", "CNIProtocol", "Netlink",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
        ], swiftSettings: strict),
    ]
)
