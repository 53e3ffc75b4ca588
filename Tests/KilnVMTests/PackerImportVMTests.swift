import Foundation
import KilnCore
import KilnTestSupport
import Testing

extension VMBuildTests {
    /// docs/from-packer.md's promise, for real: the HCL2 example imported as it is, built from a
    /// bootable disk (examples/debian's base, exported as a cloud image would be downloaded), and
    /// its steps' work found in the image.
    @Test(
        "examples/packer/debian.pkr.hcl, imported by kiln import packer, builds for real: its steps' files are in the image, its sensitive value in no log"
    )
    func importedPackerTemplateBuilds() async throws {
        let dir = try await exampleAndScratchDirectory("packer")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let store = SharedStore.shared
        try FileManager.default.removeItem(atPath: dir)
        try FileManager.default.copyItem(atPath: Repo.root + "/examples/packer", toPath: dir)
        let base = try #require(try await store.image("debian-12-base")["name"] as? String)
        let disk = dir + "/debian-12.qcow2"
        let export = try await store.kiln(["export", base, "--format", "qcow2", "--output", disk])
        try #require(export.status == 0, "\(export.stderr)")
        let sha = try Hashing.sha256Hex(fileAt: disk)

        // No store option: the import reads and writes templates only.
        let imported = try await KilnBinary.run([
            "import", "packer", dir + "/debian.pkr.hcl", "--family", "packer-debian", "--output", dir + "/",
        ])
        try #require(imported.status == 0, "\(imported.stderr)")
        // The Packer template's own files sit beside it: the kiln template is written there too.
        let build = try await store.kiln([
            "build", dir + "/packer-debian.yaml", "--var", "disk=\(disk)", "--var", "disk_checksum=sha256:\(sha)",
            "--var", "release=2.5",
        ])
        try #require(build.status == 0, "\(build.stderr.suffix(3000))")
        let name = try #require(try await store.image("packer-debian")["name"] as? String)

        let tree = dir + "/image.tar.zst"
        #expect(try await store.kiln(["export", name, "--format", "tar.zst", "--output", tree]).status == 0)
        func file(_ path: String) async throws -> String {
            try await ProcessRunner.check("tar", ["--zstd", "-xOf", tree, path]).stdout
        }
        #expect(try await file("etc/motd") == "Built from a Packer template\n", "the first inline step, its local substituted")
        #expect(try await file("etc/shop/release") == "release 2.5\n", "the script step with environment_vars from --var")
        #expect(try await file("etc/shop/shop.conf") == "listen = 8080\n", "the file provisioner")
        let log = try await store.kiln(["logs", name]).stdout
        #expect(log.contains("built on the host"), "the shell-local step ran")
        #expect(!log.contains("not-a-real-token"), "the sensitive variable stays out of the log")
    }
}
