import Foundation
import KilnCore
import Yams

/// Turns a Packer QEMU template into a kiln template (docs/from-packer.md), and says, with
/// positions, everything it could not carry over.
public struct PackerImport: Sendable {
    public struct Note: Sendable, CustomStringConvertible {
        public let location: SourceLocation
        public let message: String
        public var description: String { "\(location): warning: \(message)" }
    }

    /// The kiln template's YAML.
    public let yaml: String
    public let family: String
    public let notes: [Note]

    /// Settings of Packer's QEMU builder that kiln decides itself: how it boots, logs in, shuts
    /// down and stores the disk.
    static let managed: Set<String> = [
        "type", "name", "accelerator", "headless", "use_default_display", "vnc_bind_address", "vnc_port_min", "vnc_port_max",
        "boot_wait", "communicator", "ssh_username", "ssh_password", "ssh_private_key_file", "ssh_timeout", "ssh_wait_timeout",
        "ssh_port", "ssh_host_port_min", "ssh_host_port_max", "shutdown_command", "shutdown_timeout", "output_directory", "vm_name",
        "format", "qemuargs", "net_device", "disk_interface", "qemu_binary", "machine_type", "disk_compression",
        "skip_compaction", "disk_cache", "disk_discard", "disk_detect_zeroes", "display", "http_directory", "http_port_min",
        "http_port_max", "ssh_handshake_attempts", "cpu_model", "efi_boot", "firmware", "use_backing_file",
    ]

    public static func convert(_ template: PackerTemplate, family givenFamily: String? = nil) throws -> PackerImport {
        var converter = Converter(template: template)
        return try converter.run(family: givenFamily)
    }
}

private struct Converter {
    let template: PackerTemplate
    var notes: [PackerImport.Note] = []

    init(template: PackerTemplate) { self.template = template }

    mutating func note(_ location: SourceLocation, _ message: String) {
        notes.append(PackerImport.Note(location: location, message: message))
    }

    mutating func run(family givenFamily: String?) throws -> PackerImport {
        let builds = template.sources.filter { $0.type != "build-source" }
        guard let source = builds.first(where: { $0.type == "qemu" }) else {
            let kinds = builds.map(\.type).joined(separator: ", ")
            throw KilnError(
                .invalidInput,
                "\(template.file): no qemu builder or source to import (found: \(kinds.isEmpty ? "none" : kinds)); kiln import packer reads Packer's QEMU templates"
            )
        }
        for other in builds where other.location != source.location {
            note(
                other.location, "\(other.type) source '\(other.name)' is not imported: one kiln template is made from the first qemu source"
            )
        }
        let family = givenFamily ?? Self.familyName(source.name == "qemu" ? (template.file as NSString).lastPathComponent : source.name)
        guard Names.isValidFamily(family) else {
            throw KilnError(.invalidInput, "--family \(family): not a family name ([a-z0-9][a-z0-9-]{0,62})")
        }
        var top: [(Node, Node)] = [("image", Node(family))]
        top.append(("description", Node("Imported from \((template.file as NSString).lastPathComponent) by kiln import packer")))
        top.append(("from", from(source)))
        if let provider = provider(source) { top.append(("provider", provider)) }
        let variables = variables()
        if !variables.isEmpty { top.append(("vars", Node(mapping: variables))) }
        var steps: [Node] = []
        for provisioner in template.provisioners {
            steps += step(provisioner, sourceName: source.name)
        }
        if !steps.isEmpty { top.append(("provision", Node(sequence: steps))) }
        for post in template.postProcessors {
            note(
                post.location,
                "post-processor '\(post.type)' is not carried over: kiln export writes compressed, checksummed and pushed artifacts with a manifest (docs/export.md)"
            )
        }
        notes.sort { ($0.location.line, $0.location.column) < ($1.location.line, $1.location.column) }
        let body = try Yams.serialize(node: Node(mapping: top), width: -1, sortKeys: false)
        let header =
            "# Imported from \(template.file) by kiln import packer (docs/from-packer.md).\n"
            + notes.map { "# \($0.location.line):\($0.location.column): \($0.message)\n" }.joined()
        return PackerImport(yaml: header + body, family: family, notes: notes)
    }

    static func familyName(_ text: String) -> String {
        var name = text.lowercased().replacingOccurrences(of: ".pkr.hcl", with: "").replacingOccurrences(of: ".json", with: "")
        name = String(name.map { ($0.isLetter && $0.isASCII) || $0.isNumber ? $0 : "-" })
        while name.contains("--") { name = name.replacingOccurrences(of: "--", with: "-") }
        name = name.trimmingCharacters(in: CharacterSet(charactersIn: "-"))
        return String(name.prefix(63)).isEmpty ? "imported" : String(name.prefix(63))
    }

    // MARK: The source disk

    mutating func from(_ source: PackerTemplate.Source) -> Node {
        let isDisk = source.setting("disk_image")?.value == .bool(true)
        let url = source.setting("iso_url") ?? source.setting("iso_urls")
        guard isDisk, let url, let text = text(url) ?? url.value.listFirst else {
            let at = source.setting("boot_command")?.location ?? source.location
            note(
                at,
                "an installer ISO driven by boot_command is not carried over: kiln bootstraps Debian without an installer; the template starts from debootstrap bookworm instead: check the suite and add the packages your installer selected (from.debootstrap.include)"
            )
            return Node(mapping: [("debootstrap", Node(mapping: [("suite", Node("bookworm"))]))])
        }
        var checksum = source.setting("iso_checksum").flatMap { self.text($0) }
        if let given = checksum, given.hasPrefix("file:") || given == "none" {
            checksum = nil
        }
        if let given = checksum, given.contains(":") && !given.hasPrefix("sha256:") {
            note(
                source.setting("iso_checksum")!.location,
                "iso_checksum \(given.split(separator: ":")[0]) is not SHA-256: kiln verifies source disks by SHA-256; give sha256")
            checksum = nil
        }
        let local = !text.contains("://") || text.hasPrefix("file://")
        let path = text.hasPrefix("file://") ? String(text.dropFirst(7)) : text
        if checksum == nil, local, !path.contains("${") {
            // kiln refuses an unverified disk: the file's hash now is what the template pins.
            let absolute =
                path.hasPrefix("/")
                ? path : ((template.file as NSString).deletingLastPathComponent as NSString).appendingPathComponent(path)
            if let hash = try? Hashing.sha256Hex(fileAt: absolute) {
                checksum = hash
                note(url.location, "iso_checksum gave no SHA-256: the disk's hash now (\(hash.prefix(12))…) is pinned in from.file.sha256")
            }
        }
        if checksum == nil {
            note(url.location, "no SHA-256 for the disk: kiln verifies every source disk; set from.\(local ? "file" : "url").sha256")
        }
        let key = local ? "file" : "url"
        var fields: [(Node, Node)] = [(Node(local ? "path" : "url"), Node(path))]
        fields.append(("sha256", Node(checksum.map { $0.hasPrefix("sha256:") ? String($0.dropFirst(7)) : $0 } ?? "")))
        return Node(mapping: [(Node(key), Node(mapping: fields))])
    }

    mutating func provider(_ source: PackerTemplate.Source) -> Node? {
        var settings: [(Node, Node)] = []
        if let memory = source.setting("memory"), let value = text(memory) { settings.append(("memory", Node(value))) }
        if let cpus = source.setting("cpus"), let value = text(cpus) { settings.append(("cpus", Node(value))) }
        var managedHere: [String] = []
        for setting in source.settings {
            switch setting.key {
            case "type", "name", "memory", "cpus", "disk_image", "iso_url", "iso_urls", "iso_checksum", "boot_command": continue
            case "disk_size":
                note(
                    setting.location,
                    "disk_size is not carried over: a disk kiln starts from keeps its size (an instance's root grows to its disk)")
            case "ssh_username":
                if setting.value.scalar != "root" {
                    note(setting.location, "ssh_username \(setting.value.scalar ?? "?"): kiln runs every step as root with its own key")
                }
                managedHere.append(setting.key)
            case let key where PackerImport.managed.contains(key): managedHere.append(key)
            default: note(setting.location, "qemu setting '\(setting.key)' is not carried over")
            }
        }
        if !managedHere.isEmpty {
            note(source.location, "kiln decides these itself: \(managedHere.joined(separator: ", ")) (docs/from-packer.md)")
        }
        return settings.isEmpty ? nil : Node(mapping: [("qemu", Node(mapping: settings))])
    }

    // MARK: Variables

    mutating func variables() -> [(Node, Node)] {
        template.variables.map { variable in
            var fields: [(Node, Node)] = []
            if let value = variable.defaultValue {
                if let scalar = value.scalar {
                    fields.append(("default", Node(scalar, Tag(.str), .doubleQuoted)))
                } else {
                    note(
                        variable.location,
                        "variable '\(variable.name)': its default is not a string, number or bool; kiln variables are text")
                }
            }
            if variable.sensitive { fields.append(("sensitive", Node("true", Tag(.bool)))) }
            return (Node(variable.name), Node(mapping: fields))
        }
    }

    /// A scalar's text with `${local.X}` replaced by literal locals; nil (and a note) when it
    /// holds an expression kiln does not evaluate.
    mutating func text(_ setting: PackerTemplate.Setting) -> String? {
        text(setting.value, at: setting.location, what: setting.key)
    }

    mutating func text(_ value: PackerValue, at location: SourceLocation, what: String) -> String? {
        if let expression = value.unevaluated {
            note(
                location,
                "\(what): \(expression) is not evaluated by kiln (HCL functions and Packer's template functions are not carried over)")
            return nil
        }
        guard var text = value.scalar else { return nil }
        for (name, local) in template.locals where text.contains("${local.\(name)}") {
            guard let literal = local.scalar, local.unevaluated == nil else {
                note(location, "\(what): local.\(name) is not a literal value; kiln cannot carry it over")
                return nil
            }
            text = text.replacingOccurrences(of: "${local.\(name)}", with: literal)
        }
        if let range = text.range(of: "${local.") {
            note(location, "\(what): \(text[range.lowerBound...].prefix { $0 != "}" })} names no local kiln knows")
            return nil
        }
        return text
    }

    mutating func texts(_ setting: PackerTemplate.Setting) -> [String] {
        switch setting.value {
        case .list(let items): items.compactMap { text($0, at: setting.location, what: setting.key) }
        default: text(setting).map { [$0] } ?? []
        }
    }

    // MARK: Provisioners

    /// The step options every provisioner takes.
    mutating func options(_ provisioner: PackerTemplate.Provisioner, handled: Set<String>) -> [(Node, Node)] {
        var options: [(Node, Node)] = []
        for setting in provisioner.settings where !handled.contains(setting.key) {
            switch setting.key {
            case "type", "only", "except": continue
            case "name": if let value = text(setting) { options.append(("name", Node(value))) }
            case "max_retries": if let value = text(setting) { options.append(("retries", Node(value, Tag(.int)))) }
            case "pause_before": if let value = text(setting) { options.append(("pause_before", Node(value))) }
            case "timeout": if let value = text(setting) { options.append(("timeout", Node(value))) }
            case "expect_disconnect": continue
            default:
                note(setting.location, "\(provisioner.type) setting '\(setting.key)' is not carried over")
            }
        }
        return options
    }

    mutating func step(_ provisioner: PackerTemplate.Provisioner, sourceName: String) -> [Node] {
        func names(_ key: String) -> [String] {
            provisioner.setting(key).map { setting in
                texts(setting).map { $0.split(separator: ".").last.map(String.init) ?? $0 }
            } ?? []
        }
        if let disconnect = provisioner.setting("expect_disconnect"), disconnect.value == .bool(true) {
            note(
                disconnect.location,
                "\(provisioner.type) provisioner left out: expect_disconnect means it reboots the machine, and kiln's steps run on one boot (reboot in a test boot, or move the change into the base)"
            )
            return []
        }
        let only = names("only")
        let except = names("except")
        if (!only.isEmpty && !only.contains(sourceName)) || except.contains(sourceName) {
            note(provisioner.location, "\(provisioner.type) provisioner left out: its only/except excludes source '\(sourceName)'")
            return []
        }
        switch provisioner.type {
        case "shell", "shell-local":
            return shell(provisioner, kind: provisioner.type)
        case "file":
            var handled: Set<String> = ["source", "sources", "destination", "direction", "generated"]
            var sources = provisioner.setting("source").map { texts($0) } ?? []
            sources += provisioner.setting("sources").map { texts($0) } ?? []
            if let content = provisioner.setting("content") {
                handled.insert("content")
                note(
                    content.location,
                    "file content is not carried over: kiln uploads files; write the content into a file beside the template and give it as src"
                )
            }
            guard let destination = provisioner.setting("destination").flatMap({ text($0) }), !sources.isEmpty else {
                note(provisioner.location, "file provisioner without source and destination: not carried over")
                return []
            }
            let download = provisioner.setting("direction").flatMap { text($0) } == "download"
            let options = options(provisioner, handled: handled)
            return sources.map { source in
                var fields: [(Node, Node)] = [("src", Node(source)), ("dest", Node(destination))]
                if download { fields.append(("direction", Node("download"))) }
                return Node(mapping: [(Node("file"), Node(mapping: fields))] + options)
            }
        case "ansible":
            guard let playbook = provisioner.setting("playbook_file").flatMap({ text($0) }) else {
                note(provisioner.location, "ansible provisioner without playbook_file: not carried over")
                return []
            }
            var fields: [(Node, Node)] = [("playbook", Node(playbook))]
            var handled: Set<String> = ["playbook_file"]
            if let galaxy = provisioner.setting("galaxy_file").flatMap({ text($0) }) {
                fields.append(("galaxy_file", Node(galaxy)))
                handled.insert("galaxy_file")
            }
            if let arguments = provisioner.setting("extra_arguments") {
                handled.insert("extra_arguments")
                var extra: [(Node, Node)] = []
                let words = texts(arguments)
                var index = 0
                while index < words.count {
                    let word = words[index]
                    if (word == "-e" || word == "--extra-vars"), index + 1 < words.count {
                        for pair in words[index + 1].split(separator: " ") {
                            let parts = pair.split(separator: "=", maxSplits: 1)
                            if parts.count == 2 { extra.append((Node(String(parts[0])), Node(String(parts[1]), Tag(.str), .doubleQuoted))) }
                        }
                        index += 2
                    } else {
                        note(arguments.location, "ansible extra_arguments '\(word)' is not carried over: kiln passes extra_vars only")
                        index += 1
                    }
                }
                if !extra.isEmpty { fields.append(("extra_vars", Node(mapping: extra))) }
            }
            return [Node(mapping: [(Node("ansible"), Node(mapping: fields))] + options(provisioner, handled: handled))]
        case "breakpoint":
            let noteText = provisioner.setting("note").flatMap { text($0) }
            return [
                Node(
                    mapping: [(Node("breakpoint"), Node(mapping: noteText.map { [(Node("note"), Node($0))] } ?? []))]
                        + options(provisioner, handled: ["note", "disable"]))
            ]
        default:
            let windows = provisioner.type.hasPrefix("windows") || provisioner.type == "powershell"
            note(
                provisioner.location,
                windows
                    ? "\(provisioner.type) provisioner is not carried over: kiln builds Linux images"
                    : "\(provisioner.type) provisioner is not carried over: kiln's steps are shell, file, shell-local, ansible and breakpoint"
            )
            return []
        }
    }

    mutating func shell(_ provisioner: PackerTemplate.Provisioner, kind: String) -> [Node] {
        var handled: Set<String> = ["inline", "script", "scripts", "environment_vars", "command"]
        var env: [(Node, Node)] = []
        if let variables = provisioner.setting("environment_vars") {
            for pair in texts(variables) {
                let parts = pair.split(separator: "=", maxSplits: 1)
                guard parts.count == 2 else { continue }
                env.append((Node(String(parts[0])), Node(String(parts[1]), Tag(.str), .doubleQuoted)))
            }
        }
        for key in [
            "execute_command", "inline_shebang", "remote_folder", "remote_path", "valid_exit_codes", "env_var_format", "use_env_var_file",
        ] {
            if let setting = provisioner.setting(key) {
                handled.insert(key)
                note(setting.location, "\(key) is not carried over: kiln runs a step's script with /bin/sh -e as root (docs/templates.md)")
            }
        }
        let options = options(provisioner, handled: handled)
        var bodies: [Node] = []
        var inline = provisioner.setting("inline").map { texts($0) } ?? []
        if let command = provisioner.setting("command").flatMap({ text($0) }) { inline.append(command) }
        if !inline.isEmpty {
            var fields: [(Node, Node)] = [("inline", Node(sequence: inline.map { Node($0) }))]
            if !env.isEmpty { fields.append(("env", Node(mapping: env))) }
            bodies.append(Node(mapping: fields))
        }
        var scripts = provisioner.setting("script").map { texts($0) } ?? []
        scripts += provisioner.setting("scripts").map { texts($0) } ?? []
        for script in scripts {
            var fields: [(Node, Node)] = [("script", Node(script))]
            if !env.isEmpty { fields.append(("env", Node(mapping: env))) }
            bodies.append(Node(mapping: fields))
        }
        if bodies.isEmpty { note(provisioner.location, "\(kind) provisioner with nothing to run: not carried over") }
        return bodies.map { Node(mapping: [(Node(kind), $0)] + options) }
    }
}

extension PackerValue {
    var listFirst: String? { if case .list(let items) = self { items.first?.scalar } else { nil } }
}
