import Foundation
import Synchronization

/// How long work shows its progress on standard error: a bar redrawn in place on a terminal, a
/// plain line every so often in CI logs (which keep every byte and have no cursor), nothing
/// for library callers and tests, which is the default until the command line chooses.
public enum ProgressStyle: Sendable, Equatable {
    case none
    case bar
    case lines(every: Duration)

    /// What the process's standard error can show: a bar on a terminal (not `TERM=dumb`),
    /// periodic lines otherwise. `KILN_PROGRESS=none|bar|lines` overrides it, and
    /// `KILN_PROGRESS_EVERY=SECONDS` sets the lines' interval (10 s).
    public static func forStandardError(environment: [String: String] = ProcessInfo.processInfo.environment) -> ProgressStyle {
        let seconds = environment["KILN_PROGRESS_EVERY"].flatMap(Double.init).flatMap { $0 >= 0 ? $0 : nil } ?? 10
        let lines = ProgressStyle.lines(every: .milliseconds(Int64(seconds * 1000)))
        switch environment["KILN_PROGRESS"] {
        case "none": return .none
        case "bar": return .bar
        case "lines": return lines
        default:
            let terminal = isatty(STDERR_FILENO) == 1 && environment["TERM"] != "dumb"
            return terminal ? .bar : lines
        }
    }
}

/// The progress of one piece of long work (a download, an export, a push, a bootstrap), in
/// bytes or in stages. Cheap to update from any thread: it draws at most ten times a second.
///
/// Hand-written rather than a library's: none of the packages this project may use draws
/// progress, and the two forms here are a few lines each.
public final class ProgressMeter: Sendable {
    /// Chosen once by the command line; meters started before that draw nothing.
    public static let style = Mutex(ProgressStyle.none)
    /// The bar redraws in place on one line; meters that run at once take turns on it.
    private static let drawing = Mutex(())

    public enum Unit: Sendable { case bytes, stages }

    private struct State {
        var done: Int64 = 0
        var total: Int64?
        var stage: String?
        var lastDrawn: ContinuousClock.Instant?
        var linesPrinted = 0
        var finished = false
    }

    private let label: String
    private let unit: Unit
    private let style: ProgressStyle
    private let started = ContinuousClock.now
    private let state: Mutex<State>

    /// - Parameter total: bytes (or stages) the work will take; nil when unknown (no ETA then).
    public init(_ label: String, total: Int64?, unit: Unit = .bytes) {
        self.label = label
        self.unit = unit
        self.style = Self.style.withLock { $0 }
        self.state = Mutex(State(total: total))
    }

    public func setTotal(_ total: Int64?) { state.withLock { $0.total = total } }

    public var total: Int64? { state.withLock { $0.total } }

    public func advance(by amount: Int64) { update { $0.done += amount } }

    public func set(done: Int64, stage: String? = nil) {
        update {
            $0.done = done
            if let stage { $0.stage = stage }
        }
    }

    /// Ends the meter: the bar's line is cleared; in CI, a last line when earlier ones were printed.
    public func finish() {
        let (text, printedLines, alreadyFinished) = state.withLock { state in
            defer { state.finished = true }
            return (describe(state), state.linesPrinted, state.finished)
        }
        guard !alreadyFinished else { return }
        switch style {
        case .none: break
        case .bar: Self.write("\r\u{1B}[2K")
        case .lines: if printedLines > 0 { Self.write("\(label): done, \(text)\n") }
        }
    }

    private func update(_ change: (inout State) -> Void) {
        guard style != .none else { return }
        let now = ContinuousClock.now
        let text: String? = state.withLock { state in
            change(&state)
            guard !state.finished else { return nil }
            let interval: Duration
            switch style {
            case .none: return nil
            case .bar: interval = .milliseconds(100)
            case .lines(let every): interval = every
            }
            // Lines start one interval in: work that ends sooner prints nothing at all.
            let since = state.lastDrawn ?? (style == .bar ? started - interval : started)
            guard now - since >= interval else { return nil }
            state.lastDrawn = now
            if case .lines = style { state.linesPrinted += 1 }
            return style == .bar ? Self.bar(state, describe(state)) : describe(state)
        }
        guard let text else { return }
        if style == .bar {
            Self.write("\r\u{1B}[2K\(label) \(text)")
        } else {
            Self.write("\(label): \(text)\n")
        }
    }

    private static func bar(_ state: State, _ text: String) -> String {
        guard let total = state.total else { return text }
        let fraction = total > 0 ? min(1, Double(state.done) / Double(total)) : 0
        let width = 24
        let filled = Int(fraction * Double(width))
        return "[" + String(repeating: "=", count: filled) + String(repeating: " ", count: width - filled) + "] " + text
    }

    /// "120.0 MiB of 300.0 MiB (40%), 12.3 MiB/s, ETA 15 s" or "stage 3 of 7: extracting archives, 40 s".
    private func describe(_ state: State) -> String {
        let elapsed = ContinuousClock.now - started
        let seconds = max(0.001, Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18)
        switch unit {
        case .stages:
            let of = state.total.map { " of \($0)" } ?? ""
            return "stage \(state.done)\(of)" + (state.stage.map { ": \($0)" } ?? "") + ", \(Int(seconds)) s"
        case .bytes:
            let rate = Double(state.done) / seconds
            var text = ByteCount.human(state.done)
            if let total = state.total, total > 0 {
                text += " of \(ByteCount.human(total)) (\(Int(100 * Double(state.done) / Double(total)))%)"
            }
            text += ", \(ByteCount.human(Int64(rate)))/s"
            if let total = state.total, rate > 0, total > state.done {
                text += ", ETA \(Int((Double(total - state.done) / rate).rounded(.up))) s"
            }
            return text
        }
    }

    private static func write(_ text: String) {
        drawing.withLock { _ in try? FileHandle.standardError.write(contentsOf: Data(text.utf8)) }
    }
}

public enum ByteCount {
    /// "1.5 GiB", "512 B": sizes as people read them.
    public static func human(_ bytes: Int64) -> String {
        let units = ["B", "KiB", "MiB", "GiB", "TiB"]
        var value = Double(bytes)
        var unit = 0
        while value >= 1024 && unit < units.count - 1 {
            value /= 1024
            unit += 1
        }
        return unit == 0 ? "\(bytes) B" : String(format: "%.1f %@", value, units[unit])
    }
}
