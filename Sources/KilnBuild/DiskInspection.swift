import Foundation
import KilnCore
import KilnDisk
import KilnModel

#if canImport(Glibc)
    import Glibc
#endif

/// The package manifest and the secret scan, read by kiln from a stopped build VM's disk
/// instead of by tools in the guest.
///
/// Why on the host: under TCG the guest's `find` over the whole root filesystem took 1.1 to
/// 2.7 s of CPU per build, the largest part of kiln's own cost in a build (docs/benchmarks.md);
/// the same walk natively takes tens of milliseconds. And it reads the bytes that are sealed,
/// after the VM stopped, not a guest's account of them: a step cannot hide a file from it by
/// replacing `find` or `grep`. The guest scan (``SecretScan``) stays for what kiln cannot read
/// here: other providers' machines and root filesystems other than ext4.
///
/// "Changed in this build" is a regular file whose inode differs from the same inode of the
/// disk the build started from (number, generation, change time and mode: the test the tar.zst
/// export's layers use). The kernel sets the change time on every write to an inode, and user
/// space cannot set it; a step that sets the guest's clock back still gives its files a change
/// time their parent's inodes do not have, so no clock decides what is scanned. (The guest
/// scan compares with the kernel's boot time instead.)
///
/// Its reads block: callers run it with ``blocking(_:)``, one call at a time (hence unchecked
/// Sendable: the volumes' chunk caches are not locked).
struct DiskInspection: @unchecked Sendable {
    let volume: Ext4Volume
    /// The filesystem of the disk the build started from; nil scans every file.
    let parent: Ext4Volume?

    /// Reads the root filesystem of `disk` (qcow2, with its backing chain) and of `parent`,
    /// the disk it started as.
    init(disk: String, parent: String? = nil) throws {
        volume = try Ext4Volume(disk: QemuDiskReader(path: disk, format: "qcow2"))
        guard !volume.needsRecovery else {
            throw KilnError(
                .buildFailed,
                "the build VM's root filesystem was not cleanly unmounted (its journal needs recovery): kiln cannot read what it holds")
        }
        do {
            self.parent = try parent.map { try Ext4Volume(disk: QemuDiskReader(path: $0, format: "qcow2")) }
        } catch {
            throw KilnError(.io, "kiln cannot read the disk the build started from, to tell what the build changed", cause: error)
        }
    }

    /// Whether kiln can read the root filesystem of `disk` here, every file of it: the test
    /// made before a build VM stops on its base, so a build whose disk kiln cannot read is
    /// scanned in the guest instead of failing after the VM stopped.
    static func canRead(_ disk: String) -> Bool {
        (try? DiskInspection(disk: disk))?.volume.readsEveryFile == true
    }

    // MARK: - Packages

    static let statusPath = "/var/lib/dpkg/status"
    static let updatesPath = "/var/lib/dpkg/updates"

    /// What `dpkg-query` would list, read from dpkg's database: the status file, then the
    /// records dpkg journaled in `updates/` and has not yet merged (they win, in the order of
    /// their numbers, as dpkg reads them). Nil without a dpkg database.
    func packageManifest() throws -> PackageManifest? {
        guard let status = try volume.lookup(Self.statusPath), status.kind == .file else { return nil }
        var records: [String: [String: String]] = [:]
        var order: [String] = []
        func add(_ text: [UInt8]) {
            for record in Deb822.paragraphs(String(decoding: text, as: UTF8.self)) {
                guard let name = record["package"] else { continue }
                let key = name + ":" + (record["architecture"] ?? "")
                if records.updateValue(record, forKey: key) == nil { order.append(key) }
            }
        }
        add(try volume.readFile(status, limit: 256 << 20))
        if let updates = try volume.lookup(Self.updatesPath), updates.kind == .directory {
            let journal = try volume.entries(of: updates).filter { $0.name.allSatisfy(\.isNumber) }.sorted {
                (Int($0.name) ?? 0) < (Int($1.name) ?? 0)
            }
            for entry in journal {
                let node = try volume.inode(entry.inode)
                if node.kind == .file { add(try volume.readFile(node, limit: 64 << 20)) }
            }
        }
        let packages = order.compactMap { key -> InstalledPackage? in
            guard let record = records[key], let name = record["package"],
                record["status"]?.split(separator: " ").last == "installed"
            else { return nil }
            let version = record["version"] ?? ""
            // `Source: name (version)` when the source version differs, `Source: name` or nothing.
            let source = record["source"]?.split(separator: " ", maxSplits: 1).map(String.init) ?? []
            let sourceVersion = source.count == 2 ? source[1].trimmingCharacters(in: CharacterSet(charactersIn: "() ")) : version
            return InstalledPackage(
                name: name, version: version, architecture: record["architecture"] ?? "", source: source.first ?? name,
                sourceVersion: sourceVersion)
        }
        return packages.isEmpty ? nil : PackageManifest(packages)
    }

    // MARK: - Secrets

    struct Finding: Equatable, Sendable {
        let kind: String
        let path: String
    }

    struct ScanReport: Sendable {
        var scanned = 0
        var found: [Finding] = []
        var allowed: [Finding] = []
    }

    /// Names a credential file has wherever it lies, as in the guest scan.
    static let credentialSuffixes = [
        "/.aws/credentials", "/.docker/config.json", "/.netrc", "/.git-credentials", "/.pgpass", "/.kube/config",
        "/.ssh/id_rsa", "/.ssh/id_dsa", "/.ssh/id_ecdsa", "/.ssh/id_ed25519",
    ]

    /// Every regular file changed in this build, checked for a PEM or OpenSSH private-key
    /// header and for a credential file's name. `allowed` holds the template's `allow_secrets:`
    /// shell patterns (a `*` matches `/` too, as in the guest's `case`).
    ///
    /// It runs after the guest removed kiln's own files (its step script, sshd's host keys), so
    /// unlike the guest scan it skips no path. The disk is the guest's work, so its size bounds
    /// nothing: each inode's contents are read once however many names it has, and the scan
    /// gives up at `deadline` (as the guest scan had a timeout) rather than run on.
    func scanForSecrets(allowed: [String], deadline: ContinuousClock.Instant = .now + .seconds(900)) throws -> ScanReport {
        var report = ScanReport()
        var holdsKey: [UInt32: Bool] = [:]
        try volume.walk { relative, inode in
            guard ContinuousClock.now < deadline else {
                throw KilnError(.timeout, "the secret scan did not finish reading the disk in time")
            }
            guard inode.kind == .file, changed(inode) else { return }
            let path = "/" + relative
            report.scanned += 1
            var findings: [Finding] = []
            let key = try holdsKey[inode.number] ?? PrivateKeyHeader.appears(in: inode, of: volume)
            holdsKey[inode.number] = key
            if key { findings.append(Finding(kind: "private key", path: path)) }
            if Self.credentialSuffixes.contains(where: path.hasSuffix) { findings.append(Finding(kind: "credential file", path: path)) }
            for finding in findings {
                if allowed.contains(where: { fnmatch($0, path, 0) == 0 }) {
                    report.allowed.append(finding)
                } else {
                    report.found.append(finding)
                }
            }
        }
        return report
    }

    /// Whether `inode` is not the parent's inode of the same number as it was.
    func changed(_ inode: Ext4Inode) -> Bool {
        guard let parent else { return true }
        // Beyond the parent's inode tables (a filesystem grown in the build): new.
        guard let before = try? parent.inode(inode.number) else { return true }
        return before.generation != inode.generation || before.changed != inode.changed || before.mode != inode.mode
    }
}

/// `-----BEGIN ([A-Z0-9]+ )*PRIVATE KEY-----` on one line, searched in a file's bytes as the
/// guest's `grep -E -I` did: a file with a NUL byte in its first 32 KiB is binary and skipped.
enum PrivateKeyHeader {
    static let begin = Array("-----BEGIN ".utf8)
    static let end = Array("PRIVATE KEY-----".utf8)
    /// The longest header looked for: the label between begin and end is short.
    static let longest = 128

    static func appears(in inode: Ext4Inode, of volume: Ext4Volume) throws -> Bool {
        var tail: [UInt8] = []
        var offset: Int64 = 0
        var found = false
        // Stops at the first header, or at a NUL in the first 32 KiB (binary).
        try volume.scanContents(of: inode, chunk: 1 << 20) { chunk -> Bool in
            if offset < 32 << 10, chunk.prefix(Int((32 << 10) - offset)).contains(0) { return false }
            offset += Int64(chunk.count)
            let window = tail + chunk
            found = contains(window)
            tail = Array(window.suffix(longest))
            return !found
        }
        return found
    }

    /// Whether `bytes` holds a header: `-----BEGIN `, words of capitals and digits each
    /// followed by a space, then `PRIVATE KEY-----`.
    static func contains(_ bytes: [UInt8]) -> Bool {
        bytes.withUnsafeBytes { buffer -> Bool in
            guard let base = buffer.baseAddress else { return false }
            var from = 0
            // memchr finds each candidate's first dash at memory speed; most files hold none.
            while from < buffer.count, let hit = memchr(base + from, 0x2D, buffer.count - from) {
                let start = base.distance(to: UnsafeRawPointer(hit))
                if start + begin.count <= buffer.count, buffer[start..<(start + begin.count)].elementsEqual(begin),
                    header(in: buffer, at: start + begin.count)
                {
                    return true
                }
                from = start + 1
            }
            return false
        }
    }

    /// Whether the words after `-----BEGIN ` at `position` end in `PRIVATE KEY-----`.
    private static func header(in bytes: UnsafeRawBufferPointer, at position: Int) -> Bool {
        var j = position
        while j < bytes.count, j - position < longest {
            if j + end.count <= bytes.count, bytes[j..<(j + end.count)].elementsEqual(end) { return true }
            // One word of [A-Z0-9]+ and its space.
            var k = j
            while k < bytes.count, (0x41...0x5A).contains(bytes[k]) || (0x30...0x39).contains(bytes[k]) { k += 1 }
            guard k > j, k < bytes.count, bytes[k] == 0x20 else { return false }
            j = k + 1
        }
        return false
    }
}
