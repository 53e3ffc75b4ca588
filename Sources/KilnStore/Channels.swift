import Foundation
import KilnCore
import KilnModel

/// One assignment of a channel (`dev`, `prod`, ...) of a family to an exact image.
public struct ChannelAssignment: Codable, Sendable, Equatable {
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
    /// - Parameter dryRun: check everything, write nothing.
    public func promote(
        _ image: String, channel: String, dryRun: Bool = false, actor: String = Transition.defaultActor(), now: Date = Date()
    ) throws -> ChannelAssignment {
        try Self.checkChannelName(channel)
        return try db.write { db in
            guard let record = try Catalog.image(named: image, db) else {
                throw KilnError(.notFound, "no image named '\(image)' (see kiln images)")
            }
            guard record.state == .ready else {
                throw KilnError(.invalidInput, "\(image) is \(record.state.rawValue): only a READY image can be promoted")
            }
            let assignment = ChannelAssignment(id: nil, family: record.family, name: channel, image: image, at: now, actor: actor)
            if dryRun { return assignment }
            try db.execute(
                "INSERT INTO channel (family, name, image, at, actor) VALUES (?, ?, ?, ?, ?)",
                [.text(assignment.family), .text(channel), .text(image), .date(now), .text(actor)])
            return assignment
        }
    }

    /// Channels are named like families; commands that promote later check the name up front.
    public static func checkChannelName(_ channel: String) throws {
        guard Names.isValidFamily(channel) else {
            throw KilnError(.invalidInput, "invalid channel name '\(channel)': must match [a-z0-9][a-z0-9-]{0,62}")
        }
    }

    /// The image `family@channel` points at now.
    public func channel(_ name: String, of family: String) throws -> ChannelAssignment? {
        try db.read { db in
            try db.row(
                Self.channelSelect + " WHERE family = ? AND name = ? ORDER BY at DESC, id DESC LIMIT 1", [.text(family), .text(name)]
            ).decoded(ChannelAssignment.init(row:))
        }
    }

    /// Every assignment of the family's channels, oldest first.
    public func channelHistory(of family: String) throws -> [ChannelAssignment] {
        try db.read { db in
            try db.rows(Self.channelSelect + " WHERE family = ? ORDER BY at, id", [.text(family)]).decoded(ChannelAssignment.init(row:))
        }
    }

    /// The current channel assignments of a family, by channel name.
    public func channels(of family: String) throws -> [String: String] {
        var current: [String: String] = [:]
        for assignment in try channelHistory(of: family) { current[assignment.name] = assignment.image }
        return current
    }

    /// Images some channel points at now (they are never obsoleted or deleted).
    static func channelTargets(_ db: any SQLConnection) throws -> Set<String> {
        Set(
            try db.strings(
                """
                SELECT image FROM channel c WHERE id = (
                  SELECT id FROM channel d WHERE d.family = c.family AND d.name = c.name ORDER BY at DESC, id DESC LIMIT 1)
                """, column: "image"))
    }

    static let channelSelect = "SELECT id, family, name, image, at, actor FROM channel"
}

extension ChannelAssignment {
    init(row: any SQLRow) throws {
        self.init(
            id: try row.int64("id"), family: try row.required("family", row.string), name: try row.required("name", row.string),
            image: try row.required("image", row.string), at: try row.required("at", row.date), actor: try row.required("actor", row.string)
        )
    }
}
