import Foundation
import KilnBuild
import KilnCore
import KilnModel
import KilnStore
import Synchronization

/// The JSON shape of an image (`kiln images --json`, `kiln inspect --json`), documented in docs/cli.md.
struct ImageView: Codable {
    var name: String
    var family: String
    var version: String
    var state: String
    var parent: String?
    var size: Int64
    var created: String
    var digest: String
    /// nil for an image a provider other than qemu made: ``artifact`` says what and where it is.
    var disk: String?
    var provider: String
    var artifact: ProviderArtifact?
    var labels: [String: String]
    var description: String?
    var templateHash: String
    var buildID: String
    var log: String
    var source: String
    var buildKey: String?
    var keyInputs: [String: String]?
    var replacement: String?
    var obsoleteOn: String?
    var deleteOn: String?
    var purgeOn: String?
    var purged: Bool
    /// The commit and CI job the image was built from; absent for images made before kiln recorded it.
    var origin: BuildOrigin?
    /// The image's newest test run (docs/testing.md); absent when its tests never ran.
    var tests: TestsView?

    enum CodingKeys: String, CodingKey {
        case name, family, version, state, parent, size, created, digest, disk, provider, artifact, labels, description
        case templateHash = "template_hash"
        case buildID = "build_id"
        case log, source
        case buildKey = "build_key"
        case keyInputs = "key_inputs"
        case replacement
        case obsoleteOn = "obsolete_on"
        case deleteOn = "delete_on"
        case purgeOn = "purge_on"
        case purged, origin, tests
    }

    init(_ image: ImageRecord, store: Store) {
        name = image.name
        family = image.family
        version = image.version
        state = image.state.rawValue
        parent = image.parent
        size = image.size
        created = image.created.formatted(.iso8601)
        digest = image.digest
        let artifact = try? store.artifact(of: image)
        // A provider's image has no disk in the store: its artifact says where it is.
        disk = artifact == nil ? store.diskPath(of: image) : nil
        provider = artifact?.provider ?? "qemu"
        self.artifact = artifact
        labels = image.labelDictionary
        description = image.description
        templateHash = image.templateHash
        buildID = image.buildID
        log = store.absolute(image.log)
        source = image.sourceKind
        buildKey = image.buildKey
        keyInputs = image.keyInputs.map { KeyInputs(json: $0).entries }
        replacement = image.replacement
        obsoleteOn = image.obsoleteOn?.formatted(.iso8601)
        deleteOn = image.deleteOn?.formatted(.iso8601)
        purgeOn = image.purgeOn?.formatted(.iso8601)
        purged = image.purged
        origin = image.buildOrigin
    }

    init(_ image: ImageRecord, store: Store, testRun: TestRunRecord?) {
        self.init(image, store: store)
        tests = testRun.map { TestsView($0, store: store) }
    }
}

/// A test run as `inspect --json` and `images --json` show it (docs/json.md).
struct TestsView: Codable {
    struct StepView: Codable {
        var title: String
        /// passed, failed, or skipped.
        var status: String
        var seconds: Double?
        var reason: String?
    }

    var run: String
    var status: String
    var started: String
    var finished: String?
    var failedStep: String?
    var message: String?
    var log: String?
    var testsHash: String
    var passed, failed, skipped: Int
    var steps: [StepView]

    enum CodingKeys: String, CodingKey {
        case run, status, started, finished
        case failedStep = "failed_step"
        case message, log
        case testsHash = "tests_hash"
        case passed, failed, skipped, steps
    }

    init(_ run: TestRunRecord, store: Store) {
        self.run = run.id
        status = run.status.rawValue
        started = run.started.formatted(.iso8601)
        finished = run.finished?.formatted(.iso8601)
        failedStep = run.failedStep
        message = run.message
        log = run.log.map(store.absolute)
        testsHash = run.testsHash
        steps = run.steps.map { step in
            StepView(
                title: step.title, status: step.ok.map { $0 ? "passed" : "failed" } ?? "skipped", seconds: step.seconds,
                reason: step.ok == false ? step.message : step.skipped)
        }
        passed = steps.filter { $0.status == "passed" }.count
        failed = steps.filter { $0.status == "failed" }.count
        skipped = steps.filter { $0.status == "skipped" }.count
    }

    /// `passed (3 steps)`, `failed at test[1] …`: one line for tables.
    var summary: String {
        switch status {
        case "passed": return "passed (\(passed) step\(passed == 1 ? "" : "s"))"
        case "failed": return "failed at \(failedStep ?? "?")"
        default: return status
        }
    }
}

/// Why an image that is TESTING or FAILED is not handed out (resolve, export): what its tests did.
func untestedMessage(_ image: ImageRecord, catalog: Catalog) throws -> String {
    let run = try catalog.latestTestRun(of: image.name)
    let what =
        image.state == .failed
        ? "its tests failed" + (run?.failedStep.map { " at \($0)" } ?? "")
        : "its tests have not passed yet" + (run.map { " (last run: \($0.status.rawValue))" } ?? "")
    return
        "\(image.name) is \(image.state.rawValue): \(what); it is not deployed, promoted or built on (kiln logs \(image.name) --tests; kiln test \(image.name) runs them again)"
}

func printJSON(_ value: some Encodable) throws {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
    print(String(decoding: try encoder.encode(value), as: UTF8.self))
}

/// Left-aligned columns, as `docker images` prints them.
func printTable(_ header: [String], _ rows: [[String]]) {
    let all = [header] + rows
    let widths = header.indices.map { column in all.map { $0[column].count }.max() ?? 0 }
    for row in all {
        let cells = row.enumerated().map { index, cell in
            index == row.count - 1 ? cell : cell.padding(toLength: widths[index], withPad: " ", startingAt: 0)
        }
        print(cells.joined(separator: "  "))
    }
}

/// The live view of a build: every line on a plain stream; on a terminal, the serial console
/// collapses into one status line that the next real line replaces.
final class ConsoleReporter: BuildReporter {
    private let isTerminal = isatty(STDERR_FILENO) == 1
    private let statusShown = Locked(false)
    /// https://no-color.org: a NO_COLOR that is set and not empty turns off the dim text
    /// (the status line's carriage returns stay: they are not colour).
    private let (dimOn, dimOff) = (ProcessInfo.processInfo.environment["NO_COLOR"] ?? "").isEmpty ? ("\u{1B}[2m", "\u{1B}[0m") : ("", "")

    func report(_ event: BuildEvent) {
        switch event.event {
        case .output: line(family: event.family, source: event.source ?? "kiln", text: event.text ?? "")
        case .waiting: line(family: event.family, source: "kiln", text: event.text ?? "waiting")
        // With a text, the image is built but its tests run again (the text says why).
        case .upToDate:
            line(family: event.family, source: "kiln", text: event.text.map { "\($0)" } ?? "up to date: \(event.image ?? "?")")
        case .promoted:
            line(family: event.family, source: "kiln", text: "promoted \(event.image ?? "?") to \(event.family)@\(event.channel ?? "?")")
        // The log's own lines tell these, and the error report the failure.
        case .buildStarted, .stepStarted, .stepFinished, .imageReady, .failed, .testsStarted, .testsFailed: break
        case .testsPassed: line(family: event.family, source: "kiln", text: "tests passed: \(event.image ?? "?")")
        }
    }

    private func line(family: String, source: String, text: String) {
        let time = Date().formatted(.iso8601.time(includingFractionalSeconds: false))
        if isTerminal {
            // A guest's or a template's escape sequences never drive the terminal (the log keeps them).
            let (source, text) = (TerminalText.sanitize(source), TerminalText.sanitize(text))
            if source == "console" {
                let width = 100
                let status = "\(time) \(family) | booting: \(text.prefix(width))"
                try? FileHandle.standardError.write(contentsOf: Data("\r\u{1B}[2K\(dimOn)\(status)\(dimOff)".utf8))
                statusShown.set(true)
                return
            }
            var out = ""
            if statusShown.value {
                out += "\r\u{1B}[2K"
                statusShown.set(false)
            }
            let dim = source != "kiln"
            out += "\(time) \(family) | " + (dim ? "\(dimOn)\(source): \(text)\(dimOff)" : text) + "\n"
            try? FileHandle.standardError.write(contentsOf: Data(out.utf8))
        } else {
            try? FileHandle.standardError.write(contentsOf: Data("\(time) \(family) | \(source): \(text)\n".utf8))
        }
    }
}

/// `kiln build --json`: every event as one line of JSON on standard output (docs/json.md).
/// Lines from parallel builds never interleave: each is written whole, under a lock.
final class JSONLinesReporter: BuildReporter {
    /// One encoder for the stream, used under the lock that also keeps lines whole.
    private let encoder = Mutex(BuildEvent.makeEncoder())

    func report(_ event: BuildEvent) {
        // A reader that went away (`kiln build --json | head`) must not stop the build: the
        // write fails with EPIPE (SIGPIPE is ignored) and the line is dropped.
        encoder.withLock { encoder in try? FileHandle.standardOutput.write(contentsOf: Data((event.jsonLine(encoder) + "\n").utf8)) }
    }
}
