import CArchive
import Foundation
import KilnCore

/// cloud-init's NoCloud seed: an ISO 9660 volume labelled `cidata` holding `meta-data` and
/// `user-data`, attached as a read-only disk. A disk kiln did not make (`from: {file:}` or
/// `{url:}`, a cloud image) boots its own way, through its own boot loader; if it runs cloud-init,
/// this is how the build key reaches it. The systemd credential is passed as well, for disks
/// without cloud-init.
///
/// Written by libarchive's ISO 9660 writer (Rock Ridge keeps the lower-case names cloud-init
/// looks for), which kiln links already: no genisoimage or cloud-localds on the host.
enum NoCloudSeed {
    /// The user-data of a build boot: the build key for root, and no default user, so no
    /// account the image keeps ever holds the build key (root's is removed at the seal).
    static func userData(publicKey: String) -> String {
        """
        #cloud-config
        # kiln's build boot (docs/images.md): the build key for root only.
        users: []
        disable_root: false
        ssh_pwauth: false
        ssh_authorized_keys:
          - \(publicKey.trimmingCharacters(in: .whitespacesAndNewlines))

        """
    }

    /// A new instance id each build: cloud-init runs its per-instance modules (keys) again.
    static func metaData(buildID: String) -> String {
        "instance-id: kiln-\(buildID)\nlocal-hostname: kiln\n"
    }

    static func write(to path: String, buildID: String, publicKey: String) throws {
        guard let archive = archive_write_new() else { throw KilnError(.io, "libarchive: out of memory") }
        defer { archive_write_free(archive) }
        func check(_ status: Int32, _ what: String) throws {
            guard status == ARCHIVE_OK else {
                let message = archive_error_string(archive).map { String(cString: $0) } ?? "status \(status)"
                throw KilnError(.io, "writing the NoCloud seed \(path): \(what): \(message)")
            }
        }
        try check(archive_write_set_format_iso9660(archive), "format")
        try check(archive_write_set_format_option(archive, "iso9660", "volume-id", "cidata"), "volume id")
        try check(archive_write_open_filename(archive, path), "open")
        for (name, text) in [("meta-data", metaData(buildID: buildID)), ("user-data", userData(publicKey: publicKey))] {
            let bytes = Array(text.utf8)
            guard let entry = archive_entry_new() else { throw KilnError(.io, "libarchive: out of memory") }
            defer { archive_entry_free(entry) }
            archive_entry_set_pathname(entry, name)
            archive_entry_set_filetype(entry, 0o100000)  // AE_IFREG, a cast macro Swift does not import
            archive_entry_set_perm(entry, 0o444)
            archive_entry_set_size(entry, Int64(bytes.count))
            try check(archive_write_header(archive, entry), name)
            let written = bytes.withUnsafeBytes { archive_write_data(archive, $0.baseAddress, $0.count) }
            guard written == bytes.count else { throw KilnError(.io, "writing the NoCloud seed \(path): \(name) was cut short") }
        }
        try check(archive_write_close(archive), "close")
    }
}
