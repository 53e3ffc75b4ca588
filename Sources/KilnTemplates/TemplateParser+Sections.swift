import Foundation
import KilnCore
import KilnModel
import Yams

/// The small top-level sections: `vars`, `lifecycle`, `allow_secrets`, `test`.
extension TemplateParser {
    /// `allow_secrets:` guest paths (absolute, `*` matching within one path component).
    /// `test:` — `steps:` (the step kinds of `provision:`, with their options) and `ports:`
    /// (guest TCP ports forwarded to loopback for host-side checks).
    func parseTests(_ node: Node) -> TestPlan {
        var plan = TestPlan(location: location(of: node))
        guard let f = mapping(node, "test", keys: TestKey.self) else { return plan }
        if let p = f[.ports], let items = sequence(p, "test.ports") {
            for item in items {
                guard let port = int(item, "test.ports item") else { continue }
                if !(1...65535).contains(port) {
                    error(at: item, "test.ports: \(port) is not a TCP port (1-65535)")
                } else if port == 22 {
                    error(at: item, "test.ports: 22 is forwarded already (kiln's SSH; shell-local steps get KILN_SSH_PORT)")
                } else if plan.ports.contains(port) {
                    error(at: item, "test.ports: \(port) is listed twice")
                } else {
                    plan.ports.append(port)
                }
            }
        }
        if let s = f[.steps], let items = sequence(s, "test.steps") {
            for (index, item) in items.enumerated() {
                if let step = parseStep(item, index: index, section: .test) { plan.steps.append(step) }
            }
        }
        if f[.steps] == nil { error(at: node, "test needs steps (what to run on the image's test boot)") }
        return plan
    }

    func parseAllowedSecrets(_ node: Node) -> [String] {
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

    func parseLifecycle(_ node: Node) -> LifecyclePolicy {
        var policy = LifecyclePolicy()
        guard let f = mapping(node, "lifecycle", keys: LifecycleKey.self) else { return policy }
        if let k = f[.keep], let n = int(k, "keep") {
            if n >= 1 { policy.keep = n } else { error(at: k, "keep must be at least 1 (the head is always kept)") }
        }
        func duration(_ key: LifecycleKey) -> Int? {
            guard let value = f[key], let text = string(value, key.rawValue) else { return nil }
            guard let seconds = LifecyclePolicy.seconds(of: text) else {
                error(at: value, "\(key.rawValue) must be a duration like 12h, 7d or 2w, got '\(text)'")
                return nil
            }
            return seconds
        }
        if let d = duration(.deprecateAfter) { policy.deprecateAfter = d }
        if let d = duration(.obsoleteAfter) { policy.obsoleteAfter = d }
        if let d = duration(.deleteAfter) { policy.deleteAfter = d }
        if let d = duration(.purgeAfter) { policy.purgeAfter = d }
        return policy
    }

    func parseVariables(_ node: Node) -> [Variable] {
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
            } else if let fields = mapping(value, "variable '\(name)'", keys: VariableKey.self) {
                if let d = fields[.default] { defaultValue = rawScalar(d, "default") }
                if let s = fields[.sensitive] { sensitive = bool(s, "sensitive") ?? false }
                if let d = fields[.description] { _ = rawScalar(d, "description") }
            }
            let resolved = loader.overrides[name] ?? loader.environment["KILN_VAR_\(name)"] ?? defaultValue
            guard let resolved else {
                missing.insert(name)
                error(
                    at: keyNode,
                    "variable '\(name)' has no value: give it a default, set KILN_VAR_\(name) or pass --var \(name)=VALUE")
                continue
            }
            // A value reaches steps through the environment, which cannot hold a NUL byte: cut
            // short there, it would differ from what the build key and the plan recorded.
            if resolved.unicodeScalars.contains("\u{0}") {
                error(at: keyNode, "variable '\(name)' holds a NUL byte, which no step's environment can carry")
                continue
            }
            values[name] = resolved
            result.append(Variable(name: name, value: resolved, sensitive: sensitive))
        }
        return result
    }
}
