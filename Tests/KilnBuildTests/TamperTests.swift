import Foundation
import KilnCore
import KilnExport
import KilnModel
import KilnStore
import Testing

@testable import KilnBuild

/// Bytes changed in the store after sealing: `kiln verify` is the one check that export,
/// `kiln sign` and a build on a parent all make first, so none of them vouches for them.
@Suite("Tampered blobs and stripped signatures (fake provider, real qcow2 overlays)")
struct TamperTests {
    /// A signed build of Workspace's base and app.
    static func signedBuild() async throws -> (Workspace, [ImageRecord], SigningKey) {
        let workspace = try Workspace()
        let key = SigningKey.generate()
        try FileManager.default.createDirectory(atPath: workspace.store.keysDirectory, withIntermediateDirectories: true)
        try key.publicKey.line.write(toFile: workspace.store.keysDirectory + "/kiln.pub", atomically: true, encoding: .utf8)
        var options = BuildOptions()
        options.signingKey = key
        let (set, graph) = try workspace.graph()
        let builder = Builder(store: workspace.store, provider: FakeProvider(), options: options, reporter: nil)
        let images = try await builder.build(graph, secrets: set.sensitiveValues).map(\.image)
        return (workspace, images, key)
    }

    static func tamper(_ path: String) throws {
        try FileManager.default.setAttributes([.posixPermissions: 0o644], ofItemAtPath: path)
        let handle = try #require(FileHandle(forUpdatingAtPath: path))
        try handle.seekToEnd()
        try handle.write(contentsOf: Data("tampered".utf8))
        try handle.close()
        try FileManager.default.setAttributes([.posixPermissions: 0o444], ofItemAtPath: path)
    }

    @Test("export of an image whose blob (or a blob under it) changed fails and writes no artifact, no provenance, no signature")
    func exportRefusesTamperedBytes() async throws {
        let (workspace, images, key) = try await Self.signedBuild()
        defer { workspace.remove() }
        let store = workspace.store
        let exporter = Exporter(store: store, log: { _ in })
        // Untouched, it exports and its sidecars verify.
        let good = workspace.dir + "/good.qcow2"
        let result = try await exporter.export(images[1], format: .qcow2, to: good)
        _ = try ExportSidecars.write(result, image: images[1], store: store, key: key)
        #expect(try ExportSidecars.verify(good, trusted: [key.publicKey]).problems.isEmpty)

        // The base's blob changes: the app stands on it, so the app is not exported either.
        try Self.tamper(store.diskPath(of: images[0]))
        for image in images {
            let output = workspace.dir + "/\(image.family).qcow2"
            await #expect {
                _ = try await exporter.export(image, format: .qcow2, to: output)
            } throws: { error in
                "\(error)".contains("fails verification") && "\(error)".contains("blob damaged")
            }
            #expect(!FileManager.default.fileExists(atPath: output))
            #expect(!FileManager.default.fileExists(atPath: output + ".partial"))
        }
    }

    @Test(
        "a signed image whose provenance and signature were deleted is damaged, not unsigned: verify fails, export and a child build refuse"
    )
    func strippedSignature() async throws {
        let (workspace, images, key) = try await Self.signedBuild()
        defer { workspace.remove() }
        let store = workspace.store
        try FileManager.default.removeItem(atPath: store.signaturePath(of: images[0].name))
        try FileManager.default.removeItem(atPath: store.provenancePath(of: images[0].name))
        let report = try await Verifier.run(store, name: images[0].name, trusted: [key.publicKey])
        let problems = report.results.flatMap(\.problems)
        #expect(
            problems.contains { $0.contains("was signed by key \(key.publicKey.id)") && $0.contains("the record is gone") }, "\(problems)")
        await #expect(throws: KilnError.self) {
            _ = try await Exporter(store: store, log: { _ in }).export(images[0], format: .raw, to: workspace.dir + "/x.raw")
        }
        // The export did not make a fresh record from the row to sign.
        #expect(store.provenanceData(of: images[0].name) == nil)
        // A rebuild of the child on it refuses to boot.
        let (set, graph) = try workspace.graph()
        var options = BuildOptions()
        options.signingKey = key
        let builder = Builder(store: store, provider: FakeProvider(), options: options, reporter: nil)
        await #expect {
            _ = try await builder.build(graph, secrets: set.sensitiveValues, force: true, selected: ["app"])
        } throws: { error in
            "\(error)".contains("fails verification")
        }
    }

    @Test("a signature by a key kiln neither trusts nor signs with does not pass the check")
    func untrustedKey() async throws {
        let (workspace, images, _) = try await Self.signedBuild()
        defer { workspace.remove() }
        try FileManager.default.removeItem(atPath: workspace.store.keysDirectory + "/kiln.pub")
        // Now no key is trusted and no signing key is configured: the signature cannot be checked.
        await #expect(throws: KilnError.self) {
            _ = try await Exporter(store: workspace.store, log: { _ in }).export(images[0], format: .raw, to: workspace.dir + "/x.raw")
        }
    }
}
