import Foundation
import KilnCore
import KilnModel

/// Builds AMIs on EC2 (docs/providers.md): a build instance from the parent's AMI (or the
/// base's `from: {provider_image: ami-…}`), a key pair made for the build and deleted with it,
/// the steps over SSH, then the instance stopped and its AMI created. The catalog keeps the
/// AMI's id, region and snapshots (``ProviderArtifact``); lifecycle changes become tags and,
/// where the endpoint has them, EnableImageDeprecation and DisableImage.
public struct AWSProvider: Provider {
    public let name = "aws"

    /// Overrides for the tests: the retry pacing, and how long to wait between polls.
    let retry: RetryPolicy
    let poll: Duration

    public init(retry: RetryPolicy = .standard, poll: Duration = .seconds(5)) {
        self.retry = retry
        self.poll = poll
    }

    func client(region: String?, log: @escaping @Sendable (String) -> Void) throws -> EC2Client {
        EC2Client(configuration: try AWSConfiguration.resolve(region: region), retry: retry, onRetry: log)
    }

    public func start(_ spec: MachineSpec, log: BuildLog) async throws -> any Machine {
        // A fake provider's test, or a template without aws settings, gets the defaults.
        let settings: AWSSettings
        if case .aws(let given) = spec.settings { settings = given } else { settings = AWSSettings() }
        let parentRegion = spec.parentArtifact?.details["region"]
        let ec2 = try client(region: settings.region ?? parentRegion) { log.emit("aws", $0) }
        let region = ec2.configuration.region
        if let parentRegion, parentRegion != region {
            throw KilnError(
                .invalidInput,
                "the parent AMI is in \(parentRegion), the build would run in \(region): copy the AMI or build in \(parentRegion)")
        }
        guard let source = spec.sourceImage ?? spec.parentArtifact?.id else {
            throw KilnError(.invalidInput, "an aws build starts from an AMI: from: {provider_image: ami-…} or an aws parent image")
        }
        let keyName = "kiln-\(spec.buildID)"
        let keyPath = spec.scratchDirectory + "/aws-key.pem"
        let material = try await ec2.createKeyPair(name: keyName)
        do {
            FileManager.default.createFile(atPath: keyPath, contents: Data(material.utf8), attributes: [.posixPermissions: 0o600])
            let tags = ["Name": "kiln build of \(spec.family)", "kiln:build": spec.buildID, "kiln:family": spec.family]
            let instance = try await ec2.runInstance(
                imageID: source, instanceType: settings.instanceType ?? "t3.micro", keyName: keyName, subnetID: settings.subnetID,
                securityGroupIDs: settings.securityGroupIDs ?? [], tags: tags)
            log.emit("kiln", "launched \(instance) from \(source) in \(region) with key pair \(keyName)")
            let machine = AWSMachine(
                ec2: ec2, instance: instance, keyName: keyName, keyPath: keyPath, user: settings.sshUser ?? "admin", spec: spec,
                poll: poll, log: log)
            do {
                let started = ContinuousClock.now
                _ = try await ec2.waitForInstance(instance, state: "running", timeout: spec.bootTimeout, poll: poll)
                log.emit("kiln", "\(instance) is running after \((ContinuousClock.now - started).kilnDescription)")
            } catch {
                await machine.destroy()
                throw error
            }
            return machine
        } catch {
            // A launch that failed, or was interrupted, leaves no key pair behind, nor an
            // instance EC2 started before its answer was lost. Not in the caller's task: it may
            // be the cancelled one.
            await uncancellable { [buildID = spec.buildID] in
                let started = (try? await ec2.describeInstances(filters: ["tag:kiln:build": [buildID]])) ?? []
                for instance in started where instance.state != "terminated" { try? await ec2.terminateInstance(instance.id) }
                try? await ec2.deleteKeyPair(name: keyName)
            }
            throw error
        }
    }

    public func debugInstructions(_ spec: MachineSpec) -> String {
        "the build instance was terminated; its key pair kiln-\(spec.buildID) was deleted"
    }

    /// Tags (on the AMI and its snapshots) say what the catalog says; deprecation and disabling
    /// follow the state where the endpoint has them.
    public func imageChanged(_ image: ImageRecord, artifact: ProviderArtifact, warn: @escaping @Sendable (String) -> Void) async throws {
        guard let ami = artifact.id else { return }
        let ec2 = try client(region: artifact.details["region"], log: warn)
        var tags = [
            "kiln:name": image.name, "kiln:family": image.family, "kiln:version": image.version, "kiln:state": image.state.rawValue,
        ]
        if let key = image.buildKey { tags["kiln:build-key"] = key }
        try await ec2.createTags(resources: [ami] + artifact.snapshots, tags: tags)
        do {
            switch image.state {
            case .ready, .testing: break
            // aws builds have no tests (no test boot yet); a FAILED AMI would be of no use.
            case .failed: try await ec2.disableImage(ami)
            case .deprecated: try await ec2.enableImageDeprecation(ami, at: image.obsoleteOn ?? Date().addingTimeInterval(60))
            case .obsolete, .deleted: try await ec2.disableImage(ami)
            }
        } catch let error as EC2Error where error.isUnsupported {
            // moto, and regions without the feature: the kiln:state tag still says it.
            warn(
                "\(ec2.configuration.endpoint.host ?? "EC2") does not support \(error.action); \(ami) carries kiln:state=\(image.state.rawValue) only"
            )
        }
    }

    /// DeregisterImage, then DeleteSnapshot for each of its snapshots (EC2 keeps them otherwise,
    /// and bills them). Already gone counts as done.
    public func deleteImage(_ artifact: ProviderArtifact, warn: @escaping @Sendable (String) -> Void) async throws {
        guard let ami = artifact.id else { return }
        let ec2 = try client(region: artifact.details["region"], log: warn)
        // EC2 answers InvalidAMIID.Unavailable for an AMI deregistered already: a purge that
        // stopped half-way goes on with the snapshots next time.
        do { try await ec2.deregisterImage(ami) } catch let error as EC2Error
            where error.isNotFound || error.code == "InvalidAMIID.Unavailable"
        {}
        for snapshot in artifact.snapshots {
            do { try await ec2.deleteSnapshot(snapshot) } catch let error as EC2Error where error.isNotFound {}
        }
    }
}

extension ProviderArtifact {
    /// An AMI's EBS snapshots (`details.snapshots`, comma-separated).
    var snapshots: [String] { (details["snapshots"] ?? "").split(separator: ",").map(String.init) }
}

/// One build instance. kiln logs in over SSH only when a step needs it: a template without steps
/// is an AMI copy with kiln's tags, and needs no network path to the instance.
final class AWSMachine: Machine {
    let ec2: EC2Client
    /// The instance's id, its key pair's name and private key file, and the login user.
    let instance, keyName, keyPath, user: String
    let spec: MachineSpec
    let poll: Duration
    let log: BuildLog
    private let ssh = Locked<SSHCommunicator?>(nil)
    /// One login at a time: two first uses at once (a step and a breakpoint's access) must not
    /// both open a master connection.
    private let login = AsyncMutex()
    private let destroyed = Locked(false)

    init(
        ec2: EC2Client, instance: String, keyName: String, keyPath: String, user: String, spec: MachineSpec, poll: Duration,
        log: BuildLog
    ) {
        (self.log, self.ec2, self.instance, self.keyName) = (log, ec2, instance, keyName)
        (self.keyPath, self.user, self.spec, self.poll) = (keyPath, user, spec, poll)
    }

    /// Pins the instance's host keys from its console output (cloud-init prints them there),
    /// asked three times at the poll interval; a login to a key other than those then fails. Without them (an
    /// image without cloud-init, a console not yet written), the first login is trusted, with
    /// a line in the log that says so.
    private func pinHostKeys(host: String, into knownHosts: String) async throws {
        for attempt in 1...3 {
            if let console = try? await ec2.consoleOutput(instance) {
                let keys = ConsoleHostKeys.parse(console)
                if !keys.isEmpty {
                    try ConsoleHostKeys.knownHosts(keys, host: host).write(toFile: knownHosts, atomically: true, encoding: .utf8)
                    log.emit("kiln", "pinned \(instance)'s \(keys.count) host keys from its console output")
                    return
                }
            }
            if attempt < 3 { try await Task.sleep(for: poll) }
        }
        log.emit(
            "kiln",
            "warning: \(instance)'s console output shows no host keys (an image without cloud-init?): trusting the key of the first login")
    }

    /// The SSH connection, opened on first use: the instance's public address, else its private one.
    private func connected() async throws -> SSHCommunicator {
        try await login.withLock { try await self.connect() }
    }

    private func connect() async throws -> SSHCommunicator {
        if let ssh = ssh.value { return ssh }
        let described = try await ec2.describeInstance(instance)
        guard let host = described.publicIP ?? described.privateIP else {
            throw KilnError(.providerFailed, "\(instance) has no IP address to log in to")
        }
        let client = SSHClient(keyPath: keyPath, port: 22, host: host, user: user)
        try await pinHostKeys(host: host, into: client.knownHosts)
        let communicator = SSHCommunicator(client: client, scratchDirectory: spec.scratchDirectory)
        log.emit("kiln", "logging in to \(instance) as \(user)@\(host)")
        // The SSH probe asks every 100 ms; EC2 is asked whether the instance still runs at the
        // poll interval, and a failed answer is not taken for a stopped instance.
        let lastAsked = Locked(ContinuousClock.now)
        let poll = self.poll
        do {
            try await communicator.connect(
                deadline: ContinuousClock.now + spec.bootTimeout,
                isAlive: { [ec2, instance] in
                    guard ContinuousClock.now - lastAsked.value >= poll else { return true }
                    lastAsked.set(ContinuousClock.now)
                    guard let state = try? await ec2.describeInstance(instance).state else { return true }
                    return state == "running"
                })
        } catch let error as KilnError where error.code == .timeout {
            // Not the step's own timeout: retrying the step would not help.
            throw KilnError(
                .providerFailed,
                "could not log in to \(instance) at \(user)@\(host) within \(spec.bootTimeout.kilnDescription) (--boot-timeout)"
                    + (error.message.isEmpty ? "" : ": " + error.message) + "; check its security group and subnet allow SSH from here")
        }
        ssh.set(communicator)
        return communicator
    }

    func run(script: String, environment: [EnvVar], title: String, log: BuildLog, timeout: Duration?) async throws -> Int32 {
        try await connected().run(script: script, environment: environment, timeout: timeout) { log.emit(title, $0.text) }.status
    }

    func capture(script: String, title: String, log: BuildLog, timeout: Duration?) async throws -> (status: Int32, output: String) {
        try await connected().capture(script: script, title: title, log: log, timeout: timeout)
    }

    func upload(source: String, destination: String, contentsOnly: Bool, title: String, log: BuildLog) async throws {
        try await connected().upload(source: source, destination: destination, contentsOnly: contentsOnly) { log.emit(title, $0.text) }
    }

    func download(source: String, destination: String, title: String, log: BuildLog) async throws {
        try await connected().download(source: source, destination: destination) { log.emit(title, $0.text) }
    }

    /// An ansible: or shell-local: step, or a breakpoint, may be the first to need the login.
    func sshAccess() async throws -> SSHAccess? { try await connected().access() }

    /// The build's key leaves the login user's authorized_keys (EC2 puts the launch key of each
    /// future instance there again), the disk is synced, and the instance stopped: CreateImage
    /// of a stopped instance is consistent without a reboot.
    func shutdown(log: BuildLog) async throws {
        if let ssh = ssh.value {
            let root = ssh.asRoot.joined(separator: " ")
            _ = try? await ssh.client.run(
                "\(root) rm -f \(SSHCommunicator.scriptFile) \(SSHCommunicator.stepGroupFile) \(SSHCommunicator.environmentFile); rm -f ~/.ssh/authorized_keys; sync",
                timeout: spec.shutdownTimeout)
            await ssh.close()
        }
        log.emit("kiln", "stopping \(instance)")
        try await ec2.stopInstance(instance)
        _ = try await ec2.waitForInstance(instance, state: "stopped", timeout: spec.shutdownTimeout, poll: poll)
    }

    func snapshot(into directory: String, name: String, log: BuildLog) async throws -> ProviderArtifact? {
        let ami = try await ec2.createImage(
            instanceID: instance, name: name, description: "kiln image of \(spec.family), build \(spec.buildID)")
        log.emit("kiln", "creating \(ami) from \(instance)")
        var artifact = ProviderArtifact(provider: "aws", id: ami, details: ["region": ec2.configuration.region, "name": name])
        do {
            try await ec2.createTags(
                resources: [ami], tags: ["kiln:build": spec.buildID, "kiln:family": spec.family, "kiln:state": "PENDING"])
            let image = try await ec2.waitForImage(ami, timeout: spec.stepTimeout, poll: poll)
            artifact.details["snapshots"] = image.snapshotIDs.joined(separator: ",")
            log.emit("kiln", "\(ami) is available (snapshots: \(image.snapshotIDs.joined(separator: ", ")))")
        } catch {
            // An AMI that never became available (or whose wait was interrupted) is not left to
            // be billed, nor its snapshots; not in the caller's task, which may be cancelled.
            await uncancellable { [ec2, poll, log, spec, artifact] in
                var doomed = artifact
                if let image = try? await ec2.describeImage(ami) { doomed.details["snapshots"] = image.snapshotIDs.joined(separator: ",") }
                do {
                    try await AWSProvider(retry: ec2.retry, poll: poll).deleteImage(doomed, warn: { log.emit("aws", $0) })
                    log.emit(
                        "kiln",
                        "deregistered \(ami), which did not become available, and deleted its snapshots: \(doomed.snapshots.joined(separator: ", "))"
                    )
                } catch {
                    log.emit("kiln", "warning: could not deregister \(ami): \(error) (it has the tag kiln:build=\(spec.buildID))")
                }
            }
            throw error
        }
        return artifact
    }

    /// Terminates the instance and deletes the key pair; each is tried whatever the other did.
    func destroy() async {
        guard destroyed.setOnce() else { return }
        await ssh.value?.close()
        // Not in the caller's task: an interrupted build still removes what it made.
        await uncancellable { [ec2, instance, keyName, log, spec] in
            do {
                try await ec2.terminateInstance(instance)
                log.emit("kiln", "terminated \(instance)")
            } catch let error as EC2Error where error.isNotFound {
            } catch {
                log.emit(
                    "kiln",
                    "warning: could not terminate \(instance): \(error) (terminate it by hand: it has the tag kiln:build=\(spec.buildID))")
            }
            do {
                try await ec2.deleteKeyPair(name: keyName)
                log.emit("kiln", "deleted key pair \(keyName)")
            } catch {
                log.emit("kiln", "warning: could not delete key pair \(keyName): \(error)")
            }
        }
    }
}
