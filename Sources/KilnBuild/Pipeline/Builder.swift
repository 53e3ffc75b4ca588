import Foundation
import KilnCore
import KilnGraph
import KilnModel
import KilnProviders
import KilnRemote
import KilnStore
import KilnTemplates

public struct BuildOptions: Sendable {
    public enum OnError: String, Sendable, CaseIterable {
        /// Stop the VM and remove its disk.
        case cleanup
        /// Stop the VM but keep its disk, and print how to boot it.
        case keep
    }

    public var onError: OnError = .cleanup
    public var bootTimeout: Duration = .seconds(600)
    public var shutdownTimeout: Duration = .seconds(120)
    /// How long one step may run before it is stopped and the build fails.
    public var stepTimeout: Duration = .seconds(7200)
    /// Resume build VMs from warm snapshots of machines booted on the same parent, and save
    /// them (docs/building.md); `--no-warm` boots every VM cold.
    public var warm = true
    /// The commit and CI job recorded on every image built.
    public var origin: OriginSource?
    /// Bases built from their repositories' current state rather than pinned to their newest
    /// image's (`kiln refresh`).
    public var freshSources: Set<String> = []

    public enum OnBreakpoint: String, Sendable, CaseIterable {
        /// Pause when someone is there to continue (``BuildOptions/prompt``), else skip with a log line.
        case pause
        /// Never pause; log the breakpoint.
        case skip
        /// Fail the build at the breakpoint (a CI job that must not reach one).
        case fail
    }

    public var onBreakpoint: OnBreakpoint = .pause
    /// Pause before every step (`kiln build --debug`).
    public var debug = false
    /// Where the user continues a paused build; nil when nobody can (no terminal).
    public var prompt: (any BreakpointPrompt)?
    /// Signs every image's provenance as it is committed (`$KILN_HOME/keys/kiln.key`).
    public var signingKey: SigningKey?
    /// Images whose tests pass stay TESTING (`kiln refresh` makes them READY together, once
    /// every image it rebuilt has passed).
    public var holdReady = false
    /// Where blobs are shared between machines (docs/remote.md): a build pulls its parent's
    /// chain from it and pushes its own blob there before the catalog names the image.
    public var remote: Remote?

    public init() {}
}

public enum BuildResult: Sendable {
    case built(ImageRecord)
    case upToDate(ImageRecord)
    /// Not rebuilt, but its tests ran again (they changed, or had not passed): one test boot.
    case tested(ImageRecord)

    public var image: ImageRecord {
        switch self {
        case .built(let image), .upToDate(let image), .tested(let image): return image
        }
    }
}

/// Builds a graph's images in order: each through its provider's VM, sealed into the store
/// and only then named in the catalog.
public struct Builder: Sendable {
    let store: Store
    /// Builds every image when set (the tests' fake provider); else each template's `provider:`.
    let providerOverride: (any Provider)?
    let options: BuildOptions
    let reporter: (any BuildReporter)?

    /// The provider that builds `template`: its `provider:`, a built-in one or a plugin.
    public func provider(for template: Template) throws -> any Provider {
        if let providerOverride { return providerOverride }
        do {
            return try Providers.named(template.provider.name, pluginDirectory: store.pluginDirectory)
        } catch let error as KilnError {
            throw KilnError(error.code, error.message, at: template.provider.location ?? template.location, cause: error.cause)
        }
    }

    /// What can be known wrong before any machine starts: the provider exists, a base names a
    /// source its provider can start from, and a layer's provider is its parent's.
    func check(_ template: Template, provider: any Provider, parentProvider: String?) throws {
        let from = template.sourceLocation
        switch template.source {
        case .debootstrap, .file, .url:
            guard provider.buildsFromDisks else {
                throw KilnError(
                    .invalidInput,
                    "the \(provider.name) provider starts from an image of its own, not from \(template.source.kind): give from: {provider_image: ID}",
                    at: from)
            }
        case .providerImage:
            guard !provider.buildsFromDisks else {
                throw KilnError(
                    .invalidInput, "the \(provider.name) provider starts from disks (debootstrap, file, url), not from a provider image",
                    at: from)
            }
        case .image(let family):
            if let parentProvider, parentProvider != provider.name {
                throw KilnError(
                    .invalidInput,
                    "\(template.family) is built by \(provider.name), but its parent \(family) is a \(parentProvider) image: a layer is built by its parent's provider",
                    at: from)
            }
        }
        let usesAnsible = template.steps(for: provider.name).contains {
            if case .ansible = $0.kind { true } else { false }
        }
        if usesAnsible { try AnsibleRunner.checkInstalled() }
        if !template.testSteps(for: provider.name).isEmpty && !provider.bootsImagesForTests {
            throw KilnError(
                .invalidInput,
                "\(template.family) has tests, but the \(provider.name) provider cannot boot an image for them (qemu can; docs/testing.md)",
                at: template.tests.location ?? template.location)
        }
    }

    /// The provider that made `image`: qemu for a disk, else its artifact's.
    func providerName(of image: ImageRecord) throws -> String {
        if let providerOverride { return providerOverride.name }
        return try store.artifact(of: image)?.provider ?? "qemu"
    }

    /// - Parameter provider: builds every image when given; nil builds each with its template's `provider:`.
    public init(store: Store, provider: (any Provider)? = nil, options: BuildOptions, reporter: (any BuildReporter)?) {
        self.store = store
        self.providerOverride = provider
        self.options = options
        self.reporter = reporter
    }

    /// Builds every template of `graph` whose inputs changed, parents first; stops at the first failure.
    /// - Parameters:
    ///   - force: rebuild even images whose build key matches a READY image.
    ///   - selected: when given, only these families are built; the others are taken as they are
    ///     in the catalog (their newest READY image).
    public func build(
        _ graph: ImageGraph, secrets: [String], force: Bool = false, selected: Set<String>? = nil, jobs: Int = 1
    ) async throws -> [BuildResult] {
        var done: [String: ImageRecord] = [:]
        var waiting: [Template] = []
        // An unselected family matters only if a selected one is built on it: a job that builds
        // one image of a graph (kiln ci gitlab) must not need images of unrelated branches.
        var needed: Set<String> = []
        for template in graph.order where selected?.contains(template.family) ?? true {
            var parent = template.parentFamily
            while let family = parent, needed.insert(family).inserted { parent = graph.template(family)?.parentFamily }
        }
        // Said before any VM boots, not after a parent's build. A family that is not built is
        // taken from the catalog as it is: its provider need not be installed here.
        // Resolved once per family: a plugin is looked for on PATH here only.
        var providers: [String: any Provider] = [:]
        for template in graph.order where selected?.contains(template.family) ?? true {
            let provider = try provider(for: template)
            providers[template.family] = provider
            var parentProvider: String?
            if let family = template.parentFamily {
                parentProvider = try providers[family]?.name ?? store.catalog.buildParent(of: family).map(providerName(of:))
            }
            try check(template, provider: provider, parentProvider: parentProvider)
        }
        for template in graph.order {
            if let selected, !selected.contains(template.family) {
                guard needed.contains(template.family) else { continue }
                guard let head = try store.catalog.buildParent(of: template.family) else {
                    throw KilnError(
                        .notFound, "\(template.family) is not selected for building and has no READY or DEPRECATED image to build on")
                }
                done[template.family] = head
            } else {
                waiting.append(template)
            }
        }
        // Images whose parents are done start as soon as a slot is free; at most `jobs` at once.
        // The first failure cancels the others (their VMs are torn down) and is rethrown.
        var results: [String: BuildResult] = [:]
        try await withThrowingTaskGroup(of: (String, BuildResult).self) { group in
            var running = 0
            while !waiting.isEmpty || running > 0 {
                let ready = { (template: Template) -> Bool in
                    guard let parent = template.parentFamily else { return true }
                    return done[parent] != nil || graph.template(parent) == nil
                }
                while running < max(jobs, 1), let index = waiting.firstIndex(where: ready) {
                    let template = waiting.remove(at: index)
                    guard let provider = providers[template.family] else {
                        throw KilnError(.internalError, "no provider resolved for \(template.family)")
                    }
                    let parent = try template.parentFamily.map { family -> ImageRecord in
                        guard let record = try done[family] ?? store.catalog.buildParent(of: family) else {
                            throw KilnError(.notFound, "family '\(family)' has no READY image to build from", at: template.sourceLocation)
                        }
                        return record
                    }
                    running += 1
                    group.addTask {
                        (
                            template.family,
                            try await self.buildIfChanged(template, provider: provider, parent: parent, secrets: secrets, force: force)
                        )
                    }
                }
                guard let (family, result) = try await group.next() else { break }
                running -= 1
                done[family] = result.image
                results[family] = result
            }
        }
        return graph.order.compactMap { results[$0.family] }
    }

    /// What a machine of this size can hold at once: no more builds than cores, nor more local
    /// VMs than memory allows. Only qemu builds run a VM here; an aws build's machine is EC2's,
    /// and a plugin's is sized by the plugin.
    public static func defaultJobs(for templates: [Template]) -> Int {
        defaultJobs(memoryMiB: templates.compactMap { $0.provider.settings.qemu?.memoryMiB }.max())
    }

    /// - Parameter memoryMiB: the largest local VM; nil when no build runs one.
    static func defaultJobs(memoryMiB: Int?) -> Int {
        let cores = ProcessInfo.processInfo.activeProcessorCount
        guard let memoryMiB else { return max(1, cores) }
        let available = Int(ProcessInfo.processInfo.physicalMemory >> 20) - 1024
        return max(1, min(cores, available / max(memoryMiB + 512, 1)))
    }

    private func buildIfChanged(
        _ template: Template, provider: any Provider, parent: ImageRecord?, secrets: [String], force: Bool
    ) async throws -> BuildResult {
        let reporter = self.reporter
        let family = template.family
        // Decided under the family's lock: a second kiln on this store waits, then finds the
        // first one's image up to date instead of building the same key again.
        let lock = try await store.lockFamily(family) {
            var waiting = BuildEvent(.waiting, family: family)
            waiting.text = "waiting for another kiln process that is building \(family)"
            reporter?.report(waiting)
        }
        // Held until the decision and the build are done; released when `lock` goes away.
        defer { withExtendedLifetime(lock) {} }
        var planner = Planner(store: store, secrets: secrets)
        planner.freshSources = options.freshSources
        planner.provider = provider.name
        let decision = try await planner.decide(template, parent: parent.map { .image($0) } ?? .none, force: force)
        if decision.action == .upToDate, let image = decision.image {
            var upToDate = BuildEvent(.upToDate, family: family)
            upToDate.image = image.name
            upToDate.parent = image.parent
            upToDate.digest = image.digest
            reporter?.report(upToDate)
            return .upToDate(image)
        }
        if decision.action == .test, let image = decision.image {
            guard let testsHash = decision.testsHash else { throw KilnError(.internalError, "no tests hash for \(family)") }
            var testing = BuildEvent(.upToDate, family: family)
            testing.image = image.name
            testing.digest = image.digest
            testing.text = decision.reasons.first
            reporter?.report(testing)
            let tested = try await test(image, template: template, provider: provider, testsHash: testsHash, secrets: secrets)
            var ready = BuildEvent(.imageReady, family: family)
            ready.image = tested.name
            ready.parent = tested.parent
            ready.digest = tested.digest
            if tested.state == .ready { reporter?.report(ready) }
            return .tested(tested)
        }
        return .built(try await build(template, provider: provider, parent: parent, decision: decision, secrets: secrets))
    }

    /// Builds one image on `parent` (nil: on the template's source disk).
    func build(
        _ template: Template, provider: any Provider, parent: ImageRecord?, decision: Decision, secrets: [String]
    ) async throws -> ImageRecord {
        let buildID = Self.newBuildID(family: template.family)
        let scratch = store.scratchDirectory(buildID: buildID)
        let staging = store.stagingDirectory(buildID: buildID)
        let fm = FileManager.default
        // Private to kiln's user while the build runs: the scratch space holds the build's SSH
        // key, scripts and uploads, the staging disk the guest's host key.
        try fm.createDirectory(atPath: scratch, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        try fm.createDirectory(atPath: staging, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        let reporter = self.reporter
        let family = template.family
        let steps = StepTracker(
            family: family, build: buildID, reporter: reporter, phaseFile: scratch + "/" + StepTracker.phaseFileName)
        let log = try BuildLog(
            path: scratch + "/build.log", family: family, secrets: secrets,
            sink: { source, line in
                var output = steps.event(.output)
                output.source = source
                output.text = line
                reporter?.report(output)
            })
        var started = BuildEvent(.buildStarted, family: family)
        started.build = buildID
        started.parent = parent?.name
        let reasons = decision.reasons.map(log.redact)
        started.reasons = reasons
        reporter?.report(started)
        log.emit("kiln", "building: " + reasons.joined(separator: "; "))
        var record = BuildRecord(
            id: buildID, family: family, image: nil, status: .running, started: Date(), finished: nil,
            failedStep: nil, message: nil, log: nil, pid: getpid())
        try store.catalog.insert(record)
        for warning in decision.warnings { log.emit("kiln", "warning: \(warning)") }
        log.emit(
            "kiln", "build \(buildID) of \(family) from \(parent.map { "image \($0.name)" } ?? template.source.kind) (\(template.file))")
        let origin = await options.origin?.value()
        if let origin { log.emit("kiln", "origin: \(origin.summary)") }

        let build = BuildContext(
            template: template, provider: provider, parent: parent, decision: decision, buildID: buildID, scratch: scratch,
            staging: staging, log: log, steps: steps, origin: origin, secrets: secrets)
        do {
            try await PhaseRunner.run(phases, on: build)
            guard let image = build.current.image else { throw KilnError(.internalError, "the build of \(family) named no image") }
            steps.close(ok: true)
            var ready = steps.event(.imageReady)
            ready.step = nil
            ready.image = image.name
            ready.parent = image.parent
            ready.digest = image.digest
            // A refresh holds an image that passed its tests TESTING until all of them have.
            if image.state == .ready { reporter?.report(ready) }
            record.image = image.name
            record.status = .succeeded
            do {
                try finish(&record, log: log, scratch: scratch)
            } catch {
                // The image is whole and named; the archive from before the commit stays.
                log.emit("kiln", "warning: could not archive the final log: \(error)")
            }
            return image
        } catch {
            // The phases have undone what they made (the machine, an unnamed artifact or blob).
            let cancelled = Task.isCancelled || (error as? KilnError)?.code == .cancelled || error is CancellationError
            let message = log.redact(cancelled ? "interrupted" : (error as? KilnError)?.description ?? "\(error)")
            let currentStep = steps.current
            log.emit("kiln", "\(cancelled ? "cancelled" : "failed") at \(currentStep): \(message)")
            steps.close(ok: false)
            let lastLines = log.lastLines(8).filter { !$0.hasPrefix("failed at ") }
            let keptDisk = options.onError == .keep && fm.fileExists(atPath: staging + "/" + Store.diskName)
            if keptDisk {
                log.emit("kiln", "kept the VM disk: \(staging)/\(Store.diskName)")
            } else {
                try? Store.removeTree(staging)
            }
            record.status = cancelled ? .cancelled : .failed
            record.failedStep = currentStep
            record.message = message
            try? finish(&record, log: log, scratch: scratch, keepScratch: options.onError == .keep)
            var failed = steps.event(.failed)
            failed.text = message
            failed.cancelled = cancelled
            reporter?.report(failed)
            if cancelled { throw KilnError(.cancelled, "build of \(family) cancelled during \(currentStep)") }
            var text = "build of \(family) failed at \(currentStep): \(message)"
            // A failed test run's message carries its own (the test log's) last output.
            if !lastLines.isEmpty && !message.contains("\nlast output:\n") {
                text += "\nlast output:\n" + lastLines.map { "  " + $0 }.joined(separator: "\n")
            }
            text += "\nfull log: kiln logs \(buildID)"
            if keptDisk, let spec = build.current.spec {
                text += "\nVM disk kept at \(staging)/\(Store.diskName); " + provider.debugInstructions(spec)
            }
            throw KilnError(.buildFailed, text)
        }
    }

    /// A build's phases, in order (docs/architecture.md): each does one thing and knows how to
    /// take it back if a later one fails.
    var phases: [any BuildPhase] {
        [
            SourcePhase(store: store, signingKey: options.signingKey, remote: options.remote),
            BootPhase(store: store, options: options),
            ProvisionPhase(options: options),
            InspectPhase(store: store), StopPhase(), DiskInspectPhase(store: store), SnapshotPhase(), SealPhase(store: store),
            UploadPhase(store: store, remote: options.remote),
            CommitPhase(store: store, holdReady: options.holdReady),
            PublishPhase(store: store, signingKey: options.signingKey),
            TestPhase(store: store, options: options),
            RemotePublishPhase(store: store, remote: options.remote),
        ]
    }

    /// Archives the log (with the serial console) and records how the build ended.
    private func finish(_ record: inout BuildRecord, log: BuildLog, scratch: String, keepScratch: Bool = false) throws {
        log.close()
        let archive = store.logArchivePath(buildID: record.id)
        try LogArchive.write(Self.logFiles(in: scratch), to: archive.absolute)
        record.log = archive.relative
        record.finished = Date()
        try store.catalog.update(record)
        if !keepScratch { try? FileManager.default.removeItem(atPath: scratch) }
    }

    /// The logs a build's scratch directory holds, for its archive: the build's, and its tests'.
    static func logFiles(in scratch: String) -> [(name: String, path: String)] {
        ["build.log", "tests.log"].map { ($0, scratch + "/" + $0) }.filter { FileManager.default.fileExists(atPath: $0.1) }
    }

    static func policyJSON(_ policy: LifecyclePolicy) -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        return String(decoding: (try? encoder.encode(policy)) ?? Data("{}".utf8), as: UTF8.self)
    }

    /// A fault-injection seam for the kill-point tests: widens the moment between the seal and
    /// the catalog write, which otherwise lasts a few milliseconds, so a kill can land in it.
    static func testDelay(_ variable: String) async throws { try await KilnCore.testDelay(variable) }

    /// `20261123T130102-debian-12-base-1a2b`: sortable, readable, unique enough across processes.
    static func newBuildID(family: String) -> String {
        let stamp = Date().formatted(
            .iso8601.year().month().day().dateTimeSeparator(.standard).time(includingFractionalSeconds: false).timeSeparator(.omitted)
                .dateSeparator(.omitted))
        let suffix = String(UInt32.random(in: 0...UInt32.max), radix: 16)
        return "\(stamp.replacingOccurrences(of: "Z", with: ""))-\(family)-\(suffix)"
    }
}
