import Foundation
import KilnCore
import KilnModel
import Yams

/// All templates of one directory (or one file), parsed and checked together.
public struct TemplateSet: Sendable {
    public let templates: [Template]
    /// Values of `sensitive: true` variables: logs and catalog rows have them redacted.
    public let sensitiveValues: [String]

    public func template(family: String) -> Template? {
        templates.first { $0.family == family }
    }

    /// `text` with every sensitive value replaced, for output that quotes template text.
    public func redact(_ text: String) -> String { Redactor(sensitiveValues)(text) }
}

/// What ``TemplateLoader/read(path:)`` found: the templates it could name, and every problem.
public struct TemplateReading: Sendable {
    public let set: TemplateSet
    public let diagnostics: [Diagnostic]
    /// Files whose family or source could not be read: a parent they define is unknown to the
    /// graph check, so "unknown parent" is not reported while there are any.
    public let unnamedFiles: [String]
}

/// Reads templates from disk and reports every problem it finds, each with its position.
///
/// It walks Yams `Node`s rather than decoding into `Codable` types, because decoding errors
/// carry no line and column and stop at the first problem.
public struct TemplateLoader: Sendable {
    /// `--var NAME=VALUE` values; they win over `KILN_VAR_NAME` and defaults.
    public var overrides: [String: String]
    public var environment: [String: String]

    public init(overrides: [String: String] = [:], environment: [String: String] = ProcessInfo.processInfo.environment) {
        self.overrides = overrides
        self.environment = environment
    }

    /// Loads `path`: a directory (every `*.yaml`/`*.yml` in it, one graph) or a single file.
    /// - Throws: ``ValidationFailure`` with every problem of every file.
    public func load(path: String) throws -> TemplateSet {
        let reading = try read(path: path)
        if !reading.diagnostics.isEmpty { throw ValidationFailure(reading.diagnostics) }
        return reading.set
    }

    /// Reads every file of `path` and keeps going past problems, so that one run reports all of
    /// them: a template with errors is still in `set` when its family and source could be read
    /// (checks of the whole graph need its name and parent), and must not be built.
    public func read(path: String) throws -> TemplateReading {
        let files = try templateFiles(at: path)
        var diagnostics: [Diagnostic] = []
        var templates: [Template] = []
        var sensitive: [String] = []
        var unnamed: [String] = []
        for file in files {
            let parser = TemplateParser(file: file, loader: self)
            if let template = parser.parse() {
                templates.append(template)
                sensitive += template.variables.filter(\.sensitive).map(\.value)
            } else {
                unnamed.append(file)
            }
            // Reading order, whatever order the checks ran in.
            diagnostics += parser.diagnostics.sorted { ($0.line, $0.column) < ($1.line, $1.column) }
        }
        var seen: [String: Template] = [:]
        for template in templates {
            if let first = seen[template.family] {
                diagnostics.append(
                    template.location.diagnostic(
                        "family '\(template.family)' is also defined at \(first.location)"))
            } else {
                seen[template.family] = template
            }
        }
        return TemplateReading(
            set: TemplateSet(templates: templates, sensitiveValues: sensitive.filter { !$0.isEmpty }),
            diagnostics: diagnostics,
            unnamedFiles: unnamed)
    }

    private func templateFiles(at path: String) throws -> [String] {
        let url = URL(fileURLWithPath: path).standardizedFileURL
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: url.path, isDirectory: &isDirectory) else {
            throw KilnError(.notFound, "\(path): no such file or directory")
        }
        guard isDirectory.boolValue else { return [url.path] }
        let names = try FileManager.default.contentsOfDirectory(atPath: url.path)
            .filter { $0.hasSuffix(".yaml") || $0.hasSuffix(".yml") }
            .sorted()
        guard !names.isEmpty else {
            throw KilnError(.invalidInput, "\(path): no templates (*.yaml, *.yml) in this directory")
        }
        return names.map { url.appendingPathComponent($0).path }
    }
}

/// Parses one file. A class so the many small readers can append diagnostics as they go.
final class TemplateParser {
    let file: String
    let directory: String
    let loader: TemplateLoader
    var diagnostics: [Diagnostic] = []
    var values: [String: String] = [:]
    var declared: Set<String> = []
    var missing: Set<String> = []

    init(file: String, loader: TemplateLoader) {
        self.file = file
        self.directory = URL(fileURLWithPath: file).deletingLastPathComponent().path
        self.loader = loader
    }

    func parse() -> Template? {
        guard let data = FileManager.default.contents(atPath: file) else {
            error(at: nil, "cannot read this file")
            return nil
        }
        let bytes = [UInt8](data)
        guard bytes.count <= YAMLLimits.maxBytes else {
            error(at: nil, "the template is \(bytes.count) bytes; templates are limited to \(YAMLLimits.maxBytes) bytes")
            return nil
        }
        if let offset = YAMLLimits.firstInvalidUTF8(bytes) {
            let (line, column) = YAMLLimits.position(of: offset, in: bytes)
            diagnostics.append(Diagnostic(file: file, line: line, column: column, message: "not valid UTF-8 (byte \(offset))"))
            return nil
        }
        let text = String(decoding: bytes, as: UTF8.self)
        if let violation = YAMLLimits.check(bytes) {
            diagnostics.append(Diagnostic(file: file, line: violation.line, column: violation.column, message: violation.message))
            return nil
        }
        let root: Node
        do {
            guard let node = try Yams.compose(yaml: text) else {
                error(at: nil, "empty template: expected a mapping with at least `image:` and `from:`")
                return nil
            }
            root = node
        } catch let yamlError as YamlError {
            diagnostics.append(diagnostic(for: yamlError, in: text))
            return nil
        } catch {
            self.error(at: nil, "\(error)")
            return nil
        }
        guard let top = mapping(root, "a template", keys: TopKey.self) else { return nil }
        // Variables first: every other string may refer to them.
        let variables = top[.vars].map(parseVariables) ?? []
        let familyNode = top[.image]
        if familyNode == nil { error(at: root, "missing required key 'image' (the family this template builds)") }
        let family = familyNode.flatMap { node in
            string(node, "image").flatMap { name -> String? in
                guard Names.isValidFamily(name) else {
                    error(at: node, "invalid family name '\(name)': must match [a-z0-9][a-z0-9-]{0,62}")
                    return nil
                }
                return name
            }
        }
        let description = top[.description].flatMap { string($0, "description") }
        let source: Source? = {
            guard let node = top[.from] else {
                error(at: root, "missing required key 'from' (one of debootstrap, file, url, image, provider_image)")
                return nil
            }
            return parseSource(node)
        }()
        let provider = top[.provider].map(parseProvider) ?? ProviderChoice()
        var steps: [Step] = []
        if let provisionNode = top[.provision] {
            if let items = sequence(provisionNode, "provision") {
                for (index, item) in items.enumerated() {
                    if let step = parseStep(item, index: index) { steps.append(step) }
                }
            }
        }
        let tests = top[.test].map(parseTests) ?? TestPlan()
        let labels = top[.labels].map { stringMap($0, "labels", keyCheck: labelKeyCheck) } ?? [:]
        let lifecycle = top[.lifecycle].map(parseLifecycle) ?? LifecyclePolicy()
        let allowedSecrets = top[.allowSecrets].map(parseAllowedSecrets) ?? []
        // Returned even with errors (the loader refuses the set): the graph check needs the
        // family and its parent to report cycles and unknown parents in the same run.
        guard let family, let source else { return nil }
        var template = Template(
            family: family,
            description: description,
            source: source,
            variables: variables,
            steps: steps,
            labels: labels,
            file: file,
            location: location(of: familyNode),
            sourceLocation: location(of: top[.from]),
            templateHash: Hashing.sha256Hex(data)
        )
        template.lifecycle = lifecycle
        template.allowedSecrets = allowedSecrets
        template.tests = tests
        template.provider = provider
        return template
    }

    func location(of node: Node?) -> SourceLocation {
        SourceLocation(file: file, line: node?.mark?.line ?? 1, column: node?.mark?.column ?? 1)
    }

    func error(at node: Node?, _ message: String) {
        diagnostics.append(location(of: node).diagnostic(message))
    }

    private func diagnostic(for yamlError: YamlError, in text: String) -> Diagnostic {
        func at(_ mark: Mark, _ message: String) -> Diagnostic {
            Diagnostic(file: file, line: mark.line, column: mark.column, message: message)
        }
        switch yamlError {
        case .scanner(let context, let problem, let mark, _),
            .parser(let context, let problem, let mark, _),
            .composer(let context, let problem, let mark, _):
            return at(mark, "invalid YAML: \(problem)" + (context.map { " (\($0.text))" } ?? ""))
        case .duplicatedKeysInMapping(let duplicates, let context):
            return at(context.mark, "duplicate key \(duplicates.map { "'\($0)'" }.joined(separator: ", "))")
        case .reader(let problem, let offset, _, _):
            let prefix = offset.map { text.utf8.prefix($0) } ?? Substring(text).utf8.prefix(0)
            let line = prefix.filter { $0 == UInt8(ascii: "\n") }.count + 1
            let column =
                prefix.count - (prefix.lastIndex(of: UInt8(ascii: "\n")).map { prefix.distance(from: prefix.startIndex, to: $0) + 1 } ?? 0)
                + 1
            return Diagnostic(file: file, line: line, column: column, message: "invalid YAML: \(problem)")
        default:
            return Diagnostic(file: file, line: 1, column: 1, message: "invalid YAML: \(yamlError)")
        }
    }
}
