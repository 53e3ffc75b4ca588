import KilnModel
import Yams

/// The keys of each template section, declared once: the loader checks a section against its
/// table (an unknown key is an error listing the table) and reads the section by the same
/// cases, so a key cannot be accepted in one place and missed in the other.
protocol TemplateKeys: RawRepresentable<String>, CaseIterable, Hashable {}

/// A section's fields by key, as ``TemplateParser/mapping(_:_:keys:)`` read them.
struct Fields<Key: TemplateKeys> {
    var nodes: [Key: Node] = [:]
    subscript(key: Key) -> Node? { nodes[key] }
    func has(_ key: Key) -> Bool { nodes[key] != nil }
}

enum TopKey: String, TemplateKeys {
    case image, description, from, provider, vars, provision, test, labels, lifecycle
    case allowSecrets = "allow_secrets"
}

enum TestKey: String, TemplateKeys {
    case ports, steps
}

enum VariableKey: String, TemplateKeys {
    case `default`, sensitive, description
}

enum LifecycleKey: String, TemplateKeys {
    case keep
    case deprecateAfter = "deprecate_after"
    case obsoleteAfter = "obsolete_after"
    case deleteAfter = "delete_after"
    case purgeAfter = "purge_after"
}

enum SourceKind: String, TemplateKeys {
    case debootstrap, file, url, image
    case providerImage = "provider_image"
}

enum DebootstrapKey: String, TemplateKeys {
    case suite, variant, include, mirror, components
    case signedBy = "signed_by"
    case trusted, updates
    case cloudInit = "cloud_init"
}

enum UpdateKey: String, TemplateKeys {
    case suite, mirror, components
    case signedBy = "signed_by"
    case trusted
}

enum FileSourceKey: String, TemplateKeys {
    case path, sha256
}

enum URLSourceKey: String, TemplateKeys {
    case url, sha256
}

enum QemuKey: String, TemplateKeys {
    case memory, cpus
    case diskSize = "disk_size"
}

enum StepKind: String, TemplateKeys {
    case shell, file
    case shellLocal = "shell-local"
    case ansible, breakpoint
}

enum StepOption: String, TemplateKeys {
    case name, timeout, retries
    case retryDelay = "retry_delay"
    case pauseBefore = "pause_before"
    case when, unless
    case sensitiveOutput = "sensitive_output"
}

enum ConditionKey: String, TemplateKeys {
    case provider, `var`
}

enum ShellKey: String, TemplateKeys {
    case inline, script, env
}

enum FileStepKey: String, TemplateKeys {
    case src, dest, direction
}

enum AnsibleKey: String, TemplateKeys {
    case playbook
    case extraVars = "extra_vars"
    case galaxyFile = "galaxy_file"
}

enum BreakpointKey: String, TemplateKeys {
    case note
}

extension TemplateKeys {
    /// The table's keys in declaration order, as error messages list them.
    static var names: [String] { allCases.map(\.rawValue) }
}

/// The aws section's keys are the model's own, so the loader and the provider share one table.
extension AWSSettings.Key: TemplateKeys {}
