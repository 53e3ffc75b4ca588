import KilnCore

/// One image of the graph, as its template file describes it, with variables already substituted.
public struct Template: Sendable {
    /// The family this template builds (the `image:` key).
    public let family: String
    public let description: String?
    public let source: Source
    /// Which provider builds the image (`provider:`), with its settings; qemu unless the
    /// template says otherwise.
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
    /// `test:`: what the sealed image's test boot runs (docs/testing.md). Not a build-key input.
    public var tests = TestPlan()

    public init(
        family: String, description: String?, source: Source, variables: [Variable], steps: [Step], labels: [String: String],
        file: String, location: SourceLocation, sourceLocation: SourceLocation, templateHash: String
    ) {
        (self.family, self.description, self.source, self.variables) = (family, description, source, variables)
        (self.steps, self.labels, self.file, self.location) = (steps, labels, file, location)
        (self.sourceLocation, self.templateHash) = (sourceLocation, templateHash)
    }

    /// qemu's settings: the template's own for a qemu build, else the defaults (a base's
    /// source disk is made at qemu's default size whichever provider then starts from it).
    public var qemu: QemuSettings { provider.settings.qemu ?? QemuSettings() }

    /// Why `step` does not run in a build by `provider` (its `when:`/`unless:`); nil when it runs.
    public func skipReason(of step: Step, provider: String) -> String? {
        let values = Dictionary(variables.map { ($0.name, $0.value) }, uniquingKeysWith: { _, last in last })
        return step.skipReason(provider: provider, variables: values)
    }

    /// The steps a build by `provider` runs, in order.
    public func steps(for provider: String) -> [Step] {
        steps.filter { skipReason(of: $0, provider: provider) == nil }
    }

    /// The test steps a test boot on `provider` runs, in order.
    public func testSteps(for provider: String) -> [Step] {
        tests.steps.filter { skipReason(of: $0, provider: provider) == nil }
    }

    /// The parent family, when this image is a layer on another one.
    public var parentFamily: String? {
        if case .image(let family) = source { return family }
        return nil
    }
}

/// The template's `test:` section: steps run on a fresh boot of the sealed image, and the
/// guest ports forwarded to the host for them.
public struct TestPlan: Sendable {
    /// Guest TCP ports, each forwarded from a free loopback port (`KILN_PORT_<guest>`).
    public var ports: [Int] = []
    public var steps: [Step] = []
    /// Where `test:` stands.
    public var location: SourceLocation?

    public init(ports: [Int] = [], steps: [Step] = [], location: SourceLocation? = nil) {
        (self.ports, self.steps, self.location) = (ports, steps, location)
    }

    public var isEmpty: Bool { steps.isEmpty }
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
    /// cloud-init installed and set up for the NoCloud, ConfigDrive, GCE and EC2 datasources
    /// (docs/images.md): for images that clouds start and configure.
    public var cloudInit = false

    public init(suite: String, variant: String = "minbase", include: [String] = [], mirror: String? = nil) {
        (self.suite, self.variant, self.include, self.mirror) = (suite, variant, include, mirror)
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

public struct Variable: Sendable, Equatable {
    public let name: String
    public let value: String
    public let sensitive: Bool

    public init(name: String, value: String, sensitive: Bool) {
        (self.name, self.value, self.sensitive) = (name, value, sensitive)
    }
}

extension String {
    var lastPathComponent: String {
        let trimmed = hasSuffix("/") ? String(dropLast()) : self
        return trimmed.split(separator: "/").last.map(String.init) ?? self
    }
}
