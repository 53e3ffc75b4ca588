import Foundation
import Subprocess
import SystemPackage

/// One line a child process printed, with the stream it came from.
public struct ProcessOutputLine: Sendable {
    public enum Stream: String, Sendable { case stdout, stderr }
    public let stream: Stream
    public let text: String

    public init(stream: Stream, text: String) {
        self.stream = stream
        self.text = text
    }
}

public struct ProcessResult: Sendable {
    /// The exit code, or 128 + the signal number when the process was killed (as shells report it).
    public let status: Int32
    public let stdout: String
    public let stderr: String
    public var succeeded: Bool { status == 0 }
}

/// What a child reads on its standard input.
public enum ProcessInput: Sendable {
    case none
    case data(Data)
    /// Streamed from a file in 1 MiB chunks (e.g. a tar archive of an upload).
    case file(String)
    /// Written as the stream yields it, for a conversation with a long-lived child (a provider
    /// plugin); the child's standard input closes when the stream finishes.
    case stream(AsyncStream<Data>)
}

/// Runs child processes that kiln owns: each in its own session, so a teardown reaches its
/// grandchildren too (ssh's helpers, qemu's), and torn down (SIGTERM to the group, then SIGKILL)
/// when the calling task is cancelled or its timeout passes. Built on swift-subprocess.
public enum ProcessRunner {
    public static func run(
        _ executable: String,
        _ arguments: [String],
        environment: [String: String] = [:],
        workingDirectory: String? = nil,
        input: ProcessInput = .none,
        timeout: Duration? = nil,
        collectLimit: Int = 1 << 20,
        onLine: (@Sendable (ProcessOutputLine) -> Void)? = nil
    ) async throws -> ProcessResult {
        guard let timeout else {
            return try await runOnce(
                executable, arguments, environment, workingDirectory, input, collectLimit, onLine)
        }
        return try await Timeout.run(
            timeout, onTimeout: { KilnError(.timeout, "\(executable) did not finish within \(timeout.kilnDescription)") }
        ) {
            try await runOnce(executable, arguments, environment, workingDirectory, input, collectLimit, onLine)
        }
    }

    /// Runs the command and throws unless it exits 0; the error carries its last stderr lines.
    @discardableResult
    public static func check(
        _ executable: String,
        _ arguments: [String],
        environment: [String: String] = [:],
        workingDirectory: String? = nil,
        input: ProcessInput = .none,
        timeout: Duration? = nil,
        onLine: (@Sendable (ProcessOutputLine) -> Void)? = nil
    ) async throws -> ProcessResult {
        let result = try await run(
            executable, arguments, environment: environment, workingDirectory: workingDirectory,
            input: input, timeout: timeout, onLine: onLine)
        guard result.succeeded else {
            let tail = result.stderr.split(separator: "\n").suffix(5).joined(separator: "\n")
            throw KilnError(
                .io,
                "\(executable) \(arguments.prefix(3).joined(separator: " ")) exited with \(result.status)"
                    + (tail.isEmpty ? "" : ":\n\(tail)"))
        }
        return result
    }

    /// The path of `name` on `PATH`, or nil.
    public static func find(_ name: String) -> String? {
        let path = ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin"
        for directory in path.split(separator: ":") {
            let candidate = "\(directory)/\(name)"
            if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
        }
        return nil
    }

    private static func runOnce(
        _ executable: String,
        _ arguments: [String],
        _ environment: [String: String],
        _ workingDirectory: String?,
        _ input: ProcessInput,
        _ collectLimit: Int,
        _ onLine: (@Sendable (ProcessOutputLine) -> Void)?
    ) async throws -> ProcessResult {
        _ = sigpipeIgnored
        var options = PlatformOptions()
        options.createSession = true
        options.teardownSequence = [
            .gracefulShutDown(toProcessGroup: true, allowedDurationToNextStep: .seconds(3))
        ]
        // Inherited, less kiln's own credentials (OwnSecrets); what the caller gives is set.
        var updates: [Environment.Key: String?] = [:]
        for name in ProcessInfo.processInfo.environment.keys where OwnSecrets.isWithheld(name) {
            updates[Environment.Key(rawValue: name)!] = String?.none
        }
        for (key, value) in environment { updates[Environment.Key(rawValue: key)!] = value }
        let exe: Executable = executable.contains("/") ? .path(FilePath(executable)) : .name(executable)
        do {
            let outcome = try await Subprocess.run(
                exe,
                arguments: Arguments(arguments),
                environment: .inherit.updating(updates),
                workingDirectory: workingDirectory.map { FilePath($0) },
                platformOptions: options,
                input: .inputWriter,
                output: .sequence,
                error: .sequence
            ) { execution in
                ProcessRegistry.shared.started(pid: execution.processIdentifier.value)
                // stdin, stdout and stderr are served concurrently: a child blocked on a full
                // pipe while we wait on another one would never finish.
                return try await withThrowingTaskGroup(of: (ProcessOutputLine.Stream?, String).self) { group in
                    group.addTask {
                        try await feed(input, to: execution.standardInputWriter)
                        return (nil, "")
                    }
                    group.addTask {
                        (.stdout, try await drain(execution.standardOutput, .stdout, collectLimit, onLine))
                    }
                    group.addTask {
                        (.stderr, try await drain(execution.standardError, .stderr, collectLimit, onLine))
                    }
                    var out = ""
                    var err = ""
                    var drained = 0
                    for try await (stream, text) in group {
                        if stream == .stdout { out = text }
                        if stream == .stderr { err = text }
                        if stream != nil { drained += 1 }
                        // A conversation's input never ends by itself: once the child closed its
                        // output (it exited), nothing more is sent to it.
                        if drained == 2, case .stream = input { group.cancelAll() }
                    }
                    return (out, err)
                }
            }
            let status: Int32
            switch outcome.terminationStatus {
            case .exited(let code): status = code
            case .signaled(let signal): status = 128 + signal
            }
            return ProcessResult(status: status, stdout: outcome.closureResult.0, stderr: outcome.closureResult.1)
        } catch let error as SubprocessError {
            if Task.isCancelled { throw KilnError(.cancelled, "\(executable) was cancelled") }
            throw KilnError(.io, "cannot run \(executable)", cause: error)
        }
    }

    /// A child that exits before reading all its input must not take kiln down with SIGPIPE;
    /// the write then fails with EPIPE and the child's exit status tells what happened.
    private static let sigpipeIgnored: Bool = {
        signal(SIGPIPE, SIG_IGN)
        return true
    }()

    private static func feed(_ input: ProcessInput, to writer: StandardInputWriter) async throws {
        do {
            try await write(input, to: writer)
        } catch let error as KilnError {
            throw error
        } catch {
            // EPIPE: the child stopped reading; its exit status is the real answer.
        }
        try? await writer.finish()
    }

    private static func write(_ input: ProcessInput, to writer: StandardInputWriter) async throws {
        switch input {
        case .none:
            break
        case .data(let data):
            if !data.isEmpty { _ = try await writer.write(Array(data)) }
        case .file(let path):
            guard let handle = FileHandle(forReadingAtPath: path) else {
                throw KilnError(.io, "cannot read \(path)")
            }
            defer { try? handle.close() }
            while let chunk = try handle.read(upToCount: 1 << 20), !chunk.isEmpty {
                _ = try await writer.write(Array(chunk))
            }
        case .stream(let chunks):
            for await chunk in chunks where !chunk.isEmpty {
                _ = try await writer.write(Array(chunk))
            }
        }
    }

    private static func drain(
        _ sequence: SubprocessOutputSequence,
        _ stream: ProcessOutputLine.Stream,
        _ limit: Int,
        _ onLine: (@Sendable (ProcessOutputLine) -> Void)?
    ) async throws -> String {
        var collected = ""
        for try await line in sequence.strings() {
            onLine?(ProcessOutputLine(stream: stream, text: line))
            if collected.utf8.count < limit {
                collected += line
                collected += "\n"
            }
        }
        return collected
    }
}

extension Duration {
    /// "90 s", "1.5 s": durations as people read them in messages.
    public var kilnDescription: String {
        let seconds = Double(components.seconds) + Double(components.attoseconds) / 1e18
        return seconds == seconds.rounded() ? "\(Int(seconds)) s" : String(format: "%.1f s", seconds)
    }
}
