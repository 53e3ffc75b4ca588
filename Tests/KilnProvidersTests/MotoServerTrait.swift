import KilnTestSupport
import Testing

// Here, not in KilnTestSupport: that target builds with the product (swift build builds every
// target), where Swift Testing is not on the search path.

/// One moto_server for a whole suite: started before its first test, stopped after its last,
/// reached through ``MotoServer/current()``. Starting moto takes seconds; a test takes milliseconds.
struct MotoServerTrait: SuiteTrait, TestScoping {
    var isRecursive: Bool { false }

    func provideScope(
        for test: Test, testCase: Test.Case?, performing function: @Sendable () async throws -> Void
    ) async throws {
        let server = try await MotoServer.start()
        defer { server.remove() }
        try await MotoServer.$suiteServer.withValue(server) { try await function() }
    }
}

extension Trait where Self == MotoServerTrait {
    static var motoServer: Self { MotoServerTrait() }
}
