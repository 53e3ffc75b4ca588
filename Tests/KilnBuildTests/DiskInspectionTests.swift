import Foundation
import KilnCore
import KilnModel
import Testing

@testable import KilnBuild

/// The host-side secret scan and package manifest, on real ext4 disks made by mkfs.ext4 -d and
/// served as qcow2 by qemu-nbd, the way a stopped build VM's overlay is read. The superblock's
/// mount time (set with debugfs, the clock the scan compares change times with) decides what
/// counts as changed in the build.
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

        /// Makes the filesystem (at an offset behind a GPT, as a kiln base disk has it), runs
        /// `debugfs` requests on it, and converts it to qcow2.
        func make(debugfs requests: [String] = []) async throws {
            try await ProcessRunner.check("truncate", ["-s", "64M", raw])
            try await ProcessRunner.check(
                "/sbin/sfdisk", ["-q", "--label", "gpt", raw], input: .data(Data("start=2048, size=100000, type=linux\n".utf8)))
            let offset = 2048 * 512
            try await ProcessRunner.check(
                "/sbin/mkfs.ext4", ["-q", "-F", "-d", tree, "-E", "offset=\(offset)", raw, "40000k"])
            if !requests.isEmpty {
                // debugfs has no offset option: edit a copy of the filesystem, then put it back.
                let fs = dir + "/fs.raw"
                try await ProcessRunner.check("dd", ["if=\(raw)", "of=\(fs)", "bs=512", "skip=2048", "count=80000", "status=none"])
                for request in requests { try await ProcessRunner.check("/sbin/debugfs", ["-w", "-R", request, fs]) }
                try await ProcessRunner.check(
                    "dd", ["if=\(fs)", "of=\(raw)", "bs=512", "seek=2048", "conv=notrunc", "status=none"])
            }
            try await ProcessRunner.check("qemu-img", ["convert", "-f", "raw", "-O", "qcow2", raw, qcow2])
        }
    }

    static let key = "-----BEGIN OPENSSH PRIVATE KEY-----\nb3Blbn\n-----END OPENSSH PRIVATE KEY-----\n"

    @Test("keys and credential files changed in the build are found; allow_secrets patterns, binaries and kiln's own files are not")
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
        // Mounted long ago: every file counts as changed since.
        try await disk.make(debugfs: ["ssv mtime 20000101000000"])
        let report = try DiskInspection(disk: disk.qcow2).scanForSecrets(allowed: ["/srv/allowed/*"])
        #expect(
            Set(report.found.map { "\($0.kind) \($0.path)" }) == [
                "private key /opt/deploy/key", "private key /srv/tls/server.pem", "private key /var/big.txt",
                "credential file /root/.aws/credentials",
            ])
        #expect(report.allowed == [DiskInspection.Finding(kind: "private key", path: "/srv/allowed/test.key")])
        #expect(report.scanned == 8)
    }

    @Test("files last changed before the build VM mounted the disk are its parent's, and not scanned")
    func parentFilesAreNotScanned() async throws {
        let disk = try Disk()
        try disk.write("/opt/deploy/key", Self.key)
        try await disk.make(debugfs: ["ssv mtime 20991231000000"])
        let report = try DiskInspection(disk: disk.qcow2).scanForSecrets(allowed: [])
        #expect(report.found.isEmpty && report.scanned == 0)
    }

    @Test("a filesystem whose journal needs recovery is refused: the host would not see what it holds")
    func dirtyJournalIsRefused() async throws {
        let disk = try Disk()
        try disk.write("/etc/hostname", "web\n")
        try await disk.make(debugfs: ["feature needs_recovery"])
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
}
