import Foundation
import KilnCore
import KilnTestSupport
import Testing

extension VMBuildTests {
    /// The product's exports, as a hypervisor or a cloud would start them (docs/images.md):
    /// the qcow2 on an 8 GiB disk under SeaBIOS (booted twice), the GCE archive's disk under OVMF.
    @Test(
        "examples/debian's product boots on its own under SeaBIOS and OVMF: nginx serves the site, the root grew, each boot has its own machine-id and host key"
    )
    func productBootsUnderFirmware() async throws {
        let dir = try await exampleAndScratchDirectory("boot")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let store = SharedStore.shared
        let product = try #require(try await store.image("shop-web")["name"] as? String)
        let index = try String(contentsOfFile: Repo.root + "/examples/debian/site/index.html", encoding: .utf8)
        let key = try await FirmwareVM.makeKey(in: dir)
        let qcow2 = dir + "/web.qcow2"
        let exported = try await store.kiln(["export", product, "--format", "qcow2", "--output", qcow2])
        try #require(exported.status == 0, "\(exported.stderr)")

        // GCE: disk.raw alone in a gzip-compressed tar, a whole number of GiB; it is the disk the
        // OVMF boot starts from (GCE boots UEFI), the qcow2 the SeaBIOS one.
        let gce = dir + "/web.tar.gz"
        let gceExport = try await store.kiln(["export", product, "--format", "gce", "--output", gce])
        try #require(gceExport.status == 0, "\(gceExport.stderr)")
        let listing = try await ProcessRunner.check("tar", ["-tzvf", gce]).stdout
        let names = listing.split(separator: "\n").compactMap { $0.split(separator: " ").last.map(String.init) }
        #expect(names == ["disk.raw"], "\(listing)")
        let extracted = dir + "/gce"
        try FileManager.default.createDirectory(atPath: extracted, withIntermediateDirectories: true)
        try await ProcessRunner.check("tar", ["-xzf", gce, "-C", extracted])
        try FileManager.default.removeItem(atPath: gce)
        let raw = extracted + "/disk.raw"
        let rawSize = try #require(try FileManager.default.attributesOfItem(atPath: raw)[.size] as? Int)
        #expect(rawSize % (1 << 30) == 0, "GCE wants whole GiB: \(rawSize)")

        var boots: [FirmwareVM.Facts] = []
        for (firmware, image, format) in [(FirmwareVM.Firmware.seabios, qcow2, "qcow2"), (.ovmf, raw, "raw")] {
            // An 8 GiB disk holding the exported image, as a cloud gives an instance.
            let disk = dir + "/\(firmware.rawValue).qcow2"
            try await ProcessRunner.check("qemu-img", ["create", "-q", "-f", "qcow2", "-b", image, "-F", format, disk, "8G"])
            let vm = try await FirmwareVM(disk: disk, firmware: firmware, key: key)
            do {
                try await vm.waitForSSH()
                let facts = try await vm.facts()
                #expect(facts.nginx == "active", "\(firmware)")
                #expect(facts.site == index, "\(firmware): the site from the host, through the forwarded port")
                #expect(facts.rootBytes > 7 << 30, "\(firmware): the root filesystem grew to the 8 GiB disk (\(facts.rootBytes) bytes)")
                let efi = try await vm.ssh("test -d /sys/firmware/efi")
                #expect((efi.status == 0) == (firmware == .ovmf), "\(firmware): booted by the firmware asked for")
                let commandLine = try await vm.ssh("cat /proc/cmdline").stdout
                #expect(commandLine.contains("console=ttyS0,115200") && !commandLine.contains("systemd.mask"), "\(commandLine)")
                boots.append(facts)
            } catch {
                await vm.stop()
                throw error
            }
            await vm.stop()
            if firmware == .seabios {
                // Stopped hard (QEMU killed: the guest's unwritten pages are lost, as in a power
                // cut) soon after its first boot, the instance boots again with its own host key.
                let again = try await FirmwareVM(disk: disk, firmware: firmware, key: key)
                do {
                    try await again.waitForSSH()
                    let hostKey = try await again.ssh("cut -d' ' -f1,2 /etc/ssh/ssh_host_ed25519_key.pub").stdout
                    #expect(hostKey.trimmingCharacters(in: .whitespacesAndNewlines) == boots.last?.hostKey, "the first boot's key was kept")
                } catch {
                    await again.stop()
                    throw error
                }
                await again.stop()
            }
        }
        try #require(boots.count == 2)
        #expect(boots[0].machineID.count == 32 && boots[0].machineID != boots[1].machineID, "each instance has its own machine-id")
        #expect(!boots[0].hostKey.isEmpty && boots[0].hostKey != boots[1].hostKey, "each instance makes its own host key")
    }

    @Test("the vhd export is a fixed VHD of a whole number of MiB, as Azure imports it")
    func vhdExport() async throws {
        let dir = try await exampleAndScratchDirectory("vhd")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let product = try #require(try await SharedStore.shared.image("shop-web")["name"] as? String)
        let vhd = dir + "/web.vhd"
        let result = try await SharedStore.shared.kiln(["export", product, "--format", "vhd", "--output", vhd])
        try #require(result.status == 0, "\(result.stderr)")
        // qemu-img's vpc driver opens it only if the footer is a valid VHD footer.
        let info = try await ProcessRunner.check("qemu-img", ["info", "-f", "vpc", "--output=json", vhd]).stdout
        let json = try #require(try JSONSerialization.jsonObject(with: Data(info.utf8)) as? [String: Any])
        #expect(json["format"] as? String == "vpc")
        let size = try #require(json["virtual-size"] as? Int)
        #expect(size > 0 && size % (1 << 20) == 0, "whole MiB: \(size)")
        // The footer's disk type (big-endian at offset 60) is 2, fixed; the file is the disk plus its 512-byte footer.
        let handle = try #require(FileHandle(forReadingAtPath: vhd))
        defer { try? handle.close() }
        let length = try handle.seekToEnd()
        #expect(length == UInt64(size) + 512)
        try handle.seek(toOffset: length - 512)
        let footer = try #require(try handle.read(upToCount: 512))
        #expect(footer.prefix(8) == Data("conectix".utf8))
        #expect(footer[footer.startIndex + 60..<footer.startIndex + 64] == Data([0, 0, 0, 2]), "a fixed disk")
    }
}
