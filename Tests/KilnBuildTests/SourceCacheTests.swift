import Foundation
import KilnCore
import KilnModel
import KilnStore
import Testing

@testable import KilnBuild

@Suite("Source cache")
struct SourceCacheTests {
    @Test("prune removes unused entries oldest first down to the limit and never a disk an image is built on")
    func prune() async throws {
        let workspace = try Workspace()
        defer { workspace.remove() }
        let store = workspace.store
        let (set, graph) = try workspace.graph()
        let builder = Builder(store: store, provider: FakeProvider(), options: BuildOptions(), reporter: nil)
        let images = try await builder.build(graph, secrets: set.sensitiveValues).map(\.image)
        // An unused source disk and a download, older than the one in use.
        let unused = store.blobDirectory(digest: "feed")
        try FileManager.default.createDirectory(atPath: unused, withIntermediateDirectories: true)
        try Data(repeating: 1, count: 1 << 20).write(to: URL(fileURLWithPath: unused + "/disk.qcow2"))
        try store.catalog.recordSource(key: "old", digest: "feed", description: "an old source")
        try store.catalog.markSourceUsed(key: "old", at: Date(timeIntervalSinceNow: -86_400))
        try FileManager.default.createDirectory(atPath: store.cacheDirectory + "/downloads", withIntermediateDirectories: true)
        try Data(repeating: 2, count: 1 << 20).write(to: URL(fileURLWithPath: store.cacheDirectory + "/downloads/abc"))

        let entries = try SourceCache.entries(in: store)
        #expect(entries.count == 3)
        let inUse = try #require(entries.first { $0.inUse })
        #expect(inUse.path == store.blobDirectory(digest: try #require(images[0].backingDigest)))

        let wouldGo = try await SourceCache.prune(store, limit: 0, dryRun: true)
        #expect(wouldGo.map(\.description) == ["an old source", "abc"])
        #expect(FileManager.default.fileExists(atPath: unused))
        // A limit that the in-use disk alone fits under removes only the oldest unused entry.
        let total = entries.reduce(0) { $0 + $1.bytes }
        let removed = try await SourceCache.prune(store, limit: total - 1)
        #expect(removed.map(\.description) == ["an old source"])
        #expect(!FileManager.default.fileExists(atPath: unused))
        #expect(try store.catalog.sources().map(\.key) != ["old"])
        try await SourceCache.prune(store, limit: 0)
        #expect(try SourceCache.entries(in: store).map(\.inUse) == [true])
        #expect(FileManager.default.fileExists(atPath: inUse.path))
    }

    @Test("a damaged cached source disk is detected by its digest and made again")
    func damaged() async throws {
        let workspace = try Workspace()
        defer { workspace.remove() }
        let store = workspace.store
        let (set, graph) = try workspace.graph()
        let builder = Builder(store: store, provider: FakeProvider(), options: BuildOptions(), reporter: nil)
        let first = try await builder.build(graph, secrets: set.sensitiveValues).map(\.image)
        let disk = store.blobDirectory(digest: try #require(first[0].backingDigest)) + "/disk.qcow2"
        try FileManager.default.setAttributes([.posixPermissions: 0o644], ofItemAtPath: disk)
        let handle = try #require(FileHandle(forWritingAtPath: disk))
        try handle.write(contentsOf: Data("bit rot".utf8))
        try handle.close()
        let again = try await builder.build(graph, secrets: set.sensitiveValues, force: true).map(\.image)
        let log = try #require(try LogArchive.read(store.absolute(again[0].log), entry: "build.log"))
        #expect(String(decoding: log, as: UTF8.self).contains("is missing or damaged; making it again"))
        // A file source converts to the same bytes: the damaged blob is replaced under its name.
        #expect(again[0].backingDigest == first[0].backingDigest)
        let rebuilt = store.blobDirectory(digest: try #require(again[0].backingDigest)) + "/disk.qcow2"
        #expect(try Hashing.sha256Hex(fileAt: rebuilt) == again[0].backingDigest)
    }

    @Test("gc and the cache prune during a build leave the source disk it stands on; a lease lapses with its build")
    func leases() async throws {
        let workspace = try Workspace()
        defer { workspace.remove() }
        let store = workspace.store
        let flag = workspace.dir + "/flag"
        let base = try String(contentsOfFile: workspace.dir + "/t/base.yaml", encoding: .utf8)
        try base.replacingOccurrences(
            of: "  - shell: echo base",
            with: "  - shell-local: touch \(flag).started; while [ ! -e \(flag).go ]; do sleep 0.05; done"
        ).write(toFile: workspace.dir + "/t/base.yaml", atomically: true, encoding: .utf8)
        let (set, graph) = try workspace.graph()
        let builder = Builder(store: store, provider: FakeProvider(), options: BuildOptions(), reporter: nil)
        let build = Task { try await builder.build(graph, secrets: set.sensitiveValues) }
        let deadline = ContinuousClock.now + .seconds(120)
        while !FileManager.default.fileExists(atPath: flag + ".started") {
            guard ContinuousClock.now < deadline else { break }
            try await Task.sleep(for: .milliseconds(50))
        }
        // While it runs, the build's scratch space (its SSH key, scripts, uploads) and its staging
        // disk (the guest's host key) are private to kiln's user.
        let running =
            try FileManager.default.contentsOfDirectory(atPath: store.root + "/builds").map { store.root + "/builds/" + $0 }
            + FileManager.default.contentsOfDirectory(atPath: store.imagesDirectory).filter { $0.hasPrefix(".tmp-") }
            .map { store.imagesDirectory + "/" + $0 }
        #expect(running.count >= 2)
        for directory in running {
            let mode = try #require(try FileManager.default.attributesOfItem(atPath: directory)[.posixPermissions] as? Int)
            #expect(mode & 0o077 == 0, "\(directory) has mode \(String(mode, radix: 8))")
        }
        // The base's VM stands on its source disk, which no image names yet: only its lease keeps it.
        let pruned = try await SourceCache.prune(store, limit: 0)
        let collected = try await GarbageCollector.run(store, now: Date(), dryRun: false, cacheLimit: 0)
        FileManager.default.createFile(atPath: flag + ".go", contents: nil)
        let images = try await build.value.map(\.image)
        #expect(pruned.isEmpty && collected.cache.isEmpty, "\(pruned) \(collected.cache)")
        let source = try #require(images[0].backingDigest)
        #expect(try Hashing.sha256Hex(fileAt: store.blobDirectory(digest: source) + "/disk.qcow2") == source)

        // A lease held by a build that is not running (its kiln died) protects nothing.
        try store.catalog.insert(BuildRecord(id: "dead", family: "base", status: .running, started: Date(), pid: Int32.max))
        try await store.withBlobLock { try store.lease([Store.blobResource("feed")], buildID: "dead") }
        #expect(try !store.leasedResources().contains(Store.blobResource("feed")))
    }
}
