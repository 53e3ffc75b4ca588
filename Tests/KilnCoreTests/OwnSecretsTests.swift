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

/// The reaper kills what a dead kiln recorded in `run/<host>/<pid>.children`: a file another
/// user could write must not make it kill an arbitrary process.
@Suite("Reaping dead kilns' children: only records kiln's user wrote", .serialized)
struct ReaperTrustTests {
    @Test("a forged children file (another user's, or writable by others) kills nothing; the lock is left alone")
    func forged() async throws {
        let dir = NSTemporaryDirectory() + "kiln-reap-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        // The victim: a process that is not kiln's child, with its real start time.
        let victim = Process()
        victim.executableURL = URL(fileURLWithPath: "/bin/sleep")
        victim.arguments = ["60"]
        try victim.run()
        defer { victim.terminate() }
        let pid = victim.processIdentifier
        let start = try #require(ProcessRegistry.startTime(of: pid))
        let dead: Int32 = 999_999
        for forgery in ["other-user", "world-writable"] {
            let lock = dir + "/\(dead).lock", children = dir + "/\(dead).children"
            FileManager.default.createFile(atPath: lock, contents: nil)
            FileManager.default.createFile(atPath: children, contents: Data("\(pid) \(start)\n".utf8))
            if forgery == "other-user" {
                #expect(chown(children, 65534, 65534) == 0)
            } else {
                #expect(chmod(children, 0o666) == 0)
            }
            let reaped = ProcessRegistry.shared.reap(directory: dir)
            #expect(reaped.isEmpty)
            #expect(victim.isRunning, "a forged record (\(forgery)) killed process \(pid)")
            try? FileManager.default.removeItem(atPath: lock)
            try? FileManager.default.removeItem(atPath: children)
        }
    }
}
