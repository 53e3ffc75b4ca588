import Foundation
import KilnCore
import KilnModel

/// A provider that is a separate program, `kiln-provider-NAME`, speaking kiln's JSON-lines
/// protocol on its standard input and output (docs/providers.md). One plugin process serves one
/// build's machine, from the handshake to `destroy`; it is a child of kiln in its own process
/// group, so whatever it starts dies with it.
public struct PluginProvider: Provider {
    public static let protocolVersion = 1

    public let name: String
    public let executable: String

    public init(name: String, executable: String) {
        self.name = name
        self.executable = executable
    }

    public func start(_ spec: MachineSpec, log: BuildLog) async throws -> any Machine {
        let connection = PluginConnection(name: name, executable: executable, log: log)
        // Once created, the instance is destroyed whatever fails after.
        var created: String?
        do {
            let hello = try await connection.handshake()
            var parameters: [String: any Sendable] = [
                "build_id": spec.buildID, "family": spec.family, "scratch_directory": spec.scratchDirectory,
                "template_directory": spec.templateDirectory, "settings": JSONText(spec.settings.json),
            ]
            if let image = spec.sourceImage { parameters["source"] = ["image_id": image] as [String: any Sendable] }
            if let artifact = spec.parentArtifact, let directory = spec.parentDirectory {
                parameters["parent"] = ["directory": directory, "artifact": JSONText(artifact.json)] as [String: any Sendable]
            }
            let answer = try await connection.request("create-instance", parameters, timeout: spec.bootTimeout)
            guard let instance = answer["instance_id"] as? String, !instance.isEmpty else {
                throw connection.protocolError("create-instance answered without an instance_id")
            }
            created = instance
            let machine = PluginMachine(connection: connection, instance: instance, spec: spec, capabilities: hello.capabilities)
            log.emit("kiln", "\(name) instance \(instance) created; waiting for it to be ready")
            let started = ContinuousClock.now
            _ = try await connection.request(
                "wait-ready", ["instance_id": instance, "timeout_seconds": spec.bootTimeout.wholeSeconds], timeout: spec.bootTimeout)
            log.emit("kiln", "\(name) instance \(instance) ready after \((ContinuousClock.now - started).kilnDescription)")
            return machine
        } catch {
            await connection.close(destroying: created)
            throw error
        }
    }

    public func debugInstructions(_ spec: MachineSpec) -> String {
        "the \(name) plugin's instance was destroyed; its scratch space is \(spec.scratchDirectory)"
    }

    /// Lifecycle changes reach a plugin that said it handles them (`lifecycle` capability); a
    /// short-lived process per change, as no build is running.
    public func imageChanged(_ image: ImageRecord, artifact: ProviderArtifact, warn: @escaping @Sendable (String) -> Void) async throws {
        try await once(capability: "lifecycle", warn: warn) { connection in
            _ = try await connection.request(
                "image-changed",
                [
                    "artifact": JSONText(artifact.json), "name": image.name, "family": image.family, "version": image.version,
                    "state": image.state.rawValue,
                ], timeout: .seconds(600))
        }
    }

    public func deleteImage(_ artifact: ProviderArtifact, warn: @escaping @Sendable (String) -> Void) async throws {
        guard let id = artifact.id else { return }  // Files only: the store's purge removes them.
        try await once(capability: "lifecycle", warn: warn, missing: "cannot delete images: delete \(id) yourself") { connection in
            _ = try await connection.request("delete-image", ["artifact": JSONText(artifact.json)], timeout: .seconds(600))
        }
    }

    /// Each plugin's capabilities from its last handshake in this process: a plugin that does
    /// not handle lifecycle changes is not started for each one.
    static let capabilities = Locked<[String: [String]]>([:])

    /// - Parameter missing: said as a warning when the plugin lacks the capability; nil: nothing is said.
    private func once(
        capability: String, warn: @escaping @Sendable (String) -> Void, missing: String? = nil,
        _ body: (PluginConnection) async throws -> Void
    ) async throws {
        let lacks = { if let missing { warn("the \(self.name) plugin has no \(capability) capability and \(missing)") } }
        if let known = Self.capabilities.value[executable], !known.contains(capability) { return lacks() }
        // What the plugin itself says (its log events and stderr) reaches the user; kiln's own notes do not.
        let name = self.name
        // No build to log into: a throw-away file (BuildLog creates its file anew, so never a device).
        let logPath = NSTemporaryDirectory() + "kiln-plugin-\(name)-\(UUID().uuidString).log"
        defer { try? FileManager.default.removeItem(atPath: logPath) }
        let log = try BuildLog(path: logPath, family: name, secrets: [], sink: { source, line in if source == name { warn(line) } })
        let connection = PluginConnection(name: name, executable: executable, log: log)
        do {
            let hello = try await connection.handshake()
            if hello.capabilities.contains(capability) { try await body(connection) } else { lacks() }
            await connection.close(destroying: nil)
        } catch {
            await connection.close(destroying: nil)
            throw error
        }
    }
}

/// A value that is already JSON text: put into a request as it is.
struct JSONText: Sendable {
    let text: String
    init(_ text: String) { self.text = text }
    init(_ data: Data) { text = String(decoding: data, as: UTF8.self) }
}

/// One machine of a plugin: every operation is a request on the plugin's connection.
final class PluginMachine: Machine {
    let connection: PluginConnection
    let instance: String
    let spec: MachineSpec
    let capabilities: [String]
    private let destroyed = Locked(false)

    init(connection: PluginConnection, instance: String, spec: MachineSpec, capabilities: [String]) {
        self.connection = connection
        self.instance = instance
        self.spec = spec
        self.capabilities = capabilities
    }

    func run(script: String, environment: [EnvVar], title: String, log: BuildLog, timeout: Duration?) async throws -> Int32 {
        try await exec(script: script, environment: environment, timeout: timeout) { line in log.emit(title, line.text) }
    }

    func capture(script: String, title: String, log: BuildLog, timeout: Duration?) async throws -> (status: Int32, output: String) {
        try await captured(title: title, log: log) { try await exec(script: script, environment: [], timeout: timeout, onLine: $0) }
    }

    private func exec(
        script: String, environment: [EnvVar], timeout: Duration?, onLine: @escaping @Sendable (ProcessOutputLine) -> Void
    ) async throws -> Int32 {
        let limit = timeout ?? spec.stepTimeout
        var env: [String: any Sendable] = [:]
        for variable in environment { env[variable.name] = variable.value }
        let result = try await connection.request(
            "exec",
            ["instance_id": instance, "script": script, "environment": env, "timeout_seconds": limit.wholeSeconds],
            // The plugin stops the command at the limit itself; kiln waits a little longer for its answer.
            timeout: limit + .seconds(30), onOutput: onLine)
        guard let status = (result["exit_status"] as? NSNumber)?.int32Value else {
            throw connection.protocolError("exec answered without an exit_status")
        }
        return status
    }

    func upload(source: String, destination: String, contentsOnly: Bool, title: String, log: BuildLog) async throws {
        _ = try await connection.request(
            "upload", ["instance_id": instance, "source": source, "destination": destination, "contents_only": contentsOnly],
            timeout: Self.stepBound)
    }

    func download(source: String, destination: String, title: String, log: BuildLog) async throws {
        _ = try await connection.request(
            "download", ["instance_id": instance, "source": source, "destination": destination], timeout: Self.stepBound)
    }

    /// Uploads and downloads are steps: the step's own limit (`timeout:`, else `--step-timeout`)
    /// cancels them, and the plugin then has the cancel's grace to answer. This only catches a
    /// plugin that never answers at all.
    static let stepBound: Duration = .seconds(7 * 86_400)

    func sshAccess() async throws -> SSHAccess? { nil }

    func shutdown(log: BuildLog) async throws {
        _ = try await connection.request("shutdown", ["instance_id": instance], timeout: spec.shutdownTimeout)
    }

    func snapshot(into directory: String, name: String, log: BuildLog) async throws -> ProviderArtifact? {
        let result = try await connection.request(
            "snapshot", ["instance_id": instance, "output_directory": directory, "name": name], timeout: spec.stepTimeout + .seconds(30))
        let id = result["image_id"] as? String
        let files = result["files"] as? [String] ?? []
        if id == nil && files.isEmpty { throw connection.protocolError("snapshot answered with neither image_id nor files") }
        var artifact = ProviderArtifact(provider: connection.name, id: id)
        artifact.details = (result["details"] as? [String: Any] ?? [:]).compactMapValues { $0 as? String }
        for file in files {
            guard !file.isEmpty, !file.contains("/"), file != ProviderArtifact.fileName, file != ImageFiles.disk else {
                throw connection.protocolError("snapshot named the file '\(file)': give plain file names in output_directory")
            }
            let path = directory + "/" + file
            guard FileManager.default.fileExists(atPath: path) else {
                throw connection.protocolError("snapshot named \(file), but \(path) does not exist")
            }
            artifact.files[file] = try Hashing.sha256Hex(fileAt: path)
        }
        return artifact
    }

    func destroy() async {
        guard destroyed.setOnce() else { return }
        await connection.close(destroying: instance)
    }
}

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
            "handshake", ["protocol": PluginProvider.protocolVersion, "kiln_version": KilnVersion.current], timeout: .seconds(30))
        guard let version = (answer["protocol"] as? NSNumber)?.intValue else {
            throw protocolError("the handshake answer has no protocol version")
        }
        guard version == PluginProvider.protocolVersion else {
            throw fail(
                KilnError(
                    .providerFailed,
                    "the \(name) plugin speaks protocol version \(version); this kiln speaks \(PluginProvider.protocolVersion)"))
        }
        let capabilities = answer["capabilities"] as? [String] ?? []
        PluginProvider.capabilities.withLock { $0[executable] = capabilities }
        log.emit("kiln", "plugin \(executable): protocol \(version), capabilities \(capabilities.joined(separator: ", "))")
        return Hello(capabilities: capabilities)
    }

    /// Sends one request and waits for its answer's `result` object.
    func request(
        _ method: String, _ parameters: [String: any Sendable], timeout: Duration,
        onOutput: (@Sendable (ProcessOutputLine) -> Void)? = nil
    ) async throws -> [String: Any] {
        // A request of a cancelled task is never sent: its cancel would arrive first.
        try Task.checkCancellation()
        let id = state.withLock { (s: inout State) -> Int in
            defer { s.nextID += 1 }
            return s.nextID
        }
        let line =
            (try JSONSerialization.data(
                withJSONObject: ["id": id, "method": method, "params": Self.foundationObject(parameters)],
                options: [.sortedKeys, .withoutEscapingSlashes])) + Data("\n".utf8)
        let data = try await withTaskCancellationHandler {
            try await withThrowingTaskGroup(of: Data?.self) { group in
                group.addTask {
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
                group.addTask {
                    try await Task.sleep(for: timeout)
                    return nil
                }
                let first = try await group.next()!
                group.cancelAll()
                guard let first else {
                    throw self.fail(
                        KilnError(
                            .timeout, "the \(self.name) plugin did not answer \(method) within \(timeout.kilnDescription); it was stopped"))
                }
                return first
            }
        } onCancel: {
            // A step's own timeout or an interrupted build: the plugin stops the command.
            self.state.withLock { _ = $0.cancelled.insert(id) }
            self.input.yield(Data("{\"method\":\"cancel\",\"params\":{\"id\":\(id)}}\n".utf8))
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
        guard let object = try? JSONSerialization.jsonObject(with: data) as? [String: Any] else {
            throw protocolError("the answer to \(method) is not a JSON object")
        }
        if let error = object["error"] as? [String: Any] {
            let code = error["code"] as? String ?? "error"
            let message = error["message"] as? String ?? "(no message)"
            throw KilnError(code == "timeout" ? .timeout : .buildFailed, "the \(name) plugin's \(method) failed: \(code): \(message)")
        }
        return object["result"] as? [String: Any] ?? [:]
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
        guard let object = try? JSONSerialization.jsonObject(with: Data(line.text.utf8)) as? [String: Any] else {
            fail(protocolError("it printed a line that is not protocol JSON: '\(line.text.prefix(120))'"))
            return
        }
        let id = (object["id"] as? NSNumber)?.intValue
        if let event = object["event"] as? String {
            let text = object["text"] as? String ?? ""
            switch event {
            case "output":
                let stream: ProcessOutputLine.Stream = object["stream"] as? String == "stderr" ? .stderr : .stdout
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
        guard object["result"] != nil || object["error"] != nil else {
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
                try await Task { _ = try await request("destroy", ["instance_id": instance], timeout: .seconds(120)) }.value
            } catch {
                log.emit("kiln", "warning: the \(name) plugin could not destroy instance \(instance): \(error)")
            }
        }
        input.finish()
        let exited = await withTaskGroup(of: Bool.self) { group in
            group.addTask {
                _ = await self.process.result
                return true
            }
            group.addTask {
                try? await Task.sleep(for: .seconds(10))
                return false
            }
            let first = await group.next()!
            group.cancelAll()
            return first
        }
        if !exited {
            if state.value.failure == nil { log.emit("kiln", "the \(name) plugin did not exit after its input closed; stopping it") }
            process.cancel()
            _ = await process.result
        }
    }

    /// A request's values as JSONSerialization takes them; JSON text already made (settings,
    /// artifacts) is parsed to nest as an object, not as a string.
    static func foundationObject(_ value: any Sendable) -> Any {
        switch value {
        case let text as JSONText: return (try? JSONSerialization.jsonObject(with: Data(text.text.utf8))) ?? NSNull()
        case let object as [String: any Sendable]: return object.mapValues(foundationObject)
        case let list as [any Sendable]: return list.map(foundationObject)
        default: return value
        }
    }
}

extension Duration {
    /// Whole seconds, rounded up: what the protocol's `timeout_seconds` carry.
    var wholeSeconds: Int { Int(components.seconds) + (components.attoseconds > 0 ? 1 : 0) }
}
