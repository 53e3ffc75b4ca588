import Foundation
import KilnCore
import Testing

@testable import KilnBuild

/// The host half of a bootable base (docs/images.md): mmdebstrap's customize hook, run on a
/// small stand-in tree, and the disk it writes, read back by sfdisk, e2fsck and debugfs. The
/// boot loaders and real boots are the VM tests' (BootVMTests).
@Suite("Bootable disk layout (sfdisk, mkfs.ext4 at an offset)")
struct BootableDiskTests {
    /// The recipe's text is what every source disk is made by; a cached source disk is reused
    /// while its identity (which carries `recipeVersion`, not the text) is unchanged. So a change
    /// to the text without a new version would keep serving disks made the old way. A change
    /// that alters what a disk contains bumps the version; one that does not (a message on a
    /// failure path) is pinned again under the same version, deliberately.
    @Test(
        "the source disk recipe's text is pinned to its version: changing the hook or the installer means bumping SourceDisk.recipeVersion")
    func recipeIsPinnedToItsVersion() {
        let pinned = ["5": "5aa1d7ba6bac90b5ac40265e33ed8789c8ddbf04f18f2d671e4432015eacdedf"]
        let fingerprint = Hashing.sha256Hex(SourceDisk.customizeHook + BootableDisk.installer)
        #expect(
            pinned[SourceDisk.recipeVersion] == fingerprint,
            "the recipe changed (\(fingerprint)): bump SourceDisk.recipeVersion and pin the new text here")
    }

    @Test("the hook writes a GPT disk (BIOS boot, ESP, x86-64 root) whose root filesystem is clean and is the one fstab and grub.cfg name")
    func layout() async throws {
        let dir = NSTemporaryDirectory() + "kiln-layout-" + UUID().uuidString
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let fm = FileManager.default
        let hook = try await runHook(in: dir, diskSize: 300 << 20)
        #expect(hook.status == 0, "\(hook.stderr)")
        let disk = dir + "/disk.raw"
        #expect(try fm.attributesOfItem(atPath: disk)[.size] as? Int == 300 << 20)

        let table = try await ProcessRunner.check("sfdisk", ["--json", disk]).stdout
        let json = try #require(try JSONSerialization.jsonObject(with: Data(table.utf8)) as? [String: Any])
        let partitionTable = try #require(json["partitiontable"] as? [String: Any])
        #expect(partitionTable["label"] as? String == "gpt")
        let partitions = try #require(partitionTable["partitions"] as? [[String: Any]])
        #expect(
            partitions.map { ($0["type"] as? String)?.uppercased() } == [
                "21686148-6449-6E6F-744E-656564454649", "C12A7328-F81F-11D2-BA4B-00A0C93EC93B", "4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709",
            ])
        #expect(partitions.map { $0["start"] as? Int } == [2048, 4096, 135_168])
        let rootSectors = try #require(partitions.last?["size"] as? Int)
        #expect((135_168 + rootSectors) * 512 <= (300 << 20) - (1 << 20), "the backup GPT's last MiB is left alone")

        let filesystem = disk + "?offset=\(135_168 * 512)"
        let fsck = try await ProcessRunner.run("e2fsck", ["-fn", filesystem])
        #expect(fsck.status == 0, "\(fsck.stdout)\(fsck.stderr)")
        let superblock = try await ProcessRunner.check("dumpe2fs", ["-h", filesystem]).stdout
        let uuid = try #require(
            superblock.split(separator: "\n").first { $0.hasPrefix("Filesystem UUID:") }?.split(separator: " ").last.map(String.init))
        func field(_ name: String) -> Int? {
            superblock.split(separator: "\n").first { $0.hasPrefix(name + ":") }?.split(separator: " ").last.flatMap { Int($0) }
        }
        let blocks = try #require(field("Block count")), blockSize = try #require(field("Block size"))
        #expect(blocks * blockSize == rootSectors * 512, "the filesystem fills its partition")
        func cat(_ path: String) async throws -> String {
            try await ProcessRunner.check("debugfs", ["-R", "cat \(path)", filesystem]).stdout
        }
        #expect(try await cat("/etc/fstab").contains("UUID=\(uuid) / ext4"))
        let grub = try await cat("/boot/grub/grub.cfg")
        #expect(grub.contains("search --no-floppy --fs-uuid --set=root \(uuid)") && grub.contains("root=UUID=\(uuid) ro"))
        #expect(grub.contains("console=ttyS0,115200") && !grub.contains("systemd.mask"))
        let installer = try await cat(BootableDisk.installerPath)
        #expect(installer.contains("grub-install --target=i386-pc /dev/vda") && !installer.contains("@ESP_ID@"))
        let espID = try #require(installer.range(of: "-n ESP -i ").map { installer[$0.upperBound...].prefix(8) })
        #expect(espID.count == 8 && espID.allSatisfy(\.isHexDigit), "\(espID)")
        #expect(try await cat("/etc/fstab").contains("UUID=\(espID.prefix(4))-\(espID.suffix(4)) /boot/efi vfat"))
        #expect(try await cat("/etc/cloud/cloud.cfg.d/90-kiln.cfg").contains("datasource_list: [NoCloud, ConfigDrive, GCE, Ec2, None]"))
        #expect(try await cat("/etc/repart.d/50-kiln-root.conf").contains("Type=root"))
        // No host key in the image; the kernel and initrd were copied out for the build boot.
        let hostKey = try await ProcessRunner.run("debugfs", ["-R", "stat /etc/ssh/ssh_host_ed25519_key", filesystem])
        #expect(hostKey.stderr.contains("File not found"))
        #expect(try String(contentsOfFile: dir + "/vmlinuz", encoding: .utf8) == "kernel")
    }

    @Test("a disk_size whose root partition cannot hold the tree fails the hook with a message naming disk_size")
    func tooSmall() async throws {
        let dir = NSTemporaryDirectory() + "kiln-layout-" + UUID().uuidString
        defer { try? FileManager.default.removeItem(atPath: dir) }
        // 80 MiB leaves 13 MiB for the root; the tree holds 24 MiB of incompressible bytes.
        let hook = try await runHook(in: dir, diskSize: 80 << 20) { root in
            let random = try #require(FileHandle(forReadingAtPath: "/dev/urandom"))
            defer { try? random.close() }
            try #require(try random.read(upToCount: 24 << 20)).write(to: URL(fileURLWithPath: root + "/usr/big"))
        }
        #expect(hook.status != 0)
        #expect(
            hook.stderr.contains("cannot hold the bootstrapped tree") && hook.stderr.contains("raise provider.qemu.disk_size"),
            "\(hook.stderr)")
    }

    /// The customize hook on a small stand-in for mmdebstrap's tree, writing `dir/disk.raw`.
    private func runHook(in dir: String, diskSize: Int, fill: (String) throws -> Void = { _ in }) async throws -> ProcessResult {
        let root = dir + "/root"
        let fm = FileManager.default
        for path in ["boot", "etc/network", "etc/ssh", "tmp", "var/lib/apt/lists", "var/cache/apt", "var/log/apt", "usr/sbin"] {
            try fm.createDirectory(atPath: root + "/" + path, withIntermediateDirectories: true)
        }
        try "kernel".write(toFile: root + "/boot/vmlinuz-6.1.0-test", atomically: true, encoding: .utf8)
        try "initrd".write(toFile: root + "/boot/initrd.img-6.1.0-test", atomically: true, encoding: .utf8)
        try "key".write(toFile: root + "/etc/ssh/ssh_host_ed25519_key", atomically: true, encoding: .utf8)
        try fill(root)
        try SourceDisk.customizeHook.write(toFile: dir + "/hook.sh", atomically: true, encoding: .utf8)
        try BootableDisk.installer.write(toFile: dir + "/installer", atomically: true, encoding: .utf8)
        return try await ProcessRunner.run(
            "sh", [dir + "/hook.sh", root],
            environment: [
                "KILN_OUT": dir, "KILN_DISK_SIZE": String(diskSize), "KILN_INSTALLER": dir + "/installer", "KILN_CLOUD_INIT": "yes",
                "PATH": "/usr/bin:/bin",
            ])
    }
}
