import Foundation
import KilnCore
import KilnModel
import Testing

@testable import KilnBuild

/// The host-side secret scan and package manifest, on real ext4 disks made by mkfs.ext4 -d and
/// served as qcow2 by qemu-nbd, the way a stopped build VM's overlay is read. Without a parent
/// disk every file counts as changed; with one, a file whose inode differs from the parent's.
@Suite("Disk inspection: secrets and packages read from a stopped VM's disk")
struct DiskInspectionTests {
    final class Disk {
        let dir = NSTemporaryDirectory() + "kiln-inspect-" + UUID().uuidString
        var tree: String { dir + "/tree" }
        var raw: String { dir + "/disk.raw" }
        var qcow2: String { dir + "/disk.qcow2" }
        deinit { try? FileManager.default.removeItem(atPath: dir) }

        init() throws { try FileManager.default.createDirectory(atPath: dir + "/tree", withIntermediateDirectories: true) }

        func write(_ path: String, _ data: Data) throws {
            let url = URL(fileURLWithPath: tree + path)
            try FileManager.default.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
            try data.write(to: url)
        }

        func write(_ path: String, _ text: String) throws { try write(path, Data(text.utf8)) }

        /// Makes the filesystem (at an offset behind a GPT, as a kiln base disk has it) and
        /// converts it to qcow2.
        func make(type: String = "ext4") async throws {
            try await ProcessRunner.check("truncate", ["-s", "64M", raw])
            try await ProcessRunner.check(
                "/sbin/sfdisk", ["-q", "--label", "gpt", raw], input: .data(Data("start=2048, size=100000, type=linux\n".utf8)))
            let offset = 2048 * 512
            try await ProcessRunner.check(
                "/sbin/mke2fs", ["-q", "-F", "-t", type, "-d", tree, "-E", "offset=\(offset)", raw, "40000k"])
            try await ProcessRunner.check("qemu-img", ["convert", "-f", "raw", "-O", "qcow2", raw, qcow2])
        }

        /// Changes the filesystem in place with `debugfs` requests (as a build changes its
        /// parent's), and converts it to qcow2 again.
        func edit(_ requests: [String]) async throws {
            // debugfs has no offset option: edit a copy of the filesystem, then put it back.
            let fs = dir + "/fs.raw"
            try await ProcessRunner.check("dd", ["if=\(raw)", "of=\(fs)", "bs=512", "skip=2048", "count=80000", "status=none"])
            for request in requests { try await ProcessRunner.check("/sbin/debugfs", ["-w", "-R", request, fs]) }
            try await ProcessRunner.check("dd", ["if=\(fs)", "of=\(raw)", "bs=512", "seek=2048", "conv=notrunc", "status=none"])
            try FileManager.default.removeItem(atPath: qcow2)
            try await ProcessRunner.check("qemu-img", ["convert", "-f", "raw", "-O", "qcow2", raw, qcow2])
        }
    }

    static let key = "-----BEGIN OPENSSH PRIVATE KEY-----\nb3Blbn\n-----END OPENSSH PRIVATE KEY-----\n"

    @Test(
        "keys and credential files changed in the build are found, kiln's own left behind too; allow_secrets patterns and binaries are not")
    func findsSecrets() async throws {
        let disk = try Disk()
        try disk.write("/etc/hostname", "web\n")
        try disk.write("/opt/deploy/key", "config\n" + Self.key)
        try disk.write("/srv/tls/server.pem", "-----BEGIN RSA PRIVATE KEY-----\nMIIB\n")
        try disk.write("/srv/allowed/test.key", Self.key)
        try disk.write("/root/.aws/credentials", "[default]\n")
        try disk.write("/usr/lib/x/blob.bin", Data([0, 1, 2]) + Data(Self.key.utf8))
        // Across the 1 MiB chunks the scan reads a file in.
        try disk.write("/var/big.txt", String(repeating: "a", count: (1 << 20) - 15) + Self.key)
        try disk.write("/etc/ssh/ssh_host_ed25519_key", Self.key)
        try disk.write("/tmp/kiln-step.sh", Self.key)
        try disk.write("/etc/notes", "-----BEGIN lower private KEY-----\n-----BEGIN PUBLIC KEY-----\n")
        try await disk.make()
        let report = try DiskInspection(disk: disk.qcow2).scanForSecrets(allowed: ["/srv/allowed/*"])
        #expect(
            Set(report.found.map { "\($0.kind) \($0.path)" }) == [
                "private key /opt/deploy/key", "private key /srv/tls/server.pem", "private key /var/big.txt",
                "credential file /root/.aws/credentials",
                // The guest removes these before it stops; on the disk they would be a leak.
                "private key /etc/ssh/ssh_host_ed25519_key", "private key /tmp/kiln-step.sh",
            ])
        #expect(report.allowed == [DiskInspection.Finding(kind: "private key", path: "/srv/allowed/test.key")])
        #expect(report.scanned == 10)
    }

    @Test("only files whose inode differs from the parent's are scanned, whatever the guest's clock said when it wrote them")
    func onlyChangedFiles() async throws {
        let disk = try Disk()
        try disk.write("/opt/deploy/key", Self.key)
        try disk.write("/etc/kept.pem", Self.key)
        try await disk.make()
        let parent = disk.dir + "/parent.qcow2"
        try FileManager.default.copyItem(atPath: disk.qcow2, toPath: parent)
        #expect(try DiskInspection(disk: disk.qcow2, parent: parent).scanForSecrets(allowed: []).scanned == 0)

        // The build: a key added with a change time set back to 2000 (a step that set the
        // clock back), and the parent's key touched; the other parent file stays as it was.
        let host = disk.dir + "/host"
        try FileManager.default.createDirectory(atPath: host, withIntermediateDirectories: true)
        try Self.key.write(toFile: host + "/new.key", atomically: true, encoding: .utf8)
        try "x\n".write(toFile: host + "/placeholder", atomically: true, encoding: .utf8)
        try await disk.edit([
            "write \(host)/new.key /opt/new.key", "write \(host)/placeholder /etc/placeholder",
            "sif /opt/new.key ctime 20000101000000", "sif /opt/deploy/key ctime 20000101000000",
        ])
        let child = try DiskInspection(disk: disk.qcow2, parent: parent)
        let report = try child.scanForSecrets(allowed: [])
        #expect(Set(report.found.map(\.path)) == ["/opt/new.key", "/opt/deploy/key"], "\(report.found)")
        #expect(report.scanned == 3, "the two keys and /etc/placeholder")
    }

    @Test("a filesystem whose journal needs recovery is refused: the host would not see what it holds")
    func dirtyJournalIsRefused() async throws {
        let disk = try Disk()
        try disk.write("/etc/hostname", "web\n")
        try await disk.make()
        try await disk.edit(["feature needs_recovery"])
        let error = #expect(throws: KilnError.self) { try DiskInspection(disk: disk.qcow2).scanForSecrets(allowed: []) }
        #expect(error?.message.contains("not cleanly unmounted") == true)
    }

    @Test("a disk kiln cannot read (no ext4 on it) is said so before the VM stops, so the guest scans it")
    func unreadableDisk() async throws {
        let disk = try Disk()
        try await ProcessRunner.check("truncate", ["-s", "16M", disk.raw])
        try await ProcessRunner.check("qemu-img", ["convert", "-f", "raw", "-O", "qcow2", disk.raw, disk.qcow2])
        #expect(!DiskInspection.canRead(disk.qcow2))
        #expect(!DiskInspection.canRead(disk.dir + "/missing.qcow2"))
        // What qemu-nbd said is in the error, not on kiln's terminal.
        let error = #expect(throws: KilnError.self) { try DiskInspection(disk: disk.raw) }
        #expect(error?.message.contains("qcow2") == true, "\(String(describing: error))")
    }

    @Test("the package manifest is what dpkg-query lists: installed packages, source fields, journaled updates win")
    func packages() async throws {
        let disk = try Disk()
        try disk.write(
            "/var/lib/dpkg/status",
            """
            Package: libc6
            Status: install ok installed
            Architecture: amd64
            Source: glibc
            Version: 2.36-9+deb12u9
            Description: GNU C Library
             continuation line: with a colon

            Package: nginx
            Status: install ok installed
            Architecture: amd64
            Version: 1.22.1-9
            Source: nginx (1.22.1-9x)

            Package: gone
            Status: deinstall ok config-files
            Architecture: all
            Version: 1.0

            Package: zlib1g
            Status: install ok unpacked
            Architecture: amd64
            Version: 1:1.2.13

            """)
        try disk.write(
            "/var/lib/dpkg/updates/0001",
            "Package: zlib1g\nStatus: install ok installed\nArchitecture: amd64\nSource: zlib\nVersion: 1:1.2.13.dfsg-1\n")
        try disk.write("/var/lib/dpkg/updates/tmp.i", "Package: bogus\nStatus: install ok installed\nVersion: 1\n")
        try await disk.make()
        let manifest = try #require(try DiskInspection(disk: disk.qcow2).packageManifest())
        #expect(
            manifest.tsv
                == """
                libc6\t2.36-9+deb12u9\tamd64\tglibc\t2.36-9+deb12u9
                nginx\t1.22.1-9\tamd64\tnginx\t1.22.1-9x
                zlib1g\t1:1.2.13.dfsg-1\tamd64\tzlib\t1:1.2.13.dfsg-1

                """)

        let empty = try Disk()
        try empty.write("/etc/hostname", "web\n")
        try await empty.make()
        #expect(try DiskInspection(disk: empty.qcow2).packageManifest() == nil)
    }

    @Test("qemu-nbd ends with the inspection: no server outlives it")
    func serverEnds() async throws {
        let disk = try Disk()
        try disk.write("/etc/hostname", "web\n")
        try await disk.make()
        do {
            let inspection = try DiskInspection(disk: disk.qcow2)
            _ = try inspection.scanForSecrets(allowed: [])
            let running = try await ProcessRunner.run("pgrep", ["-f", "qemu-nbd.*\(disk.qcow2)"])
            #expect(running.status == 0, "qemu-nbd serves the disk while it is read")
        }
        let left = try await ProcessRunner.run("pgrep", ["-f", "qemu-nbd.*\(disk.qcow2)"])
        #expect(left.status == 1, "qemu-nbd still runs: \(left.stdout)")
    }

    @Test("of several ext filesystems the one labelled root is read, and none is guessed when no label says which")
    func rootByLabel() async throws {
        let disk = try Disk()
        try disk.write("/etc/role", "root\n")
        try await ProcessRunner.check("truncate", ["-s", "64M", disk.raw])
        try await ProcessRunner.check(
            "/sbin/sfdisk", ["-q", "--label", "gpt", disk.raw],
            input: .data(Data("start=2048, size=30000, type=linux\nstart=34816, size=90000, type=linux\n".utf8)))
        // The root is the smaller one: the larger (a data partition) came first before.
        try await ProcessRunner.check(
            "/sbin/mke2fs", ["-q", "-F", "-t", "ext4", "-L", "root", "-d", disk.tree, "-E", "offset=\(2048 * 512)", disk.raw, "15000k"])
        try await ProcessRunner.check("/sbin/mke2fs", ["-q", "-F", "-t", "ext4", "-E", "offset=\(34816 * 512)", disk.raw, "45000k"])
        try await ProcessRunner.check("qemu-img", ["convert", "-f", "raw", "-O", "qcow2", disk.raw, disk.qcow2])
        let inspection = try DiskInspection(disk: disk.qcow2)
        #expect(try inspection.volume.lookup("/etc/role") != nil)

        try await ProcessRunner.check(
            "/sbin/mke2fs", ["-q", "-F", "-t", "ext4", "-d", disk.tree, "-E", "offset=\(2048 * 512)", disk.raw, "15000k"])
        try FileManager.default.removeItem(atPath: disk.qcow2)
        try await ProcessRunner.check("qemu-img", ["convert", "-f", "raw", "-O", "qcow2", disk.raw, disk.qcow2])
        let error = #expect(throws: KilnError.self) { try DiskInspection(disk: disk.qcow2) }
        #expect(error?.description.contains("0 of them labelled root") == true, "\(String(describing: error))")
        #expect(!DiskInspection.canRead(disk.qcow2), "the guest scans such a disk")
    }

    @Test("a filesystem with files kiln cannot read (ext2's block map) is left to the guest's scan")
    func blockMapIsLeftToTheGuest() async throws {
        let disk = try Disk()
        try disk.write("/etc/hostname", "web\n")
        try await disk.make(type: "ext2")
        #expect(!DiskInspection.canRead(disk.qcow2))
        try await disk.make(type: "ext4")
        #expect(DiskInspection.canRead(disk.qcow2))
    }

    @Test("dpkg's database is found through a symbolic link, as the guest's kernel resolves it")
    func packagesThroughALink() async throws {
        let disk = try Disk()
        try disk.write("/srv/dpkg/status", "Package: bash\nStatus: install ok installed\nArchitecture: amd64\nVersion: 5.2\n")
        try FileManager.default.createDirectory(atPath: disk.tree + "/var/lib", withIntermediateDirectories: true)
        try FileManager.default.createSymbolicLink(atPath: disk.tree + "/var/lib/dpkg", withDestinationPath: "../../srv/./dpkg")
        try await disk.make()
        let manifest = try #require(try DiskInspection(disk: disk.qcow2).packageManifest())
        #expect(manifest.packages.map(\.name) == ["bash"])
    }

    /// Overwrites bytes of inode `path`'s extent area (`i_block`) in the raw disk and makes the
    /// qcow2 again: a hostile guest writes its own disk's blocks as it likes.
    static func patchExtents(_ disk: Disk, _ path: String, _ patch: (inout [UInt8]) -> Void) async throws {
        let fs = disk.dir + "/fs.raw"
        try await ProcessRunner.check("dd", ["if=\(disk.raw)", "of=\(fs)", "bs=512", "skip=2048", "count=80000", "status=none"])
        let imap = try await ProcessRunner.check("/sbin/debugfs", ["-R", "imap \(path)", fs]).stdout
        let stats = try await ProcessRunner.check("/sbin/dumpe2fs", ["-h", fs]).stdout
        let words = imap.split(whereSeparator: { $0 == " " || $0 == "," || $0 == "\n" || $0 == "\t" })
        let block = try #require(words.lastIndex(of: "block").flatMap { Int(words[$0 + 1]) })
        let offset = try #require(words.firstIndex(of: "offset").flatMap { Int(words[$0 + 1].dropFirst(2), radix: 16) })
        let blockSize = try #require(
            stats.split(separator: "\n").first { $0.hasPrefix("Block size:") }.flatMap { Int($0.split(separator: " ").last ?? "") })
        let at = UInt64(2048 * 512 + block * blockSize + offset + 0x28)
        let handle = try #require(FileHandle(forUpdatingAtPath: disk.raw))
        try handle.seek(toOffset: at)
        var area = [UInt8](try handle.read(upToCount: 60) ?? Data())
        patch(&area)
        try handle.seek(toOffset: at)
        try handle.write(contentsOf: Data(area))
        try handle.close()
        try FileManager.default.removeItem(atPath: disk.qcow2)
        try await ProcessRunner.check("qemu-img", ["convert", "-f", "raw", "-O", "qcow2", disk.raw, disk.qcow2])
    }

    @Test("a hostile guest's extent tree cannot make kiln read without end: an index block named twice, overlapping extents")
    func hostileExtents() async throws {
        let disk = try Disk()
        // 4 KiB islands 64 KiB apart, written by seeking so the holes stay holes: eight
        // extents need an index level (an inode holds four), two do not.
        try disk.write("/indexed.bin", Data())
        try disk.write("/two.bin", Data())
        for (name, count) in [("indexed.bin", 8), ("two.bin", 2)] {
            for island in 0..<count {
                try await ProcessRunner.check(
                    "dd",
                    [
                        "if=/dev/urandom", "of=\(disk.tree)/\(name)", "bs=4096", "count=1", "seek=\(island * 16)", "conv=notrunc",
                        "status=none",
                    ])
            }
        }
        try await disk.make()
        _ = try DiskInspection(disk: disk.qcow2).scanForSecrets(allowed: [])

        // The root node's one index entry, repeated: both name the same leaf block.
        try await Self.patchExtents(disk, "/indexed.bin") { area in
            #expect(area[6] == 1 && area[2] == 1, "an index level with one entry")
            area[2] = 2
            for i in 0..<12 { area[24 + i] = area[12 + i] }
            area[24] &+= 1
        }
        let twice = #expect(throws: KilnError.self) { try DiskInspection(disk: disk.qcow2).scanForSecrets(allowed: []) }
        #expect(twice?.description.contains("named twice") == true, "\(String(describing: twice))")

        try await disk.make()
        // The second extent moved onto the first: the same blocks would be read twice.
        try await Self.patchExtents(disk, "/two.bin") { area in
            #expect(area[6] == 0 && area[2] == 2, "two extents in the inode")
            for i in 0..<4 { area[24 + i] = 0 }
        }
        let overlap = #expect(throws: KilnError.self) { try DiskInspection(disk: disk.qcow2).scanForSecrets(allowed: []) }
        #expect(overlap?.description.contains("overlapping extents") == true, "\(String(describing: overlap))")
    }
}
