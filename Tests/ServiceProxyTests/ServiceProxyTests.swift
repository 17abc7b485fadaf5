import Testing
@testable import ServiceProxy
