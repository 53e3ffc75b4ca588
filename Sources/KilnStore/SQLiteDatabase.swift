import Foundation
import GRDB
import KilnCore
import KilnModel

/// The embedded catalog: SQLite through GRDB, in WAL mode, so readers never wait for the writer.
final class SQLiteDatabase: SQLDatabase {
    let pool: DatabasePool
    let kind = "sqlite"
    let location: String

    init(path: String) throws {
        var config = Configuration()
        // Two kiln processes may share a store; wait for each other's short transactions.
        config.busyMode = .timeout(10)
        location = path
        do {
            pool = try Self.openExclusively(path: path, configuration: config)
        } catch {
            throw KilnError(.io, "cannot open the catalog at \(path)", cause: error as? any Error & Sendable)
        }
    }

    /// Opening and migrating, one process at a time. Two kiln processes opening a new store
    /// together would otherwise both see a migration unapplied, and the second's `ADD COLUMN`
    /// fail with "duplicate column name"; and the pool's first `PRAGMA journal_mode = WAL` on a
    /// new file answers SQLITE_BUSY at once, without waiting, when another process is switching
    /// the same file (CI saw it with eight). A blocking `flock` beside the file, held for the few
    /// milliseconds both take; the kernel drops it if the process dies.
    private static func openExclusively(path: String, configuration: Configuration) throws -> DatabasePool {
        let fd = open(path + ".migrate.lock", O_RDWR | O_CREAT | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw KilnError(.io, "cannot open \(path).migrate.lock: \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        while flock(fd, LOCK_EX) != 0 {
            guard errno == EINTR else { throw KilnError(.io, "cannot lock \(path).migrate.lock: \(String(cString: strerror(errno)))") }
        }
        let pool = try DatabasePool(path: path, configuration: configuration)
        try migrator.migrate(pool)
        return pool
    }

    func read<T>(_ body: (any SQLConnection) throws -> T) throws -> T {
        try pool.read { db in try body(SQLiteConnection(db: db)) }
    }

    func write<T>(_ body: (any SQLConnection) throws -> T) throws -> T {
        try pool.write { db in try body(SQLiteConnection(db: db)) }
    }

    /// The database file's and its write-ahead log's size and modification time: a commit by
    /// any process appends to the log, a checkpoint rewrites the file. Two `stat` calls.
    var changeToken: String? {
        [location, location + "-wal"].map { path in
            var info = stat()
            guard stat(path, &info) == 0 else { return "-" }
            return "\(info.st_size).\(info.st_mtim.tv_sec).\(info.st_mtim.tv_nsec)"
        }.joined(separator: "/")
    }

    /// A file lock beside the database (`locks/NAME.lock`): every process that opens this
    /// catalog file sees it.
    func lock(_ name: String, waiting: @Sendable () -> Void) async throws -> any Sendable {
        let directory = (location as NSString).deletingLastPathComponent + "/locks"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        return try await FileLock.acquire(directory + "/\(name).lock", waiting: waiting)
    }

    /// How an attempt went, the same in a build and a test run: status, when, where it
    /// failed and why, its log archive.
    private static func outcomeColumns(_ t: TableDefinition) {
        t.column("status", .text).notNull()
        t.column("started", .datetime).notNull()
        t.column("finished", .datetime)
        t.column("failedStep", .text)
        t.column("message", .text)
        t.column("log", .text)
    }

    static var migrator: DatabaseMigrator {
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
                outcomeColumns(t)
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
        migrator.registerMigration("v8-build-host") { db in
            // The machine a build's pid belongs to: a shared store or catalog spans machines.
            try db.alter(table: "build") { t in t.add(column: "host", .text) }
        }
        migrator.registerMigration("v9-packages") { db in
            // The image's installed packages (PackageManifest, tab-separated lines).
            try db.alter(table: "image") { t in t.add(column: "packages", .text) }
        }
        migrator.registerMigration("v10-integrity") { db in
            // The key that signed the image's provenance: once signed, an image whose signature
            // is gone is damaged, not "unsigned" (docs/provenance.md).
            try db.alter(table: "image") { t in t.add(column: "signer", .text) }
            // The blobs and downloads a running build stands on: gc and the cache prune leave
            // them alone while that build may still be running (docs/store.md).
            try db.create(table: "lease") { t in
                t.column("build", .text).notNull()
                t.column("resource", .text).notNull()
                t.primaryKey(["build", "resource"])
            }
        }
        migrator.registerMigration("v11-settings") { db in
            // Values kiln keeps per catalog, such as the key of the build keys' keyed hashes.
            try db.create(table: "setting") { t in
                t.primaryKey("name", .text)
                t.column("value", .text).notNull()
            }
        }
        migrator.registerMigration("v12-tests") { db in
            // Each run of an image's tests on a test boot (docs/testing.md).
            try db.create(table: "test_run") { t in
                t.primaryKey("id", .text)
                t.column("image", .text).notNull().indexed()
                t.column("build", .text)
                outcomeColumns(t)
                t.column("testsHash", .text).notNull()
                t.column("steps", .text).notNull()
            }
        }
        migrator.registerMigration("v13-browse") { db in
            // kiln serve's pages: a family's newest images, an image's children, the newest builds.
            for statement in browseIndexes { try db.execute(sql: statement) }
        }
        return migrator
    }

}

struct SQLiteConnection: SQLConnection {
    let db: Database

    func execute(_ sql: String, _ arguments: [SQLValue]) throws {
        try db.execute(sql: sql, arguments: StatementArguments(arguments.map(\.databaseValue)))
    }

    func rows(_ sql: String, _ arguments: [SQLValue]) throws -> [any SQLRow] {
        let rows = try Row.fetchAll(db, sql: sql, arguments: StatementArguments(arguments.map(\.databaseValue)))
        guard let first = rows.first else { return [] }
        var columns: [String: Int] = [:]
        for (index, name) in first.columnNames.enumerated() where columns[name] == nil { columns[name] = index }
        return rows.map { SQLiteRow(row: $0, columns: columns) }
    }
}

struct SQLiteRow: SQLRow {
    let row: Row
    /// Column positions by name, made once per result: GRDB's lookup by name compares
    /// lowercased names column by column, which was the largest cost of reading a page of
    /// images (`kiln serve`, B14).
    let columns: [String: Int]

    func string(_ column: String) throws -> String? { try read(String?.self, column) }
    func int64(_ column: String) throws -> Int64? { try read(Int64?.self, column) }
    func bool(_ column: String) throws -> Bool? { try read(Bool?.self, column) }
    func date(_ column: String) throws -> Date? { try read(Date?.self, column) }

    private func read<Value: DatabaseValueConvertible>(_ type: Value?.Type, _ column: String) throws -> Value? {
        do {
            guard let index = columns[column] else { return try row.decode(Value?.self, forColumn: column) }
            return try row.decode(Value?.self, atIndex: index)
        } catch {
            // GRDB's error prints the whole row; a value another machine wrote may be anything
            // (a secret pasted in the wrong column), so the message names the column only.
            throw KilnError(.storeInconsistent, unreadableColumn(column, Value.self))
        }
    }
}

extension SQLValue {
    /// GRDB's own encodings: dates as `YYYY-MM-DD HH:MM:SS.SSS` UTC text, which sorts and compares in time order.
    var databaseValue: DatabaseValue {
        switch self {
        case .null: return .null
        case .integer(let value): return value.databaseValue
        case .text(let value): return value.databaseValue
        case .bool(let value): return value.databaseValue
        case .date(let value): return value.databaseValue
        }
    }
}
