import Foundation
import KilnCore
import KilnModel

/// One family as a listing shows it: how many images it has in each state, its head and its
/// channels. Read in one pass over the catalog (`GROUP BY`), not one query per image, so a
/// family with 100,000 versions costs what one with ten does.
public struct FamilySummary: Codable, Sendable, Equatable {
    public var family: String
    /// Images by state (`READY`: 3 …); states with none are left out.
    public var counts: [String: Int]
    public var total: Int
    /// The newest READY image: what `kiln resolve FAMILY` gives.
    public var head: String?
    /// The family the head is a layer on (nil for a base family).
    public var parentFamily: String?
    public var newest: Date?
    /// Current channel assignments, channel to image.
    public var channels: [String: String]

    enum CodingKeys: String, CodingKey {
        case family, counts, total, head
        case parentFamily = "parent_family"
        case newest, channels
    }
}

/// A page of a longer listing: the items, where they start and how many there are in all.
public struct Page<Item: Sendable>: Sendable {
    public var items: [Item]
    public var offset: Int
    public var limit: Int
    public var total: Int

    public init(items: [Item], offset: Int, limit: Int, total: Int) {
        (self.items, self.offset, self.limit, self.total) = (items, offset, limit, total)
    }
}

/// Read-only queries for browsing the catalog (`kiln serve`): paged, each bounded by an index.
extension Catalog {
    /// The largest page a listing serves.
    public static let maximumPage = 500

    public func familySummaries() throws -> [FamilySummary] {
        try db.read { db in
            var counts: [String: [String: Int]] = [:]
            var newest: [String: Date] = [:]
            let groups = try db.rows("SELECT family, state, COUNT(*) AS n, MAX(created) AS newest FROM image GROUP BY family, state")
            for (family, state, n, date) in try groups.decoded({ row in
                (
                    try row.required("family", row.string), try row.required("state", row.string), Int(try row.int64("n") ?? 0),
                    // A date another machine wrote badly is left out, not its whole family.
                    (try? row.date("newest")) ?? nil
                )
            }) {
                counts[family, default: [:]][state] = n
                if let date, date > newest[family] ?? .distantPast { newest[family] = date }
            }
            let current = try Self.currentChannels(db)
            return try counts.keys.sorted().map { family in
                let head = try Self.newest(family, .ready, db).first
                let parentFamily = try head?.parent.flatMap { try Self.image(named: $0, db)?.family }
                return FamilySummary(
                    family: family, counts: counts[family] ?? [:], total: counts[family]?.values.reduce(0, +) ?? 0,
                    head: head?.name, parentFamily: parentFamily, newest: newest[family], channels: current[family] ?? [:])
            }
        }
    }

    /// A family's images, newest first; `state` narrows them to one state. One indexed query:
    /// the caller knows the total from ``familySummaries()``.
    public func images(family: String, state: ImageState? = nil, offset: Int, limit: Int) throws -> [ImageRecord] {
        let limit = min(max(limit, 1), Self.maximumPage)
        var filter = " WHERE family = ?"
        var arguments: [SQLValue] = [.text(family)]
        if let state {
            filter += " AND state = ?"
            arguments.append(.text(state.rawValue))
        }
        return try db.read { db in
            try db.rows(
                ImageRecord.select + filter + " ORDER BY created DESC, version DESC LIMIT \(limit) OFFSET \(max(offset, 0))", arguments
            ).decoded(ImageRecord.init(row:))
        }
    }

    /// Images in these states, with every ancestor they stand on (whatever its state), for
    /// drawing the lineage; at most `limit` of them, newest first, ancestors added beyond it.
    public func lineage(states: Set<ImageState>, limit: Int) throws -> (images: [ImageRecord], truncated: Bool) {
        try db.read { db in
            let marks = states.map { _ in "?" }.joined(separator: ", ")
            let chosen = try db.rows(
                ImageRecord.select + " WHERE state IN (\(marks)) ORDER BY created DESC, version DESC LIMIT \(limit + 1)",
                states.sorted { $0.rawValue < $1.rawValue }.map { .text($0.rawValue) }
            ).decoded(ImageRecord.init(row:))
            var byName: [String: ImageRecord] = [:]
            for image in chosen.prefix(limit) { byName[image.name] = image }
            var missing = Set(byName.values.compactMap(\.parent)).subtracting(byName.keys)
            while let name = missing.popFirst() {
                guard let parent = try Self.image(named: name, db) else { continue }
                byName[name] = parent
                if let grandparent = parent.parent, byName[grandparent] == nil { missing.insert(grandparent) }
            }
            return (byName.values.sorted { ($0.created, $0.name) < ($1.created, $1.name) }, chosen.count > limit)
        }
    }

    /// The image of the same family made just before `image`: what its build key is compared
    /// with to say why it was rebuilt.
    public func previous(of image: ImageRecord) throws -> ImageRecord? {
        try db.read { db in
            try db.row(
                ImageRecord.select
                    + " WHERE family = ? AND (created < ? OR (created = ? AND version < ?)) ORDER BY created DESC, version DESC LIMIT 1",
                [.text(image.family), .date(image.created), .date(image.created), .text(image.version)]
            ).decoded(ImageRecord.init(row:))
        }
    }

    /// A token that changes when the catalog may have changed (nil: cannot tell; see ``SQLDatabase/changeToken``).
    public var changeToken: String? { db.changeToken }

    /// The newest test run of each of these images, by image name.
    public func latestTestRuns(of images: [String]) throws -> [String: TestRunRecord] {
        guard !images.isEmpty else { return [:] }
        return try db.read { db in
            try db.rows(
                TestRunRecord.select + " WHERE image IN (\(images.map { _ in "?" }.joined(separator: ", "))) ORDER BY started, id",
                images.map(SQLValue.text)
            ).decoded(TestRunRecord.init(row:)).reduce(into: [:]) { $0[$1.image] = $1 }
        }
    }

    /// Lifecycle events of one image, oldest first.
    public func history(image: String) throws -> [ImageEvent] {
        try db.read { db in
            try db.rows(
                "SELECT id, image, family, fromState, toState, at, actor, reason FROM event WHERE image = ? ORDER BY at, id", [.text(image)]
            ).decoded(ImageEvent.init(row:))
        }
    }

    /// Build attempts, newest first; `family` narrows them to one family.
    public func builds(family: String?, offset: Int, limit: Int) throws -> Page<BuildRecord> {
        let limit = min(max(limit, 1), Self.maximumPage)
        let filter = family == nil ? "" : " WHERE family = ?"
        let arguments: [SQLValue] = family.map { [.text($0)] } ?? []
        return try db.read { db in
            let total = try db.count("SELECT COUNT(*) AS n FROM build" + filter, arguments)
            let items = try db.rows(
                BuildRecord.select + filter + " ORDER BY started DESC, id DESC LIMIT \(limit) OFFSET \(max(offset, 0))", arguments
            ).decoded(BuildRecord.init(row:))
            return Page(items: items, offset: offset, limit: limit, total: total)
        }
    }

    /// Test runs of one image, newest first.
    public func testRuns(of image: String) throws -> [TestRunRecord] {
        try db.read { db in
            try db.rows(TestRunRecord.select + " WHERE image = ? ORDER BY started DESC, id DESC", [.text(image)]).decoded(
                TestRunRecord.init(row:))
        }
    }

    /// Every family's current channel assignments in one query.
    static func currentChannels(_ db: any SQLConnection) throws -> [String: [String: String]] {
        var current: [String: [String: String]] = [:]
        for assignment in try db.rows(Self.channelSelect + " ORDER BY at, id").decoded(ChannelAssignment.init(row:)) {
            current[assignment.family, default: [:]][assignment.name] = assignment.image
        }
        return current
    }
}

/// The indexes behind the paged queries, the same on both backends.
let browseIndexes = [
    "CREATE INDEX image_on_family_created ON image (family, created, version)",
    "CREATE INDEX image_on_parent ON image (parent)",
    "CREATE INDEX image_on_state_created ON image (state, created)",
    "CREATE INDEX build_on_started ON build (started)",
]
