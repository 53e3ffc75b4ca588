import Foundation
import KilnCore
import KilnModel
import Yams

/// Typed readers of YAML nodes, `${var.NAME}` interpolation, and paths: every reader reports
/// what it cannot read at the node's position and returns nil, so one pass finds every error.
extension TemplateParser {
    // MARK: - Typed readers

    func mappingEntries(_ node: Node, _ what: String) -> [(key: String, node: Node, value: Node)]? {
        guard case .mapping(let m) = node else {
            error(at: node, "\(what) must be a mapping, got \(kindName(node))")
            return nil
        }
        var result: [(key: String, node: Node, value: Node)] = []
        for (key, value) in m {
            guard let name = key.scalar?.string else {
                error(at: key, "\(what): keys must be strings")
                continue
            }
            result.append((name, key, value))
        }
        return result
    }

    /// A section's fields, checked against its key table: an unknown key is an error that
    /// lists the table.
    func mapping<Key: TemplateKeys>(_ node: Node, _ what: String, keys: Key.Type) -> Fields<Key>? {
        guard let entries = mappingEntries(node, what) else { return nil }
        var fields = Fields<Key>()
        for (name, keyNode, value) in entries {
            if let key = Key(rawValue: name) {
                fields.nodes[key] = value
            } else {
                error(at: keyNode, "unknown key '\(name)' in \(what): expected \(Key.names.joined(separator: ", "))")
            }
        }
        return fields
    }

    func required<Key: TemplateKeys>(_ fields: Fields<Key>, _ key: Key, in node: Node, _ what: String) -> Node? {
        if let value = fields[key] { return value }
        error(at: node, "\(what): missing required key '\(key.rawValue)'")
        return nil
    }

    func sequence(_ node: Node, _ what: String) -> [Node]? {
        guard case .sequence(let s) = node else {
            error(at: node, "\(what) must be a list, got \(kindName(node))")
            return nil
        }
        return Array(s)
    }

    /// A scalar's text before interpolation (variable defaults are not themselves interpolated).
    func rawScalar(_ node: Node, _ what: String) -> String? {
        guard let scalar = node.scalar, node.null == nil else {
            error(at: node, "\(what) must be a string, got \(kindName(node))")
            return nil
        }
        return scalar.string
    }

    /// A scalar with `${var.NAME}` substituted.
    func string(_ node: Node, _ what: String) -> String? {
        rawScalar(node, what).flatMap { interpolate($0, at: node) }
    }

    func stringList(_ node: Node, _ what: String) -> [String] {
        guard let items = sequence(node, what) else { return [] }
        return items.compactMap { string($0, "\(what) item") }
    }

    func stringMap(_ node: Node, _ what: String, keyCheck: (String, Node) -> Bool) -> [String: String] {
        guard let entries = mappingEntries(node, what) else { return [:] }
        var result: [String: String] = [:]
        for (key, keyNode, value) in entries where keyCheck(key, keyNode) {
            if let v = string(value, "\(what).\(key)") { result[key] = v }
        }
        return result
    }

    func labelKeyCheck(_ key: String, _ node: Node) -> Bool {
        if Names.isValidLabelKey(key) { return true }
        error(at: node, "invalid label key '\(key)': must match [a-z0-9][a-z0-9._/-]{0,62}")
        return false
    }

    func int(_ node: Node, _ what: String) -> Int? {
        guard let text = string(node, what), let value = Int(text) else {
            error(at: node, "\(what) must be an integer")
            return nil
        }
        return value
    }

    /// The one rule for booleans, YAML 1.2's core schema, wherever a template has one (a key
    /// such as `sensitive:`, a value in `extra_vars` or a plugin's settings): a plain `true`,
    /// `True`, `TRUE`, `false`, `False` or `FALSE`. `yes`, `no`, `on`, `off` and quoted text are
    /// strings, as in YAML 1.2 and JSON (YAML 1.1 made `country: NO` false).
    static func boolean(_ scalar: Node.Scalar) -> Bool? {
        scalar.style == .plain ? booleans[scalar.string] : nil
    }

    static let booleans = ["true": true, "True": true, "TRUE": true, "false": false, "False": false, "FALSE": false]

    func bool(_ node: Node, _ what: String) -> Bool? {
        if let scalar = node.scalar, let value = Self.boolean(scalar) { return value }
        let text = node.scalar?.string ?? ""
        let hint =
            ["yes", "no", "on", "off"].contains(text.lowercased())
            ? " (YAML 1.2 reads \(text) as a string)"
            : (Self.booleans[text] != nil ? " (unquoted)" : "")
        error(at: node, "\(what) must be true or false\(hint)")
        return nil
    }

    func sha256(_ node: Node) -> String? {
        guard let text = string(node, "sha256") else { return nil }
        let hex = text.hasPrefix("sha256:") ? String(text.dropFirst(7)) : text
        guard hex.count == 64, hex.allSatisfy(\.isHexDigit) else {
            error(at: node, "sha256 must be 64 hexadecimal digits")
            return nil
        }
        return hex.lowercased()
    }

    /// `4G`, `512M`, `2048` (in `defaultUnit`s): sizes as people write them, binary units.
    func size(_ node: Node, _ what: String, defaultUnit: UInt64) -> UInt64? {
        guard let text = string(node, what)?.trimmingCharacters(in: .whitespaces), !text.isEmpty else { return nil }
        let units: [Character: UInt64] = ["K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40]
        var digits = Substring(text)
        var unit = defaultUnit
        if let last = text.uppercased().last, let u = units[last] {
            unit = u
            digits = digits.dropLast()
        } else if text.uppercased().hasSuffix("IB") || text.uppercased().hasSuffix("B"), text.count > 2 {
            error(at: node, "\(what): write sizes like 512M or 4G")
            return nil
        }
        guard let n = UInt64(digits), n > 0, n < (1 << 50) / unit else {
            error(at: node, "\(what) must be a size like 512M or 4G, got '\(text)'")
            return nil
        }
        return n * unit
    }

    // MARK: - Interpolation

    /// Script text with each `${var.NAME}` turned into a reference to the environment variable
    /// `KILN_VAR_NAME`, and the variables it names: a value never becomes shell text, so
    /// `$(…)`, backticks, quotes, `;` or a newline in it are data to the shell, not commands.
    /// The step sets the variables (``shellVariables(_:)``); the script quotes them as it
    /// would any variable (`"${KILN_VAR_NAME}"`).
    func shellText(_ node: Node, _ what: String) -> (text: String, names: [String])? {
        var names: [String] = []
        guard let raw = rawScalar(node, what),
            let text = interpolate(
                raw, at: node,
                substitute: { name, _ in
                    if !names.contains(name) { names.append(name) }
                    return "${\(Self.shellVariablePrefix)\(name)}"
                })
        else { return nil }
        return (text, names)
    }

    static let shellVariablePrefix = "KILN_VAR_"

    /// The environment that carries the named variables' values to a script.
    func shellVariables(_ names: [String]) -> [EnvVar] {
        names.compactMap { name in values[name].map { EnvVar(name: Self.shellVariablePrefix + name, value: $0) } }
    }

    /// Replaces `${var.NAME}` (by its value, or by what `substitute` makes of the name and the
    /// value); `$${` stands for a literal `${`.
    func interpolate(
        _ text: String, at node: Node, substitute: (_ name: String, _ value: String) -> String = { $1 }
    ) -> String? {
        guard text.contains("${") else { return text }
        var output = ""
        var rest = Substring(text)
        var ok = true
        while let dollar = rest.firstIndex(of: "$") {
            output += rest[..<dollar]
            let after = rest[dollar...]
            if after.hasPrefix("$${") {
                output += "${"
                rest = after.dropFirst(3)
            } else if after.hasPrefix("${") {
                guard let close = after.firstIndex(of: "}") else {
                    error(at: node, "unterminated '${' (write $${ for a literal ${)")
                    return nil
                }
                let expression = after[after.index(after.startIndex, offsetBy: 2)..<close]
                rest = after[after.index(after: close)...]
                guard expression.hasPrefix("var.") else {
                    error(at: node, "unknown reference '${\(expression)}': only ${var.NAME} is supported")
                    ok = false
                    continue
                }
                let name = String(expression.dropFirst(4))
                if let value = values[name] {
                    output += substitute(name, value)
                } else if !missing.contains(name) {
                    ok = false
                    error(
                        at: node,
                        "undefined variable '\(name)'"
                            + (declared.isEmpty ? "" : " (declared: \(declared.sorted().joined(separator: ", ")))"))
                } else {
                    ok = false
                }
            } else {
                output += "$"
                rest = after.dropFirst()
            }
        }
        output += rest
        return ok ? output : nil
    }

    // MARK: - Helpers

    /// Whether `absolute` (from ``resolvePath(_:)``) lies in the template's directory; an error at
    /// `node` when not. What a step reads or writes on the host stays beneath the template: a
    /// graph is then self-contained, its build keys name files by relative paths, and a
    /// template cannot make a build read `/etc/shadow` into an image or write a download over
    /// a host file. (Source disks and keyrings, named by hash or system paths, may be anywhere.)
    func inside(_ absolute: String, _ path: String, at node: Node?, _ what: String) -> Bool {
        let root = URL(fileURLWithPath: directory).standardizedFileURL.path
        if absolute == root || absolute.hasPrefix(root == "/" ? "/" : root + "/") { return true }
        error(at: node, "\(what) \(path) is outside the template's directory (\(root)): steps read and write only beneath it")
        return false
    }

    func resolvePath(_ path: String) -> String {
        URL(fileURLWithPath: path, relativeTo: URL(fileURLWithPath: directory + "/")).standardizedFileURL.path
            + (path.hasSuffix("/") ? "/" : "")
    }

    /// Debian policy: lowercase letters, digits, `+ - .`; at least two characters, starting alphanumeric.
    func isDebianPackageName(_ name: String) -> Bool {
        guard name.count >= 2, let first = name.unicodeScalars.first, first.isASCII,
            first.properties.isLowercase || ("0"..."9").contains(first)
        else { return false }
        return name.unicodeScalars.allSatisfy { scalar in
            scalar.isASCII && (scalar.properties.isLowercase || ("0"..."9").contains(scalar) || "+-.".unicodeScalars.contains(scalar))
        }
    }

    func kindName(_ node: Node) -> String {
        switch node {
        case .mapping: return "a mapping"
        case .sequence: return "a list"
        case .scalar: return node.null != nil ? "nothing" : "'\(node.scalar?.string ?? "")'"
        case .alias: return "an alias"
        }
    }
}
