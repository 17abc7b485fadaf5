import Testing
@testable import NodeRoutes
