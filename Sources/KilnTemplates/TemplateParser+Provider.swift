import Foundation
import KilnCore
import KilnModel
import Yams

/// `provider:`: a name, or one name with its settings, typed for the built-in providers.
extension TemplateParser {
    /// `provider: NAME` or `provider: {NAME: settings}`. qemu's and aws's settings are checked
    /// here, with their positions; a plugin's are passed to it as JSON and it checks them.
    func parseProvider(_ node: Node) -> ProviderChoice {
        var choice = ProviderChoice(location: location(of: node))
        let example = "e.g. `provider: qemu` or `provider: {aws: {region: eu-west-1}}`"
        let name: String
        let nameNode: Node
        let settings: Node?
        if node.scalar != nil, node.null == nil {
            guard let given = string(node, "provider") else { return choice }
            (name, nameNode, settings) = (given, node, nil)
        } else {
            guard let entries = mappingEntries(node, "provider") else { return choice }
            guard entries.count == 1 else {
                error(at: node, "provider: name exactly one provider, \(example)")
                return choice
            }
            (name, nameNode) = (entries[0].key, entries[0].node)
            settings = entries[0].value.null == nil ? entries[0].value : nil
        }
        guard Names.isValidFamily(name) else {
            error(
                at: nameNode,
                "provider: '\(name)' is not a provider name: a provider's name, built in or a plugin's, matches [a-z0-9][a-z0-9-]* (docs/providers.md)"
            )
            return choice
        }
        switch name {
        case "qemu":
            choice.settings = .qemu(settings.map(parseQemu) ?? QemuSettings())
        case "aws":
            choice.settings = .aws(settings.map(parseAWS) ?? AWSSettings())
        default:
            var json = "{}"
            if let settings {
                if case .mapping = settings {
                    json = jsonValue(settings, "provider.\(name)").flatMap(jsonText) ?? json
                } else {
                    error(at: settings, "provider.\(name) must be a mapping of the plugin's settings, got \(kindName(settings))")
                }
            }
            choice.settings = .plugin(name: name, json: json)
        }
        return choice
    }

    /// The keys are ``AWSSettings/Key``'s; every value a string (an instance type of `5` is "5").
    func parseAWS(_ node: Node) -> AWSSettings {
        var settings = AWSSettings()
        guard let f = mapping(node, "provider.aws", keys: AWSSettings.Key.self) else { return settings }
        for key in AWSSettings.Key.allCases {
            guard let value = f[key] else { continue }
            let what = "provider.aws.\(key.rawValue)"
            if key.isList {
                settings.set(key, list: stringList(value, what))
            } else {
                settings.set(key, text: string(value, what))
            }
        }
        return settings
    }

    func parseQemu(_ q: Node) -> QemuSettings {
        var settings = QemuSettings()
        guard let f = mapping(q, "provider.qemu", keys: QemuKey.self) else { return settings }
        if let m = f[.memory], let bytes = size(m, "memory", defaultUnit: 1 << 20) {
            if bytes < 256 << 20 {
                error(at: m, "memory must be at least 256M")
            } else {
                settings.memoryMiB = Int(bytes >> 20)
            }
        }
        if let c = f[.cpus], let n = int(c, "cpus") {
            if (1...64).contains(n) { settings.cpus = n } else { error(at: c, "cpus must be between 1 and 64") }
        }
        if let d = f[.diskSize], let bytes = size(d, "disk_size", defaultUnit: 1) {
            // 67 MiB go to the boot partitions; a minimal Debian with its journal and inode
            // tables needs most of the rest (docs/templates.md measures the example's base).
            if bytes < 1 << 30 {
                error(at: d, "disk_size must be at least 1G: the boot partitions take 67 MiB and a minimal Debian needs most of the rest")
            } else {
                settings.diskSize = bytes
            }
        }
        return settings
    }
}
