import Foundation
import KilnCore
import KilnModel
import KilnStore
import KilnTestSupport
import Testing

/// Small real ext4 disks made with mkfs.ext4 -d (no mount, no VM), committed into a real store
/// the way a build commits them: a base's qcow2, and a child's qcow2 overlay holding only the
/// clusters its changes wrote.
enum ExportFixture {
    static func kiln(_ arguments: [String], environment: [String: String] = [:]) async throws -> ProcessResult {
        try await KilnBinary.run(arguments, environment: environment, timeout: .seconds(300))
    }

    /// Runs an outside tool that must succeed; its stdout.
    @discardableResult
    static func run(_ tool: String, _ arguments: [String], in directory: String? = nil) async throws -> String {
        try await ProcessRunner.check(tool, arguments, workingDirectory: directory, timeout: .seconds(300)).stdout
    }

    /// Deterministic bytes (a linear congruential sequence): the same on every run.
    static func bytes(_ count: Int, seed: UInt64) -> Data {
        var state = seed
        var bytes = [UInt8](repeating: 0, count: count)
        for i in 0..<count {
            state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
            bytes[i] = UInt8(truncatingIfNeeded: state >> 33)
        }
        return Data(bytes)
    }

    /// A tree with every kind of entry the exporter handles.
    static func makeTree(at tree: String) async throws {
        let fm = FileManager.default
        for directory in ["etc", "usr/bin", "srv/empty", "var/data"] {
            try fm.createDirectory(atPath: tree + "/" + directory, withIntermediateDirectories: true)
        }
        try Data("hello\n".utf8).write(to: URL(fileURLWithPath: tree + "/etc/hello.txt"))
        try Data("remove me\n".utf8).write(to: URL(fileURLWithPath: tree + "/etc/old.conf"))
        try Data("café\n".utf8).write(to: URL(fileURLWithPath: tree + "/etc/café.txt"))
        try bytes(3 << 20, seed: 7).write(to: URL(fileURLWithPath: tree + "/var/data/big.bin"))
        try Data("#!/bin/sh\necho tool\n".utf8).write(to: URL(fileURLWithPath: tree + "/usr/bin/tool"))
        try fm.setAttributes([.posixPermissions: 0o755], ofItemAtPath: tree + "/usr/bin/tool")
        try fm.linkItem(atPath: tree + "/usr/bin/tool", toPath: tree + "/usr/bin/tool-alias")
        try fm.createSymbolicLink(atPath: tree + "/etc/link", withDestinationPath: "hello.txt")
        let long = "../" + String(repeating: "deep/", count: 20) + "target"
        try fm.createSymbolicLink(atPath: tree + "/etc/longlink", withDestinationPath: long)
        // Ten 4 KiB islands 1 MiB apart: more extents than fit in the inode, so an extent tree
        // with an index level, and holes between them.
        let sparse = tree + "/var/data/sparse.bin"
        fm.createFile(atPath: sparse, contents: nil)
        let handle = try #require(FileHandle(forWritingAtPath: sparse))
        for island in 0..<10 {
            try handle.seek(toOffset: UInt64(island) << 20)
            try handle.write(contentsOf: bytes(4096, seed: UInt64(island + 100)))
        }
        try handle.close()
        try await run("mkfifo", [tree + "/srv/pipe"])
        try await run("mknod", [tree + "/srv/null", "c", "1", "3"])
        try await run("chown", ["1234:2345", tree + "/etc/hello.txt"])
    }

    static func mkfs(_ tree: String, into raw: String, megabytes: Int = 64) async throws {
        try await run("mkfs.ext4", ["-q", "-F", "-L", "root", "-d", tree, raw, "\(megabytes)M"])
    }

    /// Commits `raw` as an image of `family`: a standalone qcow2 for a base, else an overlay on
    /// the parent's blob holding only what differs.
    static func commit(_ raw: String, family: String, parent: ImageRecord?, in store: Store) async throws -> ImageRecord {
        let staging = store.stagingDirectory(buildID: UUID().uuidString)
        try FileManager.default.createDirectory(atPath: staging, withIntermediateDirectories: true)
        let disk = staging + "/" + Store.diskName
        if let parent {
            try await run(
                "qemu-img", ["convert", "-O", "qcow2", "-F", "qcow2", "-B", "../\(parent.digest)/\(Store.diskName)", raw, disk],
                in: staging)
        } else {
            try await run("qemu-img", ["convert", "-O", "qcow2", raw, disk])
        }
        let (digest, size) = try store.seal(staging: staging)
        let image = try store.catalog.commit(
            ImageDraft(
                family: family, digest: digest, parent: parent?.name, labels: ["role": family], description: nil,
                templateHash: Hashing.sha256Hex(family), size: size, log: "logs/none.tar.zst", buildID: "b-" + family,
                sourceKind: parent == nil ? "file" : "image", backingDigest: parent?.digest))
        try store.recordProvenance(of: image, provider: "qemu")
        return image
    }

    /// debugfs commands that change a copy of a disk without mounting it.
    static func debugfs(_ raw: String, _ commands: [String]) async throws {
        let script = NSTemporaryDirectory() + "kiln-debugfs-" + UUID().uuidString
        try commands.joined(separator: "\n").write(toFile: script, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(atPath: script) }
        try await run("debugfs", ["-w", "-f", script, raw])
    }
}
