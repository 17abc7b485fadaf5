import Testing
@testable import ClusterDNS
