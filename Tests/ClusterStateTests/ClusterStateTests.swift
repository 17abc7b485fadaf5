import Testing
@testable import ClusterState
