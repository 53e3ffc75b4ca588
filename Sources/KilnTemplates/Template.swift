import KilnCore

/// A place in a template file, 1-based like editors count.
public struct SourceLocation: Sendable, Hashable, Codable, CustomStringConvertible {
    public let file: String
    public let line: Int
    public let column: Int

    public init(file: String, line: Int, column: Int) {
        self.file = file
        self.line = line
        self.column = column
    }

    public var description: String { "\(file):\(line):\(column)" }

    public func diagnostic(_ message: String) -> Diagnostic {
        Diagnostic(file: file, line: line, column: column, message: message)
    }
}

/// One image of the graph, as its template file describes it, with variables already substituted.
public struct Template: Sendable {
    /// The family this template builds (the `image:` key).
    public let family: String
    public let description: String?
    public let source: Source
    public let qemu: QemuSettings
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
}

public enum Source: Sendable, Equatable {
    case debootstrap(Debootstrap)
    case file(path: String, sha256: String)
    case url(url: String, sha256: String)
    case image(family: String)

    public var kind: String {
        switch self {
        case .debootstrap: return "debootstrap"
        case .file: return "file"
        case .url: return "url"
        case .image: return "image"
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
    }

    /// 0-based position in `provision:`.
    public let index: Int
    public let kind: Kind
    public let location: SourceLocation

    /// How logs and errors name the step: `provision[1] shell scripts/setup.sh`.
    public var title: String {
        switch kind {
        case .shell(let inline, let script, _):
            if let script { return "provision[\(index)] shell \(script.lastPathComponent)" }
            let firstLine = inline?.split(separator: "\n").first.map(String.init) ?? ""
            return "provision[\(index)] shell \(firstLine.prefix(48))"
        case .file(let src, let dest, _):
            return "provision[\(index)] file \(src.lastPathComponent) -> \(dest)"
        }
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
