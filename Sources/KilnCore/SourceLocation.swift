/// A place in a template file, 1-based like editors count. In KilnCore, not with the templates:
/// a ``KilnError`` found after loading (a missing parent, an unknown provider) carries one too,
/// so every positioned error prints the same way.
public struct SourceLocation: Sendable, Hashable, Codable, CustomStringConvertible {
    public let file: String
    public let line: Int
    public let column: Int

    public init(file: String, line: Int, column: Int) {
        (self.file, self.line, self.column) = (file, line, column)
    }

    public var description: String { "\(file):\(line):\(column)" }

    public func diagnostic(_ message: String) -> Diagnostic {
        Diagnostic(file: file, line: line, column: column, message: message)
    }
}
