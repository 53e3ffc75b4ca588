import Foundation
import KilnCore
import KilnModel
import Yams

/// `from:`: a debootstrap base with its suites and keyrings, a disk file or URL, a parent image.
extension TemplateParser {

    func parseSource(_ node: Node) -> Source? {
        guard let entries = mappingEntries(node, "from") else { return nil }
        let kinds = SourceKind.names
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
            guard let f = mapping(value, "from.debootstrap", keys: DebootstrapKey.self) else { return nil }
            guard let suiteNode = f[.suite] else {
                error(at: value, "from.debootstrap: missing required key 'suite' (e.g. bookworm)")
                return nil
            }
            guard let suite = suiteName(suiteNode) else { return nil }
            let variant = f[.variant].flatMap { string($0, "variant") } ?? "minbase"
            let variants = ["minbase", "buildd", "required", "important", "standard", "essential", "apt", "debootstrap"]
            if !variants.contains(variant) {
                error(at: f[.variant], "unknown variant '\(variant)': expected one of \(variants.joined(separator: ", "))")
            }
            let include = f[.include].map { stringList($0, "include") } ?? []
            for (package, packageNode) in zip(include, f[.include]?.sequence.map(Array.init) ?? [])
            where !isDebianPackageName(package) {
                error(at: packageNode, "invalid package name '\(package)'")
            }
            var spec = Debootstrap(suite: suite, variant: variant, include: include, mirror: f[.mirror].flatMap(mirrorURL))
            spec.components = f[.components].flatMap(components) ?? spec.components
            spec.signedBy = f[.signedBy].flatMap(keyring)
            spec.trusted = f[.trusted].flatMap { bool($0, "trusted") } ?? false
            spec.cloudInit = f[.cloudInit].flatMap { bool($0, "cloud_init") } ?? false
            spec.updates = f[.updates].flatMap { sequence($0, "from.debootstrap.updates") }?.compactMap(parseUpdate) ?? []
            return .debootstrap(spec)
        case "file":
            guard let f = mapping(value, "from.file", keys: FileSourceKey.self) else { return nil }
            let path = required(f, .path, in: value, "from.file").flatMap { string($0, "path") }
            let sha = required(f, .sha256, in: value, "from.file").flatMap { sha256($0) }
            let absolute = path.map(resolvePath)
            if let path, let absolute, !FileManager.default.fileExists(atPath: absolute) {
                error(at: f[.path], "from.file: \(path) does not exist (looked at \(absolute))")
            }
            guard let absolute, let sha else { return nil }
            return .file(path: absolute, sha256: sha)
        default:
            guard let f = mapping(value, "from.url", keys: URLSourceKey.self) else { return nil }
            guard let url = required(f, .url, in: value, "from.url").flatMap({ string($0, "url") }),
                let sha = required(f, .sha256, in: value, "from.url").flatMap({ sha256($0) })
            else { return nil }
            guard let parsed = URL(string: url), ["http", "https", "file"].contains(parsed.scheme ?? "") else {
                error(at: f[.url], "from.url: '\(url)' is not an http, https or file URL")
                return nil
            }
            return .url(url: url, sha256: sha)
        }
    }

    /// An item of `from.debootstrap.updates`: a suite name, or a mapping with its own source fields.
    func parseUpdate(_ node: Node) -> AptSuite? {
        if node.scalar != nil {
            return suiteName(node).map { AptSuite(suite: $0) }
        }
        let what = "from.debootstrap.updates item"
        guard let f = mapping(node, what, keys: UpdateKey.self) else { return nil }
        // Every field is checked, so one pass reports all of an item's errors.
        let suite = required(f, .suite, in: node, what).flatMap(suiteName)
        let mirror = f[.mirror].flatMap(mirrorURL)
        let components = f[.components].flatMap(components)
        let signedBy = f[.signedBy].flatMap(keyring)
        let trusted = f[.trusted].flatMap { bool($0, "trusted") }
        guard let suite else { return nil }
        var update = AptSuite(suite: suite, mirror: mirror)
        update.components = components
        update.signedBy = signedBy
        update.trusted = trusted
        return update
    }

    func suiteName(_ node: Node) -> String? {
        guard let suite = string(node, "suite") else { return nil }
        guard !suite.isEmpty, suite.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || "-._".contains($0)) }),
            !suite.hasPrefix(".")
        else {
            error(at: node, "invalid suite '\(suite)': letters, digits, '-', '.' and '_' only")
            return nil
        }
        return suite
    }

    func mirrorURL(_ node: Node) -> String? {
        guard let mirror = string(node, "mirror") else { return nil }
        guard URL(string: mirror)?.scheme.map({ ["http", "https", "file"].contains($0) }) == true else {
            error(at: node, "mirror must be an http, https or file URL, got '\(mirror)'")
            return nil
        }
        return mirror
    }

    func components(_ node: Node) -> [String]? {
        let names = stringList(node, "components")
        for (name, item) in zip(names, node.sequence.map(Array.init) ?? [])
        where name.isEmpty || !name.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || "-/".contains($0)) }) {
            error(at: item, "invalid component '\(name)' (e.g. main, contrib, non-free-firmware)")
        }
        if names.isEmpty { error(at: node, "components: give at least one (e.g. [main])") }
        return names.isEmpty ? nil : names
    }

    /// A keyring path, relative to the template's file like other paths; it must exist.
    func keyring(_ node: Node) -> String? {
        guard let path = string(node, "signed_by") else { return nil }
        let absolute = resolvePath(path)
        guard FileManager.default.fileExists(atPath: absolute) else {
            error(at: node, "signed_by: \(path) does not exist (looked at \(absolute))")
            return nil
        }
        return absolute
    }
}
