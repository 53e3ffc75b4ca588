import Foundation

/// The one error type that crosses module boundaries.
///
/// `code` tells the user's mistakes (``Code/invalidInput``, exit 2) from failed work (exit 1)
/// and from kiln's own bugs (``Code/internalError``), so the CLI can pick an exit status
/// without string matching.
public struct KilnError: Error, CustomStringConvertible, LocalizedError, Sendable {
    public enum Code: String, Sendable {
        case invalidInput = "invalid input"
        case notFound = "not found"
        case buildFailed = "build failed"
        case providerFailed = "provider failed"
        case timeout = "timeout"
        case cancelled = "cancelled"
        case io = "i/o"
        case storeInconsistent = "store inconsistent"
        case internalError = "internal error"
    }

    public let code: Code
    public let message: String
    public let cause: (any Error & Sendable)?
    /// Where in a template the problem is, when it is one's: then it prints as a compiler's
    /// diagnostic does (`file:line:col: error: message`), like the loader's own errors.
    public let location: SourceLocation?

    public init(_ code: Code, _ message: String, at location: SourceLocation? = nil, cause: (any Error & Sendable)? = nil) {
        (self.code, self.message, self.location, self.cause) = (code, message, location, cause)
    }

    public var description: String {
        let text = cause.map { "\(message): \($0)" } ?? message
        guard let location else { return text }
        return location.diagnostic(text).description
    }

    public var errorDescription: String? { description }

    /// Exit status documented in docs/cli.md: 0 ok, 1 failed, 2 invalid input, 130 interrupted.
    public var exitStatus: Int32 {
        switch code {
        case .invalidInput, .notFound: return 2
        case .cancelled: return 130
        default: return 1
        }
    }
}

/// One problem in a user's file, printed the way compilers do so editors can jump to it.
public struct Diagnostic: Sendable, Equatable, CustomStringConvertible {
    public let file, message: String
    public let line, column: Int

    public init(file: String, line: Int, column: Int, message: String) {
        (self.file, self.line, self.column, self.message) = (file, line, column, message)
    }

    public var description: String { "\(file):\(line):\(column): error: \(message)" }
}

/// Every problem found in one pass over the input; thrown once so the user sees all of them.
public struct ValidationFailure: Error, CustomStringConvertible, Sendable {
    public let diagnostics: [Diagnostic]

    public init(_ diagnostics: [Diagnostic]) {
        self.diagnostics = diagnostics
    }

    public var description: String { diagnostics.map(\.description).joined(separator: "\n") }
}
