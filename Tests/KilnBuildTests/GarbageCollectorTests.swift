import Foundation
import KilnCore
import KilnModel
import Testing

@testable import KilnBuild
@testable import KilnStore

@Suite("Garbage collection")
struct GarbageCollectorTests {
    @Test("gc frees exactly the disks of purgeable images and the leftovers of dead builds")
    func collects() async throws {
        let store = try Store(root: NSTemporaryDirectory() + "kiln-gc-" + UUID().uuidString)
        defer { try? FileManager.default.removeItem(atPath: store.root) }
        let start = ISO8601DateFormatter().date(from: "2026-11-01T00:00:00Z")!
        func commit(_ family: String, _ digest: String, parent: String? = nil, at offset: Double) throws -> ImageRecord {
            let image = try store.catalog.commit(
                ImageDraft(
                    family: family, digest: digest, parent: parent, labels: [:], description: nil, templateHash: "", size: 0,
                    log: "", buildID: digest, sourceKind: "file", backingDigest: nil),
                at: start.addingTimeInterval(offset))
            let blob = store.blobDirectory(digest: digest)
            try FileManager.default.createDirectory(atPath: blob, withIntermediateDirectories: true)
            try Data(repeating: 1, count: 8192).write(to: URL(fileURLWithPath: blob + "/disk.qcow2"))
            return image
        }
        let old = try commit("web", "w1", at: 0)
        let head = try commit("web", "w2", at: 60)
        let child = try commit("shop", "s1", parent: old.name, at: 120)
        var delete = Transition(to: .deleted, reason: "test", actor: "t", now: start)
        delete.purgeOn = start.addingTimeInterval(86_400)
        delete.cascade = true
        try store.catalog.transition(old.name, delete)
        try FileManager.default.createDirectory(atPath: store.stagingDirectory(buildID: "dead"), withIntermediateDirectories: true)
        try FileManager.default.createDirectory(atPath: store.scratchDirectory(buildID: "dead"), withIntermediateDirectories: true)

        // Before the purge date: only the dead build's leftovers go.
        let early = try await GarbageCollector.run(store, now: start, dryRun: true, cacheLimit: 1 << 40)
        #expect(early.purged.isEmpty)
        #expect(early.staleDirectories.count == 2)

        let later = start.addingTimeInterval(2 * 86_400)
        let preview = try await GarbageCollector.run(store, now: later, dryRun: true, cacheLimit: 1 << 40)
        #expect(preview.purged == [child.name])  // the parent waits for its child's disk to go first
        #expect(FileManager.default.fileExists(atPath: store.blobDirectory(digest: "s1")), "a dry run removed something")

        let first = try await GarbageCollector.run(store, now: later, dryRun: false, cacheLimit: 1 << 40)
        #expect(first.purged == [child.name])
        let second = try await GarbageCollector.run(store, now: later, dryRun: false, cacheLimit: 1 << 40)
        #expect(second.purged == [old.name])
        #expect(!FileManager.default.fileExists(atPath: store.blobDirectory(digest: "s1")))
        #expect(!FileManager.default.fileExists(atPath: store.blobDirectory(digest: "w1")))
        #expect(FileManager.default.fileExists(atPath: store.blobDirectory(digest: head.digest)))
        #expect(!FileManager.default.fileExists(atPath: store.stagingDirectory(buildID: "dead")))
        #expect(try store.catalog.image(named: old.name)?.purged == true)
        #expect(try await GarbageCollector.run(store, now: later, dryRun: false, cacheLimit: 1 << 40).purged.isEmpty)
    }
}
