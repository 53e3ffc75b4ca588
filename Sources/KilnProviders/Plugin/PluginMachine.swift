import Foundation
import KilnCore
import KilnModel

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
        let exec = PluginMessage.Exec(
            instanceID: instance, script: script,
            environment: Dictionary(environment.map { ($0.name, $0.value) }, uniquingKeysWith: { _, last in last }),
            timeoutSeconds: limit.wholeSeconds)
        // The plugin stops the command at the limit itself; kiln waits a little longer for its answer.
        let result = try await connection.request(
            "exec", exec, answer: PluginMessage.Executed.self, timeout: limit + .seconds(30), onOutput: onLine)
        guard let status = result.exitStatus else {
            throw connection.protocolError("exec answered without an exit_status")
        }
        return status
    }

    func upload(source: String, destination: String, contentsOnly: Bool, title: String, log: BuildLog) async throws {
        try await connection.request(
            "upload",
            PluginMessage.Upload(instanceID: instance, source: source, destination: destination, contentsOnly: contentsOnly),
            timeout: Self.stepBound)
    }

    func download(source: String, destination: String, title: String, log: BuildLog) async throws {
        try await connection.request(
            "download", PluginMessage.Download(instanceID: instance, source: source, destination: destination), timeout: Self.stepBound)
    }

    /// Uploads and downloads are steps: the step's own limit (`timeout:`, else `--step-timeout`)
    /// cancels them, and the plugin then has the cancel's grace to answer. This only catches a
    /// plugin that never answers at all.
    static let stepBound: Duration = .seconds(7 * 86_400)

    func sshAccess() async throws -> SSHAccess? { nil }

    func shutdown(log: BuildLog) async throws {
        try await connection.request("shutdown", PluginMessage.Instance(instanceID: instance), timeout: spec.shutdownTimeout)
    }

    func snapshot(into directory: String, name: String, log: BuildLog) async throws -> ProviderArtifact? {
        let result = try await connection.request(
            "snapshot", PluginMessage.Snapshot(instanceID: instance, outputDirectory: directory, name: name),
            answer: PluginMessage.Snapshotted.self, timeout: spec.stepTimeout + .seconds(30))
        let id = result.imageID
        let files = result.files ?? []
        if id == nil && files.isEmpty { throw connection.protocolError("snapshot answered with neither image_id nor files") }
        var artifact = ProviderArtifact(provider: connection.name, id: id)
        artifact.details = (result.details ?? [:]).compactMapValues(\.string)
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
