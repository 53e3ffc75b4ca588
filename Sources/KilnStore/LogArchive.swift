import CArchive
import Foundation
import KilnCore
import KilnModel

/// Build logs archived as `.tar.zst` with libarchive, so a failed build's logs outlive its VM.
public enum LogArchive {
    /// Writes `files` (name in the archive -> path on disk) into a zstd-compressed tar at `path`,
    /// via a temporary name and a rename so a half-written archive is never seen.
    public static func write(_ files: [(name: String, path: String)], to path: String) throws {
        let temporary = path + ".tmp"
        guard let archive = archive_write_new() else { throw KilnError(.io, "libarchive: out of memory") }
        defer { archive_write_free(archive) }
        archive_write_set_format_pax_restricted(archive)
        archive_write_add_filter_zstd(archive)
        guard archive_write_open_filename(archive, temporary) == ARCHIVE_OK else {
            throw KilnError(.io, "cannot write \(temporary): \(String(cString: archive_error_string(archive)))")
        }
        for (name, file) in files {
            guard let data = FileManager.default.contents(atPath: file) else { continue }
            let entry = archive_entry_new()
            defer { archive_entry_free(entry) }
            archive_entry_set_pathname(entry, name)
            archive_entry_set_size(entry, la_int64_t(data.count))
            archive_entry_set_filetype(entry, 0o100000)  // AE_IFREG is not imported into Swift
            archive_entry_set_perm(entry, 0o644)
            archive_entry_set_mtime(entry, time(nil), 0)
            guard archive_write_header(archive, entry) == ARCHIVE_OK else {
                throw KilnError(.io, "libarchive: \(String(cString: archive_error_string(archive)))")
            }
            if !data.isEmpty {
                let written = data.withUnsafeBytes { archive_write_data(archive, $0.baseAddress, data.count) }
                guard written == data.count else {
                    throw KilnError(.io, "libarchive: short write of \(name) into \(temporary)")
                }
            }
        }
        guard archive_write_close(archive) == ARCHIVE_OK else {
            throw KilnError(.io, "libarchive: \(String(cString: archive_error_string(archive)))")
        }
        try Store.fsync(path: temporary)
        guard rename(temporary, path) == 0 else { throw KilnError(.io, "cannot rename \(temporary) to \(path)") }
    }

    /// The names of the entries of an archive.
    public static func entries(of path: String) throws -> [String] {
        var names: [String] = []
        try read(path) { name, _ in names.append(name) }
        return names
    }

    /// The content of one entry, or nil when the archive has no such entry.
    public static func read(_ path: String, entry wanted: String) throws -> Data? {
        var found: Data?
        try read(path) { name, data in if name == wanted { found = data() } }
        return found
    }

    private static func read(_ path: String, _ visit: (String, () -> Data) -> Void) throws {
        guard let archive = archive_read_new() else { throw KilnError(.io, "libarchive: out of memory") }
        defer { archive_read_free(archive) }
        archive_read_support_format_tar(archive)
        archive_read_support_filter_zstd(archive)
        guard archive_read_open_filename(archive, path, 1 << 16) == ARCHIVE_OK else {
            throw KilnError(.io, "cannot read log archive \(path): \(String(cString: archive_error_string(archive)))")
        }
        var entry: OpaquePointer?
        while archive_read_next_header(archive, &entry) == ARCHIVE_OK {
            let name = String(cString: archive_entry_pathname(entry))
            visit(name) {
                var data = Data()
                var buffer = [UInt8](repeating: 0, count: 1 << 16)
                while true {
                    let n = archive_read_data(archive, &buffer, buffer.count)
                    if n <= 0 { break }
                    data.append(buffer, count: n)
                }
                return data
            }
        }
    }
}
