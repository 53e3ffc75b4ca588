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

        let wouldGo = try SourceCache.prune(store, limit: 0, dryRun: true)
        #expect(wouldGo.map(\.description) == ["an old source", "abc"])
        #expect(FileManager.default.fileExists(atPath: unused))
        // A limit that the in-use disk alone fits under removes only the oldest unused entry.
        let total = entries.reduce(0) { $0 + $1.bytes }
        let removed = try SourceCache.prune(store, limit: total - 1)
        #expect(removed.map(\.description) == ["an old source"])
        #expect(!FileManager.default.fileExists(atPath: unused))
        #expect(try store.catalog.sources().map(\.key) != ["old"])
        try SourceCache.prune(store, limit: 0)
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
}
