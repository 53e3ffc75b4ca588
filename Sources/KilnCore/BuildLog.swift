import Foundation
import Synchronization

/// Where a build's lines go: the raw log file (timestamped, archived later) and the live view.
///
/// Every line passes through here, so this is the one place sensitive values are redacted.
public final class BuildLog: Sendable {
    public typealias Sink = @Sendable (_ source: String, _ line: String) -> Void

    private struct State {
        var handle: FileHandle?
        var lastLines: [String] = []
        /// Sources whose lines are counted, not kept (`sensitive_output:` steps).
        var muted: [String: Int] = [:]
    }

    private let state: Mutex<State>
    private let redactor: Redactor
    private let family: String
    private let sink: Sink?
    public let path: String

    /// - Parameters:
    ///   - path: the raw log file; created or truncated.
    ///   - secrets: values replaced by `<sensitive>` in every line.
    ///   - sink: the live view; called with already-redacted lines.
    public init(path: String, family: String, secrets: [String], sink: Sink?) throws {
        FileManager.default.createFile(atPath: path, contents: nil)
        guard let handle = FileHandle(forWritingAtPath: path) else {
            throw KilnError(.io, "cannot write the build log \(path)")
        }
        self.path = path
        self.family = family
        // kiln's own credentials too: a step that prints its environment could hold them.
        self.redactor = Redactor(secrets + OwnSecrets.values())
        self.sink = sink
        state = Mutex(State(handle: handle))
    }

    public func redact(_ text: String) -> String { redactor(text) }

    /// Records one line from `source` ("kiln", "console", or a step's title).
    public func emit(_ source: String, _ line: String) {
        let clean = redact(line)
        let source = redact(source)
        let record = "\(Self.timestamp(Date())) [\(family)] [\(source)] \(clean)\n"
        let kept = state.withLock { state -> Bool in
            if let count = state.muted[source] {
                state.muted[source] = count + 1
                return false
            }
            try? state.handle?.write(contentsOf: Data(record.utf8))
            if source != "console" {
                state.lastLines.append(clean)
                if state.lastLines.count > 20 { state.lastLines.removeFirst() }
            }
            return true
        }
        if kept { sink?(source, clean) }
    }

    /// Keeps `source`'s lines out of the log and the live view until ``unmute(_:)``.
    public func mute(_ source: String) {
        state.withLock { $0.muted[redact(source)] = 0 }
    }

    /// Ends ``mute(_:)``; returns how many lines were left out.
    @discardableResult
    public func unmute(_ source: String) -> Int {
        state.withLock { $0.muted.removeValue(forKey: redact(source)) ?? 0 }
    }

    /// How every line of a log starts.
    public static func timestamp(_ date: Date) -> String {
        date.formatted(.iso8601.year().month().day().time(includingFractionalSeconds: true))
    }

    /// The last lines a step or kiln printed, for error messages.
    public func lastLines(_ count: Int) -> [String] {
        state.withLock { Array($0.lastLines.suffix(count)) }
    }

    public func clearLastLines() {
        state.withLock { $0.lastLines.removeAll() }
    }

    public func close() {
        state.withLock { state in
            try? state.handle?.synchronize()
            try? state.handle?.close()
            state.handle = nil
        }
    }
}
