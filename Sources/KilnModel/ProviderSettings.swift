import Foundation
import KilnCore

/// The `provider:` value: a name (`provider: aws`) or one name with its settings
/// (`provider: {aws: {region: eu-west-1}}`), and where it stands in the template.
public struct ProviderChoice: Sendable, Equatable {
    public var settings: ProviderSettings
    /// Where the `provider:` value stands; nil when the template has none.
    public var location: SourceLocation?

    public init(_ settings: ProviderSettings = .qemu(QemuSettings()), location: SourceLocation? = nil) {
        self.settings = settings
        self.location = location
    }

    public var name: String { settings.name }
}

/// One provider's settings, typed for the built-in ones, a JSON object for a plugin: read once,
/// by the template loader, and handed to the provider as they are.
public enum ProviderSettings: Sendable, Equatable {
    case qemu(QemuSettings)
    case aws(AWSSettings)
    /// A plugin's settings (or a built-in provider's without a type here) as a JSON object
    /// with sorted keys, values keeping their YAML types; the provider checks them itself.
    case plugin(name: String, json: String)

    public var name: String {
        switch self {
        case .qemu: return "qemu"
        case .aws: return "aws"
        case .plugin(let name, _): return name
        }
    }

    /// qemu's settings; nil for a build that runs no local VM of kiln's.
    public var qemu: QemuSettings? {
        if case .qemu(let settings) = self { return settings }
        return nil
    }

    /// The settings as a canonical JSON object (sorted keys): what a plugin receives and what a
    /// build key records for a provider other than qemu.
    public var json: String {
        switch self {
        case .qemu: return "{}"
        case .aws(let settings): return Self.canonicalJSON(settings)
        case .plugin(_, let json): return json
        }
    }

    static func canonicalJSON(_ value: some Encodable) -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return (try? encoder.encode(value)).map { String(decoding: $0, as: UTF8.self) } ?? "{}"
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
        (self.memoryMiB, self.cpus, self.diskSize) = (memoryMiB, cpus, diskSize)
    }
}

/// The `provider: {aws: {...}}` block. Its keys are declared here once: the template loader
/// checks a template against ``Key``, and the aws provider reads this value.
public struct AWSSettings: Sendable, Equatable, Codable {
    public var region: String?
    public var instanceType: String?
    public var subnetID: String?
    public var securityGroupIDs: [String]?
    public var sshUser: String?

    public init() {}

    public enum Key: String, CodingKey, CaseIterable, Sendable {
        case region
        case instanceType = "instance_type"
        case subnetID = "subnet_id"
        case securityGroupIDs = "security_group_ids"
        case sshUser = "ssh_user"

        /// Whether the key takes a list of strings; every other key takes one string.
        public var isList: Bool { self == .securityGroupIDs }
    }

    private typealias CodingKeys = Key

    /// Sets `key` from the template; `list` for ``Key/isList`` keys, `text` for the others.
    public mutating func set(_ key: Key, text: String? = nil, list: [String]? = nil) {
        switch key {
        case .region: region = text
        case .instanceType: instanceType = text
        case .subnetID: subnetID = text
        case .securityGroupIDs: securityGroupIDs = list
        case .sshUser: sshUser = text
        }
    }
}
