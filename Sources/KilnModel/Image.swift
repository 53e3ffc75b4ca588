import Foundation
import KilnCore

/// Lifecycle states of an image (docs/lifecycle.md). Only READY images are built from by default.
/// An image whose template has tests is TESTING from its commit until they pass (then READY) or
/// fail (then FAILED, docs/testing.md); neither is resolved, built on or promoted. The order is
/// the lifecycle's: a cascade only moves images forward.
public enum ImageState: String, Codable, Sendable, CaseIterable {
    case testing = "TESTING"
    case failed = "FAILED"
    case ready = "READY"
    case deprecated = "DEPRECATED"
    case obsolete = "OBSOLETE"
    case deleted = "DELETED"
}

/// One immutable image: a row of the catalog's `image` table.
public struct ImageRecord: Codable, Sendable, Equatable {

    /// `family-vYYYYMMDD-N`: unique, what deploy tools name.
    public var name: String
    public var family: String
    /// `vYYYYMMDD-N`.
    public var version: String
    /// SHA-256 of the image's disk blob; the blob lives in `images/<digest>/`.
    public var digest: String
    /// Name of the image this one is a layer on; nil for a base image.
    public var parent: String?
    public var state: ImageState
    public var created: Date
    /// JSON object of the template's labels.
    public var labels: String
    public var description: String?
    public var templateHash: String
    /// Bytes of this image's own blob (an overlay holds only what the layer changed).
    public var size: Int64
    /// Build log archive, relative to the store root.
    public var log: String
    public var buildID: String
    /// debootstrap, file, url or image.
    public var sourceKind: String
    /// SHA-256 over the key's inputs (docs/build-keys.md); nil for images made before keys existed.
    public var buildKey: String?
    /// JSON object of the inputs, kept to explain the next rebuild.
    public var keyInputs: String?
    /// The blob this image's disk is an overlay on: the parent's disk, or a base's source disk.
    public var backingDigest: String?
    /// Set when deprecated: the image to use instead.
    public var replacement: String?
    public var obsoleteOn: Date?
    public var deleteOn: Date?
    /// JSON of the template's lifecycle policy when it was built.
    public var policy: String?
    /// When `kiln gc` may remove the disk of this DELETED image.
    public var purgeOn: Date?
    public var purged: Bool = false
    /// JSON of the ``BuildOrigin``: commit, branch, CI job; nil for images made before it was recorded.
    public var origin: String? = nil

    public init(
        name: String, family: String, version: String, digest: String, parent: String? = nil, state: ImageState, created: Date,
        labels: String, description: String? = nil, templateHash: String, size: Int64, log: String, buildID: String, sourceKind: String,
        buildKey: String? = nil, keyInputs: String? = nil, backingDigest: String? = nil, replacement: String? = nil,
        obsoleteOn: Date? = nil, deleteOn: Date? = nil, policy: String? = nil, purgeOn: Date? = nil, purged: Bool = false,
        origin: String? = nil
    ) {
        (self.name, self.family, self.version, self.digest) = (name, family, version, digest)
        (self.parent, self.state, self.created, self.labels) = (parent, state, created, labels)
        (self.description, self.templateHash, self.size, self.log) = (description, templateHash, size, log)
        (self.buildID, self.sourceKind, self.buildKey, self.keyInputs) = (buildID, sourceKind, buildKey, keyInputs)
        (self.backingDigest, self.replacement, self.obsoleteOn, self.deleteOn) = (backingDigest, replacement, obsoleteOn, deleteOn)
        (self.policy, self.purgeOn, self.purged, self.origin) = (policy, purgeOn, purged, origin)
    }

    public var buildOrigin: BuildOrigin? { origin.flatMap(BuildOrigin.init(json:)) }

    public var labelDictionary: [String: String] {
        (try? JSONDecoder().decode([String: String].self, from: Data(labels.utf8))) ?? [:]
    }

    /// The label `pinned: "true"`, read exactly: labels the catalog cannot read are an error,
    /// never "not pinned" (a guard that fails open would let rotation delete a kept image).
    public func isPinned() throws -> Bool {
        // Labels whose text lacks the word cannot hold the key (kiln writes them with
        // JSONEncoder, which escapes no letters): no JSON decode per image in a rotation.
        guard labels.contains("pinned") else { return false }
        guard let labels = try? JSONDecoder().decode([String: String].self, from: Data(labels.utf8)) else {
            throw KilnError(
                .storeInconsistent,
                "the catalog's labels of \(name) cannot be read, so whether it is pinned is unknown: \(labels.prefix(200))")
        }
        return labels["pinned"] == "true"
    }

    /// The lifecycle policy this image was built with; nil for none recorded. A recorded one
    /// the catalog cannot read is an error, never the default policy: rotating by `keep: 2`
    /// a family whose template said `keep: 10` deprecates images its team meant to keep.
    public func lifecyclePolicy() throws -> LifecyclePolicy? {
        guard let policy else { return nil }
        do {
            return try JSONDecoder().decode(LifecyclePolicy.self, from: Data(policy.utf8))
        } catch {
            throw KilnError(
                .storeInconsistent,
                "the lifecycle policy of \(family) recorded with \(name) cannot be read (\(error)): rotation of \(family) stops here rather than fall back to the default policy; rebuild the family to record its policy again"
            )
        }
    }
}

/// A cached source disk (`images/<digest>/`), made from a debootstrap tree, a file or a URL.
public struct SourceRecord: Sendable, Equatable {
    public var key, digest, description: String
    public var lastUsed: Date

    public init(key: String, digest: String, description: String, lastUsed: Date) {
        (self.key, self.digest, self.description, self.lastUsed) = (key, digest, description, lastUsed)
    }
}

public enum BuildStatus: String, Codable, Sendable {
    case running, succeeded, failed, cancelled
}

/// One attempt at building one image, kept for failed builds too so their logs can be found.
public struct BuildRecord: Codable, Sendable, Equatable {

    public var id: String
    public var family: String
    public var image: String?
    public var status: BuildStatus
    public var started: Date
    public var finished: Date?
    public var failedStep: String?
    public var message: String?
    /// Build log archive, relative to the store root; nil until archived.
    public var log: String?
    public var pid: Int32
    /// The machine `pid` lives on; nil for builds recorded before kiln kept it.
    public var host: String?

    public init(
        id: String, family: String, image: String? = nil, status: BuildStatus, started: Date,
        finished: Date? = nil, failedStep: String? = nil, message: String? = nil, log: String? = nil, pid: Int32,
        host: String? = ProcessRegistry.hostName
    ) {
        (self.host, self.id, self.family, self.image) = (host, id, family, image)
        (self.status, self.started, self.finished, self.failedStep) = (status, started, finished, failedStep)
        (self.message, self.log, self.pid) = (message, log, pid)
    }
}

/// What a build knows about an image before the catalog names it.
public struct ImageDraft: Sendable {
    // The fields mean what ``ImageRecord``'s of the same names do: the catalog copies them.
    public var family, digest, templateHash, log, buildID, sourceKind: String
    public var parent, description, buildKey, keyInputs, backingDigest, policy: String?
    public var labels: [String: String]
    public var size: Int64
    public var origin: BuildOrigin?
    /// What the image has installed (nil: no package database in the guest).
    public var packages: PackageManifest?
    /// READY, or TESTING when the template has tests that must pass first.
    public var state = ImageState.ready

    public init(
        family: String, digest: String, parent: String?, labels: [String: String], description: String?,
        templateHash: String, size: Int64, log: String, buildID: String, sourceKind: String,
        buildKey: String? = nil, keyInputs: String? = nil, backingDigest: String? = nil, policy: String? = nil,
        origin: BuildOrigin? = nil, packages: PackageManifest? = nil
    ) {
        (self.origin, self.packages, self.policy, self.backingDigest) = (origin, packages, policy, backingDigest)
        (self.buildKey, self.keyInputs, self.family, self.digest) = (buildKey, keyInputs, family, digest)
        (self.parent, self.labels, self.description, self.templateHash) = (parent, labels, description, templateHash)
        (self.size, self.log, self.buildID, self.sourceKind) = (size, log, buildID, sourceKind)
    }

    public var labelsJSON: String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        return String(decoding: (try? encoder.encode(labels)) ?? Data("{}".utf8), as: UTF8.self)
    }
}

/// How a test run ended. `failed` is the image's fault (a step failed or timed out, or the
/// image did not boot to SSH) and moves it to FAILED; `error` is the host's (a file, the store,
/// the catalog, a tool kiln runs), `cancelled` an interruption: neither says anything about
/// the image, so neither moves it, and its next build tests it again.
public enum TestStatus: String, Codable, Sendable {
    case running, passed, failed, error, cancelled

    /// What a run that stopped with `error` says about the image: failures kiln's steps and
    /// the machine report (a step's exit, a timeout, the VM stopping or never answering) are
    /// the image's; everything else (i/o, the store, kiln itself) is the host's.
    public static func after(_ error: any Error, cancelled: Bool) -> TestStatus {
        if cancelled { return .cancelled }
        switch (error as? KilnError)?.code {
        case .buildFailed, .timeout, .providerFailed: return .failed
        default: return .error
        }
    }
}

/// How one test step went.
public struct TestStepResult: Codable, Sendable, Equatable {
    public var title: String
    /// nil: not run (`skipped` says why, or an earlier step failed).
    public var ok: Bool?
    public var seconds: Double?
    public var skipped: String?
    /// Why it failed.
    public var message: String?

    public init(title: String, ok: Bool? = nil, seconds: Double? = nil, skipped: String? = nil, message: String? = nil) {
        (self.title, self.ok, self.seconds, self.skipped, self.message) = (title, ok, seconds, skipped, message)
    }
}

/// One run of an image's tests on a test boot: in the build that made the image, or later
/// (`kiln test`, or a build after only the tests changed). A row of the catalog's `test_run`;
/// its id is the build's (a run on its own is recorded as a build too, which gives it leases,
/// recovery and `kiln logs ID`).
public struct TestRunRecord: Codable, Sendable, Equatable {
    public var id: String
    public var image: String
    /// The build that made the image, when the run was part of it.
    public var build: String?
    public var status: TestStatus
    public var started: Date
    public var finished: Date?
    public var failedStep: String?
    public var message: String?
    /// Log archive (its `tests.log`), relative to the store root; nil until archived.
    public var log: String?
    /// SHA-256 over the test section's inputs (``TestPlan``): a build whose tests hash differs
    /// from the image's last run runs them again.
    public var testsHash: String
    public var steps: [TestStepResult]

    public init(
        id: String, image: String, build: String?, status: TestStatus, started: Date, testsHash: String,
        steps: [TestStepResult] = []
    ) {
        (self.id, self.image, self.build, self.status, self.started) = (id, image, build, status, started)
        (self.testsHash, self.steps) = (testsHash, steps)
    }

    public var passed: Bool { status == .passed }
}
