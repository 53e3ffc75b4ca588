import Foundation
import KilnCore
import KilnModel

/// The repository and the `kiln` binary that `swift build` made beside the tests, run as a user would.
public enum KilnBinary {
    public static let repositoryRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().path
    public static let path = repositoryRoot + "/.build/debug/kiln"

    public static func run(
        _ arguments: [String], environment: [String: String] = [:], timeout: Duration = .seconds(60)
    ) async throws -> ProcessResult {
        try await ProcessRunner.run(path, arguments, environment: environment, timeout: timeout)
    }
}
