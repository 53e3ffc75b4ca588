import Dispatch
import Foundation
import KilnCore
import KilnModel
import Logging
import NIOCore
import NIOPosix
import NIOSSL
import PostgresNIO
import Synchronization

/// Creates an empty database on a PostgreSQL server and returns the URL that names it: how the
/// tests give each catalog a database of their own. `package`, so the test-support target can
/// call it with a plain import (a testing-only import of KilnStore there broke release builds).
package func createPostgresDatabase(server url: String, name: String) throws -> String {
    try PostgresDatabase.createDatabase(server: url, name: name)
}

/// The shared catalog: PostgreSQL through postgres-nio, for kiln processes on several machines
/// (docs/ci.md). The catalog's API is synchronous, like GRDB's; each query here runs on the
/// connection's own NIO event loop thread and the calling thread waits for it. Because that
/// work never needs one of Swift's few cooperative threads, callers blocked on it cannot
/// starve it (several parallel builds may wait on the catalog at once).
final class PostgresDatabase: SQLDatabase {
    let kind = "postgresql"
    let location: String
    private let configuration: PostgresConnection.Configuration
    /// The connection transactions run on, one transaction at a time.
    private let shared: Mutex<PostgresSession?> = Mutex(nil)

    /// Advisory lock keys: writers take turns on one; migrations on another.
    static let writeLockKey: Int64 = 0x6B69_6C6E_0000_0001
    static let migrationLockKey: Int64 = 0x6B69_6C6E_0000_0002

    init(url: String) throws {
        configuration = try Self.configuration(url: url)
        location = Self.redacted(url)
        try migrate()
    }

    static func configuration(url: String) throws -> PostgresConnection.Configuration {
        guard let parts = URLComponents(string: url), let host = parts.host, !host.isEmpty else {
            throw KilnError(
                .invalidInput,
                "cannot read the catalog URL '\(Self.redacted(url))': expected postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE")
        }
        let database = parts.path.count > 1 ? String(parts.path.dropFirst()) : nil
        let user = parts.user ?? ProcessInfo.processInfo.environment["USER"] ?? "postgres"
        // libpq's variable: a password need not sit in the URL, in a CI variable or a process list.
        let password = parts.password ?? ProcessInfo.processInfo.environment["PGPASSWORD"]
        let port = parts.port ?? 5432
        // `?host=/dir`, as libpq reads it: the server's Unix socket directory.
        if let socket = parts.queryItems?.first(where: { $0.name == "host" })?.value, socket.hasPrefix("/") {
            return .init(unixSocketPath: "\(socket)/.s.PGSQL.\(port)", username: user, password: password, database: database)
        }
        let query = Dictionary((parts.queryItems ?? []).map { ($0.name, $0.value ?? "") }, uniquingKeysWith: { _, last in last })
        return .init(
            host: host, port: port, username: user, password: password, database: database, tls: try tls(query, host: host))
    }

    /// TLS as libpq's `sslmode` spells it (default `prefer`, as libpq's): `disable`; `allow` and
    /// `prefer` (TLS when the server offers it, unverified; postgres-nio tries TLS first, so
    /// `allow` is `prefer` here); `require` (TLS or no connection, unverified, unless a root
    /// certificate is given or at libpq's default place: then, as libpq, `verify-ca`); `verify-ca`
    /// (the server's certificate must chain to `sslrootcert`); `verify-full` (and name the host).
    /// `sslrootcert` is a PEM file, or `system` for the host's trust store, which makes
    /// `verify-full` the default and anything weaker an error (libpq's rule: public roots vouch
    /// for names, not for a CA). `sslcert` and `sslkey` give a client certificate. Each may also
    /// come from libpq's variables (`PGSSLMODE`, `PGSSLROOTCERT`, `PGSSLCERT`, `PGSSLKEY`).
    static func tls(
        _ query: [String: String], host: String, environment: [String: String] = ProcessInfo.processInfo.environment
    ) throws -> PostgresConnection.Configuration.TLS {
        func setting(_ name: String, _ variable: String) -> String? {
            query[name] ?? environment[variable].flatMap { $0.isEmpty ? nil : $0 }
        }
        let rootCert = setting("sslrootcert", "PGSSLROOTCERT")
        let defaultRoot = (environment["HOME"] ?? NSHomeDirectory()) + "/.postgresql/root.crt"
        var mode = setting("sslmode", "PGSSLMODE") ?? (rootCert == "system" ? "verify-full" : "prefer")
        let modes = ["disable", "allow", "prefer", "require", "verify-ca", "verify-full"]
        guard modes.contains(mode) else {
            throw KilnError(
                .invalidInput, "catalog URL: sslmode=\(mode) is not one of \(modes.joined(separator: ", ")) (libpq's names)")
        }
        if rootCert == "system" && mode != "verify-full" {
            throw KilnError(
                .invalidInput,
                "catalog URL: sslrootcert=system needs sslmode=verify-full (the host's public roots say whose name a certificate is, so only the name check makes them mean anything)"
            )
        }
        if mode == "disable" { return .disable }
        if mode == "require" && (rootCert != nil || FileManager.default.fileExists(atPath: defaultRoot)) { mode = "verify-ca" }
        var configuration = TLSConfiguration.makeClientConfiguration()
        switch mode {
        case "verify-ca", "verify-full":
            configuration.certificateVerification = mode == "verify-ca" ? .noHostnameVerification : .fullVerification
            configuration.trustRoots = try trustRoots(rootCert, defaultRoot: defaultRoot, mode: mode)
        default:
            // libpq's require (and prefer) encrypt without checking whom they talk to.
            configuration.certificateVerification = .none
        }
        if let certificate = setting("sslcert", "PGSSLCERT") {
            guard let key = setting("sslkey", "PGSSLKEY") else {
                throw KilnError(.invalidInput, "catalog URL: sslcert is given without sslkey")
            }
            do {
                configuration.certificateChain = try NIOSSLCertificate.fromPEMFile(certificate).map { .certificate($0) }
                configuration.privateKey = .privateKey(try NIOSSLPrivateKey(file: key, format: .pem))
            } catch {
                throw KilnError(.invalidInput, "catalog URL: cannot read the client certificate \(certificate) or key \(key)", cause: error)
            }
        }
        let context: NIOSSLContext
        do { context = try NIOSSLContext(configuration: configuration) } catch {
            throw KilnError(.invalidInput, "catalog URL: cannot set up TLS (sslmode=\(mode))", cause: error)
        }
        return mode == "allow" || mode == "prefer" ? .prefer(context) : .require(context)
    }

    private static func trustRoots(_ rootCert: String?, defaultRoot: String, mode: String) throws -> NIOSSLTrustRoots {
        if rootCert == "system" { return .default }
        let path = rootCert ?? defaultRoot
        guard FileManager.default.isReadableFile(atPath: path) else {
            throw KilnError(
                .invalidInput,
                rootCert == nil
                    ? "catalog URL: sslmode=\(mode) needs the CA that signed the server's certificate: add sslrootcert=FILE (or sslrootcert=system); \(path) does not exist"
                    : "catalog URL: sslrootcert \(path) cannot be read")
        }
        do { return .certificates(try NIOSSLCertificate.fromPEMFile(path)) } catch {
            throw KilnError(.invalidInput, "catalog URL: sslrootcert \(path) holds no PEM certificate", cause: error)
        }
    }

    /// Creates an empty database on the server of `url` and returns the URL that names it:
    /// how the tests give each catalog a database of its own.
    static func createDatabase(server url: String, name: String) throws -> String {
        guard Names.isValidIdentifier(name), name == name.lowercased() else {
            throw KilnError(.invalidInput, "invalid database name '\(name)'")
        }
        let session = try PostgresSession.connect(try configuration(url: url), location: redacted(url))
        defer { session.closeSoon() }
        try session.execute("CREATE DATABASE \(name)", [])
        guard var parts = URLComponents(string: url) else { throw KilnError(.invalidInput, "bad URL \(url)") }
        parts.path = "/" + name
        return parts.string ?? url
    }

    /// The URL without its password, for messages.
    static func redacted(_ url: String) -> String {
        guard var parts = URLComponents(string: url), parts.password != nil else { return url }
        parts.password = "***"
        return parts.string ?? url
    }

    func read<T>(_ body: (any SQLConnection) throws -> T) throws -> T {
        try transaction(begin: "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY", body)
    }

    func write<T>(_ body: (any SQLConnection) throws -> T) throws -> T {
        // One writer at a time, as SQLite has it: a transaction that reads and then writes (the
        // next version of a family, a lifecycle guard) never races another writer.
        try transaction(begin: "BEGIN", lockKey: Self.writeLockKey, body)
    }

    private func transaction<T>(begin: String, lockKey: Int64? = nil, _ body: (any SQLConnection) throws -> T) throws -> T {
        try shared.withLock { session in
            if session == nil || session!.isClosed { session = try PostgresSession.connect(configuration, location: location) }
            let connection = session!
            try connection.execute(begin, [])
            do {
                if let lockKey { try connection.execute("SELECT pg_advisory_xact_lock(?)", [.integer(lockKey)]) }
                let value = try body(connection)
                try connection.execute("COMMIT", [])
                return value
            } catch {
                try? connection.execute("ROLLBACK", [])
                throw error
            }
        }
    }

    /// A session-level advisory lock on a connection of its own: the server releases it when
    /// the connection closes, so a kiln that dies (or a runner that vanishes) leaves none behind.
    func lock(_ name: String, waiting: @Sendable () -> Void) async throws -> any Sendable {
        let key = Int64(bitPattern: UInt64(Hashing.sha256Hex("kiln-lock:" + name).prefix(16), radix: 16) ?? 0)
        let session = try PostgresSession.connect(configuration, location: location)
        do {
            try await LockWait.poll(waiting: waiting) {
                try session.rows("SELECT pg_try_advisory_lock(?) AS locked", [.integer(key)]).first?.bool("locked") == true
            }
        } catch {
            session.closeSoon()
            throw error
        }
        // Held while the session lives: dropping it closes the connection, which releases the lock.
        return session
    }

    // MARK: - Migrations

    /// Versioned, applied in order, each once; the PostgreSQL schema equals SQLite's after its
    /// migrations v1 through v13-browse (docs/store.md).
    static let migrations: [(version: String, statements: [String])] = [
        (
            "v1-initial",
            [
                """
                CREATE TABLE image (
                  name text PRIMARY KEY, family text NOT NULL, version text NOT NULL, digest text NOT NULL,
                  parent text REFERENCES image (name) ON DELETE RESTRICT, state text NOT NULL, created timestamptz NOT NULL,
                  labels text NOT NULL, description text, templateHash text NOT NULL, size bigint NOT NULL, log text NOT NULL,
                  buildID text NOT NULL, sourceKind text NOT NULL, buildKey text, keyInputs text, backingDigest text,
                  replacement text, obsoleteOn timestamptz, deleteOn timestamptz, policy text, purgeOn timestamptz,
                  purged boolean NOT NULL DEFAULT false, origin text, UNIQUE (family, version))
                """,
                "CREATE INDEX image_on_family ON image (family)",
                "CREATE INDEX image_on_family_buildKey ON image (family, buildKey)",
                "CREATE INDEX image_on_family_state ON image (family, state)",
                """
                CREATE TABLE build (
                  id text PRIMARY KEY, family text NOT NULL, image text, status text NOT NULL, started timestamptz NOT NULL,
                  finished timestamptz, failedStep text, message text, log text, pid bigint NOT NULL, host text)
                """,
                """
                CREATE TABLE source (
                  key text PRIMARY KEY, digest text NOT NULL, description text NOT NULL, created timestamptz NOT NULL,
                  used timestamptz)
                """,
                """
                CREATE TABLE event (
                  id bigserial PRIMARY KEY, image text NOT NULL, family text NOT NULL, fromState text NOT NULL,
                  toState text NOT NULL, at timestamptz NOT NULL, actor text NOT NULL, reason text NOT NULL)
                """,
                "CREATE INDEX event_on_image ON event (image)",
                "CREATE INDEX event_on_family ON event (family)",
                """
                CREATE TABLE channel (
                  id bigserial PRIMARY KEY, family text NOT NULL, name text NOT NULL,
                  image text NOT NULL REFERENCES image (name), at timestamptz NOT NULL, actor text NOT NULL)
                """,
                "CREATE INDEX channel_on_family_name ON channel (family, name)",
            ]
        ),
        ("v2-packages", ["ALTER TABLE image ADD COLUMN packages text"]),
        (
            "v3-integrity",
            [
                "ALTER TABLE image ADD COLUMN signer text",
                "CREATE TABLE lease (build text NOT NULL, resource text NOT NULL, PRIMARY KEY (build, resource))",
            ]
        ),
        ("v4-settings", ["CREATE TABLE setting (name text PRIMARY KEY, value text NOT NULL)"]),
        (
            "v5-tests",
            [
                """
                CREATE TABLE test_run (
                  id text PRIMARY KEY, image text NOT NULL, build text, status text NOT NULL, started timestamptz NOT NULL,
                  finished timestamptz, failedStep text, message text, log text, testsHash text NOT NULL, steps text NOT NULL)
                """,
                "CREATE INDEX test_run_on_image ON test_run (image)",
            ]
        ),
        ("v6-browse", browseIndexes),
    ]

    private func migrate() throws {
        do {
            try transaction(begin: "BEGIN", lockKey: Self.migrationLockKey) { db in
                try db.execute("CREATE TABLE IF NOT EXISTS kiln_migration (version text PRIMARY KEY, applied timestamptz NOT NULL)")
                let applied = Set(try db.strings("SELECT version FROM kiln_migration", column: "version"))
                for migration in Self.migrations where !applied.contains(migration.version) {
                    for statement in migration.statements { try db.execute(statement) }
                    try db.execute(
                        "INSERT INTO kiln_migration (version, applied) VALUES (?, ?)", [.text(migration.version), .date(Date())])
                }
            }
        } catch let error as KilnError {
            throw KilnError(.io, "cannot open the catalog at \(location)", cause: error)
        }
    }
}

/// One connection to the server, used from synchronous code (see ``PostgresDatabase``).
final class PostgresSession: SQLConnection, Sendable {
    private let connection: PostgresConnection
    private let executor: EventLoopExecutor
    private let location: String
    private static let logger: Logger = {
        var logger = Logger(label: "kiln.catalog.postgres")
        logger.logLevel = .critical
        return logger
    }()

    private init(connection: PostgresConnection, executor: EventLoopExecutor, location: String) {
        self.connection = connection
        self.executor = executor
        self.location = location
    }

    deinit { closeSoon() }

    static func connect(_ configuration: PostgresConnection.Configuration, location: String) throws -> PostgresSession {
        let loop = MultiThreadedEventLoopGroup.singleton.next()
        let executor = EventLoopExecutor(loop)
        do {
            let connection = try executor.wait {
                try await PostgresConnection.connect(on: loop, configuration: configuration, id: 1, logger: logger)
            }
            return PostgresSession(connection: connection, executor: executor, location: location)
        } catch {
            throw KilnError(.io, "cannot connect to the catalog at \(location): \(Self.describe(error))")
        }
    }

    var isClosed: Bool { connection.isClosed }

    /// Closes without waiting: the server drops the session's advisory locks with it. The
    /// connection is kept until it is closed (postgres-nio requires a closed connection at its end).
    func closeSoon() {
        let connection = self.connection
        let closing: EventLoopFuture<Void> = connection.close()
        closing.whenComplete { _ in withExtendedLifetime(connection) {} }
    }

    func execute(_ sql: String, _ arguments: [SQLValue]) throws {
        _ = try fetch(sql, arguments)
    }

    func rows(_ sql: String, _ arguments: [SQLValue]) throws -> [any SQLRow] {
        try fetch(sql, arguments).map(PostgresResultRow.init)
    }

    private func fetch(_ sql: String, _ arguments: [SQLValue]) throws -> [PostgresRow] {
        var bindings = PostgresBindings(capacity: arguments.count)
        for argument in arguments {
            switch argument {
            case .null: bindings.appendNull()
            case .integer(let value): bindings.append(value)
            case .text(let value): bindings.append(value)
            case .bool(let value): bindings.append(value)
            case .date(let value): bindings.append(value)
            }
        }
        let query = PostgresQuery(unsafeSQL: Self.numberedPlaceholders(sql), binds: bindings)
        let connection = self.connection
        do {
            return try executor.wait {
                var rows: [PostgresRow] = []
                for try await row in try await connection.query(query, logger: Self.logger) { rows.append(row) }
                return rows
            }
        } catch {
            throw KilnError(.io, "the catalog at \(location) refused a query: \(Self.describe(error))")
        }
    }

    /// `?` placeholders, in order, as PostgreSQL's `$1, $2, …` (none of kiln's SQL has a `?` in a literal).
    static func numberedPlaceholders(_ sql: String) -> String {
        var result = ""
        var index = 0
        var quoted = false
        for character in sql {
            if character == "'" { quoted.toggle() }
            if character == "?" && !quoted {
                index += 1
                result += "$\(index)"
            } else {
                result.append(character)
            }
        }
        return result
    }

    /// postgres-nio keeps server messages out of its errors' descriptions; kiln's users need them.
    static func describe(_ error: any Error) -> String {
        if let error = error as? PSQLError {
            if let message = error.serverInfo?[.message] {
                return message + (error.serverInfo?[.sqlState].map { " (SQLSTATE \($0))" } ?? "")
            }
            if let underlying = error.underlying { return "\(error.code): \(underlying)" }
            return "\(error.code)"
        }
        return "\(error)"
    }
}

struct PostgresResultRow: SQLRow {
    private let cells: [String: PostgresCell]

    init(_ row: PostgresRow) {
        // Unquoted identifiers fold to lower case in PostgreSQL: look columns up the same way.
        var cells: [String: PostgresCell] = [:]
        for cell in row { cells[cell.columnName.lowercased()] = cell }
        self.cells = cells
    }

    private func cell(_ column: String) -> PostgresCell? {
        guard let cell = cells[column.lowercased()], cell.bytes != nil else { return nil }
        return cell
    }

    func string(_ column: String) throws -> String? { try read(String.self, column) }
    func int64(_ column: String) throws -> Int64? { try read(Int64.self, column) }
    func bool(_ column: String) throws -> Bool? { try read(Bool.self, column) }
    func date(_ column: String) throws -> Date? { try read(Date.self, column) }

    private func read<Value: PostgresDecodable>(_ type: Value.Type, _ column: String) throws -> Value? {
        do {
            return try cell(column)?.decode(Value.self)
        } catch {
            // postgres-nio's error carries the cell's bytes: name the column only.
            throw KilnError(.storeInconsistent, unreadableColumn(column, Value.self))
        }
    }
}

/// Runs async work on one NIO event loop and blocks the calling thread until it is done.
/// swift-nio's event loops are serial executors but not task executors: this adapter lets a
/// task prefer the loop, so the work and every continuation in postgres-nio stay on it.
final class EventLoopExecutor: TaskExecutor {
    let loop: any EventLoop

    init(_ loop: any EventLoop) { self.loop = loop }

    func enqueue(_ job: consuming ExecutorJob) {
        let job = UnownedJob(job)
        loop.execute { job.runSynchronously(on: self.asUnownedTaskExecutor()) }
    }

    func wait<T: Sendable>(_ operation: @escaping @Sendable () async throws -> T) throws -> T {
        // Blocking an event loop would stall it, and this loop would deadlock; kiln's own code
        // never runs on one (only the work handed to this executor does).
        precondition(MultiThreadedEventLoopGroup.currentEventLoop == nil, "a catalog query was made on a NIO event loop thread")
        let result = Mutex<Result<T, any Error>?>(nil)
        let done = DispatchSemaphore(value: 0)
        Task(executorPreference: self) {
            do {
                let value = try await operation()
                result.withLock { $0 = .success(value) }
            } catch {
                result.withLock { $0 = .failure(error) }
            }
            done.signal()
        }
        done.wait()
        return try result.withLock { $0! }.get()
    }
}
