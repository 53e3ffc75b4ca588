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
    public func load(path: String) throws -> TemplateSet {
        let files = try templateFiles(at: path)
        var diagnostics: [Diagnostic] = []
        var templates: [Template] = []
        var sensitive: [String] = []
        for file in files {
            let parser = TemplateParser(file: file, loader: self)
            if let template = parser.parse() {
                templates.append(template)
                sensitive += template.variables.filter(\.sensitive).map(\.value)
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
        if !diagnostics.isEmpty { throw ValidationFailure(diagnostics) }
        return TemplateSet(templates: templates, sensitiveValues: sensitive.filter { !$0.isEmpty })
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
    private(set) var diagnostics: [Diagnostic] = []
    private var values: [String: String] = [:]
    private var declared: Set<String> = []
    private var missing: Set<String> = []

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
        guard let top = mapping(root, "a template", allowed: Self.topKeys) else { return nil }
        // Variables first: every other string may refer to them.
        let variables = top["vars"].map(parseVariables) ?? []
        let familyNode = top["image"]
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
        let description = top["description"].flatMap { string($0, "description") }
        let source: Source? = {
            guard let node = top["from"] else {
                error(at: root, "missing required key 'from' (one of debootstrap, file, url, image, provider_image)")
                return nil
            }
            return parseSource(node)
        }()
        let provider = top["provider"].map(parseProvider) ?? ProviderChoice()
        var steps: [Step] = []
        if let provisionNode = top["provision"] {
            if let items = sequence(provisionNode, "provision") {
                for (index, item) in items.enumerated() {
                    if let step = parseStep(item, index: index) { steps.append(step) }
                }
            }
        }
        let labels = top["labels"].map { stringMap($0, "labels", keyCheck: labelKeyCheck) } ?? [:]
        let lifecycle = top["lifecycle"].map(parseLifecycle) ?? LifecyclePolicy()
        let allowedSecrets = top["allow_secrets"].map(parseAllowedSecrets) ?? []
        guard let family, let source, diagnostics.isEmpty else { return nil }
        var template = Template(
            family: family,
            description: description,
            source: source,
            variables: variables,
            steps: steps,
            labels: labels,
            file: file,
            location: location(of: familyNode),
            sourceLocation: location(of: top["from"]),
            templateHash: Hashing.sha256Hex(data)
        )
        template.lifecycle = lifecycle
        template.allowedSecrets = allowedSecrets
        template.provider = provider
        return template
    }

    /// `allow_secrets:` guest paths (absolute, `*` matching within one path component).
    private func parseAllowedSecrets(_ node: Node) -> [String] {
        guard let items = sequence(node, "allow_secrets") else { return [] }
        return items.compactMap { item in
            guard let path = string(item, "allow_secrets") else { return nil }
            guard path.hasPrefix("/"), !path.split(separator: "/").contains(".."), !path.contains("\n") else {
                error(at: item, "allow_secrets: '\(path)' must be an absolute guest path without '..'")
                return nil
            }
            return path
        }
    }

    private func parseLifecycle(_ node: Node) -> LifecyclePolicy {
        var policy = LifecyclePolicy()
        let keys = ["keep", "deprecate_after", "obsolete_after", "delete_after", "purge_after"]
        guard let f = mapping(node, "lifecycle", allowed: keys) else { return policy }
        if let k = f["keep"], let n = int(k, "keep") {
            if n >= 1 { policy.keep = n } else { error(at: k, "keep must be at least 1 (the head is always kept)") }
        }
        func duration(_ key: String) -> Int? {
            guard let value = f[key], let text = string(value, key) else { return nil }
            let units: [Character: Int] = ["s": 1, "m": 60, "h": 3600, "d": 86_400, "w": 7 * 86_400]
            guard let unit = text.last.flatMap({ units[$0] }), let n = Int(text.dropLast()), n >= 0 else {
                error(at: value, "\(key) must be a duration like 12h, 7d or 2w, got '\(text)'")
                return nil
            }
            return n * unit
        }
        if let d = duration("deprecate_after") { policy.deprecateAfter = d }
        if let d = duration("obsolete_after") { policy.obsoleteAfter = d }
        if let d = duration("delete_after") { policy.deleteAfter = d }
        if let d = duration("purge_after") { policy.purgeAfter = d }
        return policy
    }

    static let topKeys = ["image", "description", "from", "provider", "vars", "provision", "labels", "lifecycle", "allow_secrets"]

    // MARK: - Sections

    private func parseVariables(_ node: Node) -> [Variable] {
        guard let entries = mappingEntries(node, "vars") else { return [] }
        var result: [Variable] = []
        for (name, keyNode, value) in entries {
            guard Names.isValidIdentifier(name) else {
                error(at: keyNode, "invalid variable name '\(name)': must match [A-Za-z_][A-Za-z0-9_]{0,63}")
                continue
            }
            declared.insert(name)
            var defaultValue: String?
            var sensitive = false
            if let scalar = value.scalar, value.null == nil {
                // Shorthand `name: value` for a plain default.
                defaultValue = scalar.string
            } else if value.null != nil {
                defaultValue = nil
            } else if let fields = mapping(value, "variable '\(name)'", allowed: ["default", "sensitive", "description"]) {
                if let d = fields["default"] { defaultValue = rawScalar(d, "default") }
                if let s = fields["sensitive"] { sensitive = bool(s, "sensitive") ?? false }
                if let d = fields["description"] { _ = rawScalar(d, "description") }
            }
            let resolved = loader.overrides[name] ?? loader.environment["KILN_VAR_\(name)"] ?? defaultValue
            guard let resolved else {
                missing.insert(name)
                error(
                    at: keyNode,
                    "variable '\(name)' has no value: give it a default, set KILN_VAR_\(name) or pass --var \(name)=VALUE")
                continue
            }
            values[name] = resolved
            result.append(Variable(name: name, value: resolved, sensitive: sensitive))
        }
        return result
    }

    private func parseSource(_ node: Node) -> Source? {
        guard let entries = mappingEntries(node, "from") else { return nil }
        let kinds = ["debootstrap", "file", "url", "image", "provider_image"]
        let given = entries.filter { kinds.contains($0.key) }
        for (key, keyNode, _) in entries where !kinds.contains(key) {
            error(at: keyNode, "unknown key '\(key)' in from: expected one of \(kinds.joined(separator: ", "))")
        }
        guard given.count == 1, let (kind, _, value) = given.first else {
            if given.isEmpty {
                error(at: node, "from: needs exactly one of \(kinds.joined(separator: ", "))")
            } else {
                error(at: given[1].node, "from: has both '\(given[0].key)' and '\(given[1].key)'; give exactly one")
            }
            return nil
        }
        switch kind {
        case "image":
            guard let family = string(value, "from.image") else { return nil }
            guard Names.isValidFamily(family) else {
                error(at: value, "invalid family name '\(family)': must match [a-z0-9][a-z0-9-]{0,62}")
                return nil
            }
            return .image(family: family)
        case "provider_image":
            guard let id = string(value, "from.provider_image") else { return nil }
            guard !id.isEmpty, id.count <= 1024, !id.contains(where: \.isNewline) else {
                error(at: value, "from.provider_image: give the provider's image id (an AMI id such as ami-0abc1234 for aws)")
                return nil
            }
            return .providerImage(id: id)
        case "debootstrap":
            guard
                let f = mapping(
                    value, "from.debootstrap",
                    allowed: ["suite", "variant", "include", "mirror", "components", "signed_by", "trusted", "updates"])
            else {
                return nil
            }
            guard let suiteNode = f["suite"] else {
                error(at: value, "from.debootstrap: missing required key 'suite' (e.g. bookworm)")
                return nil
            }
            guard let suite = suiteName(suiteNode) else { return nil }
            let variant = f["variant"].flatMap { string($0, "variant") } ?? "minbase"
            let variants = ["minbase", "buildd", "required", "important", "standard", "essential", "apt", "debootstrap"]
            if !variants.contains(variant) {
                error(at: f["variant"], "unknown variant '\(variant)': expected one of \(variants.joined(separator: ", "))")
            }
            let include = f["include"].map { stringList($0, "include") } ?? []
            for (package, packageNode) in zip(include, f["include"]?.sequence.map(Array.init) ?? [])
            where !isDebianPackageName(package) {
                error(at: packageNode, "invalid package name '\(package)'")
            }
            var spec = Debootstrap(suite: suite, variant: variant, include: include, mirror: f["mirror"].flatMap(mirrorURL))
            spec.components = f["components"].flatMap(components) ?? spec.components
            spec.signedBy = f["signed_by"].flatMap(keyring)
            spec.trusted = f["trusted"].flatMap { bool($0, "trusted") } ?? false
            spec.updates = f["updates"].flatMap { sequence($0, "from.debootstrap.updates") }?.compactMap(parseUpdate) ?? []
            return .debootstrap(spec)
        case "file":
            guard let f = mapping(value, "from.file", allowed: ["path", "sha256"]) else { return nil }
            let path = required(f, "path", in: value, "from.file").flatMap { string($0, "path") }
            let sha = required(f, "sha256", in: value, "from.file").flatMap { sha256($0) }
            let absolute = path.map(resolvePath)
            if let path, let absolute, !FileManager.default.fileExists(atPath: absolute) {
                error(at: f["path"], "from.file: \(path) does not exist (looked at \(absolute))")
            }
            guard let absolute, let sha else { return nil }
            return .file(path: absolute, sha256: sha)
        default:
            guard let f = mapping(value, "from.url", allowed: ["url", "sha256"]) else { return nil }
            guard let url = required(f, "url", in: value, "from.url").flatMap({ string($0, "url") }),
                let sha = required(f, "sha256", in: value, "from.url").flatMap({ sha256($0) })
            else { return nil }
            guard let parsed = URL(string: url), ["http", "https", "file"].contains(parsed.scheme ?? "") else {
                error(at: f["url"], "from.url: '\(url)' is not an http, https or file URL")
                return nil
            }
            return .url(url: url, sha256: sha)
        }
    }

    /// An item of `from.debootstrap.updates`: a suite name, or a mapping with its own source fields.
    private func parseUpdate(_ node: Node) -> AptSuite? {
        if node.scalar != nil {
            return suiteName(node).map { AptSuite(suite: $0) }
        }
        let what = "from.debootstrap.updates item"
        guard let f = mapping(node, what, allowed: ["suite", "mirror", "components", "signed_by", "trusted"]) else { return nil }
        // Every field is checked, so one pass reports all of an item's errors.
        let suite = required(f, "suite", in: node, what).flatMap(suiteName)
        let mirror = f["mirror"].flatMap(mirrorURL)
        let components = f["components"].flatMap(components)
        let signedBy = f["signed_by"].flatMap(keyring)
        let trusted = f["trusted"].flatMap { bool($0, "trusted") }
        guard let suite else { return nil }
        var update = AptSuite(suite: suite, mirror: mirror)
        update.components = components
        update.signedBy = signedBy
        update.trusted = trusted
        return update
    }

    private func suiteName(_ node: Node) -> String? {
        guard let suite = string(node, "suite") else { return nil }
        guard !suite.isEmpty, suite.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || "-._".contains($0)) }),
            !suite.hasPrefix(".")
        else {
            error(at: node, "invalid suite '\(suite)': letters, digits, '-', '.' and '_' only")
            return nil
        }
        return suite
    }

    private func mirrorURL(_ node: Node) -> String? {
        guard let mirror = string(node, "mirror") else { return nil }
        guard URL(string: mirror)?.scheme.map({ ["http", "https", "file"].contains($0) }) == true else {
            error(at: node, "mirror must be an http, https or file URL, got '\(mirror)'")
            return nil
        }
        return mirror
    }

    private func components(_ node: Node) -> [String]? {
        let names = stringList(node, "components")
        for (name, item) in zip(names, node.sequence.map(Array.init) ?? [])
        where name.isEmpty || !name.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || "-/".contains($0)) }) {
            error(at: item, "invalid component '\(name)' (e.g. main, contrib, non-free-firmware)")
        }
        if names.isEmpty { error(at: node, "components: give at least one (e.g. [main])") }
        return names.isEmpty ? nil : names
    }

    /// A keyring path, relative to the template's file like other paths; it must exist.
    private func keyring(_ node: Node) -> String? {
        guard let path = string(node, "signed_by") else { return nil }
        let absolute = resolvePath(path)
        guard FileManager.default.fileExists(atPath: absolute) else {
            error(at: node, "signed_by: \(path) does not exist (looked at \(absolute))")
            return nil
        }
        return absolute
    }

    /// `provider: NAME` or `provider: {NAME: settings}`. qemu's and aws's settings are checked
    /// here, with their positions; a plugin's are passed to it as JSON and it checks them.
    private func parseProvider(_ node: Node) -> ProviderChoice {
        var choice = ProviderChoice(location: location(of: node))
        let example = "e.g. `provider: qemu` or `provider: {aws: {region: eu-west-1}}`"
        let name: String
        let nameNode: Node
        let settings: Node?
        if node.scalar != nil, node.null == nil {
            guard let given = string(node, "provider") else { return choice }
            (name, nameNode, settings) = (given, node, nil)
        } else {
            guard let entries = mappingEntries(node, "provider") else { return choice }
            guard entries.count == 1 else {
                error(at: node, "provider: name exactly one provider, \(example)")
                return choice
            }
            (name, nameNode) = (entries[0].key, entries[0].node)
            settings = entries[0].value.null == nil ? entries[0].value : nil
        }
        guard Names.isValidFamily(name) else {
            error(
                at: nameNode,
                "provider: '\(name)' is not a provider name: built in are \(ProviderChoice.builtIn.joined(separator: ", ")); a plugin's name matches [a-z0-9][a-z0-9-]*"
            )
            return choice
        }
        switch name {
        case "qemu":
            choice.settings = .qemu(settings.map(parseQemu) ?? QemuSettings())
        case "aws":
            choice.settings = .aws(settings.map(parseAWS) ?? AWSSettings())
        default:
            var json = "{}"
            if let settings {
                if case .mapping = settings {
                    json = jsonValue(settings, "provider.\(name)").flatMap(jsonText) ?? json
                } else {
                    error(at: settings, "provider.\(name) must be a mapping of the plugin's settings, got \(kindName(settings))")
                }
            }
            choice.settings = .plugin(name: name, json: json)
        }
        return choice
    }

    /// The keys are ``AWSSettings/Key``'s; every value a string (an instance type of `5` is "5").
    private func parseAWS(_ node: Node) -> AWSSettings {
        var settings = AWSSettings()
        guard let f = mapping(node, "provider.aws", allowed: AWSSettings.Key.allCases.map(\.rawValue)) else { return settings }
        for key in AWSSettings.Key.allCases {
            guard let value = f[key.rawValue] else { continue }
            let what = "provider.aws.\(key.rawValue)"
            if key.isList {
                settings.set(key, list: stringList(value, what))
            } else {
                settings.set(key, text: string(value, what))
            }
        }
        return settings
    }

    private func parseQemu(_ q: Node) -> QemuSettings {
        var settings = QemuSettings()
        guard let f = mapping(q, "provider.qemu", allowed: ["memory", "cpus", "disk_size"]) else { return settings }
        if let m = f["memory"], let bytes = size(m, "memory", defaultUnit: 1 << 20) {
            if bytes < 256 << 20 {
                error(at: m, "memory must be at least 256M")
            } else {
                settings.memoryMiB = Int(bytes >> 20)
            }
        }
        if let c = f["cpus"], let n = int(c, "cpus") {
            if (1...64).contains(n) { settings.cpus = n } else { error(at: c, "cpus must be between 1 and 64") }
        }
        if let d = f["disk_size"], let bytes = size(d, "disk_size", defaultUnit: 1) {
            if bytes < 512 << 20 { error(at: d, "disk_size must be at least 512M") } else { settings.diskSize = bytes }
        }
        return settings
    }

    static let stepKinds = ["shell", "file", "shell-local", "ansible", "breakpoint"]
    static let stepOptions = ["name", "timeout", "retries", "retry_delay", "pause_before", "when", "unless", "sensitive_output"]

    private func parseStep(_ node: Node, index: Int) -> Step? {
        let what = "provision[\(index)]"
        guard let entries = mappingEntries(node, what) else { return nil }
        let kinds = Self.stepKinds
        for (key, keyNode, _) in entries where !kinds.contains(key) && !Self.stepOptions.contains(key) {
            error(
                at: keyNode,
                "unknown key '\(key)' in \(what): expected a step kind (\(kinds.joined(separator: ", "))) or an option (\(Self.stepOptions.joined(separator: ", ")))"
            )
        }
        let given = entries.filter { kinds.contains($0.key) }
        let options = parseStepOptions(entries, what)
        guard given.count == 1, let (kindName, _, value) = given.first else {
            if given.count > 1 {
                error(at: given[1].node, "\(what) has both \(given[0].key) and \(given[1].key); use one step for each")
            } else if entries.allSatisfy({ kinds.contains($0.key) || Self.stepOptions.contains($0.key) }) {
                error(at: node, "\(what) needs one of \(kinds.joined(separator: ", "))")
            }
            return nil
        }
        let kind: Step.Kind?
        switch kindName {
        case "shell":
            kind = parseShell(value, "shell").map { .shell(inline: $0.inline, script: $0.script, env: $0.env) }
        case "shell-local":
            kind = parseShell(value, "shell-local").map { .shellLocal(inline: $0.inline, script: $0.script, env: $0.env) }
        case "file":
            kind = parseFileStep(value)
        case "ansible":
            kind = parseAnsible(value).map { .ansible($0) }
        default:
            kind = parseBreakpoint(value)
        }
        guard let kind, let options else { return nil }
        if case .breakpoint = kind,
            let key = ["timeout", "retries", "retry_delay", "sensitive_output"].first(where: { key in entries.contains { $0.key == key } })
        {
            error(at: entries.first { $0.key == key }?.node, "a breakpoint takes no \(key) (only name, pause_before, when, unless)")
            return nil
        }
        return Step(index: index, kind: kind, location: location(of: node), options: options)
    }

    /// The options beside a step's kind; nil when one of them is wrong (each is reported).
    private func parseStepOptions(_ entries: [(key: String, node: Node, value: Node)], _ what: String) -> StepOptions? {
        var options = StepOptions()
        let before = diagnostics.count
        for (key, _, value) in entries {
            switch key {
            case "name":
                if let name = string(value, "name") {
                    if name.isEmpty || name.contains("\n") { error(at: value, "name must be one non-empty line") }
                    options.name = name
                }
            case "timeout":
                if let d = stepDuration(value, "timeout") {
                    if d > .zero { options.timeout = d } else { error(at: value, "timeout must be more than 0") }
                }
            case "retries":
                if let n = int(value, "retries") {
                    if (0...100).contains(n) { options.retries = n } else { error(at: value, "retries must be between 0 and 100") }
                }
            case "retry_delay": if let d = stepDuration(value, "retry_delay") { options.retryDelay = d }
            case "pause_before": if let d = stepDuration(value, "pause_before") { options.pauseBefore = d }
            case "when": options.when = parseCondition(value, "when")
            case "unless": options.unless = parseCondition(value, "unless")
            case "sensitive_output": options.sensitiveOutput = bool(value, "sensitive_output") ?? false
            default: break
            }
        }
        return diagnostics.count == before ? options : nil
    }

    /// `when:`/`unless:`: `{provider: qemu}`, `{provider: [qemu, aws]}`, `{var: {NAME: value}}`.
    private func parseCondition(_ node: Node, _ what: String) -> StepCondition? {
        guard let f = mapping(node, what, allowed: ["provider", "var"]) else { return nil }
        var condition = StepCondition()
        if let p = f["provider"] {
            let names = p.sequence != nil ? stringList(p, "\(what).provider") : string(p, "\(what).provider").map { [$0] } ?? []
            for name in names where !Names.isValidFamily(name) {
                error(at: p, "\(what).provider: '\(name)' is not a provider name (e.g. qemu)")
            }
            if names.isEmpty { error(at: p, "\(what).provider: give a provider name (e.g. qemu)") }
            condition.providers = names
        }
        if let v = f["var"], let pairs = mappingEntries(v, "\(what).var") {
            for (name, keyNode, valueNode) in pairs {
                guard declared.contains(name) else {
                    error(
                        at: keyNode,
                        "\(what).var: undefined variable '\(name)'"
                            + (declared.isEmpty ? "" : " (declared: \(declared.sorted().joined(separator: ", ")))"))
                    continue
                }
                if let value = string(valueNode, "\(what).var.\(name)") { condition.variables[name] = value }
            }
        }
        if f.isEmpty { error(at: node, "\(what) needs provider or var") }
        return condition
    }

    private func parseShell(_ value: Node, _ what: String) -> (inline: String?, script: String?, env: [EnvVar])? {
        if value.scalar != nil {
            guard let inline = string(value, what) else { return nil }
            return (inline, nil, [])
        }
        guard let f = mapping(value, what, allowed: ["inline", "script", "env"]) else { return nil }
        var inline: String?
        if let i = f["inline"] {
            // A list of commands reads better in YAML than one long block; run them in order.
            inline = i.sequence != nil ? stringList(i, "inline").joined(separator: "\n") : string(i, "inline")
        }
        var script: String?
        if let s = f["script"], let path = string(s, "script") {
            let absolute = resolvePath(path)
            var isDirectory: ObjCBool = false
            if !FileManager.default.fileExists(atPath: absolute, isDirectory: &isDirectory) || isDirectory.boolValue {
                error(at: s, "script \(path) does not exist (looked at \(absolute))")
            }
            script = absolute
        }
        if (inline == nil) == (script == nil) {
            error(at: value, "\(what) step needs exactly one of 'inline' and 'script'")
            return nil
        }
        var env: [EnvVar] = []
        if let e = f["env"], let pairs = mappingEntries(e, "env") {
            for (name, keyNode, valueNode) in pairs {
                guard Names.isValidIdentifier(name) else {
                    error(at: keyNode, "invalid environment variable name '\(name)'")
                    continue
                }
                if let v = string(valueNode, "env.\(name)") { env.append(EnvVar(name: name, value: v)) }
            }
        }
        return (inline, script, env)
    }

    private func parseFileStep(_ value: Node) -> Step.Kind? {
        guard let f = mapping(value, "file", allowed: ["src", "dest", "direction"]) else { return nil }
        guard let src = required(f, "src", in: value, "file").flatMap({ string($0, "src") }),
            let dest = required(f, "dest", in: value, "file").flatMap({ string($0, "dest") })
        else { return nil }
        switch f["direction"].flatMap({ string($0, "direction") }) ?? "upload" {
        case "upload": break
        case "download":
            // Out of the guest: src is a guest path, dest a host path beside the template.
            guard src.hasPrefix("/") else {
                error(at: f["src"], "file src must be an absolute path in the guest when downloading, got '\(src)'")
                return nil
            }
            return .download(src: src, dest: resolvePath(dest))
        case let other:
            error(at: f["direction"], "file direction must be upload or download, got '\(other)'")
            return nil
        }
        guard dest.hasPrefix("/") else {
            error(at: f["dest"], "file dest must be an absolute path in the guest, got '\(dest)'")
            return nil
        }
        let absolute = resolvePath(src)
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: absolute, isDirectory: &isDirectory) else {
            error(at: f["src"], "file src \(src) does not exist (looked at \(absolute))")
            return nil
        }
        return .file(src: absolute, dest: dest, contentsOnly: isDirectory.boolValue && src.hasSuffix("/"))
    }

    private func parseAnsible(_ value: Node) -> AnsiblePlaybook? {
        guard let f = mapping(value, "ansible", allowed: ["playbook", "extra_vars", "galaxy_file"]) else { return nil }
        let playbook = required(f, "playbook", in: value, "ansible").flatMap { existingFile($0, "playbook") }
        let galaxy = f["galaxy_file"].flatMap { existingFile($0, "galaxy_file") }
        var extraVars = "{}"
        if let node = f["extra_vars"] {
            guard case .mapping = node else {
                error(at: node, "extra_vars must be a mapping, got \(kindName(node))")
                return nil
            }
            extraVars = jsonValue(node, "extra_vars").flatMap(jsonText) ?? extraVars
        }
        guard let playbook else { return nil }
        return AnsiblePlaybook(playbook: playbook, extraVars: extraVars, galaxyFile: galaxy)
    }

    /// Canonical JSON text (sorted keys) of a tree ``jsonValue(_:_:)`` made; it reports what it
    /// cannot convert, so a converted tree always serializes.
    private func jsonText(_ object: Any) -> String? {
        (try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys, .withoutEscapingSlashes]))
            .map { String(decoding: $0, as: UTF8.self) }
    }

    /// A YAML value as JSON (for Ansible's `--extra-vars`): plain scalars keep their YAML type,
    /// quoted ones are strings; `${var.NAME}` is substituted in strings.
    private func jsonValue(_ node: Node, _ what: String) -> Any? {
        switch node {
        case .mapping:
            guard let entries = mappingEntries(node, what) else { return nil }
            var object: [String: Any] = [:]
            var ok = true
            for (key, _, value) in entries {
                if let v = jsonValue(value, "\(what).\(key)") { object[key] = v } else { ok = false }
            }
            return ok ? object : nil
        case .sequence(let items):
            let values = items.map { jsonValue($0, "\(what) item") }
            return values.contains { $0 == nil } ? nil : values.map { $0! }
        case .scalar(let scalar):
            if let boolean = Self.boolean(scalar) { return boolean }
            if scalar.style == .plain {
                if node.null != nil { return NSNull() }
                if let n = Int(scalar.string) { return n }
                if let x = Double(scalar.string), x.isFinite { return x }
            }
            return string(node, what)
        case .alias:
            error(at: node, "\(what): aliases are not supported")
            return nil
        }
    }

    private func existingFile(_ node: Node, _ what: String) -> String? {
        guard let path = string(node, what) else { return nil }
        let absolute = resolvePath(path)
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: absolute, isDirectory: &isDirectory), !isDirectory.boolValue else {
            error(at: node, "\(what) \(path) does not exist (looked at \(absolute))")
            return nil
        }
        return absolute
    }

    /// `breakpoint:` alone, `breakpoint: "a note"` or `breakpoint: {note: "..."}`.
    private func parseBreakpoint(_ value: Node) -> Step.Kind? {
        if value.null != nil { return .breakpoint(note: nil) }
        if value.scalar != nil { return string(value, "breakpoint").map { .breakpoint(note: $0) } }
        guard let f = mapping(value, "breakpoint", allowed: ["note"]) else { return nil }
        return .breakpoint(note: f["note"].flatMap { string($0, "note") })
    }

    /// A step's duration: `500ms`, `30s`, `10m`, `2h`, `1h30m`; a bare number is seconds.
    private func stepDuration(_ node: Node, _ what: String) -> Duration? {
        guard let text = string(node, what)?.trimmingCharacters(in: .whitespaces) else { return nil }
        if let seconds = Int(text), seconds >= 0 { return .seconds(seconds) }
        var total: Duration = .zero
        var rest = Substring(text)
        let units: [(String, Duration)] = [("ms", .milliseconds(1)), ("s", .seconds(1)), ("m", .seconds(60)), ("h", .seconds(3600))]
        while !rest.isEmpty {
            let digits = rest.prefix { $0.isASCII && $0.isNumber }
            rest = rest.dropFirst(digits.count)
            guard let n = Int(digits), n < 1_000_000,
                let (unit, size) = units.first(where: { rest.hasPrefix($0.0) && !(($0.0 == "m") && rest.hasPrefix("ms")) })
            else {
                error(at: node, "\(what) must be a duration like 30s, 10m, 1h30m or 500ms, got '\(text)'")
                return nil
            }
            rest = rest.dropFirst(unit.count)
            total += size * n
        }
        guard !text.isEmpty else {
            error(at: node, "\(what) must be a duration like 30s, 10m, 1h30m or 500ms")
            return nil
        }
        return total
    }

    // MARK: - Typed readers

    private func mappingEntries(_ node: Node, _ what: String) -> [(key: String, node: Node, value: Node)]? {
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

    private func mapping(_ node: Node, _ what: String, allowed: [String]) -> [String: Node]? {
        guard let entries = mappingEntries(node, what) else { return nil }
        var result: [String: Node] = [:]
        for (key, keyNode, value) in entries {
            if allowed.contains(key) {
                result[key] = value
            } else {
                error(at: keyNode, "unknown key '\(key)' in \(what): expected \(allowed.joined(separator: ", "))")
            }
        }
        return result
    }

    private func required(_ fields: [String: Node], _ key: String, in node: Node, _ what: String) -> Node? {
        if let value = fields[key] { return value }
        error(at: node, "\(what): missing required key '\(key)'")
        return nil
    }

    private func sequence(_ node: Node, _ what: String) -> [Node]? {
        guard case .sequence(let s) = node else {
            error(at: node, "\(what) must be a list, got \(kindName(node))")
            return nil
        }
        return Array(s)
    }

    /// A scalar's text before interpolation (variable defaults are not themselves interpolated).
    private func rawScalar(_ node: Node, _ what: String) -> String? {
        guard let scalar = node.scalar, node.null == nil else {
            error(at: node, "\(what) must be a string, got \(kindName(node))")
            return nil
        }
        return scalar.string
    }

    /// A scalar with `${var.NAME}` substituted.
    private func string(_ node: Node, _ what: String) -> String? {
        rawScalar(node, what).flatMap { interpolate($0, at: node) }
    }

    private func stringList(_ node: Node, _ what: String) -> [String] {
        guard let items = sequence(node, what) else { return [] }
        return items.compactMap { string($0, "\(what) item") }
    }

    private func stringMap(_ node: Node, _ what: String, keyCheck: (String, Node) -> Bool) -> [String: String] {
        guard let entries = mappingEntries(node, what) else { return [:] }
        var result: [String: String] = [:]
        for (key, keyNode, value) in entries where keyCheck(key, keyNode) {
            if let v = string(value, "\(what).\(key)") { result[key] = v }
        }
        return result
    }

    private func labelKeyCheck(_ key: String, _ node: Node) -> Bool {
        if Names.isValidLabelKey(key) { return true }
        error(at: node, "invalid label key '\(key)': must match [a-z0-9][a-z0-9._/-]{0,62}")
        return false
    }

    private func int(_ node: Node, _ what: String) -> Int? {
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

    private static let booleans = ["true": true, "True": true, "TRUE": true, "false": false, "False": false, "FALSE": false]

    private func bool(_ node: Node, _ what: String) -> Bool? {
        if let scalar = node.scalar, let value = Self.boolean(scalar) { return value }
        let text = node.scalar?.string ?? ""
        let hint =
            ["yes", "no", "on", "off"].contains(text.lowercased())
            ? " (YAML 1.2 reads \(text) as a string)"
            : (Self.booleans[text] != nil ? " (unquoted)" : "")
        error(at: node, "\(what) must be true or false\(hint)")
        return nil
    }

    private func sha256(_ node: Node) -> String? {
        guard let text = string(node, "sha256") else { return nil }
        let hex = text.hasPrefix("sha256:") ? String(text.dropFirst(7)) : text
        guard hex.count == 64, hex.allSatisfy(\.isHexDigit) else {
            error(at: node, "sha256 must be 64 hexadecimal digits")
            return nil
        }
        return hex.lowercased()
    }

    /// `4G`, `512M`, `2048` (in `defaultUnit`s): sizes as people write them, binary units.
    private func size(_ node: Node, _ what: String, defaultUnit: UInt64) -> UInt64? {
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

    /// Replaces `${var.NAME}`; `$${` stands for a literal `${`.
    private func interpolate(_ text: String, at node: Node) -> String? {
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
                    output += value
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

    private func resolvePath(_ path: String) -> String {
        URL(fileURLWithPath: path, relativeTo: URL(fileURLWithPath: directory + "/")).standardizedFileURL.path
            + (path.hasSuffix("/") ? "/" : "")
    }

    /// Debian policy: lowercase letters, digits, `+ - .`; at least two characters, starting alphanumeric.
    private func isDebianPackageName(_ name: String) -> Bool {
        guard name.count >= 2, let first = name.unicodeScalars.first, first.isASCII,
            first.properties.isLowercase || ("0"..."9").contains(first)
        else { return false }
        return name.unicodeScalars.allSatisfy { scalar in
            scalar.isASCII && (scalar.properties.isLowercase || ("0"..."9").contains(scalar) || "+-.".unicodeScalars.contains(scalar))
        }
    }

    private func kindName(_ node: Node) -> String {
        switch node {
        case .mapping: return "a mapping"
        case .sequence: return "a list"
        case .scalar: return node.null != nil ? "nothing" : "'\(node.scalar?.string ?? "")'"
        case .alias: return "an alias"
        }
    }

    private func location(of node: Node?) -> SourceLocation {
        SourceLocation(file: file, line: node?.mark?.line ?? 1, column: node?.mark?.column ?? 1)
    }

    private func error(at node: Node?, _ message: String) {
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
