import Foundation
import KilnCore
import Testing

extension VMBuildTests {
    /// Builds `template` (one file, family `family`) with `flags`, beside `files` (paths relative
    /// to the template's directory); returns kiln's result and the archived log.
    func failedBuild(
        _ family: String, _ template: String, files: [String: String] = [:], flags: [String]
    ) async throws -> (ProcessResult, String) {
        let dir = try await exampleAndScratchDirectory(family)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        for (name, text) in files {
            let path = dir + "/" + name
            try FileManager.default.createDirectory(
                atPath: (path as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
            try text.write(toFile: path, atomically: true, encoding: .utf8)
        }
        try template.write(toFile: dir + "/t.yaml", atomically: true, encoding: .utf8)
        let build = try await SharedStore.shared.kiln(["build", dir] + flags)
        let failed = try await SharedStore.shared.kiln(["logs", "--failed"])
        let line = try #require(failed.stdout.split(separator: "\n").last { $0.contains(family) })
        let log = try await SharedStore.shared.kiln(["logs", String(line.split(separator: " ")[0])])
        let qemus = try await ProcessRunner.run("pgrep", ["-f", "kiln-.*\(family)"])
        #expect(qemus.stdout.isEmpty, "the VM of \(family) outlived its build: \(qemus.stdout)")
        return (build, log.stdout)
    }

    @Test("a guest that does not answer SSH in time fails the build at boot, torn down, with the reason in the log")
    func bootTimeout() async throws {
        let (build, log) = try await failedBuild(
            "slowboot-app", "image: slowboot-app\nfrom: {image: debian-12-base}\nprovision:\n  - shell: true\n",
            // Cold: a warm resume of the base could answer within 3 s.
            flags: ["--boot-timeout", "3", "--no-warm"])
        #expect(build.status == 1)
        #expect(build.stderr.contains("failed at boot: "), "\(build.stderr)")
        #expect(log.contains("the guest did not answer on SSH within 3 s"), "\(log)")
    }

    @Test("a hung step is stopped at its timeout: and the VM torn down; a step that fills the disk fails with the guest's error")
    func hungStepAndFullDisk() async throws {
        let (hung, hungLog) = try await failedBuild(
            "hung-app",
            "image: hung-app\nfrom: {image: debian-12-base}\nprovision:\n  - shell: echo hanging; sleep 3600\n    timeout: 5s\n",
            flags: [])
        #expect(hung.status == 1)
        #expect(hung.stderr.contains("failed at provision[0] shell echo hanging"), "\(hung.stderr)")
        #expect(hungLog.contains("the step did not finish within 5 s (timeout:)"), "\(hungLog)")
        let (full, fullLog) = try await failedBuild(
            "full-app",
            """
            image: full-app
            from: {image: debian-12-base}
            provision:
              - shell: |
                  # Every free block, root's reserve included, but 64 KiB.
                  fallocate -l $(( $(stat -f -c '%f' /) * $(stat -f -c '%S' /) - 65536 )) /fill || true
                  dd if=/dev/zero of=/more bs=1M count=64
            """, flags: [])
        #expect(full.status == 1)
        #expect(full.stderr.contains("failed at provision[0]"), "\(full.stderr)")
        #expect(fullLog.contains("No space left on device"), "\(fullLog)")
        let staged = try FileManager.default.contentsOfDirectory(atPath: SharedStore.shared.home + "/images").filter {
            $0.hasPrefix(".tmp-")
        }
        #expect(staged.isEmpty)
    }
}
