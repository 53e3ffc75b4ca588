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
