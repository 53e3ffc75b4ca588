import Foundation
import KilnCore
import KilnModel
import KilnTestSupport
import Testing

@testable import KilnStore

@Suite("Rotation (injected clock)")
struct RotationTests {
    static let day: TimeInterval = 86_400
    let start = ISO8601DateFormatter().date(from: "2026-11-01T00:00:00Z")!

    /// base-1..base-5 on consecutive days; app-1 on base-1, app-2 on base-5. Policy: keep 2,
    /// obsolete 1 day after deprecation, delete 2 days after, purge 3 days after.
    func family(_ backend: CatalogBackend) throws -> (Store, [String]) {
        let store = try temporaryStore(backend)
        var policy = LifecyclePolicy()
        policy.keep = 2
        policy.obsoleteAfter = Int(Self.day)
        policy.deleteAfter = 2 * Int(Self.day)
        policy.purgeAfter = 3 * Int(Self.day)
        let json = String(decoding: try JSONEncoder().encode(policy), as: UTF8.self)
        var names: [String] = []
        for index in 1...5 {
            var base = draft("base", digest: "base\(index)")
            base.policy = json
            let image = try store.catalog.commit(base, at: start.addingTimeInterval(Double(index) * Self.day))
            try FileManager.default.createDirectory(atPath: store.blobDirectory(digest: image.digest), withIntermediateDirectories: true)
            names.append(image.name)
        }
        for (index, parent) in [(1, names[0]), (2, names[4])] {
            var app = draft("app", digest: "app\(index)", parent: parent)
            app.policy = json
            app.backingDigest = "base\(index == 1 ? 1 : 5)"
            _ = try store.catalog.commit(app, at: start.addingTimeInterval(Double(5 + index) * Self.day))
        }
        return (store, names)
    }

    func states(_ store: Store) throws -> [String] {
        try store.catalog.images().filter { $0.family == "base" }.map { "\($0.state.rawValue)\($0.purged ? "*" : "")" }
    }

    @Test(
        "a family moves through every state on schedule; guards hold; gc frees exactly the purged disks", arguments: CatalogBackend.allCases
    )
    func fullCycle(backend: CatalogBackend) throws {
        let (store, names) = try family(backend)
        defer { try? FileManager.default.removeItem(atPath: store.root) }
        let catalog = store.catalog
        var now = start.addingTimeInterval(8 * Self.day)

        // Dry run: prints, changes nothing.
        let preview = try catalog.rotate(now: now, dryRun: true)
        #expect(preview.actions.map(\.image) == [names[2], names[1], names[0]])
        #expect(try states(store) == ["READY", "READY", "READY", "READY", "READY"])

        // Day 8: everything but the newest two READY is deprecated, pointing at the head.
        _ = try catalog.rotate(now: now, dryRun: false)
        #expect(try states(store) == ["DEPRECATED", "DEPRECATED", "DEPRECATED", "READY", "READY"])
        #expect(try catalog.image(named: names[0])?.replacement == names[4])
        #expect(try catalog.head(of: "base")?.name == names[4])

        // Before the obsolete date nothing moves.
        #expect(try catalog.rotate(now: now.addingTimeInterval(3600), dryRun: false).actions.isEmpty)

        // Day 9+: obsolete, except base-1 which app-1 (READY) is still built on.
        now += Self.day + 1
        let second = try catalog.rotate(now: now, dryRun: false)
        #expect(second.actions.map(\.image) == [names[2], names[1]])
        #expect(second.skipped.map(\.image) == [names[0]])
        #expect(second.skipped[0].note.contains("app-"))
        #expect(try states(store) == ["DEPRECATED", "OBSOLETE", "OBSOLETE", "READY", "READY"])

        // Day 11+: deleted, with a purge date; gc before that date removes nothing.
        now += 2 * Self.day + 1
        _ = try catalog.rotate(now: now, dryRun: false)
        #expect(try states(store) == ["DEPRECATED", "DELETED", "DELETED", "READY", "READY"])
        #expect(try GarbageCollectorProbe.purgeable(store, now) == [])

        // Day 14+: purge date passed: gc frees base-2 and base-3's disks and nothing else.
        now += 3 * Self.day + 1
        let purgeable = try GarbageCollectorProbe.purgeable(store, now)
        #expect(Set(purgeable) == [names[1], names[2]])
        for name in purgeable {
            let image = try #require(try catalog.image(named: name))
            #expect(try !catalog.blobNeeded(image.digest, except: name))
            try FileManager.default.removeItem(atPath: store.blobDirectory(digest: image.digest))
            try catalog.markPurged(name)
        }
        #expect(try states(store) == ["DEPRECATED", "DELETED*", "DELETED*", "READY", "READY"])
        for index in [1, 4, 5] {
            #expect(FileManager.default.fileExists(atPath: store.blobDirectory(digest: "base\(index)")))
        }
        // base-1 needs its child gone first: the child's own rotation never touches a kept image.
        #expect(try catalog.blobNeeded("base1", except: names[0]))
    }

    @Test("the head, channel targets and pinned images are never rotated", arguments: CatalogBackend.allCases)
    func protectedImages(backend: CatalogBackend) throws {
        let (store, names) = try family(backend)
        defer { try? FileManager.default.removeItem(atPath: store.root) }
        try store.catalog.promote(names[1], channel: "prod", now: start)
        var pinned = draft("base", digest: "pinned")
        pinned.labels = ["pinned": "true"]
        let pin = try store.catalog.commit(pinned, at: start)
        let now = start.addingTimeInterval(100 * Self.day)
        for _ in 0..<6 {
            _ = try store.catalog.rotate(now: now.addingTimeInterval(Double(Int.random(in: 0...10)) * Self.day), dryRun: false)
        }
        #expect(try store.catalog.image(named: names[4])?.state == .ready)
        #expect(try store.catalog.image(named: names[3])?.state == .ready)
        #expect(try store.catalog.image(named: names[1])?.state == .ready)
        #expect(try store.catalog.image(named: pin.name)?.state == .ready)
        #expect(throws: KilnError.self) {
            try store.catalog.transition(pin.name, Transition(to: .deleted, reason: "by hand", actor: "t", now: now))
        }
        #expect(try store.catalog.image(named: names[2])?.state != .ready)
    }

    @Test(
        "a recorded policy lacking keys (an older kiln's) keeps its own keep; one the catalog cannot read stops the rotation, changing nothing",
        arguments: CatalogBackend.allCases)
    func policiesReadExactly(backend: CatalogBackend) throws {
        let store = try temporaryStore(backend)
        defer { try? FileManager.default.removeItem(atPath: store.root) }
        for index in 1...4 {
            var image = draft("kept", digest: "kept\(index)")
            // keep: 10, without the keys a later kiln added: the other keys take their defaults.
            image.policy = #"{"keep": 10, "obsoleteAfter": 86400}"#
            _ = try store.catalog.commit(image, at: start.addingTimeInterval(Double(index) * Self.day))
        }
        let later = start.addingTimeInterval(100 * Self.day)
        #expect(try store.catalog.rotate(now: later, dryRun: false).actions.isEmpty)
        #expect(try store.catalog.images().allSatisfy { $0.state == .ready })

        var broken = draft("kept", digest: "kept5")
        broken.policy = "{keep: 10"
        let newest = try store.catalog.commit(broken, at: start.addingTimeInterval(5 * Self.day))
        // do/catch, not the error #expect(throws:) returns: reading that value crashed the test
        // process now and then (Swift 6.3.1, Swift Testing).
        do {
            _ = try store.catalog.rotate(now: later, dryRun: false)
            Issue.record("a policy the catalog cannot read was rotated by")
        } catch let error as KilnError {
            #expect(error.message.contains("lifecycle policy of kept recorded with \(newest.name) cannot be read"), "\(error)")
        }
        #expect(try store.catalog.images().allSatisfy { $0.state == .ready })
    }

    @Test("labels the catalog cannot read fail the pinned guard instead of passing it", arguments: CatalogBackend.allCases)
    func unreadableLabelsAreNotUnpinned(backend: CatalogBackend) throws {
        let (store, names) = try family(backend)
        defer { try? FileManager.default.removeItem(atPath: store.root) }
        // A label whose value merely mentions "pinned" pins nothing.
        var noted = draft("base", digest: "noted")
        noted.labels = ["note": "pinned"]
        _ = try store.catalog.commit(noted, at: start)
        try store.catalog.db.write { db in
            try db.execute("UPDATE image SET labels = ? WHERE name = ?", [.text(#"{"pinned": "true""#), .text(names[0])])
        }
        let now = start.addingTimeInterval(100 * Self.day)
        do {
            _ = try store.catalog.rotate(now: now, dryRun: false)
            Issue.record("labels the catalog cannot read passed the pinned guard")
        } catch let error as KilnError {
            #expect(error.message.contains("labels of \(names[0]) cannot be read"), "\(error)")
        }
        #expect(throws: KilnError.self) {
            try store.catalog.transition(names[0], Transition(to: .deleted, reason: "by hand", actor: "t", now: now))
        }
        #expect(try store.catalog.image(named: names[0])?.state == .ready)
    }
}

/// gc's selection, read through the catalog (the blob removal itself is GarbageCollector's).
enum GarbageCollectorProbe {
    static func purgeable(_ store: Store, _ now: Date) throws -> [String] {
        try store.catalog.purgeable(now: now).map(\.name)
    }
}
