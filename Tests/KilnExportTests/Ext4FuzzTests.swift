import Foundation
import KilnCore
import KilnTestSupport
import Testing

@testable import KilnDisk
@testable import KilnExport

/// The ext4 reader on hostile and corrupt filesystems. A source disk comes from outside and a
/// blob may be damaged: whatever the bytes, the reader gives an error or a tree, never a trap,
/// a hang, an allocation of what a field asks, or a path that leaves the tree.
@Suite("ext4 reader under corruption (mkfs.ext4, debugfs, mutations)", .serialized)
struct Ext4FuzzTests {
    final class Image {
        let dir = NSTemporaryDirectory() + "kiln-ext4-fuzz-" + UUID().uuidString
        var path: String { dir + "/fs.img" }
        deinit { try? FileManager.default.removeItem(atPath: dir) }

        /// A small filesystem with what the reader handles: files (one sparse, one of several
        /// extents), directories, fast and slow symlinks, a hard link.
        init() async throws {
            let tree = dir + "/tree"
            let fm = FileManager.default
            try fm.createDirectory(atPath: tree + "/etc/deep/er", withIntermediateDirectories: true)
            try "hello\n".write(toFile: tree + "/etc/hello.txt", atomically: true, encoding: .utf8)
            try Data(repeating: 0x41, count: 300_000).write(to: URL(fileURLWithPath: tree + "/etc/deep/big.bin"))
            try "ESCAPEME".write(toFile: tree + "/etc/deep/er/ESCAPEME", atomically: true, encoding: .utf8)
            for i in 0..<40 { try "\(i)".write(toFile: tree + "/etc/deep/f\(i)", atomically: true, encoding: .utf8) }
            try fm.createSymbolicLink(atPath: tree + "/etc/short", withDestinationPath: "hello.txt")
            try fm.createSymbolicLink(atPath: tree + "/etc/long", withDestinationPath: String(repeating: "x/", count: 60) + "end")
            try fm.linkItem(atPath: tree + "/etc/hello.txt", toPath: tree + "/etc/hello-again.txt")
            try await ProcessRunner.check("mkfs.ext4", ["-q", "-F", "-b", "1024", "-I", "256", "-N", "128", "-d", tree, path, "4M"])
        }

        func debugfs(_ command: String) async throws {
            try await ProcessRunner.check("debugfs", ["-w", "-R", command, path])
        }
    }

    /// Everything the export reads, as the export reads it; the paths it would write.
    static func read(_ path: String) throws -> [String] {
        let volume = try Ext4Volume(path: path)
        var paths: [String] = []
        try volume.walk { path, inode in
            paths.append(path)
            _ = try volume.extendedAttributes(of: inode)
            switch inode.kind {
            case .file: try volume.readContents(of: inode, chunk: 64 << 10) { _ in }
            case .symlink: _ = try volume.symlinkTarget(of: inode)
            default: break
            }
        }
        return paths
    }

    static func maxResidentBytes() -> Int {
        var usage = rusage()
        getrusage(RUSAGE_SELF.rawValue, &usage)
        return usage.ru_maxrss * 1024
    }

    @Test("mutated filesystems: no crash, no hang, bounded memory; every path stays inside the tree")
    func mutations() async throws {
        let image = try await Image()
        let environment = ProcessInfo.processInfo.environment
        let count = environment["KILN_EXT4_FUZZ_COUNT"].flatMap(Int.init) ?? 3000
        var generator = SeededGenerator(state: environment["KILN_EXT4_FUZZ_SEED"].flatMap(UInt64.init) ?? 20_261_204)
        let original = try Data(contentsOf: URL(fileURLWithPath: image.path))
        let fd = open(image.path, O_RDWR)
        #expect(fd >= 0)
        defer { close(fd) }
        let memoryBefore = Self.maxResidentBytes()
        var (readWhole, rejected, slowest) = (0, 0, Duration.zero)
        for _ in 0..<count {
            // Mostly metadata: the superblock and descriptors, the inode tables, directory blocks.
            var changed: [Int] = []
            for _ in 0..<Int.random(in: 1...24, using: &generator) {
                let region = Int.random(in: 0..<20, using: &generator)
                let offset: Int
                switch region {
                case 0..<5: offset = 1024 + Int.random(in: 0..<0x180, using: &generator)  // the superblock's fields
                case 5..<8: offset = 2048 + Int.random(in: 0..<64, using: &generator)  // the first group descriptors
                case 8..<17: offset = Int.random(in: 4096..<(160 << 10), using: &generator)  // inode tables, directories
                default: offset = Int.random(in: 0..<original.count, using: &generator)
                }
                var byte = UInt8.random(in: 0...255, using: &generator)
                if Bool.random(using: &generator) { byte = [0x00, 0xFF, 0x7F, 0x80, 0x2F][Int.random(in: 0..<5, using: &generator)] }
                _ = withUnsafeBytes(of: &byte) { pwrite(fd, $0.baseAddress, 1, off_t(offset)) }
                changed.append(offset)
            }
            let started = ContinuousClock.now
            do {
                let paths = try Self.read(image.path)
                readWhole += 1
                #expect(
                    paths.allSatisfy { !$0.hasPrefix("/") && !$0.split(separator: "/").contains("..") && !$0.contains("\0") },
                    "\(paths)")
            } catch is KilnError {
                rejected += 1
            }
            slowest = max(slowest, ContinuousClock.now - started)
            for offset in changed {
                var byte = original[offset]
                _ = withUnsafeBytes(of: &byte) { pwrite(fd, $0.baseAddress, 1, off_t(offset)) }
            }
        }
        let grown = Self.maxResidentBytes() - memoryBefore
        print(
            "ext4 fuzz: \(count) mutated filesystems (seed \(environment["KILN_EXT4_FUZZ_SEED"] ?? "20261204")): \(readWhole) read whole, \(rejected) rejected with an error, 0 crashes; slowest \(slowest), peak memory grew \(grown >> 20) MiB"
        )
        #expect(readWhole + rejected == count)
        #expect(slowest < .seconds(5), "a mutated filesystem took \(slowest)")
        #expect(grown < 512 << 20, "memory grew by \(grown >> 20) MiB")
    }

    @Test("a hard-linked directory cycle is an error, not an endless walk")
    func directoryCycle() async throws {
        let image = try await Image()
        try await image.debugfs("link /etc /etc/deep/er/loop")
        #expect { _ = try Self.read(image.path) } throws: { "\($0)".contains("reached twice") }
    }

    @Test("a directory entry named ../../x is refused, not written as a tar member of that name")
    func slashInName() async throws {
        let image = try await Image()
        var bytes = try Data(contentsOf: URL(fileURLWithPath: image.path))
        let name = Data("ESCAPEME".utf8)
        var found = 0
        var search = bytes.startIndex
        while let range = bytes.range(of: name, in: search..<bytes.endIndex) {
            // Directory entries only: the file's own contents hold the same word.
            if range.lowerBound >= 8, bytes[range.lowerBound - 2] == 8 {
                bytes.replaceSubrange(range, with: Data("../../xy".utf8))
                found += 1
            }
            search = range.upperBound
        }
        #expect(found >= 1)
        try bytes.write(to: URL(fileURLWithPath: image.path))
        #expect { _ = try Self.read(image.path) } throws: { "\($0)".contains("holds '/'") }
    }

    @Test("a file or directory claiming 1 TiB, and a superblock whose counts overflow, are errors without the allocation")
    func hugeFields() async throws {
        let file = try await Image()
        try await file.debugfs("sif /etc/hello.txt size 0x10000000000")
        #expect { _ = try Self.read(file.path) } throws: { "\($0)".contains("more than the filesystem") }
        let directory = try await Image()
        try await directory.debugfs("sif /etc/deep size 0x10000000000")
        #expect(throws: KilnError.self) { _ = try Self.read(directory.path) }
        let superblock = try await Image()
        try await superblock.debugfs("ssv inodes_count 4294967295")
        try await superblock.debugfs("ssv inodes_per_group 4294967295")
        #expect(throws: KilnError.self) { _ = try Self.read(superblock.path) }
        let blocks = try await Image()
        try await blocks.debugfs("ssv log_block_size 40")
        #expect(throws: KilnError.self) { _ = try Self.read(blocks.path) }
    }
}
