import Foundation
import KilnCore
import KilnModel

/// An image as `kiln inspect --json`, `kiln images --json` and `kiln serve`'s API show it
/// (docs/json.md): one shape for every reader.
public struct ImageView: Codable, Sendable {
    public var name: String
    public var family: String
    public var version: String
    public var state: String
    public var parent: String?
    public var size: Int64
    public var created: String
    public var digest: String
    /// nil for an image a provider other than qemu made: ``artifact`` says what and where it is.
    public var disk: String?
    public var provider: String
    public var artifact: ProviderArtifact?
    public var labels: [String: String]
    public var description: String?
    public var templateHash: String
    public var buildID: String
    public var log: String
    public var source: String
    public var buildKey: String?
    public var keyInputs: [String: String]?
    public var replacement: String?
    public var obsoleteOn: String?
    public var deleteOn: String?
    public var purgeOn: String?
    public var purged: Bool
    /// The commit and CI job the image was built from; absent for images made before kiln recorded it.
    public var origin: BuildOrigin?
    /// The image's newest test run (docs/testing.md); absent when its tests never ran.
    public var tests: TestsView?

    enum CodingKeys: String, CodingKey {
        case name, family, version, state, parent, size, created, digest, disk, provider, artifact, labels, description
        case templateHash = "template_hash"
        case buildID = "build_id"
        case log, source
        case buildKey = "build_key"
        case keyInputs = "key_inputs"
        case replacement
        case obsoleteOn = "obsolete_on"
        case deleteOn = "delete_on"
        case purgeOn = "purge_on"
        case purged, origin, tests
    }

    public init(_ image: ImageRecord, store: Store) {
        name = image.name
        family = image.family
        version = image.version
        state = image.state.rawValue
        parent = image.parent
        size = image.size
        created = image.created.formatted(.iso8601)
        digest = image.digest
        let artifact = try? store.artifact(of: image)
        // A provider's image has no disk in the store: its artifact says where it is.
        disk = artifact == nil ? store.diskPath(of: image) : nil
        provider = artifact?.provider ?? "qemu"
        self.artifact = artifact
        labels = image.labelDictionary
        description = image.description
        templateHash = image.templateHash
        buildID = image.buildID
        log = store.absolute(image.log)
        source = image.sourceKind
        buildKey = image.buildKey
        keyInputs = image.keyInputs.map { (try? JSONDecoder().decode([String: String].self, from: Data($0.utf8))) ?? [:] }
        replacement = image.replacement
        obsoleteOn = image.obsoleteOn?.formatted(.iso8601)
        deleteOn = image.deleteOn?.formatted(.iso8601)
        purgeOn = image.purgeOn?.formatted(.iso8601)
        purged = image.purged
        origin = image.buildOrigin
    }

    public init(_ image: ImageRecord, store: Store, testRun: TestRunRecord?) {
        self.init(image, store: store)
        tests = testRun.map { TestsView($0, store: store) }
    }
}

/// A test run as `inspect --json` and `images --json` show it (docs/json.md).
public struct TestsView: Codable, Sendable {
    public struct StepView: Codable, Sendable {
        public var title: String
        /// passed, failed, or skipped.
        public var status: String
        public var seconds: Double?
        public var reason: String?
    }

    public var run: String
    public var status: String
    public var started: String
    public var finished: String?
    public var failedStep: String?
    public var message: String?
    public var log: String?
    public var testsHash: String
    public var passed, failed, skipped: Int
    public var steps: [StepView]

    enum CodingKeys: String, CodingKey {
        case run, status, started, finished
        case failedStep = "failed_step"
        case message, log
        case testsHash = "tests_hash"
        case passed, failed, skipped, steps
    }

    public init(_ run: TestRunRecord, store: Store) {
        self.run = run.id
        status = run.status.rawValue
        started = run.started.formatted(.iso8601)
        finished = run.finished?.formatted(.iso8601)
        failedStep = run.failedStep
        message = run.message
        log = run.log.map(store.absolute)
        testsHash = run.testsHash
        steps = run.steps.map { step in
            StepView(
                title: step.title, status: step.ok.map { $0 ? "passed" : "failed" } ?? "skipped", seconds: step.seconds,
                reason: step.ok == false ? step.message : step.skipped)
        }
        passed = steps.filter { $0.status == "passed" }.count
        failed = steps.filter { $0.status == "failed" }.count
        skipped = steps.filter { $0.status == "skipped" }.count
    }

    /// `passed (3 steps)`, `failed at test[1] …`: one line for tables.
    public var summary: String {
        switch status {
        case "passed": return "passed (\(passed) step\(passed == 1 ? "" : "s"))"
        case "failed": return "failed at \(failedStep ?? "?")"
        default: return status
        }
    }
}
