import Foundation
import KilnCore
import Synchronization

/// One thing that happened in a build: what `kiln build --json` prints, one JSON object per
/// line (docs/json.md), and what the console view renders. Every text has been through the
/// build's redaction (BuildLog) before it gets here.
public struct BuildEvent: Sendable, Encodable, Equatable {
    public enum Kind: String, Sendable, Encodable, CaseIterable {
        /// Another kiln holds the family's lock; this one waits for it.
        case waiting
        /// A READY image was built from the same inputs: nothing to do.
        case upToDate = "up_to_date"
        /// The inputs changed (`reasons`): a build begins, with a new build id.
        case buildStarted = "build_started"
        /// A stage of the build: verify or source, boot, each provision step, secret scan, shutdown, snapshot.
        case stepStarted = "step_started"
        /// One line of the build's log: kiln's own (`source: kiln`), a step's, or the serial console's;
        /// `step` is the stage it was printed in.
        case output
        case stepFinished = "step_finished"
        /// The image is sealed and named in the catalog.
        case imageReady = "image_ready"
        /// The build failed (or was cancelled) at `step`; its VM is gone and its log archived.
        case failed
        /// `kiln build --promote`: the channel now points at the image.
        case promoted
        /// The image's tests begin on a test boot (docs/testing.md): in its build, or on their own.
        case testsStarted = "tests_started"
        /// Every test step passed (`image`); the image is READY unless a refresh holds it.
        case testsPassed = "tests_passed"
        /// A test step failed (`step`, `text`): the image is FAILED.
        case testsFailed = "tests_failed"
    }

    public var event: Kind
    public var time: Date
    /// The template's `image:`, which names the family; the same in every event of one image.
    public var family: String
    /// The exact image (`family-vYYYYMMDD-N`): in up_to_date and image_ready.
    public var image: String?
    /// The build id (`kiln logs BUILD`): from build_started on.
    public var build: String?
    public var step: String?
    /// Where an output line came from: `kiln`, `console` or the step's title.
    public var source: String?
    /// The output line, or the message of waiting, failed.
    public var text: String?
    /// How long a step ran (step_finished).
    public var seconds: Double?
    /// Whether the step succeeded (step_finished).
    public var ok: Bool?
    /// Why the image is built (build_started).
    public var reasons: [String]?
    public var parent: String?
    /// The image's blob (image_ready, up_to_date).
    public var digest: String?
    /// The build was interrupted (failed).
    public var cancelled: Bool?
    /// The channel moved (promoted).
    public var channel: String?

    public init(_ event: Kind, family: String, time: Date = Date()) {
        self.event = event
        self.family = family
        self.time = time
    }

    static let timeFormat = Date.ISO8601FormatStyle(includingFractionalSeconds: true, timeZone: .gmt)

    /// The encoder of the JSON lines: keys sorted, the time as ISO 8601 UTC with milliseconds.
    /// A stream keeps one (`kiln build --json` writes a line per log line).
    public static func makeEncoder() -> JSONEncoder {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        encoder.dateEncodingStrategy = .custom { date, encoder in
            var container = encoder.singleValueContainer()
            try container.encode(date.formatted(Self.timeFormat))
        }
        return encoder
    }

    /// One line of JSON (no newline in it: strings are escaped).
    public func jsonLine(_ encoder: JSONEncoder = makeEncoder()) -> String {
        String(decoding: (try? encoder.encode(self)) ?? Data("{}".utf8), as: UTF8.self)
    }
}

/// Where a build's events go: the console, a JSON stream, a test.
public protocol BuildReporter: Sendable {
    func report(_ event: BuildEvent)
}

/// Tells the reporter when each stage of one build starts and ends, and remembers the
/// current one: for the failure message, and to tag each output line with its stage.
final class StepTracker: Sendable {
    private struct State {
        var current = "prepare"
        var started: ContinuousClock.Instant?
    }
    private let state = Mutex(State())
    private let template: BuildEvent
    let reporter: (any BuildReporter)?
    /// Where the stage entered last is written (`phase` in the build's scratch directory): a
    /// kiln that dies leaves it for the next one's recovery, which records the build as
    /// interrupted there (a reporter's output may be gone with its reader: `| head`).
    private let phaseFile: String?

    init(family: String, build: String, reporter: (any BuildReporter)?, phaseFile: String? = nil) {
        var template = BuildEvent(.stepStarted, family: family)
        template.build = build
        self.template = template
        self.reporter = reporter
        self.phaseFile = phaseFile
    }

    static let phaseFileName = "phase"

    var current: String { state.withLock { $0.current } }

    func enter(_ step: String) {
        close(ok: true)
        state.withLock {
            $0.current = step
            $0.started = .now
        }
        if let phaseFile { try? Data(step.utf8).write(to: URL(fileURLWithPath: phaseFile), options: .atomic) }
        reporter?.report(event(.stepStarted))
    }

    /// Ends the open step, if any.
    func close(ok: Bool) {
        guard
            let started = state.withLock({ state in
                defer { state.started = nil }; return state.started
            })
        else { return }
        var finished = event(.stepFinished)
        let elapsed = ContinuousClock.now - started
        finished.seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
        finished.ok = ok
        reporter?.report(finished)
    }

    func event(_ kind: BuildEvent.Kind) -> BuildEvent {
        var event = template
        event.event = kind
        event.time = Date()
        event.step = current
        return event
    }
}
