import Foundation
import KilnCore
import KilnModel

#if canImport(Glibc)
    import Glibc
#endif

/// The on-disk store under `$KILN_HOME`:
///
///     catalog.sqlite          the catalog (images, builds)
///     images/<digest>/        one immutable image: disk.qcow2 (+ vmlinuz, initrd.img, and blob.json
///                             listing them when present: the digest is then blob.json's), read-only
///     images/.tmp-<build>/    a build's disk while it runs; renamed to images/<digest>/ when sealed
///     builds/<build>/         scratch of a running build: SSH key, serial console, raw log
///     logs/<build>.tar.zst    archived logs of every build, failed ones included
///     cache/                  downloads and probes, safe to delete
///     run/<host>/             one lock per live kiln process of a machine and the children it started
///     locks/                  one lock per family, held while it builds
///
/// Staging directories sit next to the final ones so that a child disk's relative backing path
/// (`../<parent digest>/disk.qcow2`) is right both before and after the rename.
public final class Store: Sendable {
    public let root: String
    public let catalog: Catalog
    /// Blobs this process has re-hashed, with the file identity they had: a graph build checks
    /// each parent blob once, not once per child.
    private let verified = Locked<[String: FileIdentity]>([:])

    public static let diskName = ImageFiles.disk
    public static let kernelName = ImageFiles.kernel
    public static let initrdName = ImageFiles.initrd

    /// - Parameter catalog: where the catalog is (``Catalog/open(_:store:)``): nil for the
    ///   store's own SQLite file, or a `postgres://` URL for a catalog shared between machines.
    public init(root: String, catalog locator: String? = nil) throws {
        self.root = URL(fileURLWithPath: root).standardizedFileURL.path
        for dir in ["", "images", "builds", "logs", "cache", "run", "locks"] {
            let path = self.root + "/" + dir
            do {
                try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
            } catch {
                throw KilnError(.io, "cannot create the store directory \(path)", cause: error as NSError)
            }
        }
        catalog = try Catalog.open(locator, store: self.root)
        try FileManager.default.createDirectory(
            atPath: runDirectory, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        try ProcessRegistry.shared.attach(directory: runDirectory)
    }

    deinit { ProcessRegistry.shared.detach(directory: runDirectory) }

    /// Where this machine's live kiln processes hold their locks and record their children
    /// (``ProcessRegistry``): one directory per machine, as a store may be shared.
    public var runDirectory: String { root + "/run/" + ProcessRegistry.hostName.replacingOccurrences(of: "/", with: "_") }

    /// Whether `build` may still be running: on another machine (nothing here can tell), or
    /// in a live kiln process of this one.
    public func mayBeRunning(_ build: BuildRecord) -> Bool {
        guard build.status == .running else { return false }
        if let host = build.host, host != ProcessRegistry.hostName { return true }
        return ProcessRegistry.shared.isAlive(owner: build.pid, directory: runDirectory)
    }

    /// `$KILN_HOME`, else `~/.local/share/kiln`.
    public static func defaultRoot(environment: [String: String] = ProcessInfo.processInfo.environment) -> String {
        if let home = environment["KILN_HOME"], !home.isEmpty { return home }
        let userHome = environment["HOME"] ?? NSHomeDirectory()
        return userHome + "/.local/share/kiln"
    }

    public var imagesDirectory: String { root + "/images" }
    /// Provider plugins of this store (`kiln-provider-NAME`), found before those on `PATH`.
    public var pluginDirectory: String { root + "/plugins" }
    public var cacheDirectory: String { root + "/cache" }
    /// Warm snapshots of booted build VMs, one directory each (docs/building.md).
    public var warmSnapshotsDirectory: String { cacheDirectory + "/warm" }

    /// Held while `family` builds, by whichever kiln process builds it: two processes on one
    /// store never build the same family at once, and the second sees the first's result.
    public func lockFamily(_ family: String, waiting: @Sendable () -> Void) async throws -> any Sendable {
        try await catalog.lockFamily(family, waiting: waiting)
    }

    public func blobDirectory(digest: String) -> String { imagesDirectory + "/" + digest }

    public func diskPath(of image: ImageRecord) -> String { diskPath(digest: image.digest) }

    /// The disk of the blob `digest` (an image's overlay, or a base's source disk).
    public func diskPath(digest: String) -> String { blobDirectory(digest: digest) + "/" + Self.diskName }

    public func stagingDirectory(buildID: String) -> String { imagesDirectory + "/.tmp-" + buildID }

    public func scratchDirectory(buildID: String) -> String { root + "/builds/" + buildID }

    /// `builds/export-<pid>-…` is a running export's scratch space while that process lives on
    /// this machine (exports are not recorded as builds).
    public static func isLiveExportScratch(_ name: String) -> Bool {
        guard name.hasPrefix("export-"), let pid = Int32(name.dropFirst("export-".count).prefix { $0 != "-" }) else {
            return false
        }
        return kill(pid, 0) == 0 || errno == EPERM
    }

    public func logArchivePath(buildID: String) -> (relative: String, absolute: String) {
        let relative = "logs/\(buildID).tar.zst"
        return (relative, root + "/" + relative)
    }

    public func absolute(_ relative: String) -> String { root + "/" + relative }

    /// Turns a staging directory into an immutable blob: hash the disk, make every file
    /// read-only, fsync, and rename to `images/<digest>`. Only after this returns may the
    /// catalog name the image.
    /// - Returns: the disk's digest and the bytes the blob holds.
    /// - Parameter announce: called with the digest before the blob appears under it, to note
    ///   it where a recovery finds it (a kill between the rename and the catalog write would
    ///   otherwise leave a blob nobody knows of).
    public func seal(staging: String, announce: (String) throws -> Void = { _ in }) throws -> (digest: String, size: Int64) {
        let fm = FileManager.default
        // A blob holds regular files only. A symbolic link (a plugin's snapshot may name one)
        // would be hashed and chmod-ed through: a link to /etc/shadow made it world-readable.
        for name in try fm.contentsOfDirectory(atPath: staging) {
            var info = stat()
            guard lstat(staging + "/" + name, &info) == 0 else {
                throw KilnError(.io, "cannot read \(staging)/\(name): \(String(cString: strerror(errno)))")
            }
            guard info.st_mode & S_IFMT == S_IFREG else {
                let kind = info.st_mode & S_IFMT == S_IFLNK ? "a symbolic link" : "not a regular file"
                throw KilnError(.providerFailed, "the image's files include \(name), which is \(kind): a blob holds regular files only")
            }
        }
        // Files beside a disk (its kernel and initrd) are listed with their hashes in blob.json,
        // which the digest then covers: nothing in a blob is outside its address.
        let names = try fm.contentsOfDirectory(atPath: staging)
        if !names.contains(ProviderArtifact.fileName), names.contains(Self.diskName), names.count > 1 {
            var files: [String: String] = [:]
            for name in names where name != ImageFiles.manifest { files[name] = try Hashing.sha256Hex(fileAt: staging + "/" + name) }
            guard fm.createFile(atPath: staging + "/" + ImageFiles.manifest, contents: BlobManifest(files: files).json) else {
                throw KilnError(.io, "cannot write \(staging)/\(ImageFiles.manifest)")
            }
        }
        let primary = Self.primaryFile(in: staging)
        let primaryName = URL(fileURLWithPath: primary).lastPathComponent
        let digest = try Hashing.sha256Hex(fileAt: primary)
        try announce(digest)
        var size: Int64 = 0
        for name in try fm.contentsOfDirectory(atPath: staging) {
            let path = staging + "/" + name
            // Through one descriptor opened without following links: a file swapped for a link
            // after the check above fails here instead of changing the link's target.
            let fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC)
            guard fd >= 0 else { throw KilnError(.providerFailed, "cannot seal \(path): \(String(cString: strerror(errno)))") }
            defer { close(fd) }
            guard Glibc.fsync(fd) == 0, fchmod(fd, 0o444) == 0 else {
                throw KilnError(.io, "cannot seal \(path): \(String(cString: strerror(errno)))")
            }
            // A disk's own bytes; a provider artifact's files (an AMI's record is a few bytes).
            if name == Self.diskName || primaryName == ProviderArtifact.fileName {
                size += Int64(try Self.allocatedBytes(path))
            }
        }
        // The staging directory was private while the build ran; a sealed blob is readable.
        chmod(staging, 0o755)
        let final = blobDirectory(digest: digest)
        if fm.fileExists(atPath: final), (try? Hashing.sha256Hex(fileAt: final + "/" + primaryName)) == digest,
            (try? Self.checkArtifactFiles(in: final)) != nil
        {
            // The same bytes are already stored (a rebuild that changed nothing on disk).
            try? fm.removeItem(atPath: staging)
        } else {
            // A blob under this name whose bytes no longer match it is replaced, not trusted.
            if fm.fileExists(atPath: final) { try fm.removeItem(atPath: final) }
            guard rename(staging, final) == 0 else {
                throw KilnError(.io, "cannot move \(staging) to \(final): \(String(cString: strerror(errno)))")
            }
        }
        try Self.fsync(path: imagesDirectory)
        return (digest, size)
    }

    /// Checks that the blob `digest` is present and its disk still hashes to its name; throws
    /// `storeInconsistent` otherwise. Every blob is checked before a VM boots on it.
    public func verifyBlob(_ digest: String) throws {
        let disk = Self.primaryFile(in: blobDirectory(digest: digest))
        guard let identity = FileIdentity(path: disk) else {
            throw KilnError(.storeInconsistent, "the blob \(digest.prefix(12)) is missing: \(disk) does not exist")
        }
        if verified.value[digest] == identity { return }
        let actual = try Hashing.sha256Hex(fileAt: disk)
        guard actual == digest else {
            throw KilnError(
                .storeInconsistent, "the blob \(digest.prefix(12)) is damaged: \(disk) hashes to \(actual.prefix(12)) (run kiln verify)")
        }
        try Self.checkArtifactFiles(in: blobDirectory(digest: digest))
        verified.withLock { $0[digest] = identity }
    }

    /// Records that the blob `digest` was just checked byte for byte by someone else (a pull
    /// hashes every layer as it arrives): ``verifyBlob(_:)`` then need not hash it again in
    /// this process while its files stay as they are.
    public func noteVerified(_ digest: String) {
        guard let identity = FileIdentity(path: Self.primaryFile(in: blobDirectory(digest: digest))) else { return }
        verified.withLock { $0[digest] = identity }
    }

    /// Removes a directory of the store that a dead or failed build left. Anything mounted
    /// below it (a killed mmdebstrap's chroot binds /dev, /proc and /sys) is detached first:
    /// deleting through a bind mount of /dev would delete the host's device nodes.
    public static func removeTree(_ path: String) throws {
        let root = URL(fileURLWithPath: path).standardizedFileURL.path
        for mountPoint in mountPoints(under: root) {
            guard umount2(mountPoint, Int32(MNT_DETACH)) == 0 || errno == EINVAL || errno == ENOENT else {
                throw KilnError(.io, "cannot unmount \(mountPoint) (left by a killed build): \(String(cString: strerror(errno)))")
            }
        }
        guard FileManager.default.fileExists(atPath: root) else { return }
        try FileManager.default.removeItem(atPath: root)
    }

    /// Mount points at or below `root`, deepest first, from /proc/self/mountinfo.
    public static func mountPoints(under root: String) -> [String] {
        guard let text = try? String(contentsOfFile: "/proc/self/mountinfo", encoding: .utf8) else { return [] }
        let points = text.split(separator: "\n").compactMap { line -> String? in
            let fields = line.split(separator: " ")
            guard fields.count > 4 else { return nil }
            return unescapeMountField(String(fields[4]))
        }
        return points.filter { $0 == root || $0.hasPrefix(root + "/") }.sorted { $0.count > $1.count }
    }

    /// mountinfo writes space, tab, newline and backslash as `\\ooo` octal escapes.
    static func unescapeMountField(_ field: String) -> String {
        var bytes: [UInt8] = []
        var input = Array(field.utf8)[...]
        while let byte = input.popFirst() {
            if byte == UInt8(ascii: "\\"), input.count >= 3, let value = UInt8(String(decoding: input.prefix(3), as: UTF8.self), radix: 8) {
                bytes.append(value)
                input = input.dropFirst(3)
            } else {
                bytes.append(byte)
            }
        }
        return String(decoding: bytes, as: UTF8.self)
    }

    /// Bytes a file occupies on disk (sparse regions excluded), as `du` reports.
    public static func allocatedBytes(_ path: String) throws -> UInt64 {
        var info = stat()
        guard stat(path, &info) == 0 else { throw KilnError(.io, "cannot stat \(path)") }
        return UInt64(info.st_blocks) * 512
    }

    public static func fsync(path: String) throws {
        let fd = open(path, O_RDONLY)
        guard fd >= 0 else { throw KilnError(.io, "cannot open \(path) to sync it") }
        defer { close(fd) }
        guard Glibc.fsync(fd) == 0 else { throw KilnError(.io, "fsync \(path) failed") }
    }
}

/// What tells a file's bytes apart without reading them: a rewrite changes its mtime or inode.
struct FileIdentity: Equatable, Sendable {
    let device: UInt64
    let inode: UInt64
    let size: Int64
    let modified: Int
    let modifiedNanoseconds: Int
    let changed: Int
    let changedNanoseconds: Int

    init?(path: String) {
        var info = stat()
        guard stat(path, &info) == 0 else { return nil }
        device = UInt64(info.st_dev)
        inode = UInt64(info.st_ino)
        size = Int64(info.st_size)
        modified = info.st_mtim.tv_sec
        modifiedNanoseconds = info.st_mtim.tv_nsec
        // Anyone who can write the file can set its mtime back; the change time moves with
        // every write and cannot be set.
        changed = info.st_ctim.tv_sec
        changedNanoseconds = info.st_ctim.tv_nsec
    }
}
