import Foundation
import KilnCore
import KilnModel
import Yams

/// `provision:`: each step's kind and the options every kind takes.
extension TemplateParser {

    func parseStep(_ node: Node, index: Int, section: Step.Section = .provision) -> Step? {
        let what = "\(section.rawValue)[\(index)]"
        guard let entries = mappingEntries(node, what) else { return nil }
        let kinds = StepKind.names
        let optionNames = StepOption.names
        for (key, keyNode, _) in entries where !kinds.contains(key) && !optionNames.contains(key) {
            error(
                at: keyNode,
                "unknown key '\(key)' in \(what): expected a step kind (\(kinds.joined(separator: ", "))) or an option (\(optionNames.joined(separator: ", ")))"
            )
        }
        let given = entries.filter { kinds.contains($0.key) }
        let options = parseStepOptions(entries, what)
        guard given.count == 1, let (kindName, _, value) = given.first else {
            if given.count > 1 {
                error(at: given[1].node, "\(what) has both \(given[0].key) and \(given[1].key); use one step for each")
            } else if entries.allSatisfy({ kinds.contains($0.key) || optionNames.contains($0.key) }) {
                error(at: node, "\(what) needs one of \(kinds.joined(separator: ", "))")
            }
            return nil
        }
        let kind: Step.Kind?
        switch StepKind(rawValue: kindName) {
        case .shell?:
            kind = parseShell(value, kindName).map { .shell(inline: $0.inline, script: $0.script, env: $0.env) }
        case .shellLocal?:
            kind = parseShell(value, kindName).map { .shellLocal(inline: $0.inline, script: $0.script, env: $0.env) }
        case .file?:
            kind = parseFileStep(value)
        case .ansible?:
            kind = parseAnsible(value).map { .ansible($0) }
        case .breakpoint?, nil:
            kind = parseBreakpoint(value)
        }
        guard let kind, let options else { return nil }
        if case .breakpoint = kind,
            let key = [StepOption.timeout, .retries, .retryDelay, .sensitiveOutput].map(\.rawValue).first(where: { key in
                entries.contains { $0.key == key }
            })
        {
            error(at: entries.first { $0.key == key }?.node, "a breakpoint takes no \(key) (only name, pause_before, when, unless)")
            return nil
        }
        return Step(index: index, kind: kind, location: location(of: node), options: options, section: section)
    }

    /// The options beside a step's kind; nil when one of them is wrong (each is reported).
    func parseStepOptions(_ entries: [(key: String, node: Node, value: Node)], _ what: String) -> StepOptions? {
        var options = StepOptions()
        let before = diagnostics.count
        for (key, _, value) in entries {
            switch StepOption(rawValue: key) {
            case .name?:
                if let name = string(value, "name") {
                    if name.isEmpty || name.contains("\n") { error(at: value, "name must be one non-empty line") }
                    options.name = name
                }
            case .timeout?:
                if let d = stepDuration(value, "timeout") {
                    if d > .zero { options.timeout = d } else { error(at: value, "timeout must be more than 0") }
                }
            case .retries?:
                if let n = int(value, "retries") {
                    if (0...100).contains(n) { options.retries = n } else { error(at: value, "retries must be between 0 and 100") }
                }
            case .retryDelay?: if let d = stepDuration(value, "retry_delay") { options.retryDelay = d }
            case .pauseBefore?: if let d = stepDuration(value, "pause_before") { options.pauseBefore = d }
            case .when?: options.when = parseCondition(value, "when")
            case .unless?: options.unless = parseCondition(value, "unless")
            case .sensitiveOutput?: options.sensitiveOutput = bool(value, "sensitive_output") ?? false
            case nil: break
            }
        }
        return diagnostics.count == before ? options : nil
    }

    /// `when:`/`unless:`: `{provider: qemu}`, `{provider: [qemu, aws]}`, `{var: {NAME: value}}`.
    func parseCondition(_ node: Node, _ what: String) -> StepCondition? {
        guard let f = mapping(node, what, keys: ConditionKey.self) else { return nil }
        var condition = StepCondition()
        if let p = f[.provider] {
            let names = p.sequence != nil ? stringList(p, "\(what).provider") : string(p, "\(what).provider").map { [$0] } ?? []
            for name in names where !Names.isValidFamily(name) {
                error(at: p, "\(what).provider: '\(name)' is not a provider name (e.g. qemu)")
            }
            if names.isEmpty { error(at: p, "\(what).provider: give a provider name (e.g. qemu)") }
            condition.providers = names
        }
        if let v = f[.var], let pairs = mappingEntries(v, "\(what).var") {
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
        if f.nodes.isEmpty { error(at: node, "\(what) needs provider or var") }
        return condition
    }

    func parseShell(_ value: Node, _ what: String) -> (inline: String?, script: String?, env: [EnvVar])? {
        if value.scalar != nil {
            guard let inline = shellText(value, what) else { return nil }
            return (inline.text, nil, shellVariables(inline.names))
        }
        guard let f = mapping(value, what, keys: ShellKey.self) else { return nil }
        var inline: String?
        var referenced: [String] = []
        if let i = f[.inline] {
            // A list of commands reads better in YAML than one long block; run them in order.
            let lines =
                i.sequence != nil
                ? (sequence(i, "inline") ?? []).compactMap { shellText($0, "inline item") } : [shellText(i, "inline")].compactMap { $0 }
            inline = lines.isEmpty && i.sequence == nil ? nil : lines.map(\.text).joined(separator: "\n")
            for name in lines.flatMap(\.names) where !referenced.contains(name) { referenced.append(name) }
        }
        var script: String?
        if let s = f[.script], let path = string(s, "script") {
            let absolute = resolvePath(path)
            _ = inside(absolute, path, at: s, "script")
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
        if let e = f[.env], let pairs = mappingEntries(e, "env") {
            for (name, keyNode, valueNode) in pairs {
                guard Names.isValidIdentifier(name) else {
                    error(at: keyNode, "invalid environment variable name '\(name)'")
                    continue
                }
                if let v = string(valueNode, "env.\(name)") { env.append(EnvVar(name: name, value: v)) }
            }
        }
        // A variable the script names reaches it through the environment; `env:` can set the
        // same name itself, and then its value is the one the script sees.
        env += shellVariables(referenced).filter { generated in !env.contains { $0.name == generated.name } }
        return (inline, script, env)
    }

    func parseFileStep(_ value: Node) -> Step.Kind? {
        guard let f = mapping(value, "file", keys: FileStepKey.self) else { return nil }
        guard let src = required(f, .src, in: value, "file").flatMap({ string($0, "src") }),
            let dest = required(f, .dest, in: value, "file").flatMap({ string($0, "dest") })
        else { return nil }
        switch f[.direction].flatMap({ string($0, "direction") }) ?? "upload" {
        case "upload": break
        case "download":
            // Out of the guest: src is a guest path, dest a host path beside the template.
            guard src.hasPrefix("/") else {
                error(at: f[.src], "file src must be an absolute path in the guest when downloading, got '\(src)'")
                return nil
            }
            // Anywhere on the host (a CI job's artifacts directory, say): a template that can run
            // shell-local steps can write the host anyway; what it reads into images is what is limited.
            return .download(src: src, dest: resolvePath(dest))
        case let other:
            error(at: f[.direction], "file direction must be upload or download, got '\(other)'")
            return nil
        }
        guard dest.hasPrefix("/") else {
            error(at: f[.dest], "file dest must be an absolute path in the guest, got '\(dest)'")
            return nil
        }
        let absolute = resolvePath(src)
        // A link is judged by what it points at: a link to /etc/shadow is a path outside too.
        let target = URL(fileURLWithPath: absolute).resolvingSymlinksInPath().path
        guard inside(absolute, src, at: f[.src], "file src"),
            target == absolute || inside(target, src + " (a link to " + target + ")", at: f[.src], "file src")
        else {
            return nil
        }
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: absolute, isDirectory: &isDirectory) else {
            error(at: f[.src], "file src \(src) does not exist (looked at \(absolute))")
            return nil
        }
        // Hashed for the build key and read for the upload: a device or a FIFO (/dev/zero)
        // would be read forever.
        let type = (try? FileManager.default.attributesOfItem(atPath: target))?[.type] as? FileAttributeType
        guard type == .typeRegular || type == .typeDirectory else {
            error(at: f[.src], "file src \(src) is not a regular file or a directory (\(absolute))")
            return nil
        }
        return .file(src: absolute, dest: dest, contentsOnly: isDirectory.boolValue && src.hasSuffix("/"))
    }

    func parseAnsible(_ value: Node) -> AnsiblePlaybook? {
        guard let f = mapping(value, "ansible", keys: AnsibleKey.self) else { return nil }
        let playbook = required(f, .playbook, in: value, "ansible").flatMap { existingFile($0, "playbook") }
        let galaxy = f[.galaxyFile].flatMap { existingFile($0, "galaxy_file") }
        var extraVars = "{}"
        if let node = f[.extraVars] {
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
    func jsonText(_ object: Any) -> String? {
        (try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys, .withoutEscapingSlashes]))
            .map { String(decoding: $0, as: UTF8.self) }
    }

    /// A YAML value as JSON (for Ansible's `--extra-vars`): plain scalars keep their YAML type,
    /// quoted ones are strings; `${var.NAME}` is substituted in strings.
    func jsonValue(_ node: Node, _ what: String) -> Any? {
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

    func existingFile(_ node: Node, _ what: String) -> String? {
        guard let path = string(node, what) else { return nil }
        let absolute = resolvePath(path)
        guard inside(absolute, path, at: node, what) else { return nil }
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: absolute, isDirectory: &isDirectory), !isDirectory.boolValue else {
            error(at: node, "\(what) \(path) does not exist (looked at \(absolute))")
            return nil
        }
        return absolute
    }

    /// `breakpoint:` alone, `breakpoint: "a note"` or `breakpoint: {note: "..."}`.
    func parseBreakpoint(_ value: Node) -> Step.Kind? {
        if value.null != nil { return .breakpoint(note: nil) }
        if value.scalar != nil { return string(value, "breakpoint").map { .breakpoint(note: $0) } }
        guard let f = mapping(value, "breakpoint", keys: BreakpointKey.self) else { return nil }
        return .breakpoint(note: f[.note].flatMap { string($0, "note") })
    }

    /// A step's duration: `500ms`, `30s`, `10m`, `2h`, `1h30m`; a bare number is seconds.
    func stepDuration(_ node: Node, _ what: String) -> Duration? {
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
}
