import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// Whether a path is kiln's user's alone. kiln acts on some files it finds (a dead kiln's
/// record of children to signal, a warm snapshot to load into a guest): one that another
/// user could have planted or changed would let them choose what kiln kills or runs.
public enum PrivatePath {
    public enum Kind: Sendable { case file, directory }

    /// Owned by this process's user, writable by no one else, of `kind`, and not a symbolic
    /// link (`lstat`: a link's target is not checked, the link itself is refused).
    public static func isOwn(_ path: String, _ kind: Kind = .file) -> Bool {
        var info = stat()
        guard lstat(path, &info) == 0 else { return false }
        let type = kind == .directory ? S_IFDIR : S_IFREG
        return info.st_mode & S_IFMT == type && info.st_uid == geteuid() && info.st_mode & 0o022 == 0
    }
}
