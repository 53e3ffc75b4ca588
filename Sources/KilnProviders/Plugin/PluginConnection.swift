import Foundation
import KilnCore
import KilnModel

/// The conversation with one plugin process: numbered requests, answers matched by id,
/// `output` events routed to the request that runs the command, `log` events into the build log.
///
/// A plugin that exits, stops answering, or writes a line that is not protocol JSON fails every
/// waiting request with a message that says which, and is torn down (its process group is
/// killed): the build then fails the way it does when a VM dies.
final class PluginConnection: Sendable {
    let name: String
    let executable: String
    let log: BuildLog
    private let input: AsyncStream<Data>.Continuation
    private let process: Task<ProcessResult, any Error>
    private let state = Locked(State())

    struct Hello: Sendable {
        var capabilities: [String]
    }

    private struct State: Sendable {
        var nextID = 1
        var waiting: [Int: Waiter] = [:]
        /// Set once the plugin is unusable; every later request fails with it.
        var failure: KilnError?
        var stderrTail: [String] = []
        /// Cancelled requests the plugin has not answered yet.
        var cancelled: Set<Int> = []
    }

    /// How long a plugin has to answer a cancelled request before it counts as hung.
    static let cancelGrace: Duration = .seconds(10)

    private struct Waiter: Sendable {
        let method: String
        let continuation: CheckedContinuation<Data, any Error>
        let onOutput: (@Sendable (ProcessOutputLine) -> Void)?
    }

    init(name: String, executable: String, log: BuildLog) {
        self.name = name
        self.executable = executable
        self.log = log
        let (stream, continuation) = AsyncStream<Data>.makeStream()
        input = continuation
        let state = self.state
        let lines = Locked<PluginConnection?>(nil)
        process = Task {
            try await ProcessRunner.run(executable, [], input: .stream(stream), collectLimit: 0) { line in
                lines.value?.received(line)
            }
        }
        lines.set(self)
        // The process ending fails whatever still waits for it, whatever the reason.
        Task { [process, name] in
            let result = await process.result
            let status: String
            switch result {
            case .success(let outcome): status = "exited with status \(outcome.status)"
            case .failure(let error): status = "could not run: \(error)"
            }
            let tail = state.value.stderrTail.suffix(3).joined(separator: " | ")
            lines.value?.fail(
                KilnError(.providerFailed, "the \(name) plugin (\(executable)) \(status)" + (tail.isEmpty ? "" : "; it said: \(tail)")))
            lines.set(nil)
        }
    }

    func handshake() async throws -> Hello {
        let answer = try await request(
            "handshake", PluginMessage.Handshake(version: PluginProvider.protocolVersion, kilnVersion: KilnVersion.current),
            answer: PluginMessage.Hello.self, timeout: .seconds(30))
        guard let version = answer.version else {
            throw protocolError("the handshake answer has no protocol version")
        }
        guard version == PluginProvider.protocolVersion else {
            throw fail(
                KilnError(
                    .providerFailed,
                    "the \(name) plugin speaks protocol version \(version); this kiln speaks \(PluginProvider.protocolVersion)"))
        }
        let capabilities = answer.capabilities ?? []
        PluginProvider.capabilities.withLock { $0[executable] = capabilities }
        log.emit("kiln", "plugin \(executable): protocol \(version), capabilities \(capabilities.joined(separator: ", "))")
        return Hello(capabilities: capabilities)
    }

    /// Sends a request whose answer's `result` kiln does not read.
    func request(
        _ method: String, _ parameters: some Encodable, timeout: Duration, onOutput: (@Sendable (ProcessOutputLine) -> Void)? = nil
    ) async throws {
        _ = try await request(method, parameters, answer: PluginMessage.Empty.self, timeout: timeout, onOutput: onOutput)
    }

    /// Sends one request and waits for its answer's `result`, decoded as `answer`.
    func request<Result: Decodable>(
        _ method: String, _ parameters: some Encodable, answer: Result.Type, timeout: Duration,
        onOutput: (@Sendable (ProcessOutputLine) -> Void)? = nil
    ) async throws -> Result {
        // A request of a cancelled task is never sent: its cancel would arrive first.
        try Task.checkCancellation()
        let id = state.withLock { (s: inout State) -> Int in
            defer { s.nextID += 1 }
            return s.nextID
        }
        let line = try PluginMessage.encode(PluginMessage.Request(id: id, method: method, params: parameters)) + Data("\n".utf8)
        let data = try await withTaskCancellationHandler {
            // On time out, `fail` resumes the waiting continuation, so the race can end.
            try await Timeout.run(
                timeout,
                onTimeout: {
                    self.fail(
                        KilnError(
                            .timeout, "the \(self.name) plugin did not answer \(method) within \(timeout.kilnDescription); it was stopped"))
                }
            ) {
                try await withCheckedThrowingContinuation { continuation in
                    let failure = self.state.withLock { (s: inout State) -> KilnError? in
                        if let failure = s.failure { return failure }
                        // Cancelled between the check above and here: not sent, nothing to answer.
                        if s.cancelled.remove(id) != nil { return KilnError(.cancelled, "\(method) was cancelled") }
                        s.waiting[id] = Waiter(method: method, continuation: continuation, onOutput: onOutput)
                        return nil
                    }
                    if let failure { continuation.resume(throwing: failure) } else { self.input.yield(line) }
                }
            }
        } onCancel: {
            // A step's own timeout or an interrupted build: the plugin stops the command.
            self.state.withLock { _ = $0.cancelled.insert(id) }
            let cancel = PluginMessage.Request(id: nil, method: "cancel", params: PluginMessage.Cancel(id: id))
            if let line = try? PluginMessage.encode(cancel) { self.input.yield(line + Data("\n".utf8)) }
            self.finish(id, with: .failure(KilnError(.cancelled, "\(method) was cancelled")))
            // One that does not answer its cancel is hung, and a teardown must not wait on it.
            Task {
                try await Task.sleep(for: Self.cancelGrace)
                if self.state.value.cancelled.contains(id) {
                    self.fail(
                        KilnError(
                            .timeout,
                            "the \(self.name) plugin did not stop \(method) within \(Self.cancelGrace.kilnDescription) of its cancel; it was stopped"
                        ))
                }
            }
        }
        let answer: PluginMessage.Answer<Result>
        do {
            answer = try JSONDecoder().decode(PluginMessage.Answer<Result>.self, from: data)
        } catch {
            throw protocolError("the answer to \(method) does not match the protocol: \(error)")
        }
        if let error = answer.error {
            let code = error.code ?? "error"
            let message = error.message ?? "(no message)"
            throw KilnError(code == "timeout" ? .timeout : .buildFailed, "the \(name) plugin's \(method) failed: \(code): \(message)")
        }
        guard let result = answer.result else {
            throw protocolError("the answer to \(method) has no result")
        }
        return result
    }

    /// Called for each line the plugin prints.
    private func received(_ line: ProcessOutputLine) {
        guard line.stream == .stdout else {
            log.emit(name, line.text)
            state.withLock { s in
                s.stderrTail.append(String(line.text.prefix(200)))
                if s.stderrTail.count > 5 { s.stderrTail.removeFirst() }
            }
            return
        }
        if line.text.trimmingCharacters(in: .whitespaces).isEmpty { return }
        guard let message = try? JSONDecoder().decode(PluginMessage.Line.self, from: Data(line.text.utf8)) else {
            fail(protocolError("it printed a line that is not protocol JSON: '\(line.text.prefix(120))'"))
            return
        }
        let id = message.id
        if let event = message.event {
            let text = message.text ?? ""
            switch event {
            case "output":
                let stream: ProcessOutputLine.Stream = message.stream == "stderr" ? .stderr : .stdout
                let waiter = id.flatMap { id in state.value.waiting[id] }
                for part in text.split(separator: "\n", omittingEmptySubsequences: false) {
                    waiter?.onOutput?(ProcessOutputLine(stream: stream, text: String(part)))
                }
            case "log": log.emit(name, text)
            default: log.emit(name, "(\(event)) \(text)")
            }
            return
        }
        guard let id else {
            fail(protocolError("it printed a message with neither id nor event: '\(line.text.prefix(120))'"))
            return
        }
        guard message.result != nil || message.error != nil else {
            fail(protocolError("its answer to request \(id) has neither result nor error"))
            return
        }
        finish(id, with: .success(Data(line.text.utf8)))
    }

    private func finish(_ id: Int, with result: Result<Data, any Error>) {
        let waiter = state.withLock { s in
            if case .success = result { s.cancelled.remove(id) }
            return s.waiting.removeValue(forKey: id)
        }
        waiter?.continuation.resume(with: result)
    }

    /// Marks the plugin unusable, fails everything waiting, and stops it.
    @discardableResult
    func fail(_ error: KilnError) -> KilnError {
        let (first, waiters) = state.withLock { (s: inout State) -> (KilnError, [Waiter]) in
            if s.failure == nil { s.failure = error }
            defer { s.waiting = [:] }
            return (s.failure!, Array(s.waiting.values))
        }
        for waiter in waiters { waiter.continuation.resume(throwing: first) }
        input.finish()
        process.cancel()
        return first
    }

    func protocolError(_ message: String) -> KilnError {
        KilnError(.providerFailed, "the \(name) plugin (\(executable)) broke the protocol: \(message)")
    }

    /// Ends the conversation: `destroy` for a live instance, then end of input; a plugin that
    /// has not exited 10 s later is killed with its process group.
    func close(destroying instance: String?) async {
        if let instance, state.value.failure == nil {
            do {
                // Not in the caller's task: an interrupted build still destroys its instance.
                try await uncancellable {
                    try await self.request("destroy", PluginMessage.Instance(instanceID: instance), timeout: .seconds(120))
                }
            } catch {
                log.emit("kiln", "warning: the \(name) plugin could not destroy instance \(instance): \(error)")
            }
        }
        input.finish()
        let exited = await Timeout.wait(for: process, atMost: .seconds(10))
        if !exited {
            if state.value.failure == nil { log.emit("kiln", "the \(name) plugin did not exit after its input closed; stopping it") }
            process.cancel()
            _ = await process.result
        }
    }
}

extension Duration {
    /// Whole seconds, rounded up: what the protocol's `timeout_seconds` carry.
    var wholeSeconds: Int { Int(components.seconds) + (components.attoseconds > 0 ? 1 : 0) }
}
