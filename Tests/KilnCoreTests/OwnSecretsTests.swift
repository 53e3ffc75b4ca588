import Foundation
import Testing

@testable import KilnCore

/// kiln's own credentials stay kiln's: children do not inherit them, and a log that a child
/// fills does not show them. (KILN_SERVE_TOKEN stands in for all of them here: nothing else in
/// the test process reads it, so setting it cannot disturb a test running beside this one.)
@Suite("kiln's own credentials", .serialized)
struct OwnSecretsTests {
    @Test("a child does not inherit kiln's credentials unless it is given them; a build log redacts their values")
    func withheldAndRedacted() async throws {
        let token = "serve-token-" + UUID().uuidString
        setenv("KILN_SERVE_TOKEN", token, 1)
        defer { unsetenv("KILN_SERVE_TOKEN") }
        let inherited = try await ProcessRunner.run("/bin/sh", ["-c", "env"])
        #expect(!inherited.stdout.contains(token))
        #expect(!inherited.stdout.contains("KILN_SERVE_TOKEN="))
        // Given explicitly (as a provider hands its own settings on), it is set.
        let given = try await ProcessRunner.run("/bin/sh", ["-c", "echo $KILN_SERVE_TOKEN"], environment: ["KILN_SERVE_TOKEN": "x"])
        #expect(given.stdout == "x\n")
        let path = NSTemporaryDirectory() + "kiln-own-secrets-\(UUID().uuidString).log"
        defer { try? FileManager.default.removeItem(atPath: path) }
        let log = try BuildLog(path: path, family: "t", secrets: [], sink: nil)
        log.emit("step", "KILN_SERVE_TOKEN=\(token)")
        log.close()
        #expect(try !String(contentsOfFile: path, encoding: .utf8).contains(token))
    }

    @Test("a catalog URL's password is redacted on its own too; short values are not")
    func urlPassword() {
        let values = OwnSecrets.values(in: [
            "KILN_CATALOG": "postgres://kiln:pa%24%24word@db:5432/kiln", "PGPASSWORD": "abc", "HOME": "/root",
        ])
        #expect(values.contains("postgres://kiln:pa%24%24word@db:5432/kiln"))
        #expect(values.contains("pa$$word") || values.contains("pa%24%24word"))
        #expect(!values.contains("abc") && !values.contains("/root"))
    }
}
