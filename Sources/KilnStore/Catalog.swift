import Foundation
import GRDB
import KilnCore

/// The embedded SQLite catalog (GRDB, WAL mode): which images exist, their lineage and state,
/// and every build attempt. Rows are written only after the blobs they name are on disk.
public final class Catalog: Sendable {
    let db: DatabasePool

    public init(path: String) throws {
        var config = Configuration()
        // Two kiln processes may share a store; wait for each other's short transactions.
        config.busyMode = .timeout(10)
        do {
            db = try DatabasePool(path: path, configuration: config)
            try Self.migrator.migrate(db)
        } catch {
            throw KilnError(.io, "cannot open the catalog at \(path)", cause: error as? any Error & Sendable)
        }
    }

    private static var migrator: DatabaseMigrator {
        var migrator = DatabaseMigrator()
        migrator.registerMigration("v1") { db in
            try db.create(table: "image") { t in
                t.primaryKey("name", .text)
                t.column("family", .text).notNull().indexed()
                t.column("version", .text).notNull()
                t.column("digest", .text).notNull()
                t.column("parent", .text).references("image", onDelete: .restrict)
                t.column("state", .text).notNull()
                t.column("created", .datetime).notNull()
                t.column("labels", .text).notNull()
                t.column("description", .text)
                t.column("templateHash", .text).notNull()
                t.column("size", .integer).notNull()
                t.column("log", .text).notNull()
                t.column("buildID", .text).notNull()
                t.column("sourceKind", .text).notNull()
                t.uniqueKey(["family", "version"])
            }
            try db.create(table: "build") { t in
                t.primaryKey("id", .text)
                t.column("family", .text).notNull()
                t.column("image", .text)
                t.column("status", .text).notNull()
                t.column("started", .datetime).notNull()
                t.column("finished", .datetime)
                t.column("failedStep", .text)
                t.column("message", .text)
                t.column("log", .text)
                t.column("pid", .integer).notNull()
            }
        }
        migrator.registerMigration("v1-sources") { db in
            // Disks made from a source (debootstrap tree, file, URL), keyed by what made them,
            // so the next build of the same source starts from the stored disk.
            try db.create(table: "source") { t in
                t.primaryKey("key", .text)
                t.column("digest", .text).notNull()
                t.column("description", .text).notNull()
                t.column("created", .datetime).notNull()
            }
        }
        migrator.registerMigration("v2-build-keys") { db in
            try db.alter(table: "image") { t in
                t.add(column: "buildKey", .text)
                t.add(column: "keyInputs", .text)
            }
            try db.create(index: "image_on_family_buildKey", on: "image", columns: ["family", "buildKey"])
        }
        migrator.registerMigration("v3-source-use") { db in
            // Which blob each image's disk is backed by, so a cache prune never removes a source
            // disk an image still needs; and when a cached source disk was last used.
            try db.alter(table: "image") { t in t.add(column: "backingDigest", .text) }
            try db.alter(table: "source") { t in t.add(column: "used", .datetime) }
        }
        migrator.registerMigration("v4-lifecycle") { db in
            try db.alter(table: "image") { t in
                t.add(column: "replacement", .text)
                t.add(column: "obsoleteOn", .datetime)
                t.add(column: "deleteOn", .datetime)
            }
            // Every state change: who, when, why (docs/lifecycle.md).
            try db.create(table: "event") { t in
                t.autoIncrementedPrimaryKey("id")
                t.column("image", .text).notNull().indexed()
                t.column("family", .text).notNull().indexed()
                t.column("fromState", .text).notNull()
                t.column("toState", .text).notNull()
                t.column("at", .datetime).notNull()
                t.column("actor", .text).notNull()
                t.column("reason", .text).notNull()
            }
        }
        migrator.registerMigration("v5-channels") { db in
            // Append-only: a channel's image is its newest row; older rows are its history.
            try db.create(table: "channel") { t in
                t.autoIncrementedPrimaryKey("id")
                t.column("family", .text).notNull()
                t.column("name", .text).notNull()
                t.column("image", .text).notNull().references("image")
                t.column("at", .datetime).notNull()
                t.column("actor", .text).notNull()
            }
            try db.create(index: "channel_on_family_name", on: "channel", columns: ["family", "name"])
        }
        migrator.registerMigration("v6-rotation") { db in
            try db.alter(table: "image") { t in
                // The template's lifecycle policy (JSON) at build time: rotate applies the head's.
                t.add(column: "policy", .text)
                t.add(column: "purgeOn", .datetime)
                // The blob was removed by gc; the row stays for the family's history.
                t.add(column: "purged", .boolean).notNull().defaults(to: false)
            }
            try db.create(index: "image_on_family_state", on: "image", columns: ["family", "state"])
        }
        migrator.registerMigration("v7-origin") { db in
            // The commit and CI job an image was built from (BuildOrigin, JSON).
            try db.alter(table: "image") { t in t.add(column: "origin", .text) }
        }
        return migrator
    }

    /// A READY image of `family` built from exactly these inputs, if any: the newest one.
    public func image(family: String, buildKey: String) throws -> ImageRecord? {
        try db.read { db in
            try ImageRecord
                .filter(Column("family") == family && Column("buildKey") == buildKey)
                .filter(Column("state") == ImageState.ready.rawValue)
                .order(Column("created").desc, Column("version").desc)
                .fetchOne(db)
        }
    }

    public func image(digest: String) throws -> ImageRecord? {
        try db.read { db in try ImageRecord.filter(Column("digest") == digest).fetchOne(db) }
    }

    // MARK: - Source disks

    public func sourceDigest(key: String) throws -> String? {
        try db.read { db in
            try String.fetchOne(db, sql: "SELECT digest FROM source WHERE key = ?", arguments: [key])
        }
    }

    public func markSourceUsed(key: String, at date: Date = Date()) throws {
        try db.write { db in try db.execute(sql: "UPDATE source SET used = ? WHERE key = ?", arguments: [date, key]) }
    }

    /// Cached source disks, least recently used first.
    public func sources() throws -> [SourceRecord] {
        try db.read { db in
            try Row.fetchAll(db, sql: "SELECT key, digest, description, created, used FROM source ORDER BY COALESCE(used, created)")
                .map {
                    SourceRecord(
                        key: $0["key"], digest: $0["digest"], description: $0["description"],
                        lastUsed: ($0["used"] as Date?) ?? $0["created"])
                }
        }
    }

    public func forgetSource(key: String) throws {
        try db.write { db in try db.execute(sql: "DELETE FROM source WHERE key = ?", arguments: [key]) }
    }

    /// Digests of every blob some image's disk is backed by.
    public func backingDigests() throws -> Set<String> {
        try db.read { db in
            Set(try String.fetchAll(db, sql: "SELECT DISTINCT backingDigest FROM image WHERE backingDigest IS NOT NULL"))
        }
    }

    public func recordSource(key: String, digest: String, description: String) throws {
        try db.write { db in
            try db.execute(
                sql: "INSERT OR REPLACE INTO source (key, digest, description, created) VALUES (?, ?, ?, ?)",
                arguments: [key, digest, description, Date()])
        }
    }

    // MARK: - Images

    public func images() throws -> [ImageRecord] {
        try db.read { db in
            try ImageRecord.order(Column("family"), Column("created"), Column("version")).fetchAll(db)
        }
    }

    public func image(named name: String) throws -> ImageRecord? {
        try db.read { db in try ImageRecord.fetchOne(db, key: name) }
    }

    public func families() throws -> Set<String> {
        try db.read { db in Set(try String.fetchAll(db, sql: "SELECT DISTINCT family FROM image")) }
    }

    /// A family's images in one state, newest first: the one query behind head, build parents,
    /// rollback and the lifecycle guards.
    static func newest(_ family: String, _ state: ImageState) -> QueryInterfaceRequest<ImageRecord> {
        ImageRecord
            .filter(Column("family") == family && Column("state") == state.rawValue)
            .order(Column("created").desc, Column("version").desc)
    }

    /// The image a family resolves to: its newest READY image.
    public func head(of family: String) throws -> ImageRecord? {
        try db.read { db in try Self.newest(family, .ready).fetchOne(db) }
    }

    /// What a user names: an exact image, `FAMILY@CHANNEL`, or a family (its newest READY image).
    public func resolve(_ name: String) throws -> ImageRecord {
        if let at = name.firstIndex(of: "@") {
            let family = String(name[..<at])
            let channelName = String(name[name.index(after: at)...])
            guard let assignment = try channel(channelName, of: family), let target = try image(named: assignment.image) else {
                throw KilnError(.notFound, "no channel '\(channelName)' of family '\(family)' (see kiln family show \(family))")
            }
            return target
        }
        if let exact = try image(named: name) { return exact }
        if let head = try head(of: name) { return head }
        if try families().contains(name) {
            throw KilnError(.notFound, "family '\(name)' has no READY image (see kiln images --family \(name))")
        }
        throw KilnError(.notFound, "no image or family named '\(name)' (see kiln images)")
    }

    /// Whether some base image predates recorded backing digests (its source disk is unknown).
    public func hasBasesWithoutBacking() throws -> Bool {
        try db.read { db in
            try ImageRecord.filter(Column("parent") == nil && Column("backingDigest") == nil).fetchCount(db) > 0
        }
    }

    /// The image a layer of `family` is built on: the newest READY image, else the newest
    /// DEPRECATED one (usable, with a warning); OBSOLETE and DELETED images never.
    public func buildParent(of family: String) throws -> ImageRecord? {
        if let head = try head(of: family) { return head }
        return try db.read { db in try Self.newest(family, .deprecated).fetchOne(db) }
    }

    /// Records a finished image under the next free version of its family for `date`, in one
    /// transaction so two processes never take the same name.
    public func commit(_ draft: ImageDraft, at date: Date = Date()) throws -> ImageRecord {
        try db.write { db in
            let day = Self.dayString(date)
            let prefix = "v\(day)-"
            let taken = try String.fetchAll(
                db, sql: "SELECT version FROM image WHERE family = ? AND version LIKE ?",
                arguments: [draft.family, prefix + "%"])
            let next = (taken.compactMap { Int($0.dropFirst(prefix.count)) }.max() ?? 0) + 1
            let version = prefix + String(next)
            let record = ImageRecord(
                name: "\(draft.family)-\(version)", family: draft.family, version: version,
                digest: draft.digest, parent: draft.parent, state: .ready, created: date,
                labels: draft.labelsJSON, description: draft.description, templateHash: draft.templateHash,
                size: draft.size, log: draft.log, buildID: draft.buildID, sourceKind: draft.sourceKind,
                buildKey: draft.buildKey, keyInputs: draft.keyInputs, backingDigest: draft.backingDigest,
                policy: draft.policy, origin: draft.origin?.json)
            try record.insert(db)
            try db.execute(
                sql: "UPDATE build SET image = ? WHERE id = ?", arguments: [record.name, draft.buildID])
            return record
        }
    }

    static func dayString(_ date: Date) -> String {
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = TimeZone(identifier: "UTC")!
        let c = calendar.dateComponents([.year, .month, .day], from: date)
        return String(format: "%04d%02d%02d", c.year!, c.month!, c.day!)
    }

    // MARK: - Builds

    public func insert(_ build: BuildRecord) throws {
        try db.write { db in try build.insert(db) }
    }

    public func update(_ build: BuildRecord) throws {
        try db.write { db in try build.update(db) }
    }

    public func builds(status: BuildStatus? = nil) throws -> [BuildRecord] {
        try db.read { db in
            var request = BuildRecord.order(Column("started"))
            if let status { request = request.filter(Column("status") == status.rawValue) }
            return try request.fetchAll(db)
        }
    }

    public func build(id: String) throws -> BuildRecord? {
        try db.read { db in try BuildRecord.fetchOne(db, key: id) }
    }
}

/// What a build knows about an image before the catalog names it.
public struct ImageDraft: Sendable {
    public var family: String
    public var digest: String
    public var parent: String?
    public var labels: [String: String]
    public var description: String?
    public var templateHash: String
    public var size: Int64
    public var log: String
    public var buildID: String
    public var sourceKind: String
    public var buildKey: String?
    /// JSON object of the key's inputs.
    public var keyInputs: String?
    /// The blob the disk is an overlay on (the parent's disk, or a base's source disk).
    public var backingDigest: String?
    /// JSON of the template's lifecycle policy.
    public var policy: String?
    public var origin: BuildOrigin?

    public init(
        family: String, digest: String, parent: String?, labels: [String: String], description: String?,
        templateHash: String, size: Int64, log: String, buildID: String, sourceKind: String,
        buildKey: String? = nil, keyInputs: String? = nil, backingDigest: String? = nil, policy: String? = nil,
        origin: BuildOrigin? = nil
    ) {
        self.origin = origin
        self.policy = policy
        self.backingDigest = backingDigest
        self.buildKey = buildKey
        self.keyInputs = keyInputs
        self.family = family
        self.digest = digest
        self.parent = parent
        self.labels = labels
        self.description = description
        self.templateHash = templateHash
        self.size = size
        self.log = log
        self.buildID = buildID
        self.sourceKind = sourceKind
    }

    var labelsJSON: String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        return String(decoding: (try? encoder.encode(labels)) ?? Data("{}".utf8), as: UTF8.self)
    }
}
