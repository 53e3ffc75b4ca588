import Foundation
import KilnCore
import KilnModel
import Testing

@testable import KilnBuild

/// The pipeline's contract, apart from any provider: phases run in order, and after a failure
/// every phase that started is undone, last first.
@Suite("Build phases")
struct PhaseTests {
    final class Journal: Sendable {
        let entries = Locked<[String]>([])
        func note(_ entry: String) { entries.withLock { $0.append(entry) } }
    }

    struct Recording: BuildPhase {
        let name: String
        let journal: Journal
        var fails = false
        var hangs = false

        func run(_ build: BuildContext) async throws {
            journal.note("run \(name)")
            if hangs { try await Task.sleep(for: .seconds(3600)) }
            if fails { throw KilnError(.buildFailed, "\(name) failed") }
        }

        func undo(_ build: BuildContext) async {
            // An undo must finish in a cancelled build too.
            guard await uncancellable({ (try? await Task.sleep(for: .milliseconds(5))) != nil }) else { return }
            journal.note("undo \(name)")
        }
    }

    static func context() throws -> BuildContext {
        let directory = NSTemporaryDirectory() + "kiln-phases-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let template = Template(
            family: "base", description: nil, source: .providerImage(id: "x"), variables: [], steps: [], labels: [:],
            file: directory + "/base.yaml", location: SourceLocation(file: "base.yaml", line: 1, column: 1),
            sourceLocation: SourceLocation(file: "base.yaml", line: 2, column: 1), templateHash: "")
        let log = try BuildLog(path: directory + "/build.log", family: "base", secrets: [], sink: { _, _ in })
        return BuildContext(
            template: template, provider: FakeProvider(), parent: nil, decision: Decision(family: "base", action: .build, reasons: []),
            buildID: "b", scratch: directory, staging: directory, log: log,
            steps: StepTracker(family: "base", build: "b", reporter: nil), origin: nil)
    }

    @Test("a build that succeeds runs every phase in order and undoes none")
    func success() async throws {
        let journal = Journal()
        let phases = ["source", "boot", "seal"].map { Recording(name: $0, journal: journal) }
        try await PhaseRunner.run(phases, on: try Self.context())
        #expect(journal.entries.value == ["run source", "run boot", "run seal"])
    }

    @Test("a failure undoes every phase that started, the failing one included, last first; later phases never run")
    func failureUndoesInReverse() async throws {
        let journal = Journal()
        let phases = [
            Recording(name: "source", journal: journal), Recording(name: "boot", journal: journal),
            Recording(name: "snapshot", journal: journal, fails: true), Recording(name: "commit", journal: journal),
        ]
        await #expect(throws: KilnError.self) { try await PhaseRunner.run(phases, on: try Self.context()) }
        #expect(
            journal.entries.value == [
                "run source", "run boot", "run snapshot", "undo snapshot", "undo boot", "undo source",
            ])
    }

    @Test("an interrupted build still undoes what it made")
    func cancellationUndoes() async throws {
        let journal = Journal()
        let phases = [Recording(name: "boot", journal: journal), Recording(name: "provision", journal: journal, hangs: true)]
        let context = try Self.context()
        let task = Task { try await PhaseRunner.run(phases, on: context) }
        while !journal.entries.value.contains("run provision") { try await Task.sleep(for: .milliseconds(10)) }
        task.cancel()
        await #expect(throws: CancellationError.self) { try await task.value }
        #expect(journal.entries.value == ["run boot", "run provision", "undo provision", "undo boot"])
    }
}
