import Foundation
import Testing

@testable import KilnCore

@Suite("Child processes")
struct ProcessRunnerTests {
    @Test("output is streamed line by line and collected, with the exit status")
    func streamsAndCollects() async throws {
        let lines = Locked<[String]>([])
        let result = try await ProcessRunner.run("sh", ["-c", "echo one; echo two >&2; echo three; exit 7"]) { line in
            lines.withLock { $0.append("\(line.stream.rawValue):\(line.text)") }
        }
        #expect(result.status == 7)
        #expect(result.stdout == "one\nthree\n")
        #expect(result.stderr == "two\n")
        #expect(Set(lines.value) == ["stdout:one", "stderr:two", "stdout:three"])
    }

    @Test("standard input is fed from data and from files")
    func input() async throws {
        let fromData = try await ProcessRunner.run("wc", ["-c"], input: .data(Data(repeating: 65, count: 300_000)))
        #expect(fromData.stdout.trimmingCharacters(in: .whitespacesAndNewlines) == "300000")
        let file = NSTemporaryDirectory() + "kiln-input-" + UUID().uuidString
        try Data(repeating: 66, count: 5_000_000).write(to: URL(fileURLWithPath: file))
        defer { try? FileManager.default.removeItem(atPath: file) }
        let fromFile = try await ProcessRunner.run("wc", ["-c"], input: .file(file))
        #expect(fromFile.stdout.trimmingCharacters(in: .whitespacesAndNewlines) == "5000000")
    }

    @Test("children start with no blocked or ignored signals, so a teardown's SIGTERM reaches them")
    func signalMask() async throws {
        let result = try await ProcessRunner.check("sh", ["-c", "grep -E '^Sig(Blk|Ign)' /proc/self/status"])
        #expect(result.stdout.contains("SigBlk:\t0000000000000000"))
    }

    @Test("a timeout tears down the whole process group: no grandchild survives")
    func timeoutKillsGroup() async throws {
        let marker = "kiln-test-marker-\(UUID().uuidString.prefix(8))"
        let started = ContinuousClock.now
        await #expect(throws: KilnError.self) {
            // The inner shell is a grandchild carrying the marker in its command line.
            try await ProcessRunner.run("sh", ["-c", "sh -c 'sleep 300; : \(marker)' & sleep 301"], timeout: .milliseconds(500))
        }
        // Far below the 300 s the children would sleep: the timeout ended them. Not tighter: the
        // fast tests run in parallel beside QEMU on two cores in CI (10.4 s was seen there).
        #expect(ContinuousClock.now - started < .seconds(60))
        try await Task.sleep(for: .milliseconds(200))
        let survivors = try await ProcessRunner.run("pgrep", ["-f", ": \(marker)"])
        #expect(survivors.stdout.isEmpty, "a grandchild survived the timeout")
    }

    @Test("a missing program is an error that names it")
    func missingProgram() async {
        await #expect(throws: KilnError.self) { try await ProcessRunner.run("kiln-no-such-program", []) }
    }
}
