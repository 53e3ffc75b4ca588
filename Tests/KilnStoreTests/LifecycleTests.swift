import Foundation
import KilnCore
import KilnModel
import KilnTestSupport
import Testing

@testable import KilnStore

/// A family of three versions and a child built on the first two: base-1 <- app-1, base-2 <- app-2, base-3.
func lifecycleStore(_ backend: CatalogBackend) throws -> (Store, [ImageRecord]) {
    let store = try temporaryStore(backend)
    let day = ISO8601DateFormatter().date(from: "2026-11-23T10:00:00Z")!
    var images: [ImageRecord] = []
    for index in 1...3 {
        let base = try store.catalog.commit(draft("base", digest: "b\(index)"), at: day.addingTimeInterval(Double(index) * 60))
        images.append(base)
        if index < 3 {
            images.append(
                try store.catalog.commit(
                    draft("app", digest: "a\(index)", parent: base.name), at: day.addingTimeInterval(Double(index) * 60 + 1)))
        }
    }
    return (store, images)
}

@Suite("Image lifecycle")
struct LifecycleTests {
    let clock = ISO8601DateFormatter().date(from: "2026-11-24T08:00:00Z")!

    func change(_ state: ImageState, cascade: Bool = false, replacement: String? = nil) -> Transition {
        var transition = Transition(to: state, reason: "test", actor: "tester", now: clock)
        transition.cascade = cascade
        transition.replacement = replacement
        return transition
    }

    @Test("READY -> DEPRECATED -> OBSOLETE -> DELETED, each recorded with who, when and why", arguments: CatalogBackend.allCases)
    func transitions(backend: CatalogBackend) throws {
        let (store, _) = try lifecycleStore(backend)
        defer { try? FileManager.default.removeItem(atPath: store.root) }
        let catalog = store.catalog
        try catalog.transition("base-v20261123-1", change(.deprecated, replacement: "base-v20261123-3"))
        #expect(try catalog.image(named: "base-v20261123-1")?.replacement == "base-v20261123-3")
        #expect(throws: KilnError.self) { try catalog.transition("base-v20261123-1", change(.deprecated)) }
        try catalog.transition("base-v20261123-1", change(.obsolete, cascade: true))
        try catalog.transition("base-v20261123-1", change(.deleted, cascade: true))
        #expect(throws: KilnError.self) { try catalog.transition("base-v20261123-1", change(.ready)) }
        let history = try catalog.history(family: "base")
        #expect(
            history.map { "\($0.image) \($0.fromState.rawValue)->\($0.toState.rawValue)" } == [
                "base-v20261123-1 READY->DEPRECATED", "base-v20261123-1 DEPRECATED->OBSOLETE", "base-v20261123-1 OBSOLETE->DELETED",
            ])
        #expect(history.allSatisfy { $0.actor == "tester" && $0.at == clock && $0.reason == "test" })
        // The cascade reached the child, and is recorded as such.
        let app = try catalog.history(family: "app")
        #expect(app.map(\.toState) == [.obsolete, .deleted])
        #expect(app[0].reason == "test (cascaded from base-v20261123-1)")
    }

    @Test("obsolete and delete refuse while live children exist, naming them; --cascade marks them", arguments: CatalogBackend.allCases)
    func childrenGuard(backend: CatalogBackend) throws {
        let (store, _) = try lifecycleStore(backend)
        defer { try? FileManager.default.removeItem(atPath: store.root) }
        do {
            try store.catalog.transition("base-v20261123-2", change(.deleted))
            Issue.record("expected a refusal")
        } catch let error as KilnError {
            #expect(error.message.contains("app-v20261123-2 (READY)"))
            #expect(error.message.contains("--cascade"))
        }
        #expect(try store.catalog.image(named: "base-v20261123-2")?.state == .ready)
        let dry = try store.catalog.transition("base-v20261123-2", change(.deleted, cascade: true), dryRun: true)
        #expect(dry.map(\.image) == ["base-v20261123-2", "app-v20261123-2"])
        #expect(try store.catalog.image(named: "app-v20261123-2")?.state == .ready, "a dry run changed something")
        try store.catalog.transition("base-v20261123-2", change(.deleted, cascade: true))
        #expect(try store.catalog.image(named: "app-v20261123-2")?.state == .deleted)
    }

    @Test("the head of a family is never obsoleted or deleted; rollback deprecates it instead", arguments: CatalogBackend.allCases)
    func headAndRollback(backend: CatalogBackend) throws {
        let (store, _) = try lifecycleStore(backend)
        defer { try? FileManager.default.removeItem(atPath: store.root) }
        #expect(throws: KilnError.self) { try store.catalog.transition("base-v20261123-3", change(.deleted)) }
        let (from, to) = try store.catalog.rollback(family: "base", actor: "tester", now: clock)
        #expect(from.name == "base-v20261123-3" && to.name == "base-v20261123-2")
        #expect(try store.catalog.head(of: "base")?.name == "base-v20261123-2")
        #expect(try store.catalog.image(named: "base-v20261123-3")?.replacement == "base-v20261123-2")
        try store.catalog.rollback(family: "base", now: clock)
        #expect(throws: KilnError.self) { try store.catalog.rollback(family: "base", now: clock) }
        #expect(try store.catalog.head(of: "base")?.name == "base-v20261123-1")
        try store.catalog.transition("base-v20261123-3", change(.ready))
        #expect(try store.catalog.head(of: "base")?.name == "base-v20261123-3")
    }

    @Test("a replacement must be another READY image", arguments: CatalogBackend.allCases)
    func replacementGuard(backend: CatalogBackend) throws {
        let (store, _) = try lifecycleStore(backend)
        defer { try? FileManager.default.removeItem(atPath: store.root) }
        #expect(throws: KilnError.self) { try store.catalog.transition("base-v20261123-1", change(.deprecated, replacement: "nope")) }
        #expect(throws: KilnError.self) {
            try store.catalog.transition("base-v20261123-1", change(.deprecated, replacement: "base-v20261123-1"))
        }
    }

    @Test("channels point at exact images, keep their history, and protect what they point at", arguments: CatalogBackend.allCases)
    func channels(backend: CatalogBackend) throws {
        let (store, _) = try lifecycleStore(backend)
        defer { try? FileManager.default.removeItem(atPath: store.root) }
        let catalog = store.catalog
        try catalog.promote("base-v20261123-1", channel: "prod", actor: "ci", now: clock)
        try catalog.promote("base-v20261123-3", channel: "dev", actor: "ci", now: clock)
        #expect(try catalog.channel("prod", of: "base")?.image == "base-v20261123-1")
        // A channel target is never obsoleted or deleted, even though it is not the head.
        #expect(throws: KilnError.self) { try catalog.transition("base-v20261123-1", change(.deleted, cascade: true)) }
        try catalog.promote("base-v20261123-2", channel: "prod", actor: "ci", now: clock.addingTimeInterval(60))
        #expect(try catalog.channels(of: "base") == ["prod": "base-v20261123-2", "dev": "base-v20261123-3"])
        #expect(try catalog.channelHistory(of: "base").map(\.image) == ["base-v20261123-1", "base-v20261123-3", "base-v20261123-2"])
        try catalog.transition("base-v20261123-1", change(.deleted, cascade: true))
        #expect(throws: KilnError.self) { try catalog.promote("base-v20261123-1", channel: "prod") }
        #expect(throws: KilnError.self) { try catalog.promote("base-v20261123-2", channel: "Bad Name") }
    }
}
