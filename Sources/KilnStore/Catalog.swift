import Foundation
import KilnCore
import KilnModel

/// The catalog: which images exist, their lineage and state, and every build attempt. Rows
/// are written only after the blobs they name are on disk. Its SQL is written once and runs on
/// SQLite (the embedded default) and PostgreSQL (a catalog shared between machines).
public final class Catalog: Sendable {
    let db: any SQLDatabase

    /// The embedded SQLite catalog at `path`.
    public convenience init(path: String) throws {
        self.init(database: try SQLiteDatabase(path: path))
    }

    public init(database: any SQLDatabase) {
        db = database
    }

    /// The catalog `locator` names: nil or empty for `STORE/catalog.sqlite`, `sqlite:PATH`, or
    /// `postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE` (also `postgresql://`).
    public static func open(_ locator: String?, store: String) throws -> Catalog {
        guard let locator, !locator.isEmpty else { return try Catalog(path: store + "/catalog.sqlite") }
        if locator.hasPrefix("sqlite:") { return try Catalog(path: String(locator.dropFirst("sqlite:".count))) }
        if locator.hasPrefix("postgres://") || locator.hasPrefix("postgresql://") {
            return Catalog(database: try PostgresDatabase(url: locator))
        }
        throw KilnError(
            .invalidInput, "cannot use '\(locator)' as a catalog: give postgres://USER@HOST[:PORT]/DATABASE or sqlite:PATH")
    }

    public var kind: String { db.kind }
    public var location: String { db.location }

    /// Held while `family` builds, by whichever kiln process builds it: two processes sharing
    /// this catalog never build the same family at once, and the second sees the first's result.
    public func lockFamily(_ family: String, waiting: @Sendable () -> Void) async throws -> any Sendable {
        try await lockNamed("family-\(family)", waiting: waiting)
    }

    /// A READY image of `family` built from exactly these inputs, if any: the newest one.
    public func image(family: String, buildKey: String) throws -> ImageRecord? {
        try db.read { db in
            try db.row(
                ImageRecord.select + " WHERE family = ? AND buildKey = ? AND state = ? ORDER BY created DESC, version DESC LIMIT 1",
                [.text(family), .text(buildKey), .text(ImageState.ready.rawValue)]
            ).decoded(ImageRecord.init(row:))
        }
    }

    public func image(digest: String) throws -> ImageRecord? {
        try db.read { db in try db.row(ImageRecord.select + " WHERE digest = ? LIMIT 1", [.text(digest)]).decoded(ImageRecord.init(row:)) }
    }

    // MARK: - Source disks

    public func sourceDigest(key: String) throws -> String? {
        try db.read { db in try db.row("SELECT digest FROM source WHERE key = ?", [.text(key)])?.string("digest") }
    }

    public func markSourceUsed(key: String, at date: Date = Date()) throws {
        try db.write { db in try db.execute("UPDATE source SET used = ? WHERE key = ?", [.date(date), .text(key)]) }
    }

    /// Cached source disks, least recently used first.
    public func sources() throws -> [SourceRecord] {
        try db.read { db in
            try db.rows("SELECT key, digest, description, created, used FROM source ORDER BY COALESCE(used, created)").map {
                SourceRecord(
                    key: try $0.required("key", $0.string), digest: try $0.required("digest", $0.string),
                    description: try $0.required("description", $0.string),
                    lastUsed: try $0.date("used") ?? $0.required("created", $0.date))
            }
        }
    }

    public func forgetSource(key: String) throws {
        try db.write { db in try db.execute("DELETE FROM source WHERE key = ?", [.text(key)]) }
    }

    /// Digests of every blob some image's disk is backed by.
    public func backingDigests() throws -> Set<String> {
        try db.read { db in
            Set(try db.strings("SELECT DISTINCT backingDigest FROM image WHERE backingDigest IS NOT NULL", column: "backingDigest"))
        }
    }

    public func recordSource(key: String, digest: String, description: String) throws {
        try db.write { db in
            try db.execute(
                """
                INSERT INTO source (key, digest, description, created, used) VALUES (?, ?, ?, ?, NULL)
                ON CONFLICT (key) DO UPDATE SET digest = excluded.digest, description = excluded.description,
                  created = excluded.created, used = NULL
                """,
                [.text(key), .text(digest), .text(description), .date(Date())])
        }
    }

    // MARK: - Images

    public func images() throws -> [ImageRecord] {
        try db.read { db in try db.rows(ImageRecord.select + " ORDER BY family, created, version").decoded(ImageRecord.init(row:)) }
    }

    public func image(named name: String) throws -> ImageRecord? {
        try db.read { db in try Self.image(named: name, db) }
    }

    static func image(named name: String, _ db: any SQLConnection) throws -> ImageRecord? {
        try db.row(ImageRecord.select + " WHERE name = ?", [.text(name)]).decoded(ImageRecord.init(row:))
    }

    /// The packages recorded for an image at the end of its build; nil when none were (the
    /// guest had no dpkg, or the image predates manifests). Kept out of ``ImageRecord``: a
    /// manifest is a few KiB, and listings never need it.
    public func packages(of image: String) throws -> PackageManifest? {
        try db.read { db in
            try db.row("SELECT packages FROM image WHERE name = ?", [.text(image)])?.string("packages").map(PackageManifest.init(tsv:))
        }
    }

    public func families() throws -> Set<String> {
        try db.read { db in Set(try db.strings("SELECT DISTINCT family FROM image", column: "family")) }
    }

    /// A family's images in one state, newest first: the one query behind head, build parents,
    /// rollback and the lifecycle guards.
    static func newest(_ family: String, _ state: ImageState, limit: Int = 1, _ db: any SQLConnection) throws -> [ImageRecord] {
        // A reader that leaves unreadable rows out reads a few more, so one bad row on top does
        // not hide a family's head.
        let extra = UnreadableRows.current == nil ? 0 : 8
        return Array(
            try db.rows(
                ImageRecord.select + " WHERE family = ? AND state = ? ORDER BY created DESC, version DESC LIMIT \(limit + extra)",
                [.text(family), .text(state.rawValue)]
            ).decoded(ImageRecord.init(row:)).prefix(limit))
    }

    /// The image a family resolves to: its newest READY image.
    public func head(of family: String) throws -> ImageRecord? {
        try db.read { db in try Self.newest(family, .ready, db).first }
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
            // Say what there is: a build whose tests failed leaves a FAILED image, not nothing.
            let untested = try db.read { db in
                try db.row(
                    ImageRecord.select + " WHERE family = ? AND state IN (?, ?) ORDER BY created DESC, version DESC LIMIT 1",
                    [.text(name), .text(ImageState.testing.rawValue), .text(ImageState.failed.rawValue)]
                ).decoded(ImageRecord.init(row:))
            }
            if let untested {
                throw KilnError(
                    .notFound,
                    "family '\(name)' has no READY image: its newest, \(untested.name), is \(untested.state.rawValue) (kiln logs \(untested.name) --tests)"
                )
            }
            throw KilnError(.notFound, "family '\(name)' has no READY image (see kiln images --family \(name))")
        }
        throw KilnError(.notFound, "no image or family named '\(name)' (see kiln images)")
    }

    /// Whether some base image predates recorded backing digests (its source disk is unknown).
    public func hasBasesWithoutBacking() throws -> Bool {
        try db.read { db in
            try db.count("SELECT count(*) AS n FROM image WHERE parent IS NULL AND backingDigest IS NULL") > 0
        }
    }

    /// The image a layer of `family` is built on: the newest READY image, else the newest
    /// DEPRECATED one (usable, with a warning); OBSOLETE and DELETED images never.
    public func buildParent(of family: String) throws -> ImageRecord? {
        try db.read { db in try Self.newest(family, .ready, db).first ?? Self.newest(family, .deprecated, db).first }
    }

    /// Records a finished image under the next free version of its family for `date`, in one
    /// transaction so two processes never take the same name.
    public func commit(_ draft: ImageDraft, at date: Date = Date()) throws -> ImageRecord {
        try db.write { db in
            let day = Self.dayString(date)
            let prefix = "v\(day)-"
            let taken = try db.strings(
                "SELECT version FROM image WHERE family = ? AND version LIKE ?", [.text(draft.family), .text(prefix + "%")],
                column: "version")
            let next = (taken.compactMap { Int($0.dropFirst(prefix.count)) }.max() ?? 0) + 1
            let version = prefix + String(next)
            let record = ImageRecord(
                name: "\(draft.family)-\(version)", family: draft.family, version: version,
                digest: draft.digest, parent: draft.parent, state: draft.state, created: date,
                labels: draft.labelsJSON, description: draft.description, templateHash: draft.templateHash,
                size: draft.size, log: draft.log, buildID: draft.buildID, sourceKind: draft.sourceKind,
                buildKey: draft.buildKey, keyInputs: draft.keyInputs, backingDigest: draft.backingDigest,
                policy: draft.policy, origin: draft.origin?.json)
            try db.execute(ImageRecord.insert, record.values)
            if let packages = draft.packages {
                try db.execute("UPDATE image SET packages = ? WHERE name = ?", [.text(packages.tsv), .text(record.name)])
            }
            try db.execute("UPDATE build SET image = ? WHERE id = ?", [.text(record.name), .text(draft.buildID)])
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
        try db.write { db in
            try db.execute(
                "INSERT INTO build (" + BuildRecord.columns.joined(separator: ", ") + ") VALUES ("
                    + BuildRecord.columns.map { _ in "?" }.joined(separator: ", ") + ")", build.values)
        }
    }

    public func update(_ build: BuildRecord) throws {
        try db.write { db in
            let assignments = BuildRecord.columns.dropFirst().map { "\($0) = ?" }.joined(separator: ", ")
            try db.execute("UPDATE build SET \(assignments) WHERE id = ?", Array(build.values.dropFirst()) + [.text(build.id)])
        }
    }

    public func builds(status: BuildStatus? = nil) throws -> [BuildRecord] {
        try db.read { db in
            if let status {
                return try db.rows(BuildRecord.select + " WHERE status = ? ORDER BY started", [.text(status.rawValue)])
                    .decoded(BuildRecord.init(row:))
            }
            return try db.rows(BuildRecord.select + " ORDER BY started").decoded(BuildRecord.init(row:))
        }
    }

    public func build(id: String) throws -> BuildRecord? {
        try db.read { db in try db.row(BuildRecord.select + " WHERE id = ?", [.text(id)]).decoded(BuildRecord.init(row:)) }
    }
}
