import Foundation
import KilnBuild
import KilnCore
import KilnModel
import KilnStore
import Synchronization

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
