import KilnCore

public struct Step: Sendable {
    /// Where a step stands in its template: `provision:` runs in the build VM and makes the
    /// image; `test:` runs on the sealed image's test boot and only judges it.
    public enum Section: String, Sendable {
        case provision, test
    }

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

    /// 0-based position in its section's list.
    public let index: Int
    public let kind: Kind
    public let location: SourceLocation
    public var options = StepOptions()
    public var section = Section.provision

    public init(
        index: Int, kind: Kind, location: SourceLocation, options: StepOptions = StepOptions(), section: Section = .provision
    ) {
        (self.index, self.kind, self.location, self.options, self.section) = (index, kind, location, options, section)
    }

    /// How logs and errors name the step: `provision[1] shell scripts/setup.sh`, or with a
    /// `name:`, `provision[1] install nginx`; a test step is `test[0] ...`.
    public var title: String {
        let position = "\(section.rawValue)[\(index)]"
        if let name = options.name { return "\(position) \(name)" }
        switch kind {
        case .shell(let inline, let script, _), .shellLocal(let inline, let script, _):
            if let script { return "\(position) \(kind.name) \(script.lastPathComponent)" }
            let firstLine = inline?.split(separator: "\n").first.map(String.init) ?? ""
            return "\(position) \(kind.name) \(firstLine.prefix(48))"
        case .file(let src, let dest, _):
            return "\(position) file \(src.lastPathComponent) -> \(dest)"
        case .download(let src, let dest):
            return "\(position) file \(src) -> \(dest.lastPathComponent) (download)"
        case .ansible(let ansible):
            return "\(position) ansible \(ansible.playbook.lastPathComponent)"
        case .breakpoint:
            return "\(position) breakpoint"
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
        (self.playbook, self.extraVars, self.galaxyFile) = (playbook, extraVars, galaxyFile)
    }

    public var directory: String {
        String(playbook[..<(playbook.lastIndex(of: "/") ?? playbook.startIndex)])
    }
}

public struct EnvVar: Sendable, Equatable {
    public let name, value: String

    public init(name: String, value: String) { (self.name, self.value) = (name, value) }
}
