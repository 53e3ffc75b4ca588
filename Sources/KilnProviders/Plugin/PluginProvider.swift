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
            var create = PluginMessage.CreateInstance(
                buildID: spec.buildID, family: spec.family, scratchDirectory: spec.scratchDirectory,
                templateDirectory: spec.templateDirectory, settings: try JSONValue(json: spec.settings.json))
            create.source = spec.sourceImage.map { .init(imageID: $0) }
            if let artifact = spec.parentArtifact, let directory = spec.parentDirectory {
                create.parent = .init(directory: directory, artifact: artifact)
            }
            let answer = try await connection.request(
                "create-instance", create, answer: PluginMessage.Instance.self, timeout: spec.bootTimeout)
            guard let instance = answer.instanceID, !instance.isEmpty else {
                throw connection.protocolError("create-instance answered without an instance_id")
            }
            created = instance
            let machine = PluginMachine(connection: connection, instance: instance, spec: spec, capabilities: hello.capabilities)
            log.emit("kiln", "\(name) instance \(instance) created; waiting for it to be ready")
            let started = ContinuousClock.now
            try await connection.request(
                "wait-ready", PluginMessage.WaitReady(instanceID: instance, timeoutSeconds: spec.bootTimeout.wholeSeconds),
                timeout: spec.bootTimeout)
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
            try await connection.request(
                "image-changed",
                PluginMessage.ImageChanged(
                    artifact: artifact, name: image.name, family: image.family, version: image.version, state: image.state.rawValue),
                timeout: .seconds(600))
        }
    }

    public func deleteImage(_ artifact: ProviderArtifact, warn: @escaping @Sendable (String) -> Void) async throws {
        guard let id = artifact.id else { return }  // Files only: the store's purge removes them.
        try await once(capability: "lifecycle", warn: warn, missing: "cannot delete images: delete \(id) yourself") { connection in
            try await connection.request("delete-image", PluginMessage.DeleteImage(artifact: artifact), timeout: .seconds(600))
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
