import Testing

@testable import KindlingNode
