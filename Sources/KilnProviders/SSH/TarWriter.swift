import CArchive
import Foundation
import KilnCore

#if canImport(Glibc)
    import Glibc
#endif

/// Packs host files into a tar (libarchive) for upload into a guest, owned by root so the
/// guest's `tar -x` gives them the ownership an image expects.
public enum TarWriter {
    /// - Parameters:
    ///   - source: a file or a directory on the host.
    ///   - prefix: the name the source gets in the archive ("" puts a directory's contents at the top).
    public static func write(source: String, prefix: String, to path: String) throws {
        guard let archive = archive_write_new() else { throw KilnError(.io, "libarchive: out of memory") }
        defer { archive_write_free(archive) }
        archive_write_set_format_pax_restricted(archive)
        guard archive_write_open_filename(archive, path) == ARCHIVE_OK else {
            throw KilnError(.io, "cannot write \(path): \(String(cString: archive_error_string(archive)))")
        }
        var isDirectory: ObjCBool = false
        FileManager.default.fileExists(atPath: source, isDirectory: &isDirectory)
        if !prefix.isEmpty { try add(archive, path: source, name: prefix) }
        if isDirectory.boolValue {
            let base = URL(fileURLWithPath: source)
            guard let walker = FileManager.default.enumerator(atPath: source) else {
                throw KilnError(.io, "cannot list \(source)")
            }
            for case let relative as String in walker {
                let name = prefix.isEmpty ? relative : prefix + "/" + relative
                try add(archive, path: base.appendingPathComponent(relative).path, name: name)
            }
        }
        guard archive_write_close(archive) == ARCHIVE_OK else {
            throw KilnError(.io, "libarchive: \(String(cString: archive_error_string(archive)))")
        }
    }

    private static func add(_ archive: OpaquePointer, path: String, name: String) throws {
        var info = stat()
        guard lstat(path, &info) == 0 else { throw KilnError(.io, "cannot read \(path)") }
        let entry = archive_entry_new()
        defer { archive_entry_free(entry) }
        archive_entry_set_pathname(entry, name)
        archive_entry_set_perm(entry, mode_t(info.st_mode & 0o7777))
        archive_entry_set_uid(entry, 0)
        archive_entry_set_gid(entry, 0)
        archive_entry_set_uname(entry, "root")
        archive_entry_set_gname(entry, "root")
        archive_entry_set_mtime(entry, info.st_mtim.tv_sec, info.st_mtim.tv_nsec)
        let type = info.st_mode & Glibc.S_IFMT
        var contents: FileHandle?
        switch type {
        case Glibc.S_IFDIR:
            archive_entry_set_filetype(entry, 0o040000)
        case Glibc.S_IFLNK:
            archive_entry_set_filetype(entry, 0o120000)
            let target = try FileManager.default.destinationOfSymbolicLink(atPath: path)
            archive_entry_set_symlink(entry, target)
        case Glibc.S_IFREG:
            archive_entry_set_filetype(entry, 0o100000)
            archive_entry_set_size(entry, la_int64_t(info.st_size))
            contents = FileHandle(forReadingAtPath: path)
            guard contents != nil else { throw KilnError(.io, "cannot read \(path)") }
        default:
            throw KilnError(.invalidInput, "\(path): only files, directories and symlinks can be uploaded")
        }
        guard archive_write_header(archive, entry) == ARCHIVE_OK else {
            throw KilnError(.io, "libarchive: \(String(cString: archive_error_string(archive)))")
        }
        if let contents {
            defer { try? contents.close() }
            while let chunk = try contents.read(upToCount: 1 << 20), !chunk.isEmpty {
                let written = chunk.withUnsafeBytes { archive_write_data(archive, $0.baseAddress, chunk.count) }
                guard written == chunk.count else { throw KilnError(.io, "libarchive: short write of \(path)") }
            }
        }
    }
}
