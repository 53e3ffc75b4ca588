import Foundation
import KilnCore
import KilnModel

/// One recorded state change of an image.
public struct ImageEvent: Codable, Sendable, Equatable {
    public var id: Int64?
    public var image: String
    public var family: String
    public var fromState: ImageState
    public var toState: ImageState
    public var at: Date
    public var actor: String
    public var reason: String
}

/// How a state change is asked for.
public struct Transition: Sendable {
    public var to: ImageState
    public var reason: String
    public var actor: String
    public var now: Date
    public var replacement: String?
    public var obsoleteOn: Date?
    public var deleteOn: Date?
    public var purgeOn: Date?
    /// Apply the change to every descendant too (obsolete, delete); without it, live children refuse it.
    public var cascade = false

    public init(to: ImageState, reason: String, actor: String = Transition.defaultActor(), now: Date = Date()) {
        self.to = to
        self.reason = reason
        self.actor = actor
        self.now = now
    }

    /// `KILN_ACTOR`, else the user name: who an event is attributed to.
    public static func defaultActor(environment: [String: String] = ProcessInfo.processInfo.environment) -> String {
        BuildOrigin.actor(environment: environment)
    }
}

/// The lifecycle rules (docs/lifecycle.md), enforced in the catalog inside one transaction per change.
extension Catalog {
    public func children(of name: String) throws -> [ImageRecord] {
        try db.read { db in try Self.children(of: name, db) }
    }

    public func history(family: String) throws -> [ImageEvent] {
        try db.read { db in
            try db.rows(
                "SELECT id, image, family, fromState, toState, at, actor, reason FROM event WHERE family = ? ORDER BY at, id",
                [.text(family)]
            ).decoded(ImageEvent.init(row:))
        }
    }

    /// Changes the state of `name` (and, with `cascade`, of its descendants).
    /// - Returns: the events that were (or, with `dryRun`, would be) recorded, parents first.
    /// - Throws: ``KilnError/Code/invalidInput`` naming the rule that forbids the change.
    @discardableResult
    public func transition(_ name: String, _ change: Transition, dryRun: Bool = false) throws -> [ImageEvent] {
        try db.write { db in try Self.apply(name, change, dryRun: dryRun, channelTargets: try Catalog.channelTargets(db), db: db) }
    }

    /// One state change inside the caller's transaction. Every rule is checked before anything
    /// is written, so a refusal leaves the transaction as it was.
    static func apply(
        _ name: String, _ change: Transition, dryRun: Bool, channelTargets: Set<String>, db: any SQLConnection, known: ImageRecord? = nil,
        knownReplacement: ImageRecord? = nil
    ) throws -> [ImageEvent] {
        guard let image = try known ?? Catalog.image(named: name, db) else {
            throw KilnError(.notFound, "no image named '\(name)' (see kiln images)")
        }
        try Self.check(image, change, channelTargets: channelTargets, db: db, knownReplacement: knownReplacement)
        var targets = [image]
        if change.to == .obsolete || change.to == .deleted {
            let descendants = try Self.descendants(of: name, db: db).filter { Self.rank($0.state) < Self.rank(change.to) }
            if !descendants.isEmpty && !change.cascade {
                let names = descendants.map { "\($0.name) (\($0.state.rawValue))" }.joined(separator: ", ")
                throw KilnError(
                    .invalidInput,
                    "\(name) has images built on it that are not \(change.to.rawValue): \(names); give --cascade to mark them too")
            }
            targets += descendants
        }
        var events: [ImageEvent] = []
        for var target in targets {
            let event = ImageEvent(
                id: nil, image: target.name, family: target.family, fromState: target.state, toState: change.to,
                at: change.now, actor: change.actor,
                reason: target.name == name ? change.reason : "\(change.reason) (cascaded from \(name))")
            events.append(event)
            if dryRun { continue }
            target.state = change.to
            switch change.to {
            case .ready:
                target.replacement = nil
                target.obsoleteOn = nil
                target.deleteOn = nil
            case .deprecated:
                target.replacement = change.replacement
                target.obsoleteOn = change.obsoleteOn
                target.deleteOn = change.deleteOn
            case .obsolete:
                if let date = change.deleteOn { target.deleteOn = date }
            case .deleted:
                target.purgeOn = change.purgeOn ?? target.purgeOn
            case .testing, .failed:
                break
            }
            try db.execute(
                "UPDATE image SET state = ?, replacement = ?, obsoleteOn = ?, deleteOn = ?, purgeOn = ? WHERE name = ?",
                [
                    .text(target.state.rawValue), .optional(target.replacement), .optional(target.obsoleteOn),
                    .optional(target.deleteOn), .optional(target.purgeOn), .text(target.name),
                ])
            try db.execute(
                "INSERT INTO event (image, family, fromState, toState, at, actor, reason) VALUES (?, ?, ?, ?, ?, ?, ?)",
                [
                    .text(event.image), .text(event.family), .text(event.fromState.rawValue), .text(event.toState.rawValue),
                    .date(event.at), .text(event.actor), .text(event.reason),
                ])
        }
        return events
    }

    /// TESTING < FAILED < READY < DEPRECATED < OBSOLETE < DELETED: a cascade only moves descendants forward.
    static func rank(_ state: ImageState) -> Int {
        ImageState.allCases.firstIndex(of: state) ?? 0
    }

    /// `knownReplacement`: the replacement's row when the caller read it in this transaction
    /// (a rotation names its family's head for every image it deprecates).
    private static func check(
        _ image: ImageRecord, _ change: Transition, channelTargets: Set<String>, db: any SQLConnection, knownReplacement: ImageRecord?
    ) throws {
        let from = image.state
        let allowed: Bool
        switch change.to {
        case .testing, .failed:
            throw KilnError(.invalidInput, "only test results make an image \(change.to.rawValue) (docs/testing.md)")
        case .ready where from == .testing || from == .failed:
            throw KilnError(
                .invalidInput, "\(image.name) is \(from.rawValue): it becomes READY by passing its tests (kiln test \(image.name))")
        case .ready:
            allowed = from == .deprecated || from == .obsolete
            if allowed, let refusal = try Self.mayReturnToReady(image.name, db) {
                throw KilnError(.invalidInput, "\(image.name) cannot be READY again: \(refusal)")
            }
        case .deprecated: allowed = from == .ready
        case .obsolete: allowed = from == .ready || from == .deprecated
        case .deleted: allowed = from != .deleted
        }
        guard allowed else {
            throw KilnError(.invalidInput, "\(image.name) is \(from.rawValue); it cannot become \(change.to.rawValue)")
        }
        if let replacement = change.replacement {
            let known = knownReplacement.flatMap { $0.name == replacement ? $0 : nil }
            guard let other = try known ?? Catalog.image(named: replacement, db) else {
                throw KilnError(.notFound, "replacement '\(replacement)' is not an image")
            }
            guard other.state == .ready, other.name != image.name else {
                throw KilnError(.invalidInput, "replacement \(replacement) must be another READY image (it is \(other.state.rawValue))")
            }
        }
        if change.to == .deleted || change.to == .obsolete {
            if try image.isPinned() {
                throw KilnError(.invalidInput, "\(image.name) is pinned (label pinned: \"true\"): it is never obsoleted or deleted")
            }
            if channelTargets.contains(image.name) {
                throw KilnError(
                    .invalidInput, "\(image.name) is what a channel of \(image.family) points at: promote another image first")
            }
            let head = try Catalog.newest(image.family, .ready, db).first
            if head?.name == image.name {
                throw KilnError(
                    .invalidInput,
                    "\(image.name) is the head of \(image.family): roll the family back first (kiln rollback \(image.family))")
            }
        }
    }

    static func children(of name: String, _ db: any SQLConnection) throws -> [ImageRecord] {
        try db.rows(ImageRecord.select + " WHERE parent = ? ORDER BY name", [.text(name)]).decoded(ImageRecord.init(row:))
    }

    private static func descendants(of name: String, db: any SQLConnection) throws -> [ImageRecord] {
        var result: [ImageRecord] = []
        var frontier = [name]
        while let next = frontier.popLast() {
            let children = try Self.children(of: next, db)
            result += children
            frontier += children.map(\.name)
        }
        return result
    }

    /// Deprecates the family's head so the family resolves to its previous READY image.
    @discardableResult
    public func rollback(
        family: String, reason: String? = nil, dryRun: Bool = false, actor: String = Transition.defaultActor(), now: Date = Date()
    ) throws -> (from: ImageRecord, to: ImageRecord) {
        let ready = try db.read { db in try Self.newest(family, .ready, limit: 2, db) }
        guard let head = ready.first else { throw KilnError(.notFound, "family '\(family)' has no READY image") }
        guard ready.count == 2 else {
            throw KilnError(.invalidInput, "\(head.name) is the only READY image of \(family): nothing to roll back to")
        }
        let why = "rollback to \(ready[1].name)" + (reason.map { ": \($0)" } ?? "")
        var change = Transition(to: .deprecated, reason: why, actor: actor, now: now)
        change.replacement = ready[1].name
        try transition(head.name, change, dryRun: dryRun)
        return (head, ready[1])
    }
}

extension ImageEvent {
    init(row: any SQLRow) throws {
        func state(_ column: String) throws -> ImageState {
            let text = try row.required(column, row.string)
            guard let state = ImageState(rawValue: text) else {
                throw KilnError(.storeInconsistent, "the catalog names an unknown image state \(excerpt(text))")
            }
            return state
        }
        self.init(
            id: try row.int64("id"), image: try row.required("image", row.string), family: try row.required("family", row.string),
            fromState: try state("fromState"), toState: try state("toState"), at: try row.required("at", row.date),
            actor: try row.required("actor", row.string), reason: try row.required("reason", row.string))
    }
}
