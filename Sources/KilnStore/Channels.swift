import Foundation
import GRDB
import KilnCore

/// One assignment of a channel (`dev`, `prod`, ...) of a family to an exact image.
public struct ChannelAssignment: Codable, Sendable, Equatable, FetchableRecord, PersistableRecord {
    public static let databaseTableName = "channel"
    public var id: Int64?
    public var family: String
    public var name: String
    public var image: String
    public var at: Date
    public var actor: String
}

/// Channels point at exact images; moving one appends to its history (nothing is overwritten).
extension Catalog {
    /// Points `channel` of the image's family at `image`.
    @discardableResult
    public func promote(_ image: String, channel: String, actor: String = Transition.defaultActor(), now: Date = Date()) throws
        -> ChannelAssignment
    {
        guard Names.isValidFamily(channel) else {
            throw KilnError(.invalidInput, "invalid channel name '\(channel)': must match [a-z0-9][a-z0-9-]{0,62}")
        }
        return try db.write { db in
            guard let record = try ImageRecord.fetchOne(db, key: image) else {
                throw KilnError(.notFound, "no image named '\(image)' (see kiln images)")
            }
            guard record.state == .ready else {
                throw KilnError(.invalidInput, "\(image) is \(record.state.rawValue): only a READY image can be promoted")
            }
            let assignment = ChannelAssignment(id: nil, family: record.family, name: channel, image: image, at: now, actor: actor)
            try assignment.insert(db)
            return assignment
        }
    }

    /// The image `family@channel` points at now.
    public func channel(_ name: String, of family: String) throws -> ChannelAssignment? {
        try db.read { db in
            try ChannelAssignment.filter(Column("family") == family && Column("name") == name)
                .order(Column("at").desc, Column("id").desc).fetchOne(db)
        }
    }

    /// Every assignment of the family's channels, oldest first.
    public func channelHistory(of family: String) throws -> [ChannelAssignment] {
        try db.read { db in
            try ChannelAssignment.filter(Column("family") == family).order(Column("at"), Column("id")).fetchAll(db)
        }
    }

    /// The current channel assignments of a family, by channel name.
    public func channels(of family: String) throws -> [String: String] {
        var current: [String: String] = [:]
        for assignment in try channelHistory(of: family) { current[assignment.name] = assignment.image }
        return current
    }

    /// Images some channel points at now (they are never obsoleted or deleted).
    static func channelTargets(_ db: Database) throws -> Set<String> {
        let rows = try Row.fetchAll(
            db,
            sql: """
                SELECT image FROM channel c WHERE id = (
                  SELECT id FROM channel d WHERE d.family = c.family AND d.name = c.name ORDER BY at DESC, id DESC LIMIT 1)
                """)
        return Set(rows.map { $0["image"] as String })
    }
}
