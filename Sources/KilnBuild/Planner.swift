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
    }

    public var family: String
    public var action: Action
    /// The READY image built from the same inputs, when the action is `upToDate`.
    public var image: ImageRecord?
    public var reasons: [String]
    /// nil while the parent is still to be rebuilt: the key depends on its new digest.
    public var inputs: KeyInputs?
    public var source: SourceIdentity?
    /// Said before building, and written into the build log.
    public var warnings: [String] = []

    public var key: String? { inputs?.key }
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
        let inputs = try BuildKeys.inputs(
            for: template, parent: parentImage, source: decision.source, secrets: secrets,
            provider: provider ?? template.provider.name, conceal: try store.catalog.concealer())
        decision.inputs = inputs
        if force {
            decision.reasons = ["--force"]
            return decision
        }
        if let match = try store.catalog.image(family: template.family, buildKey: inputs.key) {
            decision.action = .upToDate
            decision.image = match
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
            if decision.action == .upToDate, let image = decision.image { return .image(image) }
            return .rebuilding(family: family)
        }
        guard let head = try store.catalog.buildParent(of: family) else {
            throw KilnError(.notFound, "family '\(family)' has no READY image to build from", at: template.sourceLocation)
        }
        return .image(head)
    }
}
