import Foundation
import KilnCore
import Synchronization

/// Rows a reader chose to leave out because they cannot be read: a catalog shared with other
/// machines may hold a row one of them wrote badly (a date that is not one, a state this kiln
/// does not know). The CLI stops at such a row (`kiln verify` names it); a browser of the
/// catalog (`kiln serve`) shows everything else and says how many rows it left out.
public final class UnreadableRows: Sendable {
    /// Why each row could not be read: its key and the column, not its values; once per row
    /// (a page may meet the same row twice).
    private let messages = Mutex<Set<String>>([])

    /// Reads in this task that meet an unreadable row leave it out and count it here; without
    /// one (the default) such a row fails the read.
    @TaskLocal public static var current: UnreadableRows?

    public init() {}

    public var count: Int { messages.withLock { $0.count } }
    public var all: Set<String> { messages.withLock { $0 } }

    public func add(_ more: some Sequence<String>) {
        messages.withLock { $0.formUnion(more) }
    }

    /// Decodes `row`; an unreadable one (``KilnError/Code/storeInconsistent``) is counted and
    /// nil when a reader in this task has asked for that, else its error is thrown.
    static func decode<T>(_ row: any SQLRow, _ make: (any SQLRow) throws -> T) throws -> T? {
        do {
            return try make(row)
        } catch let error as KilnError where error.code == .storeInconsistent {
            // Name the row by its key, so the message leads to it.
            let key = (try? row.string("name")) ?? (try? row.string("id")) ?? (try? row.int64("id")).flatMap { $0.map(String.init) }
            let message = key.map { "row \(excerpt($0)): \(error.message)" } ?? error.message
            guard let current else { throw KilnError(.storeInconsistent, message, cause: error.cause) }
            current.add([message])
            return nil
        }
    }
}

extension Array where Element == any SQLRow {
    /// Each row decoded by `make`; see ``UnreadableRows`` for the rows that cannot be.
    func decoded<T>(_ make: (any SQLRow) throws -> T) throws -> [T] {
        try compactMap { try UnreadableRows.decode($0, make) }
    }
}

extension Optional where Wrapped == any SQLRow {
    func decoded<T>(_ make: (any SQLRow) throws -> T) throws -> T? {
        try flatMap { try UnreadableRows.decode($0, make) }
    }
}
