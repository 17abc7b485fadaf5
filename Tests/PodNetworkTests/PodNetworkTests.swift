import Testing
@testable import PodNetwork
