import CArchive
import CZlib
import Crypto
import Foundation
import KilnCore
import KilnDisk

/// Writes an ext4 tree (or its difference from a parent's) as a tar stream with libarchive.
///
/// Entries come in a fixed order (depth first, names sorted) with the filesystem's own owners,
/// modes and times, so one image's tree always gives the same bytes: an OCI layer of an
/// unchanged parent has the same digest on every export and a registry already holding it is
/// not sent it again.
final class TreeArchive {
    let archive: OpaquePointer
    private var hardLinks: [UInt32: String] = [:]
    private(set) var entries = 0

    /// A `.tar.zst` file (libarchive's zstd filter).
    static func zstdFile(_ path: String) throws -> TreeArchive {
        guard let archive = archive_write_new() else { throw KilnError(.io, "libarchive: out of memory") }
        try configure(archive)
        archive_write_add_filter_zstd(archive)
        guard archive_write_open_filename(archive, path) == ARCHIVE_OK else {
            defer { archive_write_free(archive) }
            throw KilnError(.io, "cannot write \(path): \(String(cString: archive_error_string(archive)))")
        }
        return TreeArchive(archive)
    }

    /// An uncompressed tar handed to `sink` as libarchive produces it.
    static func stream(to sink: GzipBlobWriter) throws -> TreeArchive {
        guard let archive = archive_write_new() else { throw KilnError(.io, "libarchive: out of memory") }
        try configure(archive)
        archive_write_add_filter_none(archive)
        let context = Unmanaged.passUnretained(sink).toOpaque()
        let status = archive_write_open(
            archive, context, nil,
            { _, context, buffer, length in
                let sink = Unmanaged<GzipBlobWriter>.fromOpaque(context!).takeUnretainedValue()
                do {
                    try sink.write(UnsafeRawBufferPointer(start: buffer, count: length))
                    return la_ssize_t(length)
                } catch {
                    sink.failure = error
                    return -1
                }
            }, nil)
        guard status == ARCHIVE_OK else {
            defer { archive_write_free(archive) }
            throw KilnError(.io, "libarchive: \(String(cString: archive_error_string(archive)))")
        }
        return TreeArchive(archive)
    }

    private init(_ archive: OpaquePointer) { self.archive = archive }

    /// pax (names of any length, nanosecond times, extended attributes), with attributes in the
    /// SCHILY form GNU tar and container tools read, and not again in libarchive's own form.
    private static func configure(_ archive: OpaquePointer) throws {
        // ext4 names are bytes, in practice UTF-8. Under the C locale libarchive cannot convert
        // non-ASCII names and marks them `hdrcharset=BINARY`, which GNU tar warns about.
        _ = setlocale(LC_CTYPE, "C.UTF-8")
        archive_write_set_format_pax_restricted(archive)
        guard archive_write_set_format_option(archive, "pax", "xattrheader", "SCHILY") == ARCHIVE_OK else {
            defer { archive_write_free(archive) }
            throw KilnError(.io, "libarchive: \(String(cString: archive_error_string(archive)))")
        }
    }

    deinit { archive_write_free(archive) }

    func finish() throws {
        guard archive_write_close(archive) == ARCHIVE_OK else { throw error("closing the archive") }
    }

    private func error(_ what: String) -> KilnError {
        KilnError(.io, "libarchive: \(what): \(archive_error_string(archive).map { String(cString: $0) } ?? "unknown error")")
    }

    /// The whole tree of `volume`.
    func addTree(_ volume: Ext4Volume) throws {
        try volume.walk { path, inode in try add(path, inode, from: volume) }
    }

    /// What `volume` has that `parent` does not, or has changed, then a whiteout for each
    /// path `parent` has that `volume` removed (the topmost removed path only).
    ///
    /// An unchanged entry is one with the same inode number, generation and change time: the
    /// layer's disk began as a copy of its parent's, and the kernel sets a new change time on
    /// every write to an inode, which nothing in user space can set back.
    func addDifference(_ volume: Ext4Volume, parent: Ext4Volume) throws {
        struct Signature: Equatable {
            let inode: UInt32, generation: UInt32, seconds: Int64, nanoseconds: Int32, mode: UInt16
            init(_ i: Ext4Inode) {
                (inode, generation, mode) = (i.number, i.generation, i.mode)
                (seconds, nanoseconds) = i.changed
            }
        }
        var before: [String: (Signature, Bool)] = [:]
        var beforeOrder: [String] = []
        try parent.walk { path, inode in
            before[path] = (Signature(inode), inode.kind == .directory)
            beforeOrder.append(path)
        }
        var directories: Set<String> = [""]
        var present: Set<String> = []
        try volume.walk { path, inode in
            present.insert(path)
            if inode.kind == .directory { directories.insert(path) }
            if let old = before[path], old.0 == Signature(inode) { return }
            try add(path, inode, from: volume)
        }
        for path in beforeOrder where !present.contains(path) {
            let slash = path.lastIndex(of: "/")
            let directory = slash.map { String(path[..<$0]) } ?? ""
            guard directories.contains(directory) else { continue }
            let name = slash.map { String(path[path.index(after: $0)...]) } ?? path
            try addWhiteout((directory.isEmpty ? "" : directory + "/") + ".wh." + name)
        }
    }

    private func addWhiteout(_ path: String) throws {
        let entry = archive_entry_new()
        defer { archive_entry_free(entry) }
        archive_entry_set_pathname(entry, path)
        archive_entry_set_filetype(entry, 0o100000)
        archive_entry_set_perm(entry, 0o644)
        archive_entry_set_size(entry, 0)
        guard archive_write_header(archive, entry) >= ARCHIVE_WARN else { throw error(path) }
        entries += 1
    }

    private func add(_ path: String, _ inode: Ext4Inode, from volume: Ext4Volume) throws {
        // The walk is synchronous; Ctrl-C (task cancellation) stops it between entries.
        if Task.isCancelled { throw KilnError(.cancelled, "export cancelled") }
        let entry = archive_entry_new()
        defer { archive_entry_free(entry) }
        archive_entry_set_pathname(entry, path)
        archive_entry_set_perm(entry, mode_t(inode.permissions))
        archive_entry_set_uid(entry, la_int64_t(inode.uid))
        archive_entry_set_gid(entry, la_int64_t(inode.gid))
        let mtime = inode.modified
        archive_entry_set_mtime(entry, time_t(mtime.seconds), Int(mtime.nanoseconds))
        for (name, value) in try volume.extendedAttributes(of: inode) {
            value.withUnsafeBytes { archive_entry_xattr_add_entry(entry, name, $0.baseAddress, value.count) }
        }
        var withData = false
        switch inode.kind {
        case .directory:
            archive_entry_set_filetype(entry, 0o040000)
        case .symlink:
            archive_entry_set_filetype(entry, 0o120000)
            archive_entry_set_symlink(entry, try volume.symlinkTarget(of: inode))
        case .file:
            archive_entry_set_filetype(entry, 0o100000)
            if inode.links > 1, let first = hardLinks[inode.number] {
                archive_entry_set_hardlink(entry, first)
                archive_entry_set_size(entry, 0)
            } else {
                if inode.links > 1 { hardLinks[inode.number] = path }
                archive_entry_set_size(entry, la_int64_t(inode.size))
                withData = inode.size > 0
            }
        case .characterDevice, .blockDevice:
            archive_entry_set_filetype(entry, inode.kind == .characterDevice ? 0o020000 : 0o060000)
            let device = inode.device
            archive_entry_set_rdevmajor(entry, dev_t(device.major))
            archive_entry_set_rdevminor(entry, dev_t(device.minor))
        case .fifo:
            archive_entry_set_filetype(entry, 0o010000)
        case .socket, .unknown:
            // Sockets exist only while a process listens on them; tar has no type for them.
            return
        }
        guard archive_write_header(archive, entry) >= ARCHIVE_WARN else { throw error(path) }
        entries += 1
        if withData {
            try volume.readContents(of: inode) { chunk in
                let written = archive_write_data(archive, chunk.baseAddress, chunk.count)
                guard written == chunk.count else { throw error(path) }
            }
        }
    }
}

/// Receives an uncompressed tar, gzips it into a file, and hashes both sides in the same pass:
/// the tar's digest is the layer's `diff_id`, the file's its blob digest.
final class GzipBlobWriter {
    private var stream = z_stream()
    private var tarHash = SHA256()
    private var blobHash = SHA256()
    private let output: FileHandle
    private var outBuffer = [UInt8](repeating: 0, count: 1 << 20)
    private(set) var compressedSize: Int64 = 0
    var failure: (any Error)?

    init(path: String) throws {
        guard FileManager.default.createFile(atPath: path, contents: nil), let handle = FileHandle(forWritingAtPath: path) else {
            throw KilnError(.io, "cannot write \(path)")
        }
        output = handle
        // 31 = a gzip wrapper (16) on a 32 KiB window (15); zlib writes no name and a zero time,
        // so the bytes depend on the tar only.
        guard deflateInit2_(&stream, 6, Z_DEFLATED, 31, 8, Z_DEFAULT_STRATEGY, ZLIB_VERSION, Int32(MemoryLayout<z_stream>.size)) == Z_OK
        else { throw KilnError(.io, "zlib: cannot start a gzip stream") }
    }

    deinit { deflateEnd(&stream) }

    func write(_ data: UnsafeRawBufferPointer) throws {
        guard data.count > 0 else { return }
        tarHash.update(bufferPointer: data)
        stream.next_in = UnsafeMutablePointer(mutating: data.bindMemory(to: UInt8.self).baseAddress)
        stream.avail_in = uInt(data.count)
        // A full output buffer means deflate has more to give for this input.
        repeat { _ = try deflateOnce(Z_NO_FLUSH) } while stream.avail_out == 0
    }

    /// Ends the gzip stream: returns `sha256:` digests of the tar and of the file.
    func finish() throws -> (diffID: String, digest: String, size: Int64) {
        if let failure { throw failure }
        stream.next_in = nil
        stream.avail_in = 0
        var status: Int32
        repeat { status = try deflateOnce(Z_FINISH) } while status == Z_OK
        guard status == Z_STREAM_END else { throw KilnError(.io, "zlib: cannot finish the gzip stream (\(status))") }
        try output.synchronize()
        try output.close()
        return ("sha256:" + tarHash.finalize().hex, "sha256:" + blobHash.finalize().hex, compressedSize)
    }

    /// One deflate call into the output buffer; what it produced is hashed and written.
    private func deflateOnce(_ flush: Int32) throws -> Int32 {
        let (status, produced) = outBuffer.withUnsafeMutableBytes { out -> (Int32, Int) in
            stream.next_out = out.bindMemory(to: UInt8.self).baseAddress
            stream.avail_out = uInt(out.count)
            let status = deflate(&stream, flush)
            return (status, out.count - Int(stream.avail_out))
        }
        guard status == Z_OK || status == Z_STREAM_END || status == Z_BUF_ERROR else {
            throw KilnError(.io, "zlib: deflate failed (\(status))")
        }
        if produced > 0 {
            let chunk = Data(outBuffer[0..<produced])
            blobHash.update(data: chunk)
            try output.write(contentsOf: chunk)
            compressedSize += Int64(produced)
        }
        return status
    }
}
