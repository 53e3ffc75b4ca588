import Foundation
import KilnCore
import Yams

/// A Packer template as `kiln import packer` reads it, from HCL2 or legacy JSON: the parts that
/// map onto kiln, each with its position.
public struct PackerTemplate: Sendable {
    public struct Setting: Sendable {
        public let key: String
        public let value: PackerValue
        public let location: SourceLocation
    }
    public struct Variable: Sendable {
        public let name: String
        public let defaultValue: PackerValue?
        public let sensitive: Bool
        public let location: SourceLocation
    }
    /// A builder (JSON) or a `source` block (HCL2).
    public struct Source: Sendable {
        public let type: String
        public let name: String
        public let settings: [Setting]
        public let location: SourceLocation
        public func setting(_ key: String) -> Setting? { settings.first { $0.key == key } }
    }
    public struct Provisioner: Sendable {
        public let type: String
        public let settings: [Setting]
        public let location: SourceLocation
        public func setting(_ key: String) -> Setting? { settings.first { $0.key == key } }
    }

    public var file: String
    public var variables: [Variable] = []
    public var locals: [String: PackerValue] = [:]
    public var sources: [Source] = []
    public var provisioners: [Provisioner] = []
    public var postProcessors: [(type: String, location: SourceLocation)] = []

    /// Reads `path`: HCL2 (`.pkr.hcl`, `.hcl`) or JSON (anything else that parses as JSON).
    public static func read(_ path: String) throws -> PackerTemplate {
        guard let data = FileManager.default.contents(atPath: path), let text = String(data: data, encoding: .utf8) else {
            throw KilnError(.notFound, "\(path): no such file, or not UTF-8 text")
        }
        // The limits kiln's own templates have: a template is text a person wrote.
        guard data.count <= YAMLLimits.maxBytes else {
            throw KilnError(.invalidInput, "\(path): \(data.count) bytes; templates are limited to \(YAMLLimits.maxBytes) bytes")
        }
        let trimmed = text.drop { $0.isWhitespace }
        return trimmed.hasPrefix("{") && !path.hasSuffix(".hcl") ? try fromJSON(text, file: path) : try fromHCL(text, file: path)
    }

    // MARK: HCL2

    static func fromHCL(_ text: String, file: String) throws -> PackerTemplate {
        let body = try HCLParser.parse(text, file: file)
        var template = PackerTemplate(file: file)
        func settings(_ body: HCLBody) -> [Setting] {
            // Nested blocks (a provisioner's `inline_shebang` has none, but `source` blocks may
            // hold `boot_command`-like blocks) become object-valued settings.
            body.attributes.map { Setting(key: $0.name, value: $0.value, location: $0.location) }
                + body.blocks.map { block in
                    Setting(
                        key: block.type,
                        value: .object(block.body.attributes.map { ($0.name, $0.value) }), location: block.location)
                }
        }
        for block in body.blocks {
            switch block.type {
            case "variable":
                guard let name = block.labels.first else { continue }
                let sensitive = block.body.attribute("sensitive")?.value == .bool(true)
                template.variables.append(
                    Variable(
                        name: name, defaultValue: block.body.attribute("default")?.value, sensitive: sensitive, location: block.location))
            case "locals":
                for attribute in block.body.attributes { template.locals[attribute.name] = attribute.value }
            case "local":
                if let name = block.labels.first, let value = block.body.attribute("expression")?.value { template.locals[name] = value }
            case "source":
                guard block.labels.count == 2 else { continue }
                template.sources.append(
                    Source(type: block.labels[0], name: block.labels[1], settings: settings(block.body), location: block.location))
            case "build":
                for inner in block.body.blocks {
                    switch inner.type {
                    case "provisioner":
                        template.provisioners.append(
                            Provisioner(type: inner.labels.first ?? "", settings: settings(inner.body), location: inner.location))
                    case "post-processor": template.postProcessors.append((inner.labels.first ?? "", inner.location))
                    case "post-processors":
                        for post in inner.body.blocks { template.postProcessors.append((post.labels.first ?? "", post.location)) }
                    case "source":
                        // `source "source.qemu.x" { … }` inside build: overrides for that source.
                        template.sources.append(
                            Source(
                                type: "build-source", name: inner.labels.first ?? "", settings: settings(inner.body),
                                location: inner.location))
                    default: continue
                    }
                }
            default: continue
            }
        }
        return template
    }

    // MARK: JSON

    /// JSON through Yams (JSON is YAML's flow form), so every value keeps its line and column.
    static func fromJSON(_ text: String, file: String) throws -> PackerTemplate {
        let root: Node
        if let violation = YAMLLimits.check(Array(text.utf8)) {
            throw KilnError(
                .invalidInput, violation.message, at: SourceLocation(file: file, line: violation.line, column: violation.column))
        }
        do {
            guard let node = try Yams.compose(yaml: text) else { throw KilnError(.invalidInput, "\(file): an empty template") }
            root = node
        } catch let error as KilnError {
            throw error
        } catch {
            throw KilnError(.invalidInput, "\(file): not valid JSON: \(error)")
        }
        func location(_ node: Node) -> SourceLocation {
            SourceLocation(file: file, line: node.mark?.line ?? 1, column: node.mark?.column ?? 1)
        }
        func value(_ node: Node) -> PackerValue {
            switch node {
            case .scalar(let scalar):
                switch scalar.style {
                case .doubleQuoted, .singleQuoted: return legacyString(scalar.string)
                default:
                    if scalar.string == "true" || scalar.string == "false" { return .bool(scalar.string == "true") }
                    if scalar.string == "null" { return .expression("null") }
                    return Double(scalar.string) != nil ? .number(scalar.string) : legacyString(scalar.string)
                }
            case .sequence(let items): return .list(items.map(value))
            case .mapping(let pairs): return .object(pairs.map { ($0.key.string ?? "", value($0.value)) })
            case .alias: return .expression("alias")
            }
        }
        func settings(_ node: Node) -> [Setting] {
            guard case .mapping(let pairs) = node else { return [] }
            return pairs.map { Setting(key: $0.key.string ?? "", value: value($0.value), location: location($0.key)) }
        }
        guard case .mapping(let top) = root else { throw KilnError(.invalidInput, "\(file): a Packer JSON template is an object") }
        var template = PackerTemplate(file: file)
        let sensitiveNames = Set((top["sensitive-variables"]?.sequence ?? []).compactMap(\.string))
        if case .mapping(let variables)? = top["variables"] {
            for (key, node) in variables {
                let name = key.string ?? ""
                let given = value(node)
                let empty = given.scalar == ""
                template.variables.append(
                    Variable(
                        name: name, defaultValue: empty && sensitiveNames.contains(name) ? nil : given,
                        sensitive: sensitiveNames.contains(name),
                        location: location(key)))
            }
        }
        for (index, builder) in (top["builders"]?.sequence ?? []).enumerated() {
            let all = settings(builder)
            let type = all.first { $0.key == "type" }?.value.scalar ?? ""
            let name = all.first { $0.key == "name" }?.value.scalar ?? (index == 0 ? type : "\(type)-\(index)")
            template.sources.append(Source(type: type, name: name, settings: all, location: location(builder)))
        }
        for provisioner in top["provisioners"]?.sequence ?? [] {
            let all = settings(provisioner)
            template.provisioners.append(
                Provisioner(type: all.first { $0.key == "type" }?.value.scalar ?? "", settings: all, location: location(provisioner)))
        }
        for post in top["post-processors"]?.sequence ?? [] {
            // An entry is an object, a type name, or a list of either (a chain).
            for item in post.sequence ?? [post] {
                let type = item.string ?? (item.mapping?["type"]?.string ?? "")
                template.postProcessors.append((type, location(item)))
            }
        }
        return template
    }

    /// `{{user `x`}}` is kiln's `${var.x}`; any other `{{…}}` function stays unevaluated.
    static func legacyString(_ text: String) -> PackerValue {
        guard text.contains("{{") else { return .string(text) }
        var result = ""
        var rest = Substring(text)
        while let open = rest.range(of: "{{") {
            result += rest[..<open.lowerBound]
            guard let close = rest[open.upperBound...].range(of: "}}") else { return .expression(text) }
            let inner = rest[open.upperBound..<close.lowerBound].trimmingCharacters(in: .whitespaces)
            let words = inner.split(separator: " ", maxSplits: 1)
            if words.count == 2, words[0] == "user", words[1].hasPrefix("`"), words[1].hasSuffix("`"), words[1].count > 2 {
                result += "${var.\(words[1].dropFirst().dropLast())}"
            } else {
                return .expression("{{" + inner + "}}")
            }
            rest = rest[close.upperBound...]
        }
        return .string(result + rest)
    }
}

extension Node {
    var sequence: [Node]? { if case .sequence(let items) = self { Array(items) } else { nil } }

    /// Ordered YAML for what kiln writes (a generated pipeline, an imported template): keys in
    /// the order given, not sorted.
    package init(mapping pairs: [(Node, Node)]) { self = .mapping(Node.Mapping(pairs)) }
    package init(sequence items: [Node]) { self = .sequence(Node.Sequence(items)) }
}
