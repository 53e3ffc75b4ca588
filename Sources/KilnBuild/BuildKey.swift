import Foundation
import KilnCore
import KilnModel
import KilnStore
import KilnTemplates

/// Everything that determines an image's content, as named values. The build key is the
/// SHA-256 of these entries in canonical form; the entries themselves are stored with the image
/// so `kiln plan` can say *why* an image must be rebuilt.
///
/// Canonical: sorted by name, one `name=value` line each; paths relative to the template's
/// directory; file contents by hash; no timestamps. The same inputs give the same key on any
/// machine and in any run.
public struct KeyInputs: Sendable, Equatable, Codable {
    public var entries: [String: String]

    public init(_ entries: [String: String] = [:]) { self.entries = entries }

    public var key: String {
        Hashing.sha256Hex(entries.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)\n" }.joined())
    }

    public var json: String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        return String(decoding: (try? encoder.encode(entries)) ?? Data("{}".utf8), as: UTF8.self)
    }

    public init(json: String?) {
        entries = json.flatMap { try? JSONDecoder().decode([String: String].self, from: Data($0.utf8)) } ?? [:]
    }
}

public enum BuildKeys {
    /// Bumped when kiln changes how an image's disk is made, so every image rebuilds once.
    /// 2: partitioned, boot-loaded disks (docs/images.md). Images a provider keeps (an AMI)
    /// did not change and keep 1, so their keys stay valid.
    public static let imageFormatVersion = "2"
    static func imageFormat(provider: String) -> String { provider == "qemu" ? imageFormatVersion : "1" }

    /// The key inputs of `template` built on `parent` (a layer) or on `source` (a base).
    /// - Parameter provider: steps that `when:`/`unless:` leave out for this provider are no input.
    /// - Parameter conceal: how a value holding a secret is entered: the catalog's keyed hash
    ///   (``Catalog/concealer()``), so the stored inputs do not let anyone guess the secret.
    public static func inputs(
        for template: Template, parent: ImageRecord?, source: SourceIdentity?, secrets: [String], provider: String = "qemu",
        conceal: Concealer
    ) throws -> KeyInputs {
        var e: [String: String] = ["kiln.image-format": imageFormat(provider: template.provider.name)]
        let directory = URL(fileURLWithPath: template.file).deletingLastPathComponent().path
        func hidden(_ value: String) -> String {
            secrets.contains(where: { !$0.isEmpty && value.contains($0) }) ? conceal(value) : value
        }
        if let parent {
            e["parent"] = parent.digest
        } else if let source {
            e.merge(source.fields) { _, new in new }
            if template.provider.name == "qemu" { e["provider.qemu.disk_size"] = String(template.qemu.diskSize) }
        }
        // An AMI and a qcow2 disk are different images; qemu's keys stay as they were before providers.
        if template.provider.name != "qemu" {
            e["provider"] = template.provider.name
            if template.provider.settings.json != "{}" { e["provider.settings"] = hidden(template.provider.settings.json) }
        }
        if let description = template.description { e["description"] = hidden(description) }
        for (key, value) in template.labels { e["labels.\(key)"] = hidden(value) }
        for variable in template.variables {
            e["var.\(variable.name)"] = variable.sensitive ? conceal(variable.value) : hidden(variable.value)
        }
        // A step's name, timeout, retries and pauses change how it runs, not what it makes.
        e.merge(try stepInputs(template.steps(for: provider), directory: directory, hidden: hidden)) { _, new in new }
        return KeyInputs(e)
    }

    /// What each step puts into the image, by `SECTION[INDEX].…`: inline text and scripts by
    /// hash, uploaded trees, environment values (a secret concealed by `hidden`).
    static func stepInputs(_ steps: [Step], directory: String, hidden: (String) -> String) throws -> [String: String] {
        var e: [String: String] = [:]
        for step in steps {
            let p = "\(step.section.rawValue)[\(step.index)]"
            switch step.kind {
            case .shell(let inline, let script, let env), .shellLocal(let inline, let script, let env):
                let q = "\(p).\(step.kind.name)"
                if let inline { e[q] = "sha256:" + Hashing.sha256Hex(inline) }
                if let script {
                    e["\(q).script"] = relative(script, to: directory) + " sha256:" + (try Hashing.sha256Hex(fileAt: script))
                }
                for variable in env { e["\(q).env.\(variable.name)"] = hidden(variable.value) }
            case .file(let src, let dest, let contentsOnly):
                e["\(p).src"] = relative(src, to: directory) + " sha256:" + (try treeHash(src))
                e["\(p).dest"] = hidden(dest) + (contentsOnly ? " (contents)" : "")
            case .ansible(let ansible):
                // The playbook's whole directory: its roles, templates, files and ansible.cfg.
                e["\(p).ansible.playbook"] =
                    relative(ansible.playbook, to: directory) + " sha256:" + (try treeHash(ansible.directory))
                if ansible.extraVars != "{}" { e["\(p).ansible.extra_vars"] = hidden(ansible.extraVars) }
                if let galaxy = ansible.galaxyFile {
                    e["\(p).ansible.galaxy_file"] = relative(galaxy, to: directory) + " sha256:" + (try Hashing.sha256Hex(fileAt: galaxy))
                }
            case .download(let src, let dest):
                // Changes no image, but is part of what a test does.
                if step.section == .test { e["\(p).download"] = hidden(src) + " -> " + hidden(dest) }
            case .breakpoint:
                break
            }
        }
        return e
    }

    /// What the template's `test:` section runs on `provider`, hashed: not a build-key input
    /// (a changed test does not rebuild the image), but compared with the hash recorded on the
    /// image's last test run, so a build after a test changed runs the tests again. Unlike the
    /// build key, how a step runs counts too: a longer timeout can turn a failure into a pass.
    public static func testsHash(for template: Template, secrets: [String], provider: String, conceal: Concealer) throws -> String {
        let directory = URL(fileURLWithPath: template.file).deletingLastPathComponent().path
        func hidden(_ value: String) -> String {
            secrets.contains(where: { !$0.isEmpty && value.contains($0) }) ? conceal(value) : value
        }
        let steps = template.testSteps(for: provider)
        var e = try stepInputs(steps, directory: directory, hidden: hidden)
        e["test.ports"] = template.tests.ports.map(String.init).joined(separator: ",")
        for step in steps {
            let o = step.options
            e["test[\(step.index)].options"] =
                "timeout=\(o.timeout.map { "\($0)" } ?? "-") retries=\(o.retries) retry_delay=\(o.retryDelay) pause_before=\(o.pauseBefore.map { "\($0)" } ?? "-")"
        }
        return KeyInputs(e).key
    }

    /// Why `current` differs from `previous`, one line per changed input, in name order.
    /// - Parameter parentName: the name of the image `current` would build on, for the reason
    ///   "parent FAMILY moved to NAME".
    public static func reasons(
        from previous: KeyInputs, to current: KeyInputs, parentFamily: String?, parentName: String?
    ) -> [String] {
        var lines: [String] = []
        for name in Set(previous.entries.keys).union(current.entries.keys).sorted() {
            let old = previous.entries[name]
            let new = current.entries[name]
            guard old != new else { continue }
            switch (old, new) {
            case (nil, _?): lines.append("\(name) added")
            case (_?, nil): lines.append("\(name) removed")
            case (let old?, let new?):
                if name == "parent" {
                    lines.append("parent \(parentFamily ?? "image") moved to \(parentName ?? new)")
                } else if name == "kiln.image-format" {
                    lines.append("kiln's image format changed (\(old) -> \(new))")
                } else if name.hasSuffix(".src") || name.hasSuffix(".script") || name.hasSuffix(".playbook") {
                    let path = new.split(separator: " ").first.map(String.init) ?? name
                    lines.append("\(name) \(path) changed")
                } else if old.hasPrefix("sha256:") || new.hasPrefix("sha256:") || old.count > 60 || new.count > 60 {
                    lines.append("\(name) changed")
                } else {
                    lines.append("\(name.replacingOccurrences(of: "var.", with: "var ")): \(old) -> \(new)")
                }
            default: break
            }
        }
        return lines
    }

    static func relative(_ path: String, to directory: String) -> String {
        let prefix = directory.hasSuffix("/") ? directory : directory + "/"
        return path.hasPrefix(prefix) ? String(path.dropFirst(prefix.count)) : path
    }

    /// A file's SHA-256, or for a directory the SHA-256 over its sorted entries (relative path,
    /// type, mode, content hash or link target): what an upload of it puts in the guest.
    static func treeHash(_ path: String) throws -> String {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else {
            throw KilnError(.notFound, "\(path) does not exist")
        }
        guard isDirectory.boolValue else { return try Hashing.sha256Hex(fileAt: try regularFile(path)) }
        let fm = FileManager.default
        let names = (fm.enumerator(atPath: path)?.allObjects as? [String] ?? []).sorted()
        var lines: [String] = []
        for name in names {
            let full = path + "/" + name
            let attributes = try fm.attributesOfItem(atPath: full)
            let mode = String((attributes[.posixPermissions] as? Int) ?? 0, radix: 8)
            switch attributes[.type] as? FileAttributeType {
            case .typeDirectory: lines.append("\(name) dir \(mode)")
            case .typeSymbolicLink: lines.append("\(name) link \(try fm.destinationOfSymbolicLink(atPath: full))")
            case .typeRegular: lines.append("\(name) file \(mode) \(try Hashing.sha256Hex(fileAt: full))")
            default:
                // A FIFO or a device would be read forever (or block): an upload takes files.
                throw KilnError(.invalidInput, "\(full) is not a regular file, a directory or a link: it cannot be uploaded")
            }
        }
        return Hashing.sha256Hex(lines.joined(separator: "\n"))
    }

    /// `path` when it is a regular file (a link followed), else an error: never read a device.
    static func regularFile(_ path: String) throws -> String {
        let type = (try FileManager.default.attributesOfItem(atPath: URL(fileURLWithPath: path).resolvingSymlinksInPath().path))[.type]
        guard type as? FileAttributeType == .typeRegular else {
            throw KilnError(.invalidInput, "\(path) is not a regular file: it cannot be uploaded")
        }
        return path
    }
}
