import Foundation
import KilnCore
import Yams

/// `--var-file FILE`: template variables from a YAML or JSON mapping of names to scalars (JSON
/// is YAML: one reader for both), as Packer's `-var-file` gives them.
public enum VariableFile {
    /// - Returns: each name with its value as text (`port: 8080` gives "8080").
    /// - Throws: ``KilnError`` with the file's position for anything but a mapping of scalars.
    public static func read(_ path: String) throws -> [String: String] {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw KilnError(.notFound, "--var-file \(path): no such file, or it cannot be read")
        }
        guard let text = String(data: data, encoding: .utf8) else {
            throw KilnError(.invalidInput, "--var-file \(path): not UTF-8 text")
        }
        let node: Node?
        do {
            node = try Yams.compose(yaml: text)
        } catch let error as YamlError {
            throw KilnError(.invalidInput, "--var-file \(path): not YAML or JSON: \(error)")
        }
        func position(_ node: Node) -> SourceLocation {
            SourceLocation(file: path, line: node.mark?.line ?? 1, column: node.mark?.column ?? 1)
        }
        guard let node else { return [:] }
        guard let mapping = node.mapping else {
            throw KilnError(.invalidInput, "a variable file holds a mapping of names to values", at: position(node))
        }
        var values: [String: String] = [:]
        for (key, value) in mapping {
            guard let name = key.scalar?.string, Names.isValidIdentifier(name) else {
                throw KilnError(.invalidInput, "a variable name matches [A-Za-z_][A-Za-z0-9_]{0,63}", at: position(key))
            }
            guard let scalar = value.scalar, value.null == nil else {
                throw KilnError(.invalidInput, "variable '\(name)': its value must be a string, number or boolean", at: position(value))
            }
            if values[name] != nil { throw KilnError(.invalidInput, "variable '\(name)' is given twice", at: position(key)) }
            values[name] = scalar.string
        }
        return values
    }
}
