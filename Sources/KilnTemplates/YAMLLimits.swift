import CYaml
import Foundation
import KilnModel

/// Bounds on a template's YAML, checked on libyaml's event stream before Yams builds a tree.
///
/// Yams resolves an alias to the anchored node itself, so a "billion laughs" document composes
/// in little memory, but anything that walks or hashes that tree (Yams' own duplicate-key check
/// hashes whole keys) walks every expansion: exponential time. Deep nesting would overflow
/// the recursive composer's stack. Counting on the flat event stream costs one linear pass and
/// reports the position, which the tree would have lost.
enum YAMLLimits {
    /// Nodes after expanding every alias: far above any real template, far below a bomb.
    static let maxNodes = 100_000
    static let maxDepth = 64
    static let maxBytes = 1 << 20

    struct Violation: Error {
        let line: Int
        let column: Int
        let message: String
    }

    /// The first limit `text` breaks, or nil. Syntax errors are left for Yams to report.
    static func check(_ bytes: [UInt8]) -> Violation? {
        var parser = yaml_parser_t()
        guard yaml_parser_initialize(&parser) == 1 else { return nil }
        defer { yaml_parser_delete(&parser) }
        return bytes.withUnsafeBufferPointer { buffer -> Violation? in
            yaml_parser_set_input_string(&parser, buffer.baseAddress, buffer.count)
            var total = 0
            var anchors: [String: Int] = [:]
            // Open collections: their anchor and the node count when they opened.
            var open: [(anchor: String?, start: Int)] = []
            while true {
                var event = yaml_event_t()
                guard yaml_parser_parse(&parser, &event) == 1 else { return nil }
                defer { yaml_event_delete(&event) }
                let mark = event.start_mark
                let at = { (message: String) in Violation(line: mark.line + 1, column: mark.column + 1, message: message) }
                switch event.type {
                case YAML_STREAM_END_EVENT:
                    return nil
                case YAML_SCALAR_EVENT:
                    total += 1
                    if let anchor = event.data.scalar.anchor { anchors[String(cString: anchor)] = 1 }
                case YAML_SEQUENCE_START_EVENT, YAML_MAPPING_START_EVENT:
                    let anchor =
                        event.type == YAML_SEQUENCE_START_EVENT ? event.data.sequence_start.anchor : event.data.mapping_start.anchor
                    open.append((anchor.map { String(cString: $0) }, total))
                    total += 1
                    if open.count > maxDepth { return at("nested more than \(maxDepth) levels deep") }
                case YAML_SEQUENCE_END_EVENT, YAML_MAPPING_END_EVENT:
                    if let (anchor, start) = open.popLast(), let anchor { anchors[anchor] = total - start }
                case YAML_ALIAS_EVENT:
                    let name = event.data.alias.anchor.map { String(cString: $0) } ?? ""
                    total += anchors[name] ?? 1
                default:
                    break
                }
                if total > maxNodes {
                    return at("the document expands to more than \(maxNodes) nodes (aliases of aliases?)")
                }
            }
        }
    }

    /// Byte offset of the first invalid UTF-8 sequence, or nil when `bytes` is valid UTF-8.
    static func firstInvalidUTF8(_ bytes: [UInt8]) -> Int? {
        var parser = Unicode.UTF8.ForwardParser()
        var iterator = bytes.makeIterator()
        var offset = 0
        while true {
            switch parser.parseScalar(from: &iterator) {
            case .valid(let scalar): offset += scalar.count
            case .emptyInput: return nil
            case .error: return offset
            }
        }
    }

    /// 1-based line and column of a byte offset.
    static func position(of offset: Int, in bytes: [UInt8]) -> (line: Int, column: Int) {
        let prefix = bytes.prefix(offset)
        let line = prefix.reduce(1) { $1 == UInt8(ascii: "\n") ? $0 + 1 : $0 }
        let lineStart = prefix.lastIndex(of: UInt8(ascii: "\n")).map { $0 + 1 } ?? 0
        return (line, offset - lineStart + 1)
    }
}
