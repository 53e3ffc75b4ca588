import Foundation
import KilnCore
import KilnGraph
import KilnStore
import KilnTemplates
import KilnTestSupport
import Testing

@testable import KilnBuild

/// Source disks made by an attacker: a qcow2 header can name other files (a backing file, an
/// external data file, vmdk extents), and a naive `qemu-img convert` copies them in. Each disk
/// here points at a "host secret" outside the template; its sha256 in the template is right
/// (it is the attacker's own file), so only the inspection can stop it.
@Suite("Hostile source disks (qemu-img, no VM)")
struct HostileSourceDiskTests {
    static let marker = "KILN-HOST-SECRET-" + UUID().uuidString

    final class Attack {
        let dir = NSTemporaryDirectory() + "kiln-hostile-disk-" + UUID().uuidString
        var secret: String { dir + "/host-secret" }
        deinit { try? FileManager.default.removeItem(atPath: dir) }

        init() throws {
            try FileManager.default.createDirectory(atPath: dir + "/t", withIntermediateDirectories: true)
            // A raw "host file" of 1 MiB that starts with the marker.
            var secret = Data(HostileSourceDiskTests.marker.utf8)
            secret.append(Data(count: (1 << 20) - secret.count))
            try secret.write(to: URL(fileURLWithPath: self.secret))
        }

        func qemuImg(_ arguments: [String]) async throws {
            try await ProcessRunner.check("qemu-img", arguments)
        }

        /// Builds `base` from `t/disk` with the fake provider; returns the error, if any.
        func build() async throws -> (error: KilnError?, store: Store) {
            let disk = dir + "/t/disk"
            try """
            image: base
            from: {file: {path: disk, sha256: \(try Hashing.sha256Hex(fileAt: disk))}}
            provision:
              - shell: echo base
            """.write(toFile: dir + "/t/base.yaml", atomically: true, encoding: .utf8)
            let store = try Store(root: dir + "/home")
            let set = try TemplateLoader(environment: [:]).load(path: dir + "/t")
            let builder = Builder(store: store, provider: FakeProvider(), options: BuildOptions(), reporter: nil)
            do {
                _ = try await builder.build(try ImageGraph(set), secrets: [])
                return (nil, store)
            } catch let error as KilnError {
                return (error, store)
            }
        }

        /// Whether any file the store keeps holds the secret's bytes.
        func storeHoldsSecret(_ store: Store) -> Bool {
            let marker = Data(HostileSourceDiskTests.marker.utf8)
            let files = FileManager.default.enumerator(atPath: store.root)?.compactMap { $0 as? String } ?? []
            return files.contains { name in
                guard let data = FileManager.default.contents(atPath: store.root + "/" + name) else { return false }
                return data.range(of: marker) != nil
            }
        }
    }

    @Test(
        "a qcow2 whose backing file is a host file (plain or json:) is refused before a byte is read; the store holds no secret",
        arguments: ["json", "path"])
    func backingFile(_ form: String) async throws {
        let attack = try Attack()
        let backing =
            form == "json"
            ? #"json:{"driver":"raw","file":{"driver":"file","filename":"\#(attack.secret)"}}"# : attack.secret
        try await attack.qemuImg(["create", "-q", "-f", "qcow2", "-u", "-b", backing, "-F", "raw", attack.dir + "/t/disk", "1M"])
        let (error, store) = try await attack.build()
        let failure = try #require(error, "a disk backed by a host file was imported")
        #expect(failure.description.contains("refused as a source disk: it has a backing file"), "\(failure)")
        #expect(!attack.storeHoldsSecret(store))
        #expect(try store.catalog.images().isEmpty)
    }

    @Test("a qcow2 that keeps its data in an external file is refused")
    func externalDataFile() async throws {
        let attack = try Attack()
        let data = attack.dir + "/data"
        try await attack.qemuImg([
            "create", "-q", "-f", "qcow2", "-o", "data_file=\(data),data_file_raw=on", attack.dir + "/t/disk", "1M",
        ])
        // The data file now holds the secret: with data_file_raw, its bytes are the disk's.
        try FileManager.default.removeItem(atPath: data)
        try FileManager.default.copyItem(atPath: attack.secret, toPath: data)
        let (error, store) = try await attack.build()
        let failure = try #require(error, "a disk with an external data file was imported")
        #expect(failure.description.contains("keeps its data in an external file"), "\(failure)")
        #expect(!attack.storeHoldsSecret(store))
    }

    @Test("a vmdk descriptor whose extent is a host file is refused by its format")
    func vmdkExtent() async throws {
        let attack = try Attack()
        try """
        # Disk DescriptorFile
        version=1
        CID=fffffffe
        parentCID=ffffffff
        createType="monolithicFlat"
        RW 2048 FLAT "\(attack.secret)" 0
        """.write(toFile: attack.dir + "/t/disk", atomically: true, encoding: .utf8)
        let (error, store) = try await attack.build()
        let failure = try #require(error, "a vmdk naming a host file was imported")
        #expect(failure.description.contains("its format is vmdk"), "\(failure)")
        #expect(!attack.storeHoldsSecret(store))
    }

    @Test("a self-contained qcow2 is imported, with its format given to qemu-img")
    func plainQcow2() async throws {
        let attack = try Attack()
        try await attack.qemuImg(["create", "-q", "-f", "qcow2", attack.dir + "/t/disk", "4M"])
        let (error, store) = try await attack.build()
        #expect(error == nil, "\(String(describing: error))")
        #expect(try store.catalog.images().count == 1)
        let info = try await DiskImage.checkForeign(attack.dir + "/t/disk")
        #expect(info.format == "qcow2" && info.virtualSize == 4 << 20)
    }

    @Test("a relative path with a protocol prefix is read as a file, not as a json: or nbd: target")
    func plainPath() {
        #expect(DiskImage.plainPath("json:{}") == "./json:{}")
        #expect(DiskImage.plainPath("/a/json:{}") == "/a/json:{}")
    }
}
