import Foundation
import KilnCore
import KilnModel
import Testing

@testable import KilnStore

/// The catalog over TLS, against the server `scripts/test-postgres` starts: its TCP port takes
/// TLS with a password only (pg_hba rejects `hostnossl`), with a certificate from a throwaway CA.
@Suite("PostgreSQL catalog over TLS (sslmode)")
struct PostgresTLSTests {
    let url: String
    let ca: String
    let otherCA: String

    init() throws {
        let environment = ProcessInfo.processInfo.environment
        url = try #require(environment["KILN_TEST_POSTGRES_TLS"], "KILN_TEST_POSTGRES_TLS is not set: run the tests with make test")
        ca = try #require(environment["KILN_TEST_POSTGRES_CA"])
        otherCA = try #require(environment["KILN_TEST_POSTGRES_OTHER_CA"])
    }

    private func store(_ catalog: String) throws -> Store {
        try Store(root: NSTemporaryDirectory() + "kiln-tls-" + UUID().uuidString, catalog: catalog)
    }

    /// A database of its own, made over TLS.
    private func database(_ query: String) throws -> String {
        let name = "kiln_tls_" + UUID().uuidString.lowercased().replacingOccurrences(of: "-", with: "")
        return try createPostgresDatabase(server: url + "?" + query, name: name)
    }

    @Test("sslmode=verify-full with the server's CA connects, and the catalog works over it")
    func verifyFull() throws {
        let query = "sslmode=verify-full&sslrootcert=\(ca)"
        let catalog = try database(query)
        #expect(catalog.contains("sslmode=verify-full"))
        let store = try store(catalog)
        defer { try? FileManager.default.removeItem(atPath: store.root) }
        #expect(store.catalog.kind == "postgresql")
        let image = try store.catalog.commit(
            ImageDraft(
                family: "tls", digest: String(repeating: "a", count: 64), parent: nil, labels: [:], description: nil,
                templateHash: "t", size: 1, log: "logs/b1.tar.zst", buildID: "b1", sourceKind: "debootstrap"))
        #expect(try store.catalog.image(named: image.name)?.digest == image.digest)
        // The same with the CA from the host's trust store is refused: it did not sign the server.
        #expect(throws: KilnError.self) {
            try self.store(catalog.replacingOccurrences(of: "sslrootcert=\(ca)", with: "sslrootcert=system"))
        }
    }

    @Test("a wrong CA, plain TCP and verify-full without a CA are refused, each saying why")
    func refusals() throws {
        let wrong = #expect(throws: KilnError.self) { try self.database("sslmode=verify-full&sslrootcert=\(otherCA)") }
        #expect("\(wrong.map { "\($0)" } ?? "")".lowercased().contains("certificate"), "\(String(describing: wrong))")
        let plain = #expect(throws: KilnError.self) { try self.database("sslmode=disable") }
        #expect("\(plain.map { "\($0)" } ?? "")".contains("no encryption"), "\(String(describing: plain))")
        let noCA = #expect(throws: KilnError.self) {
            try PostgresDatabase.tls(["sslmode": "verify-full", "sslrootcert": "/nonexistent/ca.crt"], host: "localhost")
        }
        #expect(noCA?.message.contains("/nonexistent/ca.crt") == true)
        // libpq's rule: the public roots only with the name check.
        let system = #expect(throws: KilnError.self) {
            try PostgresDatabase.tls(["sslmode": "require", "sslrootcert": "system"], host: "localhost")
        }
        #expect(system?.message.contains("verify-full") == true)
        // libpq's variables count too.
        let fromEnvironment = #expect(throws: KilnError.self) {
            try PostgresDatabase.tls(
                [:], host: "localhost", environment: ["PGSSLMODE": "verify-full", "PGSSLROOTCERT": "/nonexistent/env.crt"])
        }
        #expect(fromEnvironment?.message.contains("/nonexistent/env.crt") == true)
        let badMode = #expect(throws: KilnError.self) { try PostgresDatabase.tls(["sslmode": "verify_full"], host: "localhost") }
        #expect(badMode?.message.contains("verify-full") == true)
        #expect(badMode?.code == .invalidInput)
    }

    @Test(
        "require and the default (prefer) encrypt without checking the certificate, as libpq's do; require with a root certificate checks the chain"
    )
    func requireAndPrefer() throws {
        for query in ["sslmode=require", "connect_timeout=10"] {
            let catalog = try database(query)
            let store = try store(catalog)
            defer { try? FileManager.default.removeItem(atPath: store.root) }
            #expect(try store.catalog.images().isEmpty)
        }
        // With a root certificate given, require checks the chain (libpq's verify-ca).
        #expect(throws: KilnError.self) { try self.database("sslmode=require&sslrootcert=\(otherCA)") }
        _ = try database("sslmode=require&sslrootcert=\(ca)")
    }
}
