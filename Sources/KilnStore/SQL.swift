import Foundation
import KilnCore
import KilnModel

/// A value bound to, or read from, a catalog query. The catalog's SQL is written once for
/// both backends (SQLite, PostgreSQL): only these types cross the boundary.
public enum SQLValue: Sendable, Equatable {
    case null
    case integer(Int64)
    case text(String)
    case bool(Bool)
    case date(Date)

    public static func optional(_ text: String?) -> SQLValue { text.map(SQLValue.text) ?? .null }
    public static func optional(_ date: Date?) -> SQLValue { date.map(SQLValue.date) ?? .null }
}

/// One result row; columns by name. A column that is NULL reads as nil.
public protocol SQLRow {
    func string(_ column: String) throws -> String?
    func int64(_ column: String) throws -> Int64?
    func bool(_ column: String) throws -> Bool?
    func date(_ column: String) throws -> Date?
}

extension SQLRow {
    /// A NOT NULL column: its absence means the catalog is damaged.
    func required<T>(_ column: String, _ read: (String) throws -> T?) throws -> T {
        guard let value = try read(column) else {
            throw KilnError(.storeInconsistent, "the catalog has no value in column '\(column)' where one is required")
        }
        return value
    }
}

/// The message for a column whose value is not of the type the catalog keeps there.
func unreadableColumn(_ column: String, _ type: Any.Type) -> String {
    let kind =
        switch type {
        case is Date.Type: "a date"
        case is Int64.Type: "a whole number"
        case is Bool.Type: "a boolean"
        default: "text"
        }
    return "the catalog's column '\(column)' holds a value that is not \(kind)"
}

/// A value read from the catalog, quoted for a message: at most 40 characters, control
/// characters escaped (another machine may have written anything there).
func excerpt(_ value: String) -> String {
    value.count > 40 ? String(value.prefix(40)).debugDescription + "…" : value.debugDescription
}

/// The statements of one transaction. Placeholders are `?`, in order; a backend that numbers
/// them (`$1`) rewrites them.
public protocol SQLConnection {
    func execute(_ sql: String, _ arguments: [SQLValue]) throws
    func rows(_ sql: String, _ arguments: [SQLValue]) throws -> [any SQLRow]
}

extension SQLConnection {
    func execute(_ sql: String) throws { try execute(sql, []) }
    func rows(_ sql: String) throws -> [any SQLRow] { try rows(sql, []) }
    func row(_ sql: String, _ arguments: [SQLValue] = []) throws -> (any SQLRow)? { try rows(sql, arguments).first }
    func count(_ sql: String, _ arguments: [SQLValue] = []) throws -> Int {
        Int(try row(sql, arguments)?.int64("n") ?? 0)
    }
    func strings(_ sql: String, _ arguments: [SQLValue] = [], column: String) throws -> [String] {
        try rows(sql, arguments).compactMap { try $0.string(column) }
    }
}

/// Where the catalog lives. `read` sees one consistent snapshot; `write` is one transaction,
/// and writers take turns (SQLite: its write lock; PostgreSQL: an advisory lock), so a
/// transaction that reads and then writes never races another one.
public protocol SQLDatabase: Sendable {
    /// `sqlite` or `postgresql`: for messages.
    var kind: String { get }
    /// Where it is, without a password: for messages.
    var location: String { get }
    func read<T>(_ body: (any SQLConnection) throws -> T) throws -> T
    func write<T>(_ body: (any SQLConnection) throws -> T) throws -> T
    /// An exclusive lock named `name` among every kiln process using this catalog, held until
    /// the returned value is released; `waiting` is called once if another process holds it.
    /// A process that dies releases its locks.
    func lock(_ name: String, waiting: @Sendable () -> Void) async throws -> any Sendable
    /// Changes whenever another transaction may have committed; nil when the backend cannot
    /// tell cheaply (PostgreSQL), and readers that cache must expire what they keep instead.
    var changeToken: String? { get }
}

extension SQLDatabase {
    public var changeToken: String? { nil }
}
