import KilnCore

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

    /// A lifecycle duration as templates and the command line write it: a count and a unit
    /// (`30s`, `15m`, `12h`, `7d`, `2w`), in seconds; nil for anything else. One grammar for
    /// `lifecycle:` keys and `kiln deprecate --obsolete-in`.
    public static func seconds(of text: String) -> Int? {
        let units: [Character: Int] = ["s": 1, "m": 60, "h": 3600, "d": 86_400, "w": 7 * 86_400]
        guard let unit = text.last.flatMap({ units[$0] }), let count = Int(text.dropLast()), count >= 0 else { return nil }
        return count * unit
    }

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
