import Foundation
import KilnCore
import Testing

@testable import KilnBuild

/// The guest's secret scan, run here on a directory (`KILN_SCAN_ROOT`) with stand-in tools on
/// PATH: a scan that cannot run must fail, never report "nothing found" (before, a busybox
/// `find` without `-newerct` failed silently and an image holding keys was sealed).
@Suite("Secret scan: works without GNU find, fails when it cannot scan")
struct SecretScanTests {
    final class Root {
        let dir = NSTemporaryDirectory() + "kiln-scan-" + UUID().uuidString
        var root: String { dir + "/root" }
        var bin: String { dir + "/bin" }
        deinit { try? FileManager.default.removeItem(atPath: dir) }

        init(planted: Bool) throws {
            let fm = FileManager.default
            try fm.createDirectory(atPath: root + "/etc", withIntermediateDirectories: true)
            try fm.createDirectory(atPath: bin, withIntermediateDirectories: true)
            try "hostname\n".write(toFile: root + "/etc/hostname", atomically: true, encoding: .utf8)
            if planted {
                try fm.createDirectory(atPath: root + "/root/.aws", withIntermediateDirectories: true)
                try "[default]\n".write(toFile: root + "/root/.aws/credentials", atomically: true, encoding: .utf8)
                try "-----BEGIN OPENSSH PRIVATE KEY-----\nb3Blbn\n-----END OPENSSH PRIVATE KEY-----\n"
                    .write(toFile: root + "/etc/deploy.key", atomically: true, encoding: .utf8)
            }
        }

        /// A stand-in for `tool` on PATH (before the real one).
        func standIn(_ tool: String, _ body: String) throws {
            try "#!/bin/sh\n\(body)\n".write(toFile: bin + "/" + tool, atomically: true, encoding: .utf8)
            try FileManager.default.setAttributes([.posixPermissions: 0o755], ofItemAtPath: bin + "/" + tool)
        }

        func scan() async throws -> ProcessResult {
            try await ProcessRunner.run(
                "/bin/sh", ["-e", "-c", SecretScan.script],
                environment: ["KILN_SCAN_ROOT": root, "KILN_ALLOW_SECRETS": "", "PATH": bin + ":/usr/sbin:/usr/bin:/sbin:/bin"])
        }
    }

    @Test("GNU find: files changed since boot are scanned; a planted key and a credential file are found")
    func finds() async throws {
        let root = try Root(planted: true)
        let result = try await root.scan()
        #expect(result.status == SecretScan.foundStatus, "\(result.stdout) \(result.stderr)")
        #expect(result.stdout.contains("found a private key: \(root.root)/etc/deploy.key"))
        #expect(result.stdout.contains("found a credential file: \(root.root)/root/.aws/credentials"))
        #expect(result.stdout.contains("changed files") && !result.stdout.contains("kiln-scan-probe"))
        let clean = try await Root(planted: false).scan()
        #expect(clean.status == 0, "\(clean.stdout) \(clean.stderr)")
    }

    @Test("a find without -newerct (busybox): every file is scanned, and the planted files are still found")
    func busyboxFind() async throws {
        let root = try Root(planted: true)
        try root.standIn(
            "find",
            #"for a in "$@"; do [ "$a" = -newerct ] && { echo "find: unrecognized: -newerct" >&2; exit 1; }; done; exec /usr/bin/find "$@""#
        )
        let result = try await root.scan()
        #expect(result.status == SecretScan.foundStatus, "\(result.stdout) \(result.stderr)")
        #expect(result.stdout.contains("every file is scanned") && result.stdout.contains("etc/deploy.key"))
    }

    @Test("a grep that cannot do what the scan asks, or a failing find, fails the scan instead of passing it", arguments: ["grep", "find"])
    func broken(_ tool: String) async throws {
        let root = try Root(planted: true)
        if tool == "grep" {
            try root.standIn(
                "grep", #"for a in "$@"; do [ "$a" = -l ] && { echo "grep: unknown option -- l" >&2; exit 2; }; done; exec /bin/grep "$@""#)
        } else {
            try root.standIn("find", #"[ "$2" = -maxdepth ] && exec /usr/bin/find "$@"; echo "find: I/O error" >&2; exit 1"#)
        }
        let result = try await root.scan()
        #expect(result.status == SecretScan.brokenStatus, "\(result.stdout) \(result.stderr)")
        #expect(result.stderr.contains("the secret scan cannot run here"))
        // Its probe is gone too.
        #expect(try FileManager.default.contentsOfDirectory(atPath: root.root).allSatisfy { !$0.hasPrefix(".kiln-scan-probe") })
    }
}
