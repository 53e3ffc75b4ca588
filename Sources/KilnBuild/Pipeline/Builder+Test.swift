import Foundation
import KilnCore
import KilnModel
import KilnProviders
import KilnStore

extension Builder {
    /// Runs the tests of an image that is already built (its tests changed or have not passed,
    /// or `kiln test`): one test boot, no build VM. Recorded as a build of its family too, so
    /// the run has leases, recovery, `kiln logs ID` and a place in `kiln logs --failed`.
    /// - Returns: the image as its result left it (READY when the tests passed).
    public func test(
        _ image: ImageRecord, template: Template, provider: any Provider, testsHash: String, secrets: [String]
    ) async throws -> ImageRecord {
        let runID = Self.newBuildID(family: template.family)
        let scratch = store.scratchDirectory(buildID: runID)
        try FileManager.default.createDirectory(
            atPath: scratch, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        let steps = StepTracker(
            family: template.family, build: runID, reporter: reporter, phaseFile: scratch + "/" + StepTracker.phaseFileName)
        var record = BuildRecord(id: runID, family: template.family, image: image.name, status: .running, started: Date(), pid: getpid())
        try store.catalog.insert(record)
        do {
            steps.enter("verify")
            // The test boot stands on the image's chain: leased against gc, and verified like a parent.
            let chain = try store.blobChain(from: image.digest)
            try await store.withBlobLock { try store.lease(chain.map(Store.blobResource), buildID: runID) }
            if let remote = options.remote { _ = try await remote.pull(chainOf: image) }
            try await Verifier.trust(store, image, also: options.signingKey.map { [$0.publicKey] } ?? [])
            let tester = ImageTester(
                store: store, template: template, provider: provider, options: options, secrets: secrets, testsHash: testsHash)
            let tested = try await tester.run(
                image,
                context: .init(
                    runID: runID, build: nil, scratch: scratch, steps: steps, archive: store.logArchivePath(buildID: runID)))
            steps.close(ok: true)
            record.status = .succeeded
            // The run is recorded and the image moved: a log archive that cannot be written is a
            // warning here, not a failed run.
            do { try finishTestRun(&record, scratch: scratch) } catch {
                var warning = steps.event(.output)
                warning.source = "kiln"
                warning.text = "warning: the log of test run \(runID) could not be archived: \(error)"
                reporter?.report(warning)
            }
            return tested
        } catch {
            let cancelled = Task.isCancelled || (error as? KilnError)?.code == .cancelled || error is CancellationError
            record.failedStep = steps.current
            steps.close(ok: false)
            record.status = cancelled ? .cancelled : .failed
            record.message = (error as? KilnError)?.message ?? "\(error)"
            try? finishTestRun(&record, scratch: scratch)
            var failed = steps.event(.failed)
            failed.text = record.message
            failed.cancelled = cancelled
            reporter?.report(failed)
            if let error = error as? KilnError, [.buildFailed, .cancelled, .io, .storeInconsistent].contains(error.code) { throw error }
            throw KilnError(.buildFailed, "the tests of \(image.name) could not run (at \(record.failedStep ?? "?"))", cause: error)
        }
    }

    private func finishTestRun(_ record: inout BuildRecord, scratch: String) throws {
        let archive = store.logArchivePath(buildID: record.id)
        let files = Self.logFiles(in: scratch)
        if !files.isEmpty {
            try LogArchive.write(files, to: archive.absolute)
            record.log = archive.relative
        }
        record.finished = Date()
        try store.catalog.update(record)
        try? FileManager.default.removeItem(atPath: scratch)
    }
}
