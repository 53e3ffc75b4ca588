import Foundation
import KilnCore
import KilnModel
import KilnProviders
import KilnStore

/// Runs an image's `test:` steps on a test boot (docs/testing.md): a fresh machine started from
/// the sealed image the way a deployment starts it, on a throw-away disk, so nothing a test
/// writes reaches the image. Records the run in the catalog, where its result moves the image
/// (TESTING or FAILED to READY when the tests pass; to FAILED when they fail).
struct ImageTester: Sendable {
    let store: Store
    let template: Template
    let provider: any Provider
    let options: BuildOptions
    let secrets: [String]
    let testsHash: String

    /// How much larger than the image the test boot's disk is: its first boot grows the root
    /// partition and filesystem as an instance's does.
    static let growBy: Int64 = 1 << 30

    /// Where the run keeps its scratch files and log, and whose events it reports under.
    struct Context {
        /// The run's id: the build's when the run is part of it.
        var runID: String
        /// The build that made the image, when the run is part of it.
        var build: String?
        var scratch: String
        var steps: StepTracker
        /// The `kiln logs` archive the run's `tests.log` goes into.
        var archive: (relative: String, absolute: String)
    }

    /// Runs the tests of `image`; returns the image as the result left it. Throws a
    /// ``KilnError/Code/buildFailed`` naming the step when a test fails.
    func run(_ image: ImageRecord, context: Context) async throws -> ImageRecord {
        let family = template.family
        let reporter = context.steps.reporter
        let testDirectory = context.scratch + "/test"
        try FileManager.default.createDirectory(
            atPath: testDirectory, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        defer { try? Store.removeTree(testDirectory) }
        let steps = context.steps
        let log = try BuildLog(
            path: context.scratch + "/tests.log", family: family, secrets: secrets,
            sink: { source, line in
                var output = steps.event(.output)
                output.source = source
                output.text = line
                reporter?.report(output)
            })
        var run = TestRunRecord(
            id: context.runID, image: image.name, build: context.build, status: .running, started: Date(), testsHash: testsHash)
        run.log = context.archive.relative
        try store.catalog.insert(run)
        var started = steps.event(.testsStarted)
        started.step = nil
        started.image = image.name
        reporter?.report(started)
        let selected = template.testSteps(for: provider.name)
        log.emit("kiln", "testing \(image.name): \(selected.count) test step\(selected.count == 1 ? "" : "s") on a test boot")
        let results = Locked<[TestStepResult]>([])
        let machineBox = Locked<(any Machine)?>(nil)
        /// What stopped a run that did not pass: a host error is thrown again with its own code.
        var stopError: (any Error)?
        do {
            if !selected.isEmpty {
                steps.enter("test boot")
                let machine = try await boot(image, directory: testDirectory, log: log)
                machineBox.set(machine)
                var runner = StepRunner(
                    options: options, template: template, provider: provider.name, buildID: context.runID, scratch: testDirectory,
                    log: log, onEnter: { steps.enter($0) })
                runner.localEnvironment = Self.environment(ports: machine.forwardedPorts())
                try await runner.runAll(template.tests.steps, on: machine) { _, title, outcome in
                    var result = Self.result(title, outcome)
                    result.message = result.message.map(log.redact)
                    result.skipped = result.skipped.map(log.redact)
                    results.withLock { $0.append(result) }
                }
                steps.close(ok: true)
            }
            await machineBox.value?.destroy()
            run.status = .passed
            run.steps = results.value
            log.emit("kiln", "tests passed: \(results.value.filter { $0.ok == true }.count) step(s)")
        } catch {
            await uncancellable { await machineBox.value?.destroy() }
            let cancelled = Task.isCancelled || (error as? KilnError)?.code == .cancelled || error is CancellationError
            let failedStep = steps.current
            let message = log.redact(cancelled ? "interrupted" : (error as? KilnError)?.description ?? "\(error)")
            run.status = TestStatus.after(error, cancelled: cancelled)
            let ended =
                switch run.status {
                case .cancelled: "cancelled"
                case .error: "could not run (a host error, not the image's)"
                default: "failed"
                }
            log.emit("kiln", "tests \(ended) at \(failedStep): \(message)")
            stopError = error
            run.failedStep = failedStep
            run.message = message
            run.steps = results.value + Self.notRun(after: results.value.count, of: template.tests.steps, stoppedAt: failedStep, log: log)
        }
        let lastLines = log.lastLines(8).filter { !$0.hasPrefix("tests ") }
        log.close()
        run.finished = Date()
        // The archive of a run inside a build is the build's, written again when the build ends.
        if (try? LogArchive.write(Builder.logFiles(in: context.scratch), to: context.archive.absolute)) == nil {
            run.log = nil
        }
        let after = try store.catalog.finish(run, hold: options.holdReady)
        var ended = steps.event(run.passed ? .testsPassed : .testsFailed)
        ended.step = run.passed ? nil : run.failedStep
        ended.image = image.name
        ended.text = run.message
        reporter?.report(ended)
        switch run.status {
        case .passed, .running:
            return after
        case .cancelled:
            throw KilnError(.cancelled, "the tests of \(image.name) were cancelled during \(run.failedStep ?? "?")")
        case .error:
            // The host's error, as it was: its code (and exit status) is not a test failure's.
            let message =
                "the tests of \(image.name) could not run (at \(run.failedStep ?? "?")); \(image.name) stays \(after.state.rawValue)"
            throw KilnError((stopError as? KilnError)?.code ?? .io, message, cause: stopError)
        case .failed:
            var text = "the tests of \(image.name) failed at \(run.failedStep ?? "?"): \(run.message ?? "")"
            if !lastLines.isEmpty { text += "\nlast output:\n" + lastLines.map { "  " + $0 }.joined(separator: "\n") }
            text += "\n\(image.name) is \(after.state.rawValue): not resolvable, not promotable, not a parent"
            let standing = ((try? store.catalog.children(of: image.name)) ?? []).filter { $0.state == .ready }.map(\.name)
            if !standing.isEmpty {
                text += "\nimages built on it stay READY: \(standing.joined(separator: ", ")) (kiln test or kiln deprecate them)"
            }
            text += "\ntest log: kiln logs \(image.name) --tests"
            throw KilnError(.buildFailed, text)
        }
    }

    /// The sealed image's disk as the backing file of a throw-away overlay (opened read-only:
    /// the image's bytes, and so its digest, cannot change).
    private func boot(_ image: ImageRecord, directory: String, log: BuildLog) async throws -> any Machine {
        var spec = MachineSpec(
            buildID: URL(fileURLWithPath: directory).deletingLastPathComponent().lastPathComponent, diskDirectory: directory,
            backingDisk: store.diskPath(of: image), scratchDirectory: directory, kernel: nil, initrd: nil,
            settings: template.provider.settings, bootTimeout: options.bootTimeout, shutdownTimeout: options.shutdownTimeout)
        spec.family = template.family
        spec.templateDirectory = URL(fileURLWithPath: template.file).deletingLastPathComponent().path
        spec.stepTimeout = options.stepTimeout
        spec.purpose = .test(growBy: Self.growBy)
        spec.ports = template.tests.ports
        if let artifact = try store.artifact(of: image) {
            spec.parentArtifact = artifact
            spec.parentDirectory = store.blobDirectory(digest: image.digest)
        }
        return try await provider.start(spec, log: log)
    }

    /// What `shell-local:` test steps are given besides a build's: where the forwarded ports are.
    static func environment(ports: [Int: Int]) -> [String: String] {
        var environment = ["KILN_TEST_HOST": "127.0.0.1"]
        for (guest, host) in ports { environment["KILN_PORT_\(guest)"] = String(host) }
        return environment
    }

    static func result(_ title: String, _ outcome: StepRunner.Outcome) -> TestStepResult {
        func seconds(_ d: Duration) -> Double { Double(d.components.seconds) + Double(d.components.attoseconds) / 1e18 }
        switch outcome {
        case .skipped(let reason): return TestStepResult(title: title, skipped: reason)
        case .passed(let d): return TestStepResult(title: title, ok: true, seconds: seconds(d))
        case .failed(let d, let error):
            return TestStepResult(title: title, ok: false, seconds: seconds(d), message: (error as? KilnError)?.message ?? "\(error)")
        }
    }

    /// The steps after the one that failed, recorded as not run.
    static func notRun(after count: Int, of steps: [Step], stoppedAt: String, log: BuildLog) -> [TestStepResult] {
        steps.dropFirst(count).map { TestStepResult(title: log.redact($0.title), skipped: "not run: the tests stopped at \(stoppedAt)") }
    }
}
