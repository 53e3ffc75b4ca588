import Foundation
import KilnCore

/// A read-only ext4 reader over a disk (a raw file, or a qcow2 chain through ``QemuDiskReader``),
/// so an image's root filesystem can be exported as a tar stream, or a stopped build VM's disk
/// scanned, without mounting it (root, a loop device) or booting it (minutes under TCG).
///
/// Hand-written because no library does this from Swift or C without mounting: e2fsprogs'
/// libext2fs has no stable API packaged for this use, and debugfs' `rdump` loses device nodes,
/// hard links and extended attributes and needs a full copy on disk. The reader covers what
/// mkfs.ext4 and Debian's installers produce: extent-mapped files, linear and hashed
/// directories (read linearly), fast and slow symlinks, device nodes, hard links, and extended
/// attributes in the inode and in an attribute block. Inline data, encryption and the old
/// block-map layout are refused with a clear error rather than read wrongly.
///
/// A disk is untrusted input (a source disk came from outside; a blob may be damaged): every
/// field read from it is bounds-checked before it is used as a size, an offset or a count, so
/// a corrupt or hostile filesystem gives an error, never a trap, a hang or an allocation of
/// what it asks. Walks stop at a directory seen before (a hard-linked directory cycle), names
/// holding `/` or NUL are refused, and reads are capped (``maxMetadataRead``). The reader is
/// fuzzed with thousands of mutated images in KilnExportTests (docs/reliability.md).
public final class Ext4Volume {
    public let blockSize: Int
    /// The filesystem's size in bytes: no block, extent or file may lie beyond it.
    let byteSize: Int64
    /// The most a directory or a symbolic link is read whole (larger ones are corrupt here).
    static let maxMetadataRead: Int64 = 64 << 20
    /// The most extents one file may have: a corrupt tree could otherwise name the same child
    /// block over and over and grow without end.
    static let maxExtents = 1 << 20
    let disk: any DiskReader
    let offset: Int64
    /// The journal holds changes not yet written to their places (not cleanly unmounted):
    /// what this reader sees is not what the filesystem holds.
    public let needsRecovery: Bool
    /// The superblock's incompatible feature flags (`s_feature_incompat`).
    let incompatibleFeatures: UInt32
    /// Whether every file can be read here: extents throughout (the ext2/3 block map is not
    /// read) and no inline data.
    public var readsEveryFile: Bool { incompatibleFeatures & 0x40 != 0 && incompatibleFeatures & 0x8000 == 0 }
    let inodeSize: Int
    let inodesPerGroup: UInt32
    /// Each block group's inode table (a block number), read once: the walk looks up every
    /// inode, and one descriptor read per inode doubled its reads.
    let inodeTables: [UInt64]
    let path: String

    static let magic: UInt16 = 0xEF53
    static let rootInode: UInt32 = 2

    /// Opens the ext4 filesystem on `path` (a raw disk or filesystem image): the whole file, or
    /// the root filesystem of an MBR or GPT partition table (``filesystemOffset(_:)``).
    public convenience init(path: String) throws {
        try self.init(disk: FileDiskReader(path: path))
    }

    /// Opens the ext4 filesystem on `disk`: the whole disk, or its root partition.
    public init(disk: any DiskReader) throws {
        self.disk = disk
        let path = disk.name
        guard let offset = try Self.filesystemOffset(disk) else {
            throw KilnError(.invalidInput, "\(path): no ext2/3/4 filesystem on the disk or in its partition table")
        }
        self.offset = offset
        self.path = path
        let sb = try disk.read(at: offset + 1024, count: 1024)
        guard sb.u16(0x38) == Self.magic else { throw KilnError(.invalidInput, "\(path): not an ext filesystem") }
        let corrupt = { (what: String) in KilnError(.io, "\(path): corrupt superblock (\(what))") }
        // 1 KiB to 64 KiB blocks, as mke2fs makes them.
        let logBlockSize = sb.u32(0x18)
        guard logBlockSize <= 6 else { throw corrupt("block size 2^\(logBlockSize + 10)") }
        blockSize = 1024 << Int(logBlockSize)
        inodesPerGroup = sb.u32(0x28)
        guard inodesPerGroup > 0, inodesPerGroup <= UInt32(8 * blockSize) else { throw corrupt("\(inodesPerGroup) inodes per group") }
        inodeSize = sb.u32(0x4C) >= 1 ? Int(sb.u16(0x58)) : 128
        guard inodeSize >= 128, inodeSize <= blockSize, inodeSize & (inodeSize - 1) == 0 else { throw corrupt("inode size \(inodeSize)") }
        let incompat = sb.u32(0x60)
        incompatibleFeatures = incompat
        needsRecovery = incompat & 0x4 != 0
        let is64 = incompat & 0x80 != 0
        let descriptorSize = is64 ? max(32, Int(sb.u16(0xFE))) : 32
        guard descriptorSize <= 1024 else { throw corrupt("descriptor size \(descriptorSize)") }
        if incompat & 0x10 != 0 { throw KilnError(.invalidInput, "\(path): ext4 meta_bg layout is not supported") }
        if incompat & 0x10000 != 0 { throw KilnError(.invalidInput, "\(path): encrypted ext4 is not supported") }
        let blocks = UInt64(sb.u32(0x4)) | (is64 ? UInt64(sb.u32(0x150)) << 32 : 0)
        // Within ext4's 2^48 blocks, and the bytes must fit an Int64 offset.
        guard blocks > 0, blocks < 1 << 48, blocks.multipliedReportingOverflow(by: UInt64(blockSize)).overflow == false,
            blocks * UInt64(blockSize) < UInt64(Int64.max / 2)
        else { throw corrupt("\(blocks) blocks") }
        byteSize = Int64(blocks) * Int64(blockSize)
        let firstDataBlock = Int64(sb.u32(0x14))
        guard firstDataBlock < Int64(blocks) else { throw corrupt("first data block \(firstDataBlock)") }
        let groupCount = Int((UInt64(sb.u32(0x0)) + UInt64(inodesPerGroup) - 1) / UInt64(inodesPerGroup))
        guard groupCount > 0, groupCount <= 1 << 20, groupCount * descriptorSize <= 64 << 20 else {
            throw corrupt("\(groupCount) block groups")
        }
        let table = try disk.read(at: offset + (firstDataBlock + 1) * Int64(blockSize), count: groupCount * descriptorSize)
        inodeTables = (0..<groupCount).map { group in
            let d = group * descriptorSize
            return UInt64(table.u32(d + 0x8)) | (descriptorSize >= 64 ? UInt64(table.u32(d + 0x28)) << 32 : 0)
        }
    }

    /// The byte offset of block `block`, or an error when it lies beyond the filesystem.
    func offset(ofBlock block: UInt64, what: @autoclosure () -> String) throws -> Int64 {
        guard block < UInt64(byteSize / Int64(blockSize)) else {
            throw KilnError(.io, "\(path): \(what()) points at block \(block), beyond the filesystem")
        }
        return Int64(block) * Int64(blockSize)
    }

    // MARK: - Partitions

    /// Where the root filesystem starts: 0 for a bare filesystem, else the one ext partition of
    /// an MBR or GPT table, or of several the one labelled `root`; nil when there is none.
    static func filesystemOffset(_ disk: any DiskReader) throws -> Int64? {
        if try isExt(disk, at: 0) { return 0 }
        let mbr = try disk.read(at: 0, count: 512)
        guard mbr[510] == 0x55, mbr[511] == 0xAA else { return nil }
        var candidates: [(start: Int64, size: Int64)] = []
        let entries = (0..<4).map { 446 + $0 * 16 }
        if entries.contains(where: { mbr[$0 + 4] == 0xEE }) {
            let header = try disk.read(at: 512, count: 92)
            guard String(decoding: header[0..<8], as: UTF8.self) == "EFI PART" else { return nil }
            guard header.u64(72) < 1 << 40 else { return nil }
            let table = Int64(header.u64(72)) * 512
            let count = min(Int(header.u32(80)), 256)
            let size = Int(header.u32(84))
            guard size >= 48, size <= 4096 else { return nil }
            let all = try disk.read(at: table, count: count * size)
            for i in 0..<count {
                let first = all.u64(i * size + 32), last = all.u64(i * size + 40)
                if first > 0, last >= first, last < 1 << 40 {
                    candidates.append((Int64(first) * 512, Int64(last - first + 1) * 512))
                }
            }
        } else {
            for entry in entries where mbr[entry + 4] != 0 {
                candidates.append((Int64(mbr.u32(entry + 8)) * 512, Int64(mbr.u32(entry + 12)) * 512))
            }
        }
        let ext = try candidates.filter { try isExt(disk, at: $0.start) }
        guard ext.count > 1 else { return ext.first?.start }
        // Several: the one labelled `root`, as kiln's disks and its build boot name it (the
        // largest, as before, could be a data partition, and the root would go unread).
        let labelled = try ext.filter { try label(disk, at: $0.start) == "root" }
        guard labelled.count == 1 else {
            throw KilnError(
                .invalidInput,
                "\(disk.name): \(ext.count) ext filesystems and \(labelled.count) of them labelled root: kiln cannot tell which is the root"
            )
        }
        return labelled[0].start
    }

    /// The volume label in the superblock of the filesystem at `start`.
    static func label(_ disk: any DiskReader, at start: Int64) throws -> String {
        let name = try disk.read(at: start + 1024 + 0x78, count: 16)
        return String(decoding: name.prefix { $0 != 0 }, as: UTF8.self)
    }

    static func isExt(_ disk: any DiskReader, at start: Int64) throws -> Bool {
        let sb = try disk.read(at: start + 1024, count: 0x40, allowShort: true)
        return sb.count == 0x40 && sb.u16(0x38) == magic
    }

    func read(at offset: Int64, count: Int) throws -> [UInt8] {
        try disk.read(at: self.offset + offset, count: count)
    }

    // MARK: - Inodes

    public func inode(_ number: UInt32) throws -> Ext4Inode {
        guard number >= 1, Int((number - 1) / inodesPerGroup) < inodeTables.count else {
            throw KilnError(.io, "\(path): inode \(number) is out of range")
        }
        let table = inodeTables[Int((number - 1) / inodesPerGroup)], index = (number - 1) % inodesPerGroup
        let start = try offset(ofBlock: table, what: "the inode table of inode \(number)")
        let raw = try read(at: start + Int64(index) * Int64(inodeSize), count: inodeSize)
        return Ext4Inode(number: number, raw: raw)
    }

    /// The byte ranges of a file's data, in order: (offset in the file, disk byte offset or nil
    /// for a hole or an unwritten extent, length).
    func extents(of inode: Ext4Inode) throws -> [(logical: Int64, physical: Int64?, length: Int64)] {
        guard inode.flags & 0x80000 != 0 else {
            if inode.flags & 0x1000_0000 != 0 { throw KilnError(.invalidInput, "\(path): inode \(inode.number) uses inline data") }
            if inode.size == 0 { return [] }
            throw KilnError(.invalidInput, "\(path): inode \(inode.number) uses the ext2/3 block map, which kiln does not read")
        }
        guard inode.size >= 0, inode.size <= byteSize else {
            throw KilnError(.io, "\(path): inode \(inode.number) says it holds \(inode.size) bytes, more than the filesystem's \(byteSize)")
        }
        var leaves: [(Int64, Int64?, Int64)] = []
        // Index blocks seen: a tree naming one block twice (over and over, under a hostile
        // guest) would be read without end.
        var indexBlocks: Set<UInt64> = []
        try walkExtentNode(Array(inode.raw[0x28..<0x28 + 60]), depth: 0, into: &leaves, seen: &indexBlocks)
        let bs = Int64(blockSize)
        // Holes become explicit so a reader can stream zeros for them.
        var result: [(logical: Int64, physical: Int64?, length: Int64)] = []
        var position: Int64 = 0
        for (block, start, count) in leaves.sorted(by: { $0.0 < $1.0 }) {
            let logical = block * bs
            guard logical < inode.size else { break }
            // Extents that overlap would have the same bytes read again for each of them.
            guard logical >= position else { throw KilnError(.io, "\(path): inode \(inode.number) has overlapping extents: corrupt") }
            if logical > position { result.append((position, nil, logical - position)) }
            let length = min(count * bs, inode.size - logical)
            result.append((logical, start.map { $0 * bs }, length))
            position = logical + length
        }
        if position < inode.size { result.append((position, nil, inode.size - position)) }
        return result
    }

    private func walkExtentNode(
        _ node: [UInt8], depth: Int, into leaves: inout [(Int64, Int64?, Int64)], seen: inout Set<UInt64>
    ) throws {
        guard node.u16(0) == 0xF30A, depth < 8 else { throw KilnError(.io, "\(path): corrupt extent tree") }
        let entries = Int(node.u16(2)), level = node.u16(6)
        guard 12 + entries * 12 <= node.count else { throw KilnError(.io, "\(path): corrupt extent tree") }
        for i in 0..<entries {
            let e = 12 + i * 12
            guard leaves.count < Self.maxExtents else { throw KilnError(.io, "\(path): corrupt extent tree (too many extents)") }
            if level == 0 {
                var length = Int64(node.u16(e + 4))
                let unwritten = length > 32768
                if unwritten { length -= 32768 }
                let start = UInt64(node.u16(e + 6)) << 32 | UInt64(node.u32(e + 8))
                // The whole extent lies inside the filesystem (the physical offsets are used as they are).
                let first = try offset(ofBlock: start, what: "an extent")
                _ = try offset(ofBlock: start + UInt64(max(length, 1) - 1), what: "an extent's end")
                leaves.append((Int64(node.u32(e)), unwritten ? nil : first / Int64(blockSize), length))
            } else {
                let child = UInt64(node.u16(e + 8)) << 32 | UInt64(node.u32(e + 4))
                guard seen.insert(child).inserted, seen.count <= Self.maxExtents else {
                    throw KilnError(.io, "\(path): corrupt extent tree (an index block named twice)")
                }
                let at = try offset(ofBlock: child, what: "an extent index")
                try walkExtentNode(try read(at: at, count: blockSize), depth: depth + 1, into: &leaves, seen: &seen)
            }
        }
    }

    /// Streams a file's contents in chunks of at most `chunk` bytes; holes come as zeros.
    /// Like ``readContents(of:chunk:_:)``, but `body` returns false to stop early.
    public func scanContents(of inode: Ext4Inode, chunk: Int = 1 << 20, _ body: (UnsafeRawBufferPointer) throws -> Bool) throws {
        struct Stop: Error {}
        do {
            try readContents(of: inode, chunk: chunk) { (part: UnsafeRawBufferPointer) throws -> Void in
                if try !body(part) { throw Stop() }
            }
        } catch is Stop {}
    }

    /// Streams a file's contents in chunks of at most `chunk` bytes; holes come as zeros.
    public func readContents(of inode: Ext4Inode, chunk: Int = 1 << 20, _ body: (UnsafeRawBufferPointer) throws -> Void) throws {
        let zeros = [UInt8](repeating: 0, count: chunk)
        var buffer = [UInt8](repeating: 0, count: chunk)
        for extent in try extents(of: inode) {
            var done: Int64 = 0
            while done < extent.length {
                let n = Int(min(Int64(chunk), extent.length - done))
                if let physical = extent.physical {
                    try buffer.withUnsafeMutableBytes { out in
                        let part = UnsafeMutableRawBufferPointer(rebasing: out[0..<n])
                        guard try disk.read(into: part, at: offset + physical + done) == n else {
                            throw KilnError(.io, "\(path): cannot read inode \(inode.number)'s data")
                        }
                        try body(UnsafeRawBufferPointer(part))
                    }
                } else {
                    try zeros.withUnsafeBytes { try body(UnsafeRawBufferPointer(rebasing: $0[0..<n])) }
                }
                done += Int64(n)
            }
        }
    }

    /// A small file's whole contents (directories, slow symlinks): larger ones are corrupt here.
    func contents(of inode: Ext4Inode) throws -> [UInt8] { try readFile(inode, limit: Self.maxMetadataRead) }

    /// A file's whole contents, refused (as corrupt) when larger than `limit` bytes.
    public func readFile(_ inode: Ext4Inode, limit: Int64) throws -> [UInt8] {
        guard inode.size >= 0, inode.size <= limit else {
            throw KilnError(
                .io, "\(path): inode \(inode.number) says it holds \(inode.size) bytes, more than the \(limit) kiln reads of it: corrupt")
        }
        var data: [UInt8] = []
        data.reserveCapacity(Int(inode.size))
        try readContents(of: inode) { data.append(contentsOf: $0) }
        return data
    }

    /// A directory's entries other than `.` and `..`, sorted by name so archives are reproducible.
    public func entries(of directory: Ext4Inode) throws -> [(name: String, inode: UInt32)] {
        let data = try contents(of: directory)
        var result: [(name: String, inode: UInt32)] = []
        var position = 0
        while position + 8 <= data.count {
            let number = data.u32(position), recordLength = Int(data.u16(position + 4)), nameLength = Int(data[position + 6])
            guard recordLength >= 8, position + recordLength <= data.count, nameLength + 8 <= recordLength else {
                throw KilnError(.io, "\(path): corrupt directory entry in inode \(directory.number)")
            }
            // Inode 0 marks unused space, hashed directories' index blocks and checksum tails.
            if number != 0 {
                let bytes = data[(position + 8)..<(position + 8 + nameLength)]
                // ext4 names hold neither; a corrupt entry could, and become a path elsewhere.
                guard !bytes.isEmpty, !bytes.contains(0x2F), !bytes.contains(0) else {
                    throw KilnError(.io, "\(path): a name in directory inode \(directory.number) holds '/' or NUL or is empty")
                }
                let name = String(decoding: bytes, as: UTF8.self)
                if name != ".", name != ".." { result.append((name, number)) }
            }
            position += recordLength
        }
        return result.sorted { Array($0.name.utf8).lexicographicallyPrecedes(Array($1.name.utf8)) }
    }

    public func symlinkTarget(of inode: Ext4Inode) throws -> String {
        guard inode.size >= 0, inode.size <= 4096 else {
            throw KilnError(.io, "\(path): symbolic link inode \(inode.number) is \(inode.size) bytes long: corrupt")
        }
        if inode.flags & 0x80000 == 0, inode.size < 60 {
            return String(decoding: inode.raw[0x28..<(0x28 + Int(inode.size))], as: UTF8.self)
        }
        return String(decoding: try contents(of: inode), as: UTF8.self)
    }

    /// The `security.*` extended attributes: file capabilities and security labels, which
    /// change what a program may do. `user.*` ones (journald's and systemd's bookkeeping) and
    /// `system.*` ones (ACLs, inline data) are not exported: tar tools read them unevenly.
    public func extendedAttributes(of inode: Ext4Inode) throws -> [(name: String, value: [UInt8])] {
        var result: [(String, [UInt8])] = []
        let extra = inode.raw.count > 0x82 ? Int(inode.raw.u16(0x80)) : 0
        let inInode = 128 + extra
        if inode.raw.count >= inInode + 4, inode.raw.u32(inInode) == 0xEA02_0000 {
            result += Self.parseAttributes(inode.raw, entries: inInode + 4, valuesBase: inInode + 4)
        }
        if inode.xattrBlock != 0 {
            let block = try read(at: try offset(ofBlock: inode.xattrBlock, what: "an attribute block"), count: blockSize)
            if block.u32(0) == 0xEA02_0000 { result += Self.parseAttributes(block, entries: 32, valuesBase: 0) }
        }
        return result.sorted { $0.0 < $1.0 }
    }

    static func parseAttributes(_ data: [UInt8], entries: Int, valuesBase: Int) -> [(String, [UInt8])] {
        let prefixes: [UInt8: String] = [6: "security."]
        var result: [(String, [UInt8])] = []
        var e = entries
        while e + 16 <= data.count, data.u32(e) != 0 {
            let nameLength = Int(data[e]), index = data[e + 1]
            let valueOffset = Int(data.u16(e + 2)), valueInode = data.u32(e + 4), valueSize = Int(data.u32(e + 8))
            guard e + 16 + nameLength <= data.count else { break }
            let start = valuesBase + valueOffset
            if let prefix = prefixes[index], valueInode == 0, start + valueSize <= data.count {
                let name = prefix + String(decoding: data[(e + 16)..<(e + 16 + nameLength)], as: UTF8.self)
                result.append((name, Array(data[start..<(start + valueSize)])))
            }
            e += (16 + nameLength + 3) & ~3
        }
        return result
    }

    /// The inode at the absolute `path`, resolved as the guest's kernel would inside this
    /// filesystem (symbolic links followed, at most 40 of them; `..` at the root stays there),
    /// or nil when a component is missing or is not a directory.
    public func lookup(_ path: String) throws -> Ext4Inode? {
        var pending = path.split(separator: "/").map(String.init)
        // The directories walked so far, from the root, for `..` and relative link targets.
        var stack = [try inode(Self.rootInode)]
        var links = 0
        while !pending.isEmpty {
            let component = pending.removeFirst()
            if component == "." { continue }
            if component == ".." {
                if stack.count > 1 { stack.removeLast() }
                continue
            }
            guard let directory = stack.last, directory.kind == .directory,
                let entry = try entries(of: directory).first(where: { $0.name == component })
            else { return nil }
            let node = try inode(entry.inode)
            guard node.kind == .symlink else {
                stack.append(node)
                continue
            }
            links += 1
            guard links <= 40 else { throw KilnError(.io, "\(self.path): too many symbolic links resolving \(path)") }
            let target = try symlinkTarget(of: node)
            if target.hasPrefix("/") { stack = [stack[0]] }
            pending = target.split(separator: "/").map(String.init) + pending
        }
        return stack.last
    }

    /// Every entry under the root, depth first in name order: what a tar of the tree lists.
    public func walk(_ visit: (_ path: String, _ inode: Ext4Inode) throws -> Void) throws {
        var stack: [(String, UInt32)] = [("", Self.rootInode)]
        // A directory reached twice is a hard-linked directory: a cycle, or a tree repeated.
        var seen: Set<UInt32> = []
        while let (directoryPath, number) = stack.popLast() {
            guard seen.insert(number).inserted else {
                throw KilnError(.io, "\(path): directory inode \(number) is reached twice (at /\(directoryPath)): corrupt")
            }
            let directory = try inode(number)
            var subdirectories: [(String, UInt32)] = []
            for (name, child) in try entries(of: directory) {
                let childPath = directoryPath.isEmpty ? name : directoryPath + "/" + name
                let node = try inode(child)
                try visit(childPath, node)
                if node.kind == .directory { subdirectories.append((childPath, child)) }
            }
            stack.append(contentsOf: subdirectories.reversed())
        }
    }
}

public struct Ext4Inode: Sendable {
    public enum Kind: Sendable { case file, directory, symlink, characterDevice, blockDevice, fifo, socket, unknown }

    public let number: UInt32
    let raw: [UInt8]

    init(number: UInt32, raw: [UInt8]) {
        self.number = number
        self.raw = raw
    }

    public var mode: UInt16 { raw.u16(0) }
    public var permissions: UInt16 { mode & 0o7777 }
    public var kind: Kind {
        switch mode & 0xF000 {
        case 0x8000: .file
        case 0x4000: .directory
        case 0xA000: .symlink
        case 0x2000: .characterDevice
        case 0x6000: .blockDevice
        case 0x1000: .fifo
        case 0xC000: .socket
        default: .unknown
        }
    }
    public var uid: UInt32 { UInt32(raw.u16(0x2)) | UInt32(raw.u16(0x78)) << 16 }
    public var gid: UInt32 { UInt32(raw.u16(0x18)) | UInt32(raw.u16(0x7A)) << 16 }
    public var size: Int64 { Int64(raw.u32(0x4)) | Int64(raw.u32(0x6C)) << 32 }
    public var links: UInt16 { raw.u16(0x1A) }
    var flags: UInt32 { raw.u32(0x20) }
    public var generation: UInt32 { raw.u32(0x64) }
    var xattrBlock: UInt64 { UInt64(raw.u32(0x68)) | UInt64(raw.u16(0x76)) << 32 }
    private var extraSize: Int { raw.count > 0x82 ? Int(raw.u16(0x80)) : 0 }

    /// Seconds and nanoseconds; the extra field (256-byte inodes) holds nanoseconds and the
    /// epoch bits that carry dates past 2038.
    private func time(_ base: Int, extra: Int) -> (seconds: Int64, nanoseconds: Int32) {
        var seconds = Int64(Int32(bitPattern: raw.u32(base)))
        guard extra + 4 <= 128 + extraSize, extra + 4 <= raw.count else { return (seconds, 0) }
        let value = raw.u32(extra)
        seconds += Int64(value & 3) << 32
        return (seconds, Int32(value >> 2))
    }
    public var modified: (seconds: Int64, nanoseconds: Int32) { time(0x10, extra: 0x88) }
    /// Changed on every write to the inode and not settable from user space: with the inode
    /// number and generation it tells whether a layer touched a file its parent had.
    public var changed: (seconds: Int64, nanoseconds: Int32) { time(0xC, extra: 0x84) }

    /// A device node's numbers, from the old 16-bit or the new 32-bit encoding.
    public var device: (major: UInt32, minor: UInt32) {
        let old = raw.u32(0x28)
        if old != 0 { return ((old >> 8) & 0xFF, old & 0xFF) }
        let new = raw.u32(0x2C)
        return ((new >> 8) & 0xFFF, (new & 0xFF) | ((new >> 12) & 0xFFF00))
    }
}

extension [UInt8] {
    func u16(_ at: Int) -> UInt16 { UInt16(self[at]) | UInt16(self[at + 1]) << 8 }
    func u32(_ at: Int) -> UInt32 { UInt32(u16(at)) | UInt32(u16(at + 2)) << 16 }
    func u64(_ at: Int) -> UInt64 { UInt64(u32(at)) | UInt64(u32(at + 4)) << 32 }
}
