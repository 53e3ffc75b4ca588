import Foundation
import KilnCore
import KilnGraph
import KilnModel
import KilnStore
import KilnTemplates

/// Whether an image must be built, and why: the answer `kiln plan` prints and `kiln build` acts on.
public struct Decision: Sendable {
    public enum Action: String, Sendable, Codable {
        case build
        case upToDate = "up to date"
        /// The image is built, but its tests have not passed as the template now writes them:
        /// one test boot, no build VM (docs/testing.md).
        case test
    }

    public var family: String
    public var action: Action
    /// The image built from the same inputs, when the action is `upToDate` (READY) or `test`.
    public var image: ImageRecord?
    public var reasons: [String]
    /// nil while the parent is still to be rebuilt: the key depends on its new digest.
    public var inputs: KeyInputs?
    public var source: SourceIdentity?
    /// Said before building, and written into the build log.
    public var warnings: [String] = []

    public var key: String? { inputs?.key }
    /// The hash of the template's tests (``BuildKeys/testsHash(for:secrets:provider:conceal:)``).
    public var testsHash: String?
}

/// What a template is built on, as far as is known when deciding.
public enum ParentState: Sendable {
    /// A base: built on its source.
    case none
    case image(ImageRecord)
    /// The parent family is rebuilt in this run; its digest is not known yet.
    case rebuilding(family: String)
}

public struct Planner: Sendable {
    let store: Store
    let secrets: [String]
    /// Bases whose repositories' current state is taken instead of the one their newest image
    /// was made from (`kiln refresh`): see ``SourceDisk/identity(of:pinnedTo:isCached:)``.
    public var freshSources: Set<String> = []
    /// The provider every image is built with (a test's fake one); nil: each template's
    /// `provider:`. `when:`/`unless:` may leave steps out for it.
    public var provider: String?

    public init(store: Store, secrets: [String]) {
        self.store = store
        self.secrets = secrets
    }

    public func decide(_ template: Template, parent: ParentState, force: Bool) async throws -> Decision {
        var decision = Decision(
            family: template.family, action: .build, image: nil, reasons: [], inputs: nil, source: nil, warnings: [])
        let parentImage: ImageRecord?
        switch parent {
        case .rebuilding(let family):
            decision.reasons = ["parent \(family) is rebuilt first"]
            return decision
        case .image(let image):
            switch image.state {
            case .ready: break
            case .deprecated:
                decision.warnings.append(
                    "parent \(image.name) is DEPRECATED" + (image.replacement.map { "; its replacement is \($0)" } ?? ""))
            case .obsolete, .deleted:
                throw KilnError(
                    .invalidInput, "\(template.family) cannot be built on \(image.name): it is \(image.state.rawValue)")
            case .testing, .failed:
                // Only a plan meets one: it is a parent whose tests run first in this graph, and a
                // build builds on it only once they passed.
                break
            }
            parentImage = image
        case .none:
            parentImage = nil
            let previous =
                freshSources.contains(template.family)
                ? nil : try store.catalog.head(of: template.family).map { KeyInputs(json: $0.keyInputs) }
            decision.source = try await SourceDisk.identity(of: template, pinnedTo: previous) { key in
                try store.catalog.sourceDigest(key: key) != nil
            }
        }
        let conceal = try store.catalog.concealer()
        let provider = self.provider ?? template.provider.name
        let inputs = try BuildKeys.inputs(
            for: template, parent: parentImage, source: decision.source, secrets: secrets, provider: provider, conceal: conceal)
        decision.inputs = inputs
        let testsHash = try BuildKeys.testsHash(for: template, secrets: secrets, provider: provider, conceal: conceal)
        decision.testsHash = testsHash
        if force {
            decision.reasons = ["--force"]
            return decision
        }
        let hasTests = !template.testSteps(for: provider).isEmpty
        if let match = try store.catalog.image(family: template.family, buildKey: inputs.key) {
            decision.image = match
            let last = hasTests ? try store.catalog.latestTestRun(of: match.name) : nil
            if hasTests, let reason = Self.retestReason(match, last: last, testsHash: testsHash) {
                decision.action = .test
                decision.reasons = [reason]
            } else {
                decision.action = .upToDate
            }
            return decision
        }
        if let untested = try store.catalog.untestedImage(family: template.family, buildKey: inputs.key) {
            decision.action = .test
            decision.image = untested
            decision.reasons = [
                untested.state == .failed
                    ? "\(untested.name) was built from these inputs and FAILED its tests: they run again on it"
                    : "\(untested.name) was built from these inputs; its tests have not passed yet: they run on it"
            ]
            return decision
        }
        guard let head = try store.catalog.head(of: template.family) else {
            decision.reasons = ["no image of \(template.family) yet"]
            return decision
        }
        guard head.keyInputs != nil else {
            decision.reasons = ["\(head.name) has no build key to compare with"]
            return decision
        }
        let reasons = BuildKeys.reasons(
            from: KeyInputs(json: head.keyInputs), to: inputs, parentFamily: template.parentFamily, parentName: parentImage?.name)
        decision.reasons = reasons.isEmpty ? ["no READY image was built from these inputs"] : reasons
        return decision
    }

    /// Why a READY image's tests run again; nil when its last run passed these tests.
    static func retestReason(_ image: ImageRecord, last: TestRunRecord?, testsHash: String) -> String? {
        guard let last else { return "\(image.name) is built; its tests never ran: they run on it (no rebuild)" }
        if last.testsHash != testsHash { return "the tests changed since \(image.name)'s last test run: they run on it (no rebuild)" }
        if !last.passed { return "\(image.name)'s last test run \(last.status.rawValue): its tests run again (no rebuild)" }
        return nil
    }

    /// Decisions for a whole graph, parents first, without building anything (`kiln plan`).
    public func plan(_ graph: ImageGraph, force: Bool) async throws -> [Decision] {
        var decisions: [String: Decision] = [:]
        var result: [Decision] = []
        for template in graph.order {
            let parent = try parentState(of: template, decided: decisions)
            let decision = try await decide(template, parent: parent, force: force)
            decisions[template.family] = decision
            result.append(decision)
        }
        return result
    }

    func parentState(of template: Template, decided: [String: Decision]) throws -> ParentState {
        guard let family = template.parentFamily else { return .none }
        if let decision = decided[family] {
            if decision.action != .build, let image = decision.image { return .image(image) }
            return .rebuilding(family: family)
        }
        guard let head = try store.catalog.buildParent(of: family) else {
            throw KilnError(.notFound, "family '\(family)' has no READY image to build from", at: template.sourceLocation)
        }
        return .image(head)
    }
}
