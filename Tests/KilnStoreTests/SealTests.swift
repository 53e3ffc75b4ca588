import Foundation
import KilnCore
import KilnModel
import KilnTestSupport
import Testing

@testable import KilnStore

/// Sealing a staging directory a provider (a plugin) filled: kiln hashes, syncs and makes
/// read-only what it holds, and must never do so through a link to a file elsewhere.
@Suite("Sealing never follows links out of the blob")
struct SealTests {
    @Test("a symbolic link or a directory among a snapshot's files fails the seal; the link's target keeps its mode")
    func linksRefused() throws {
        let store = try temporaryStore(.sqlite)
        defer { try? FileManager.default.removeItem(atPath: store.root) }
        let outside = store.root + "/host-file"
        try "host".write(toFile: outside, atomically: true, encoding: .utf8)
        try FileManager.default.setAttributes([.posixPermissions: 0o600], ofItemAtPath: outside)
        for hostile in ["link", "directory"] {
            let staging = store.stagingDirectory(buildID: "seal-\(hostile)")
            try FileManager.default.createDirectory(atPath: staging, withIntermediateDirectories: true)
            try #"{"provider": "plugin"}"#.write(toFile: staging + "/" + ProviderArtifact.fileName, atomically: true, encoding: .utf8)
            if hostile == "link" {
                try FileManager.default.createSymbolicLink(atPath: staging + "/disk.img", withDestinationPath: outside)
            } else {
                try FileManager.default.createDirectory(atPath: staging + "/tree", withIntermediateDirectories: true)
            }
            #expect(throws: KilnError.self) { _ = try store.seal(staging: staging) }
            let mode = try FileManager.default.attributesOfItem(atPath: outside)[.posixPermissions] as? Int
            #expect(mode == 0o600)
            #expect(try FileManager.default.contentsOfDirectory(atPath: store.imagesDirectory).allSatisfy { $0.hasPrefix(".tmp-") })
        }
    }
}

/// Everything in a blob is covered by its address: a disk blob with its kernel and initrd
/// beside it is addressed by `blob.json`, which lists each file's SHA-256. Before, the digest
/// was the disk's alone, and a planted vmlinuz passed `kiln verify` and was booted by a child.
@Suite("A blob's kernel and initrd are covered by its digest")
struct BlobManifestTests {
    func staging(_ store: Store, _ id: String) throws -> String {
        let staging = store.stagingDirectory(buildID: id)
        try FileManager.default.createDirectory(atPath: staging, withIntermediateDirectories: true)
        for (name, text) in [(ImageFiles.disk, "disk bytes"), (ImageFiles.kernel, "kernel bytes"), (ImageFiles.initrd, "initrd bytes")] {
            try text.write(toFile: staging + "/" + name, atomically: true, encoding: .utf8)
        }
        return staging
    }

    @Test("the digest is blob.json's, which lists every file; a planted or changed kernel, or an unlisted file, fails the check")
    func covered() async throws {
        let store = try temporaryStore(.sqlite)
        defer { try? FileManager.default.removeItem(atPath: store.root) }
        let (digest, _) = try store.seal(staging: try staging(store, "m"))
        let blob = store.blobDirectory(digest: digest)
        #expect(try Hashing.sha256Hex(fileAt: blob + "/" + ImageFiles.manifest) == digest)
        let manifest = try #require(try BlobManifest.read(from: blob))
        #expect(manifest.files[ImageFiles.kernel] == Hashing.sha256Hex(Data("kernel bytes".utf8)))
        #expect(Set(manifest.files.keys) == [ImageFiles.disk, ImageFiles.kernel, ImageFiles.initrd])
        try Store(root: store.root).verifyBlob(digest)

        let kernel = blob + "/" + ImageFiles.kernel
        try FileManager.default.setAttributes([.posixPermissions: 0o644], ofItemAtPath: kernel)
        try "a planted kernel".write(toFile: kernel, atomically: false, encoding: .utf8)
        #expect(throws: KilnError.self) { try Store(root: store.root).verifyBlob(digest) }
        let problems = await Verifier.checkBlob(try Store(root: store.root), digest: digest, expectedBacking: nil)
        #expect(problems.contains { $0.contains("vmlinuz is damaged") }, "\(problems)")

        // A file no manifest lists is outside the address: refused too.
        try "extra".write(toFile: blob + "/extra.bin", atomically: true, encoding: .utf8)
        #expect(throws: KilnError.self) { try Store.checkArtifactFiles(in: blob) }
    }

    @Test("a disk blob without files beside it keeps the disk's own digest")
    func diskAlone() throws {
        let store = try temporaryStore(.sqlite)
        defer { try? FileManager.default.removeItem(atPath: store.root) }
        let staging = store.stagingDirectory(buildID: "d")
        try FileManager.default.createDirectory(atPath: staging, withIntermediateDirectories: true)
        try "only a disk".write(toFile: staging + "/" + ImageFiles.disk, atomically: true, encoding: .utf8)
        let (digest, _) = try store.seal(staging: staging)
        #expect(digest == Hashing.sha256Hex(Data("only a disk".utf8)))
        #expect(!FileManager.default.fileExists(atPath: store.blobDirectory(digest: digest) + "/" + ImageFiles.manifest))
    }
}

@Suite("A new SQLite catalog opened by several processes at once")
struct ConcurrentMigrationTests {
    @Test("eight processes open one new store together: every one migrates or finds it migrated, none fails")
    func concurrentOpen() async throws {
        let dir = NSTemporaryDirectory() + "kiln-migrate-" + UUID().uuidString
        defer { try? FileManager.default.removeItem(atPath: dir) }
        for round in 0..<3 {
            let home = dir + "/home-\(round)"
            let results = try await withThrowingTaskGroup(of: ProcessResult.self) { group in
                for _ in 0..<8 { group.addTask { try await KilnBinary.run(["images", "--home", home]) } }
                return try await group.reduce(into: []) { $0.append($1) }
            }
            #expect(results.allSatisfy { $0.status == 0 }, "\(results.map(\.stderr))")
        }
    }
}
