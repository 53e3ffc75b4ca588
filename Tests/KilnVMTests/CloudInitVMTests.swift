import Foundation
import KilnCore
import KilnTestSupport
import Testing

extension VMBuildTests {
    /// The third-party-disk path (docs/images.md): a disk kiln did not make boots through its
    /// own boot loader, and if it runs cloud-init the build key reaches it in a NoCloud seed.
    /// The disk here is one of kiln's own exports with cloud-init, as a cloud image would be.
    @Test(
        "a cloud-init image exported as qcow2 builds as from: {file:} through a NoCloud seed, and what it makes boots with a seed from cloud-localds"
    )
    func fileSourceThroughNoCloud() async throws {
        let dir = try await exampleAndScratchDirectory("nocloud")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let store = SharedStore.shared
        try FileManager.default.createDirectory(atPath: dir + "/cloud", withIntermediateDirectories: true)
        try FileManager.default.createDirectory(atPath: dir + "/imported", withIntermediateDirectories: true)
        try """
        image: kiln-test-cloud-base
        from:
          debootstrap: {suite: bookworm, variant: minbase, cloud_init: true}
        provision:
          - shell: echo cloud > /etc/kiln-cloud-base
        """.write(toFile: dir + "/cloud/base.yaml", atomically: true, encoding: .utf8)
        let base = try await store.kiln(["build", dir + "/cloud"])
        try #require(base.status == 0, "\(base.stderr.suffix(3000))")
        let cloudName = try #require(try await store.image("kiln-test-cloud-base")["name"] as? String)
        let exported = dir + "/cloud.qcow2"
        let export = try await store.kiln(["export", cloudName, "--format", "qcow2", "--output", exported])
        try #require(export.status == 0, "\(export.stderr)")
        let sha = try await ProcessRunner.check("sha256sum", [exported]).stdout.prefix(64)

        try """
        image: kiln-test-from-file
        from:
          file: {path: ../cloud.qcow2, sha256: \(sha)}
        provision:
          - shell: |
              set -e
              test "$(cat /etc/kiln-cloud-base)" = cloud
              cloud-init status --wait --long
              echo imported > /etc/kiln-imported
        """.write(toFile: dir + "/imported/disk.yaml", atomically: true, encoding: .utf8)
        let build = try await store.kiln(["build", dir + "/imported"])
        try #require(build.status == 0, "\(build.stderr.suffix(3000))")
        let importedName = try #require(try await store.image("kiln-test-from-file")["name"] as? String)
        let log = try await store.kiln(["logs", importedName]).stdout
        #expect(log.contains("NoCloud seed"), "kiln said how the key travels")
        #expect(log.contains("DataSourceNoCloud"), "the guest's cloud-init read kiln's seed:\n\(log.suffix(3000))")

        // As a cloud starts it: an 8 GiB disk, a seed made by cloud-localds, no credential.
        let product = dir + "/imported.qcow2"
        let productExport = try await store.kiln(["export", importedName, "--format", "qcow2", "--output", product])
        try #require(productExport.status == 0, "\(productExport.stderr)")
        let key = try await FirmwareVM.makeKey(in: dir)
        let publicKey = try String(contentsOfFile: key + ".pub", encoding: .utf8)
        try "#cloud-config\nssh_authorized_keys:\n  - \(publicKey)".write(toFile: dir + "/user-data", atomically: true, encoding: .utf8)
        try "instance-id: test-1\nlocal-hostname: shop\n".write(toFile: dir + "/meta-data", atomically: true, encoding: .utf8)
        try await ProcessRunner.check("cloud-localds", [dir + "/seed.img", dir + "/user-data", dir + "/meta-data"])
        let disk = dir + "/instance.qcow2"
        try await ProcessRunner.check("qemu-img", ["create", "-q", "-f", "qcow2", "-b", product, "-F", "qcow2", disk, "8G"])
        let vm = try await FirmwareVM(
            disk: disk, firmware: .ovmf, key: key, user: "debian", credential: false,
            extraDrives: ["file=\(dir)/seed.img,if=virtio,format=raw,readonly=on"])
        do {
            try await vm.waitForSSH()
            _ = try? await vm.ssh("cloud-init status --wait", timeout: .seconds(300))
            let checks = try await vm.ssh(
                "cat /etc/kiln-imported /etc/kiln-cloud-base; hostname; df -B1 --output=size / | tail -1; sudo -n cat /etc/machine-id; sudo -n sh -c 'cat /root/.ssh/authorized_keys /home/*/.ssh/authorized_keys 2>/dev/null' | grep -c kiln-build || true"
            )
            let lines = checks.stdout.split(separator: "\n").map { $0.trimmingCharacters(in: .whitespaces) }
            #expect(checks.status == 0, "\(checks.stderr)")
            #expect(lines.count == 6, "\(checks.stdout)")
            if lines.count == 6 {
                #expect(lines[0] == "imported" && lines[1] == "cloud")
                #expect(lines[2] == "shop", "the hostname came from the seed's meta-data")
                #expect((Int64(lines[3]) ?? 0) > 7 << 30, "the root grew: \(lines[3])")
                #expect(lines[4].count == 32)
                #expect(lines[5] == "0", "no build key (comment kiln-build-ID) stayed in the image for any account")
            }
        } catch {
            await vm.stop()
            throw error
        }
        await vm.stop()
    }
}
