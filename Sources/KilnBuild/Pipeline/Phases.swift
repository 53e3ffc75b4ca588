import Foundation
import KilnCore
import KilnModel
import KilnProviders
import KilnRemote
import KilnStore

#if canImport(Glibc)
    import Glibc
#endif

/// The disk the machine stands on: the parent's blob, verified again (it and every blob under
/// it must still be the bytes they were sealed as), or a base's source disk, made or reused.
/// A base on a provider image stands on no blob.
struct SourcePhase: BuildPhase {
    let store: Store
    /// The key this build signs with: a parent it signed is trusted like the store's keys.
    let signingKey: SigningKey?
    let remote: Remote?

    func run(_ build: BuildContext) async throws {
        if let parent = build.parent {
            // Leased before it is fetched or checked: gc and the cache prune leave a leased chain alone.
            let chain = try store.blobChain(from: parent.digest)
            try await store.withBlobLock { try store.lease(chain.map(Store.blobResource), buildID: build.buildID) }
            if let remote {
                build.steps.enter("pull")
                try await UploadPhase.pull(parent, from: remote, log: build.log)
            }
            build.steps.enter("verify")
            try await Verifier.trust(store, parent, also: signingKey.map { [$0.publicKey] } ?? [])
            if build.provider.buildsFromDisks, try store.catalog.standsOnBareFilesystem(parent) {
                build.log.emit("kiln", "notice: " + Catalog.bareFilesystemNotice(parent))
            }
            build.update { $0.base = parent.digest }
        } else if build.provider.buildsFromDisks {
            build.steps.enter("source")
            guard let identity = build.decision.source else { throw KilnError(.internalError, "no source identity for \(build.family)") }
            let base = try await SourceDisk(store: store).prepare(
                build.template, identity: identity, buildID: build.buildID, log: build.log)
            build.update { $0.base = base }
        }
    }

}

/// Starts the provider's machine on the base; undone by destroying it.
struct BootPhase: BuildPhase {
    let store: Store
    let options: BuildOptions

    func run(_ build: BuildContext) async throws {
        build.steps.enter("boot")
        let base = build.current.base
        let baseDirectory = base.map { store.blobDirectory(digest: $0) }
        let kernel = baseDirectory.map { $0 + "/" + Store.kernelName }.flatMap { FileManager.default.fileExists(atPath: $0) ? $0 : nil }
        var spec = MachineSpec(
            buildID: build.buildID, diskDirectory: build.staging, backingDisk: base.map { "../\($0)/\(Store.diskName)" } ?? "",
            scratchDirectory: build.scratch, kernel: kernel,
            initrd: kernel == nil ? nil : baseDirectory.map { $0 + "/" + Store.initrdName },
            settings: build.template.provider.settings, bootTimeout: options.bootTimeout, shutdownTimeout: options.shutdownTimeout)
        spec.family = build.family
        spec.templateDirectory = URL(fileURLWithPath: build.template.file).deletingLastPathComponent().path
        spec.stepTimeout = options.stepTimeout
        if case .providerImage(let id) = build.template.source { spec.sourceImage = id }
        if options.warm, let base { spec.warm = WarmCache(directory: store.warmSnapshotsDirectory, parentDigest: base) }
        if let parent = build.parent, let artifact = try store.artifact(of: parent) {
            spec.parentArtifact = artifact
            spec.parentDirectory = baseDirectory
        }
        build.update { [spec] in $0.spec = spec }
        let machine = try await build.provider.start(spec, log: build.log)
        build.update { $0.machine = machine }
    }

    func undo(_ build: BuildContext) async {
        guard let machine = build.current.machine else { return }
        await uncancellable { await machine.destroy() }
        build.update { $0.machine = nil }
    }
}

/// The template's steps, in order, on the machine.
struct ProvisionPhase: BuildPhase {
    let options: BuildOptions

    func run(_ build: BuildContext) async throws {
        let runner = StepRunner(
            options: options, template: build.template, provider: build.provider.name, buildID: build.buildID, scratch: build.scratch,
            log: build.log, onEnter: { [steps = build.steps] in steps.enter($0) })
        try await runner.runAll(on: try build.machine())
    }
}

/// The guest forgets the build's credentials and stops cleanly.
struct StopPhase: BuildPhase {
    func run(_ build: BuildContext) async throws {
        build.steps.enter("shutdown")
        let stopping = ContinuousClock.now
        try await build.machine().shutdown(log: build.log)
        let what = build.provider.name == "qemu" ? "VM" : "machine"
        build.log.emit("kiln", "\(what) stopped after \((ContinuousClock.now - stopping).kilnDescription)")
    }
}

/// The stopped machine becomes the image in the staging directory: its disk there already
/// (qemu), or the provider's artifact; the machine is then gone. Undone by deleting an
/// artifact the catalog never named.
struct SnapshotPhase: BuildPhase {
    func run(_ build: BuildContext) async throws {
        build.steps.enter("snapshot")
        let machine = try build.machine()
        let artifact = try await machine.snapshot(into: build.staging, name: "kiln-\(build.buildID)", log: build.log)
        build.update { $0.artifact = artifact }
        if let artifact {
            try artifact.json.write(to: URL(fileURLWithPath: build.staging + "/" + ProviderArtifact.fileName))
            build.log.emit("kiln", "snapshot: \(artifact.summary)")
        }
        await machine.destroy()
        build.update { $0.machine = nil }
    }

    func undo(_ build: BuildContext) async {
        guard let artifact = build.current.artifact, build.current.image == nil else { return }
        let provider = build.provider
        let log = build.log
        do {
            try await uncancellable { try await provider.deleteImage(artifact) { log.emit("kiln", "warning: \($0)") } }
            log.emit("kiln", "no image names \(artifact.summary): its provider was asked to delete it")
        } catch {
            log.emit("kiln", "warning: could not delete \(artifact.summary), which no image names: \(error)")
        }
    }
}

/// The staging directory becomes a content-addressed blob. Undone by removing a blob the
/// catalog never named (unless an image or source disk had the same bytes already).
struct SealPhase: BuildPhase {
    let store: Store

    func run(_ build: BuildContext) async throws {
        let sealing = ContinuousClock.now
        if let base = build.current.base {
            let baseDirectory = store.blobDirectory(digest: base)
            if FileManager.default.fileExists(atPath: baseDirectory + "/" + Store.kernelName) {
                // The kernel boots its children too; hard links cost no space.
                for name in [Store.kernelName, Store.initrdName] {
                    try linkOrCopy(baseDirectory + "/" + name, build.staging + "/" + name)
                }
            }
        }
        // Noted for the recovery before the blob appears: if kiln dies before the catalog
        // names it, the next kiln removes it (Recovery).
        let (digest, size) = try store.seal(staging: build.staging) { digest in
            try digest.write(toFile: build.scratch + "/" + Recovery.sealedMarker, atomically: true, encoding: .utf8)
        }
        build.update { $0.sealed = (digest, size) }
        build.log.emit(
            "kiln",
            "sealed \(build.current.artifact == nil ? "disk" : "artifact") \(digest.prefix(12)) (\(size >> 10) KiB of its own) in \((ContinuousClock.now - sealing).kilnDescription)"
        )
    }

    func undo(_ build: BuildContext) async {
        guard let sealed = build.current.sealed, build.current.image == nil else { return }
        if (try? store.catalog.namesBlob(sealed.digest)) == false {
            try? FileManager.default.removeItem(atPath: store.blobDirectory(digest: sealed.digest))
        }
    }

    private func linkOrCopy(_ from: String, _ to: String) throws {
        if link(from, to) != 0 { try FileManager.default.copyItem(atPath: from, toPath: to) }
    }
}

/// With a remote, the sealed blob (and a new base's source disk) goes there before the catalog
/// names the image: a catalog row never points at a blob other machines cannot fetch.
struct UploadPhase: BuildPhase {
    let store: Store
    let remote: Remote?

    func run(_ build: BuildContext) async throws {
        guard let remote, let sealed = build.current.sealed else { return }
        build.steps.enter("push")
        build.log.emit("kiln", "pushing to \(remote.location)")
        let started = ContinuousClock.now
        let chain = [sealed.digest] + (try build.current.base.map { try store.blobChain(from: $0) } ?? [])
        let report = try await remote.pushBlobs(chain) { digest in
            var notes = [RemoteArtifact.familyAnnotation: build.family]
            if digest == sealed.digest {
                notes[RemoteArtifact.buildKeyAnnotation] = build.decision.key
                notes[RemoteArtifact.parentDigestAnnotation] = build.current.base
            }
            return notes
        }
        build.log.emit(
            "kiln",
            "pushed \(report.uploaded.count) blob(s) to \(remote.location)\(report.present.isEmpty ? "" : " (\(report.present.count) there already)") in \((ContinuousClock.now - started).kilnDescription)"
        )
    }

    /// The parent's chain, fetched into the local store where it lacks it.
    static func pull(_ parent: ImageRecord, from remote: Remote, log: BuildLog) async throws {
        let started = ContinuousClock.now
        let report = try await remote.pull(chainOf: parent)
        if !report.pulled.isEmpty || !report.records.isEmpty {
            log.emit(
                "kiln",
                "pulled \(report.pulled.count) blob(s) of \(parent.name)'s chain from \(remote.location) in \((ContinuousClock.now - started).kilnDescription)"
            )
        }
    }
}

/// With a remote: the image's name as a tag, and its build record (provenance, signature,
/// log) as a referrer. A failure is a warning: the blob is there already, and `kiln push NAME`
/// finishes the job.
struct RemotePublishPhase: BuildPhase {
    let store: Store
    let remote: Remote?

    func run(_ build: BuildContext) async throws {
        guard let remote, let image = build.current.image else { return }
        do {
            // The record carries the log as it is now; the archive is written again at the end.
            try LogArchive.write(Builder.logFiles(in: build.scratch), to: store.logArchivePath(buildID: build.buildID).absolute)
            let report = try await remote.publish(image)
            build.log.emit("kiln", "tagged \(image.name) in \(remote.location)\(report.record ? " with its build record" : "")")
        } catch {
            build.log.emit("kiln", "warning: could not tag \(image.name) in \(remote.location): \(error) (kiln push \(image.name))")
        }
    }
}

/// The catalog names the sealed blob: from here on the image exists, and no undo touches it.
struct CommitPhase: BuildPhase {
    let store: Store
    /// Every image is committed TESTING (a refresh's: none moves its family until all passed).
    var holdReady = false

    func run(_ build: BuildContext) async throws {
        guard let sealed = build.current.sealed else { throw KilnError(.internalError, "nothing was sealed for \(build.family)") }
        try await Builder.testDelay("KILN_TEST_DELAY_COMMIT_MS")
        let log = build.log
        let template = build.template
        let archive = store.logArchivePath(buildID: build.buildID)
        // Archived once before the catalog names the image: a host disk that is full fails
        // the build here, while no image exists yet (the archive is written again after).
        try LogArchive.write(Builder.logFiles(in: build.scratch), to: archive.absolute)
        var draft = ImageDraft(
            family: build.family, digest: sealed.digest, parent: build.parent?.name,
            labels: template.labels.mapValues(log.redact), description: template.description.map(log.redact),
            templateHash: template.templateHash, size: sealed.size, log: archive.relative, buildID: build.buildID,
            sourceKind: template.source.kind, buildKey: build.decision.key, keyInputs: build.decision.inputs?.json,
            backingDigest: build.current.base, policy: Builder.policyJSON(template.lifecycle), origin: build.origin,
            packages: build.current.packages)
        // Named now, but resolvable only once its tests pass (TestPhase).
        if !template.testSteps(for: build.provider.name).isEmpty || holdReady { draft.state = .testing }
        let image = try store.catalog.commit(draft)
        build.update { $0.image = image }
        if image.state == .ready {
            log.emit("kiln", "image ready: \(image.name)")
        } else {
            log.emit("kiln", "image named: \(image.name), \(image.state.rawValue) until its tests pass")
        }
    }
}

/// After the commit, what can fail without taking the image back: the provider's copy learns
/// its catalog name, and the provenance is recorded and signed. Each failure is a warning;
/// `kiln sign` and `kiln verify` report a gap later.
struct PublishPhase: BuildPhase {
    let store: Store
    let signingKey: SigningKey?

    func run(_ build: BuildContext) async throws {
        guard let image = build.current.image else { return }
        let log = build.log
        let provider = build.provider
        if let artifact = build.current.artifact {
            do {
                try await provider.imageChanged(image, artifact: artifact) { log.emit("kiln", "warning: \($0)") }
            } catch {
                log.emit("kiln", "warning: could not update \(artifact.summary) for \(image.name): \(error)")
            }
        }
        do {
            try store.recordProvenance(of: image, provider: provider.name)
            if let signingKey {
                let envelope = try store.sign(image, with: signingKey, provider: provider.name)
                log.emit("kiln", "signed provenance with key \(envelope.keyID)")
            }
        } catch {
            log.emit("kiln", "warning: could not record the provenance of \(image.name): \(error)")
        }
    }
}

/// The sealed image's tests, on a test boot (docs/testing.md): they decide whether the image
/// becomes READY or FAILED. A failure fails the build, but the image stays named (FAILED), with
/// its disk and logs, for inspection until `kiln gc`.
struct TestPhase: BuildPhase {
    let store: Store
    let options: BuildOptions

    func run(_ build: BuildContext) async throws {
        guard let image = build.current.image, image.state == .testing else { return }
        guard let testsHash = build.decision.testsHash else { throw KilnError(.internalError, "no tests hash for \(build.family)") }
        let tester = ImageTester(
            store: store, template: build.template, provider: build.provider, options: options, secrets: build.secrets,
            testsHash: testsHash)
        let context = ImageTester.Context(
            runID: build.buildID, build: build.buildID, scratch: build.scratch, steps: build.steps,
            archive: store.logArchivePath(buildID: build.buildID))
        let tested = try await tester.run(image, context: context)
        build.update { $0.image = tested }
        build.log.emit(
            "kiln",
            tested.state == .ready ? "image ready: \(tested.name)" : "tests passed: \(tested.name) stays TESTING (held by the refresh)")
    }
}
