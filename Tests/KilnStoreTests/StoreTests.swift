import Foundation
import KilnCore
import KilnModel
import KilnTestSupport
import Testing

@testable import KilnStore

func draft(_ family: String, digest: String = "d", parent: String? = nil, build: String = "b") -> ImageDraft {
    ImageDraft(
        family: family, digest: digest, parent: parent, labels: ["k": "v"], description: nil, templateHash: "t",
        size: 1, log: "logs/x.tar.zst", buildID: build, sourceKind: "debootstrap")
}

@Suite("Store and catalog")
struct StoreTests {
    @Test("versions count up per family and day; the family resolves to its newest READY image", arguments: CatalogBackend.allCases)
    func versioning(backend: CatalogBackend) throws {
        let store = try temporaryStore(backend)
        defer { try? FileManager.default.removeItem(atPath: store.root) }
        let day = ISO8601DateFormatter().date(from: "2026-11-23T10:00:00Z")!
        let first = try store.catalog.commit(draft("web"), at: day)
        let second = try store.catalog.commit(draft("web", parent: nil), at: day.addingTimeInterval(60))
        let other = try store.catalog.commit(draft("db"), at: day)
        let nextDay = try store.catalog.commit(draft("web"), at: day.addingTimeInterval(86_400))
        #expect(first.name == "web-v20261123-1")
        #expect(second.name == "web-v20261123-2")
        #expect(other.name == "db-v20261123-1")
        #expect(nextDay.name == "web-v20261124-1")
        #expect(try store.catalog.head(of: "web")?.name == "web-v20261124-1")
        #expect(try store.catalog.image(named: "web-v20261123-1")?.labelDictionary == ["k": "v"])
        #expect(try store.catalog.families() == ["web", "db"])
    }

    @Test("a child must name an existing parent", arguments: CatalogBackend.allCases)
    func parentMustExist(backend: CatalogBackend) throws {
        let store = try temporaryStore(backend)
        defer { try? FileManager.default.removeItem(atPath: store.root) }
        #expect(throws: (any Error).self) { try store.catalog.commit(draft("child", parent: "no-such-image")) }
        #expect(try store.catalog.images().isEmpty)
    }

    @Test("sealing hashes the disk, makes it read-only and moves it under its digest")
    func seal() throws {
        let store = try temporaryStore()
        defer { try? FileManager.default.removeItem(atPath: store.root) }
        let staging = store.stagingDirectory(buildID: "b1")
        try FileManager.default.createDirectory(atPath: staging, withIntermediateDirectories: true)
        try Data("disk bytes".utf8).write(to: URL(fileURLWithPath: staging + "/disk.qcow2"))
        // Announced before the blob appears, so a recovery can find a blob killed before it was named.
        let announced = Locked<[String]>([])
        let (digest, _) = try store.seal(staging: staging) { digest in
            #expect(!FileManager.default.fileExists(atPath: store.blobDirectory(digest: digest)))
            announced.withLock { $0.append(digest) }
        }
        #expect(announced.value == [digest])
        #expect(digest == Hashing.sha256Hex("disk bytes"))
        let disk = store.blobDirectory(digest: digest) + "/disk.qcow2"
        #expect(FileManager.default.contents(atPath: disk) == Data("disk bytes".utf8))
        let mode = try FileManager.default.attributesOfItem(atPath: disk)[.posixPermissions] as? Int
        #expect(mode == 0o444)
        #expect(!FileManager.default.fileExists(atPath: staging))
    }

    @Test("log archives are zstd tarballs that read back entry by entry")
    func logArchive() async throws {
        let dir = NSTemporaryDirectory() + "kiln-log-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let text = (1...2000).map { "line \($0)" }.joined(separator: "\n")
        try text.write(toFile: dir + "/build.log", atomically: true, encoding: .utf8)
        try LogArchive.write([("build.log", dir + "/build.log")], to: dir + "/logs.tar.zst")
        #expect(try LogArchive.entries(of: dir + "/logs.tar.zst") == ["build.log"])
        #expect(try LogArchive.read(dir + "/logs.tar.zst", entry: "build.log") == Data(text.utf8))
        #expect(try LogArchive.read(dir + "/logs.tar.zst", entry: "other") == nil)
        // The archive is a real .tar.zst that other tools read.
        let listing = try await ProcessRunner.check("tar", ["--zstd", "-tf", dir + "/logs.tar.zst"])
        #expect(listing.stdout == "build.log\n")
    }
}
