import Testing
@testable import ClusterSources
