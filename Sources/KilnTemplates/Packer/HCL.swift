import Foundation
import KilnCore

/// A value read from a Packer template (HCL2 or JSON), with where it was written.
public indirect enum PackerValue: Sendable, Equatable {
    /// Text; `${var.NAME}` in it is already kiln's spelling.
    case string(String)
    case number(String)
    case bool(Bool)
    case list([PackerValue])
    case object([(key: String, value: PackerValue)])
    /// An expression kiln does not evaluate (a function call, an unknown reference), as written.
    case expression(String)

    public static func == (a: PackerValue, b: PackerValue) -> Bool {
        switch (a, b) {
        case (.string(let x), .string(let y)), (.number(let x), .number(let y)), (.expression(let x), .expression(let y)): x == y
        case (.bool(let x), .bool(let y)): x == y
        case (.list(let x), .list(let y)): x == y
        case (.object(let x), .object(let y)): x.map(\.key) == y.map(\.key) && x.map(\.value) == y.map(\.value)
        default: false
        }
    }

    /// The text of a string, number or bool.
    public var scalar: String? {
        switch self {
        case .string(let text), .number(let text): text
        case .bool(let value): value ? "true" : "false"
        default: nil
        }
    }

    /// The first expression kiln cannot carry over, anywhere inside.
    public var unevaluated: String? {
        switch self {
        case .expression(let text): text
        case .list(let items): items.lazy.compactMap(\.unevaluated).first
        case .object(let fields): fields.lazy.compactMap(\.value.unevaluated).first
        default: nil
        }
    }
}

/// An HCL2 body: attributes and blocks in the order written.
public struct HCLBody: Sendable {
    public struct Attribute: Sendable {
        public let name: String
        public let value: PackerValue
        public let location: SourceLocation
    }
    public struct Block: Sendable {
        public let type: String
        public let labels: [String]
        public let body: HCLBody
        public let location: SourceLocation
    }
    public var attributes: [Attribute] = []
    public var blocks: [Block] = []

    public func attribute(_ name: String) -> Attribute? { attributes.first { $0.name == name } }
    public func blocks(_ type: String) -> [Block] { blocks.filter { $0.type == type } }
}

/// Reads the part of HCL2 that Packer templates are written in: blocks with labels, attributes,
/// strings with `${…}` interpolation and heredocs, numbers, bools, lists, objects, references
/// and function calls (kept as text), and the three comment forms.
///
/// Hand-written: there is no HCL library for Swift, and kiln reads Packer templates once, to
/// convert them, so a parser of this subset with exact positions serves better than a binding
/// to Go's.
public struct HCLParser {
    let file: String
    let bytes: [UInt8]
    var index = 0
    var line = 1
    var column = 1
    /// Blocks, lists and objects open around the reader: bounded as a template's YAML is, so a
    /// hostile file fails with an error instead of exhausting the stack.
    var depth = 0

    public static func parse(_ text: String, file: String) throws -> HCLBody {
        var parser = HCLParser(file: file, bytes: Array(text.utf8))
        let body = try parser.body(until: nil)
        return body
    }

    init(file: String, bytes: [UInt8]) {
        self.file = file
        self.bytes = bytes
    }

    var location: SourceLocation { SourceLocation(file: file, line: line, column: column) }

    func error(_ message: String, at location: SourceLocation? = nil) -> KilnError {
        KilnError(.invalidInput, message, at: location ?? self.location)
    }

    var peek: UInt8? { index < bytes.count ? bytes[index] : nil }

    mutating func advance() {
        if bytes[index] == UInt8(ascii: "\n") {
            line += 1
            column = 1
        } else if bytes[index] & 0xC0 != 0x80 {
            column += 1
        }
        index += 1
    }

    /// Spaces, tabs and comments; newlines too when `newlines`.
    mutating func skip(newlines: Bool) throws {
        while let byte = peek {
            if byte == UInt8(ascii: " ") || byte == UInt8(ascii: "\t") || byte == UInt8(ascii: "\r")
                || (newlines && byte == UInt8(ascii: "\n"))
            {
                advance()
            } else if byte == UInt8(ascii: "#") || (byte == UInt8(ascii: "/") && next(1) == UInt8(ascii: "/")) {
                while let c = peek, c != UInt8(ascii: "\n") { advance() }
            } else if byte == UInt8(ascii: "/") && next(1) == UInt8(ascii: "*") {
                let start = location
                advance()
                advance()
                while !(peek == UInt8(ascii: "*") && next(1) == UInt8(ascii: "/")) {
                    guard peek != nil else { throw error("a /* comment is not closed", at: start) }
                    advance()
                }
                advance()
                advance()
            } else {
                return
            }
        }
    }

    func next(_ offset: Int) -> UInt8? { index + offset < bytes.count ? bytes[index + offset] : nil }

    static func isIdentifierByte(_ byte: UInt8, first: Bool) -> Bool {
        (byte >= 0x61 && byte <= 0x7A) || (byte >= 0x41 && byte <= 0x5A) || byte == UInt8(ascii: "_")
            || (!first && ((byte >= 0x30 && byte <= 0x39) || byte == UInt8(ascii: "-")))
    }

    mutating func identifier() -> String? {
        guard let first = peek, Self.isIdentifierByte(first, first: true) else { return nil }
        let start = index
        while let byte = peek, Self.isIdentifierByte(byte, first: false) { advance() }
        return String(decoding: bytes[start..<index], as: UTF8.self)
    }

    mutating func enter() throws {
        depth += 1
        if depth > YAMLLimits.maxDepth { throw error("nested more than \(YAMLLimits.maxDepth) levels deep") }
    }

    /// At `close`: consumes it and leaves one level of nesting.
    mutating func leave(at close: UInt8) -> Bool {
        guard peek == close else { return false }
        advance()
        depth -= 1
        return true
    }

    mutating func expect(_ byte: UInt8, _ what: String) throws {
        try skip(newlines: false)
        guard peek == byte else { throw error("expected \(what)") }
        advance()
    }

    /// Attributes and blocks up to `close` (`}`) or the end of the file.
    mutating func body(until close: UInt8?) throws -> HCLBody {
        var body = HCLBody()
        while true {
            try skip(newlines: true)
            guard let byte = peek else {
                if close != nil { throw error("a block is not closed: expected '}'") }
                return body
            }
            if byte == close {
                advance()
                return body
            }
            let start = location
            guard let name = identifier() else {
                throw error("expected an attribute or a block, found '\(String(UnicodeScalar(byte)))'")
            }
            try skip(newlines: false)
            if peek == UInt8(ascii: "=") {
                advance()
                let value = try expression()
                body.attributes.append(.init(name: name, value: value, location: start))
                try endOfLine()
                continue
            }
            var labels: [String] = []
            while true {
                try skip(newlines: false)
                if peek == UInt8(ascii: "\"") {
                    let labelStart = location
                    guard case .string(let label) = try quoted() else { throw error("a block label must be plain text", at: labelStart) }
                    labels.append(label)
                } else if let label = identifier() {
                    labels.append(label)
                } else {
                    break
                }
            }
            try expect(UInt8(ascii: "{"), "'=' or '{' after '\(name)'")
            try enter()
            body.blocks.append(.init(type: name, labels: labels, body: try self.body(until: UInt8(ascii: "}")), location: start))
            depth -= 1
        }
    }

    mutating func endOfLine() throws {
        try skip(newlines: false)
        guard let byte = peek, byte != UInt8(ascii: "\n") else { return }
        if byte == UInt8(ascii: "}") { return }
        throw error("expected the end of the line after an attribute's value")
    }

    /// One expression. Operators and conditionals are kept as text (unevaluated).
    mutating func expression() throws -> PackerValue {
        try skip(newlines: false)
        let start = index
        let value = try operand()
        try skip(newlines: false)
        // `a ? b : c`, `a + b`, `a == b`…: kiln does not evaluate them.
        if let byte = peek, "?+-*/%<>=!&|".utf8.contains(byte), !(byte == UInt8(ascii: "/") && next(1) == UInt8(ascii: "/")) {
            while let c = peek, c != UInt8(ascii: "\n"), c != UInt8(ascii: ","), c != UInt8(ascii: "]"), c != UInt8(ascii: "}"),
                c != UInt8(ascii: ")")
            {
                advance()
            }
            return .expression(String(decoding: bytes[start..<index], as: UTF8.self).trimmingCharacters(in: .whitespaces))
        }
        return value
    }

    mutating func operand() throws -> PackerValue {
        guard let byte = peek else { throw error("expected a value, found the end of the file") }
        switch byte {
        case UInt8(ascii: "\""): return try quoted()
        case UInt8(ascii: "<") where next(1) == UInt8(ascii: "<"): return try heredoc()
        case UInt8(ascii: "["):
            advance()
            try enter()
            var items: [PackerValue] = []
            while true {
                try skip(newlines: true)
                if leave(at: UInt8(ascii: "]")) { return .list(items) }
                items.append(try expression())
                try skip(newlines: true)
                if peek == UInt8(ascii: ",") {
                    advance()
                } else if peek != UInt8(ascii: "]") {
                    throw error("expected ',' or ']' in a list")
                }
            }
        case UInt8(ascii: "{"):
            advance()
            try enter()
            var fields: [(key: String, value: PackerValue)] = []
            while true {
                try skip(newlines: true)
                if leave(at: UInt8(ascii: "}")) { return .object(fields) }
                let key: String
                if peek == UInt8(ascii: "\"") {
                    guard case .string(let text) = try quoted() else { throw error("an object key must be plain text") }
                    key = text
                } else if let name = identifier() {
                    key = name
                } else {
                    throw error("expected an object key")
                }
                try skip(newlines: false)
                guard peek == UInt8(ascii: "=") || peek == UInt8(ascii: ":") else { throw error("expected '=' after '\(key)'") }
                advance()
                fields.append((key, try expression()))
                try skip(newlines: false)
                if peek == UInt8(ascii: ",") { advance() }
            }
        case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"):
            let start = index
            advance()
            while let c = peek, (c >= 0x30 && c <= 0x39) || c == UInt8(ascii: ".") || c == UInt8(ascii: "e") || c == UInt8(ascii: "E") {
                advance()
            }
            return .number(String(decoding: bytes[start..<index], as: UTF8.self))
        default:
            let start = index
            guard let name = identifier() else { throw error("expected a value, found '\(String(UnicodeScalar(byte)))'") }
            if name == "true" || name == "false" { return .bool(name == "true") }
            if name == "null" { return .expression("null") }
            // A reference (var.x, local.y, source.qemu.base.name) or a call (timestamp()).
            while peek == UInt8(ascii: "."), let after = next(1), Self.isIdentifierByte(after, first: true) {
                advance()
                _ = identifier()
            }
            if peek == UInt8(ascii: "(") {
                var depth = 0
                repeat {
                    guard let c = peek else { throw error("a call to \(name)() is not closed") }
                    if c == UInt8(ascii: "(") { depth += 1 }
                    if c == UInt8(ascii: ")") { depth -= 1 }
                    if c == UInt8(ascii: "\"") { _ = try quoted() } else { advance() }
                } while depth > 0
            }
            let text = String(decoding: bytes[start..<index], as: UTF8.self)
            return Self.reference(text)
        }
    }

    /// `var.NAME` is kiln's `${var.NAME}`; anything else but `local.NAME` stays an expression.
    static func reference(_ text: String) -> PackerValue {
        let parts = text.split(separator: ".")
        if parts.count == 2, parts[0] == "var" { return .string("${var.\(parts[1])}") }
        // Replaced by the local's value when the importer knows it (a literal).
        if parts.count == 2, parts[0] == "local" { return .string("${local.\(parts[1])}") }
        return .expression(text)
    }

    /// A quoted string with escapes and `${…}` interpolations.
    mutating func quoted() throws -> PackerValue {
        let start = location
        advance()
        var text = ""
        var unevaluated: String?
        while true {
            guard let byte = peek, byte != UInt8(ascii: "\n") else { throw error("a string is not closed", at: start) }
            if byte == UInt8(ascii: "\"") {
                advance()
                break
            }
            if byte == UInt8(ascii: "\\") {
                advance()
                guard let escaped = peek else { throw error("a string is not closed", at: start) }
                switch escaped {
                case UInt8(ascii: "n"): text += "\n"
                case UInt8(ascii: "t"): text += "\t"
                case UInt8(ascii: "r"): text += "\r"
                case UInt8(ascii: "\""): text += "\""
                case UInt8(ascii: "\\"): text += "\\"
                default: text += "\\" + String(UnicodeScalar(escaped))
                }
                advance()
                continue
            }
            if let literal = literalInterpolation() {
                text += literal
                continue
            }
            if byte == UInt8(ascii: "$") || byte == UInt8(ascii: "%"), next(1) == UInt8(ascii: "{") {
                let (piece, problem) = try interpolation()
                text += piece
                unevaluated = unevaluated ?? problem
                continue
            }
            let scalarStart = index
            advance()
            while let c = peek, c & 0xC0 == 0x80 { advance() }
            text += String(decoding: bytes[scalarStart..<index], as: UTF8.self)
        }
        return unevaluated.map { .expression($0) } ?? .string(text)
    }

    /// `$${`: a literal `${`, which kiln writes `$${` too; `%%{`: a literal `%{`. Consumed when found.
    mutating func literalInterpolation() -> String? {
        guard let byte = peek, byte == UInt8(ascii: "$") || byte == UInt8(ascii: "%"), next(1) == byte, next(2) == UInt8(ascii: "{") else {
            return nil
        }
        advance()
        advance()
        advance()
        return byte == UInt8(ascii: "$") ? "$${" : "%{"
    }

    /// `${var.x}` stays as it is (kiln's own form); `$${` is a literal `${` in both languages;
    /// any other interpolation or a `%{` directive is returned as the problem.
    mutating func interpolation() throws -> (String, String?) {
        let start = location
        let sigil = peek!
        let begin = index
        advance()
        advance()
        var depth = 1
        while depth > 0 {
            guard let c = peek else { throw error("an interpolation is not closed", at: start) }
            if c == UInt8(ascii: "{") { depth += 1 }
            if c == UInt8(ascii: "}") { depth -= 1 }
            advance()
        }
        let whole = String(decoding: bytes[begin..<index], as: UTF8.self)
        let inner = whole.dropFirst(2).dropLast().trimmingCharacters(in: .whitespaces)
        if sigil == UInt8(ascii: "$"), case .string(let text) = Self.reference(inner) { return (text, nil) }
        return (whole, whole)
    }

    /// `<<EOF` … `EOF`, or `<<-EOF` with the common indentation removed.
    mutating func heredoc() throws -> PackerValue {
        let start = location
        advance()
        advance()
        let strip = peek == UInt8(ascii: "-")
        if strip { advance() }
        guard let marker = identifier() else { throw error("expected a heredoc marker after <<", at: start) }
        while let c = peek, c != UInt8(ascii: "\n") { advance() }
        guard peek != nil else { throw error("a heredoc <<\(marker) is not closed", at: start) }
        advance()
        var lines: [String] = []
        while true {
            guard peek != nil else { throw error("a heredoc <<\(marker) is not closed", at: start) }
            let lineStart = index
            while let c = peek, c != UInt8(ascii: "\n") { advance() }
            let text = String(decoding: bytes[lineStart..<index], as: UTF8.self)
            if peek != nil { advance() }
            if text.trimmingCharacters(in: .whitespaces) == marker { break }
            lines.append(text)
        }
        if strip {
            let indent =
                lines.filter { !$0.trimmingCharacters(in: .whitespaces).isEmpty }.map { $0.prefix { $0 == " " || $0 == "\t" }.count }
                .min() ?? 0
            lines = lines.map { String($0.dropFirst(min(indent, $0.count))) }
        }
        // Interpolations in a heredoc: the same rules as in a quoted string.
        let text = lines.joined(separator: "\n") + "\n"
        if !text.contains("${") && !text.contains("%{") { return .string(text) }
        var rebuilt = ""
        var problem: String?
        var scanner = HCLParser(file: file, bytes: Array(text.utf8))
        while let byte = scanner.peek {
            if let literal = scanner.literalInterpolation() {
                rebuilt += literal
            } else if byte == UInt8(ascii: "$") || byte == UInt8(ascii: "%"), scanner.next(1) == UInt8(ascii: "{") {
                let (piece, issue) = try scanner.interpolation()
                rebuilt += piece
                problem = problem ?? issue
            } else {
                let from = scanner.index
                scanner.advance()
                rebuilt += String(decoding: scanner.bytes[from..<scanner.index], as: UTF8.self)
            }
        }
        return problem.map { .expression($0) } ?? .string(rebuilt)
    }
}
