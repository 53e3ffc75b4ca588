import KilnCore

/// One image of the graph, as its template file describes it, with variables already substituted.
public struct Template: Sendable {
    /// The family this template builds (the `image:` key).
    public let family: String
    public let description: String?
    public let source: Source
    public let qemu: QemuSettings
    /// Which provider builds the image (`provider:`); qemu unless the template says otherwise.
    public var provider = ProviderChoice()
    public let variables: [Variable]
    public let steps: [Step]
    public let labels: [String: String]
    /// Absolute path of the template file.
    public let file: String
    /// Where the `image:` key stands, for errors about the template as a whole.
    public let location: SourceLocation
    /// Where the `from:` value stands, for errors about the parent.
    public let sourceLocation: SourceLocation
    /// SHA-256 of the file's bytes: recorded on the image so one can tell which template made it.
    public let templateHash: String
    /// How `kiln rotate` ages this family's images.
    public var lifecycle = LifecyclePolicy()
    /// Guest paths the secret scan lets through (`allow_secrets:`); everything else it finds fails the build.
    public var allowedSecrets: [String] = []

    /// Why `step` does not run in a build by `provider` (its `when:`/`unless:`); nil when it runs.
    public func skipReason(of step: Step, provider: String) -> String? {
        let values = Dictionary(variables.map { ($0.name, $0.value) }, uniquingKeysWith: { _, last in last })
        return step.skipReason(provider: provider, variables: values)
    }

    /// The steps a build by `provider` runs, in order.
    public func steps(for provider: String) -> [Step] {
        steps.filter { skipReason(of: $0, provider: provider) == nil }
    }

    /// The parent family, when this image is a layer on another one.
    public var parentFamily: String? {
        if case .image(let family) = source { return family }
        return nil
    }
}

/// The `lifecycle:` block: how `kiln rotate` moves a family's older images along
/// READY -> DEPRECATED -> OBSOLETE -> DELETED -> purged. Durations are in seconds.
public struct LifecyclePolicy: Sendable, Equatable, Codable {
    /// The newest `keep` READY images of the family are never rotated (the head always is kept).
    public var keep = 2
    /// A READY image beyond `keep` is deprecated once it is this old.
    public var deprecateAfter: Int = 0
    /// A DEPRECATED image becomes OBSOLETE this long after its deprecation.
    public var obsoleteAfter: Int = 7 * 86_400
    /// An OBSOLETE image becomes DELETED this long after it became obsolete.
    public var deleteAfter: Int = 30 * 86_400
    /// A DELETED image's disk is purged by `kiln gc` this long after its deletion.
    public var purgeAfter: Int = 30 * 86_400

    public init() {}

    /// A key the record lacks (a policy stored by an older kiln, before that key existed) takes
    /// its default; the synthesized decoder would fail the whole policy instead.
    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        let defaults = LifecyclePolicy()
        keep = try container.decodeIfPresent(Int.self, forKey: .keep) ?? defaults.keep
        deprecateAfter = try container.decodeIfPresent(Int.self, forKey: .deprecateAfter) ?? defaults.deprecateAfter
        obsoleteAfter = try container.decodeIfPresent(Int.self, forKey: .obsoleteAfter) ?? defaults.obsoleteAfter
        deleteAfter = try container.decodeIfPresent(Int.self, forKey: .deleteAfter) ?? defaults.deleteAfter
        purgeAfter = try container.decodeIfPresent(Int.self, forKey: .purgeAfter) ?? defaults.purgeAfter
    }
}

public enum Source: Sendable, Equatable {
    case debootstrap(Debootstrap)
    case file(path: String, sha256: String)
    case url(url: String, sha256: String)
    case image(family: String)
    /// An image the provider itself knows by this id (an AMI for aws, whatever a plugin names):
    /// a base built by a provider other than qemu starts from one.
    case providerImage(id: String)

    public var kind: String {
        switch self {
        case .debootstrap: return "debootstrap"
        case .file: return "file"
        case .url: return "url"
        case .image: return "image"
        case .providerImage: return "provider_image"
        }
    }
}

/// The `provider:` value: a name (`provider: aws`) or one name with its settings
/// (`provider: {aws: {region: eu-west-1}}`).
public struct ProviderChoice: Sendable, Equatable {
    public static let builtIn = ["qemu", "aws"]

    public var name: String
    /// The settings of a provider other than qemu as a JSON object with sorted keys, values
    /// keeping their YAML types; `{}` when none are given. (qemu's are ``Template/qemu``.)
    public var settingsJSON: String
    /// Where the `provider:` value stands; nil when the template has none.
    public var location: SourceLocation?

    public init(name: String = "qemu", settingsJSON: String = "{}", location: SourceLocation? = nil) {
        self.name = name
        self.settingsJSON = settingsJSON
        self.location = location
    }
}

public struct Debootstrap: Sendable, Equatable {
    public let suite: String
    public let variant: String
    public let include: [String]
    /// nil: the Debian mirror the host's apt uses (or `KILN_MIRROR`).
    public let mirror: String?
    /// The archive areas installed from and checked by `kiln refresh`.
    public var components: [String] = ["main"]
    /// A keyring that signs the repositories' Release files (nil: Debian's archive keyring).
    public var signedBy: String?
    /// An unsigned repository, as apt's `[trusted=yes]`: its Release file is not checked.
    public var trusted = false
    /// More suites the base installs from and `kiln refresh` checks (`bookworm-updates`,
    /// `bookworm-security`, a team's own repository).
    public var updates: [AptSuite] = []

    public init(suite: String, variant: String = "minbase", include: [String] = [], mirror: String? = nil) {
        self.suite = suite
        self.variant = variant
        self.include = include
        self.mirror = mirror
    }
}

/// One more suite under `from.debootstrap.updates`; a field left out is the base's.
public struct AptSuite: Sendable, Equatable {
    public let suite: String
    /// nil: the host's apt source for this suite, else the base's mirror.
    public var mirror: String?
    public var components: [String]?
    public var signedBy: String?
    public var trusted: Bool?

    public init(suite: String, mirror: String? = nil) {
        self.suite = suite
        self.mirror = mirror
    }
}

/// The `provider: {qemu: {...}}` block; every field has a default.
public struct QemuSettings: Sendable, Equatable {
    public static let defaultMemoryMiB = 1024
    public static let defaultCPUs = 2
    public static let defaultDiskSize: UInt64 = 4 << 30

    public var memoryMiB: Int = defaultMemoryMiB
    public var cpus: Int = defaultCPUs
    public var diskSize: UInt64 = defaultDiskSize

    public init(memoryMiB: Int = defaultMemoryMiB, cpus: Int = defaultCPUs, diskSize: UInt64 = defaultDiskSize) {
        self.memoryMiB = memoryMiB
        self.cpus = cpus
        self.diskSize = diskSize
    }
}

public struct Variable: Sendable, Equatable {
    public let name: String
    public let value: String
    public let sensitive: Bool
}

public struct Step: Sendable {
    public enum Kind: Sendable, Equatable {
        /// `shell:`: an inline script or a script file, run by `/bin/sh -e` in the guest.
        case shell(inline: String?, script: String?, env: [EnvVar])
        /// `file:`: `src` is absolute on the host; a directory `src` ending in `/` uploads its contents.
        case file(src: String, dest: String, contentsOnly: Bool)
        /// `file:` with `direction: download`: `src` is a guest path, `dest` absolute on the host.
        case download(src: String, dest: String)
        /// `shell-local:`: like `shell`, but run by `/bin/sh -e` on the build host, in the
        /// template's directory.
        case shellLocal(inline: String?, script: String?, env: [EnvVar])
        /// `ansible:`: `ansible-playbook` on the host against the build VM.
        case ansible(AnsiblePlaybook)
        /// `breakpoint:`: pauses an interactive build with the VM up.
        case breakpoint(note: String?)

        public var name: String {
            switch self {
            case .shell: return "shell"
            case .file, .download: return "file"
            case .shellLocal: return "shell-local"
            case .ansible: return "ansible"
            case .breakpoint: return "breakpoint"
            }
        }
    }

    /// 0-based position in `provision:`.
    public let index: Int
    public let kind: Kind
    public let location: SourceLocation
    public var options = StepOptions()

    public init(index: Int, kind: Kind, location: SourceLocation, options: StepOptions = StepOptions()) {
        self.index = index
        self.kind = kind
        self.location = location
        self.options = options
    }

    /// How logs and errors name the step: `provision[1] shell scripts/setup.sh`, or with a
    /// `name:`, `provision[1] install nginx`.
    public var title: String {
        if let name = options.name { return "provision[\(index)] \(name)" }
        switch kind {
        case .shell(let inline, let script, _), .shellLocal(let inline, let script, _):
            if let script { return "provision[\(index)] \(kind.name) \(script.lastPathComponent)" }
            let firstLine = inline?.split(separator: "\n").first.map(String.init) ?? ""
            return "provision[\(index)] \(kind.name) \(firstLine.prefix(48))"
        case .file(let src, let dest, _):
            return "provision[\(index)] file \(src.lastPathComponent) -> \(dest)"
        case .download(let src, let dest):
            return "provision[\(index)] file \(src) -> \(dest.lastPathComponent) (download)"
        case .ansible(let ansible):
            return "provision[\(index)] ansible \(ansible.playbook.lastPathComponent)"
        case .breakpoint:
            return "provision[\(index)] breakpoint"
        }
    }

    /// Whether the step runs in a build by `provider`; nil when it does, else why not.
    public func skipReason(provider: String, variables: [String: String]) -> String? {
        if let when = options.when, !when.holds(provider: provider, variables: variables) {
            return "when: \(when) does not hold (provider \(provider))"
        }
        if let unless = options.unless, unless.holds(provider: provider, variables: variables) {
            return "unless: \(unless) holds (provider \(provider))"
        }
        return nil
    }
}

/// What every step kind takes besides its own keys.
public struct StepOptions: Sendable, Equatable {
    /// Shown in logs and errors instead of the step's text.
    public var name: String?
    /// Per attempt; nil: `kiln build --step-timeout`.
    public var timeout: Duration?
    /// Attempts after the first one fails.
    public var retries = 0
    /// The wait before the first retry; each further retry waits twice as long as the last.
    public var retryDelay: Duration = .seconds(5)
    public var pauseBefore: Duration?
    public var when: StepCondition?
    public var unless: StepCondition?
    /// The step's output stays out of logs and the live view.
    public var sensitiveOutput = false

    public init() {}
}

/// `when:` / `unless:`: every given field must match for the condition to hold.
public struct StepCondition: Sendable, Equatable, CustomStringConvertible {
    /// The provider the build runs on is one of these.
    public var providers: [String]?
    /// Each of these template variables has this value.
    public var variables: [String: String] = [:]

    public init(providers: [String]? = nil, variables: [String: String] = [:]) {
        self.providers = providers
        self.variables = variables
    }

    public func holds(provider: String, variables values: [String: String]) -> Bool {
        if let providers, !providers.contains(provider) { return false }
        return variables.allSatisfy { values[$0.key] == $0.value }
    }

    public var description: String {
        var parts: [String] = []
        if let providers { parts.append("provider " + providers.joined(separator: " or ")) }
        for (name, value) in variables.sorted(by: { $0.key < $1.key }) { parts.append("var.\(name) == '\(value)'") }
        return parts.joined(separator: " and ")
    }
}

/// The `ansible:` step.
public struct AnsiblePlaybook: Sendable, Equatable {
    /// Absolute path of the playbook; its directory is the project (roles/, ansible.cfg, files).
    public let playbook: String
    /// `extra_vars:` as a JSON object with sorted keys (values keep their YAML types).
    public let extraVars: String
    /// A `requirements.yml` for `ansible-galaxy`, absolute.
    public let galaxyFile: String?

    public init(playbook: String, extraVars: String = "{}", galaxyFile: String? = nil) {
        self.playbook = playbook
        self.extraVars = extraVars
        self.galaxyFile = galaxyFile
    }

    public var directory: String {
        String(playbook[..<(playbook.lastIndex(of: "/") ?? playbook.startIndex)])
    }
}

public struct EnvVar: Sendable, Equatable {
    public let name: String
    public let value: String

    public init(name: String, value: String) {
        self.name = name
        self.value = value
    }
}

extension String {
    var lastPathComponent: String {
        let trimmed = hasSuffix("/") ? String(dropLast()) : self
        return trimmed.split(separator: "/").last.map(String.init) ?? self
    }
}
