import Foundation
import KilnCore
import KilnModel
import KilnStore

/// Where a test's catalog lives: the catalog tests run unchanged on both.
public enum CatalogBackend: String, CaseIterable, Sendable, CustomStringConvertible {
    case sqlite
    case postgresql

    /// How a parameterized test names its case: `sqlite`, `postgresql`.
    public var description: String { rawValue }

    /// A locator for a new, empty catalog: nil for the store's own SQLite file; for PostgreSQL,
    /// a database of its own on the server `scripts/test-postgres` started (KILN_TEST_POSTGRES).
    public func newCatalog() throws -> String? {
        switch self {
        case .sqlite: return nil
        case .postgresql:
            guard let server = ProcessInfo.processInfo.environment["KILN_TEST_POSTGRES"], !server.isEmpty else {
                throw KilnError(
                    .invalidInput, "KILN_TEST_POSTGRES is not set: run the tests with make test, which starts a PostgreSQL server")
            }
            let name = "kiln_test_" + UUID().uuidString.lowercased().replacingOccurrences(of: "-", with: "")
            return try createPostgresDatabase(server: server, name: name)
        }
    }
}

/// A store in a fresh temporary directory, its catalog on `backend`.
public func temporaryStore(_ backend: CatalogBackend = .sqlite) throws -> Store {
    try Store(root: NSTemporaryDirectory() + "kiln-store-" + UUID().uuidString, catalog: try backend.newCatalog())
}
