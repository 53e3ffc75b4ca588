import Foundation
import KilnCore

#if canImport(Glibc)
    import Glibc
#endif

/// A build VM frozen the moment its SSH first answered, so that the next build on the same
/// parent resumes it in a second or two instead of booting (docs/building.md, "Warm
/// snapshots"). A cold build saves one just before its first step, when the guest holds
/// nothing of the template yet: only the boot's own writes and the build key's public half.
///
/// An entry is a directory, `$KILN_HOME/cache/warm/KEY/`:
/// - `state`: QEMU's migration stream of the paused guest (its memory and devices);
/// - `boot.qcow2`: the overlay the boot wrote, on the parent's disk by the same relative path
///   a staging disk uses, so a copy of it in a staging directory is that build's disk;
/// - `key`: the private half of the key the guest's `authorized_keys` held then;
/// - `warm.json`: the ``Manifest``, with the digests the two files are checked against.
/// The directory and its files are the store owner's alone (0700, 0600): the state is a
/// guest's memory.
struct WarmSnapshot: Sendable {
    /// Bumped when what an entry holds, or how it is resumed, changes: old entries then miss.
    static let format = 1
    static let stateFile = "state"
    static let diskFile = "boot.qcow2"
    static let keyFile = "key"
    static let manifestFile = "warm.json"

    struct Manifest: Codable, Sendable {
        var format: Int
        var key: String
        /// The blob the boot overlay stands on.
        var parent: String
        var qemu: String
        var accelerator: String
        var cpus: Int
        var memoryMiB: Int
        var created: Date
        var stateSHA256: String
        var diskSHA256: String
        /// The public half of ``WarmSnapshot/keyFile``: QEMU is started with the same SMBIOS
        /// credential it was saved with, so the two machines match device for device.
        var publicKey: String
        /// How long the guest was paused for the save, and the whole save (hashes included).
        var pausedSeconds: Double
        var saveSeconds: Double
    }

    let directory: String
    let manifest: Manifest

    var statePath: String { directory + "/" + Self.stateFile }
    var diskPath: String { directory + "/" + Self.diskFile }
    var keyPath: String { directory + "/" + Self.keyFile }

    /// Everything that shapes the saved machine, and nothing that is the build's own: the
    /// parent's blob (its disk, kernel and initrd), QEMU's version, the accelerator, and every
    /// argument kiln starts QEMU with, per-build values (paths, ports, keys) left out.
    static func key(parent: String, qemuVersion: String, machineArguments: [String]) -> String {
        Hashing.sha256Hex((["kiln-warm-\(format)", parent, qemuVersion] + machineArguments).joined(separator: "\n"))
    }

    enum Lookup: Sendable {
        case missing
        case unusable(String)
        case found(WarmSnapshot)
    }

    /// Why an entry cannot be used: it is removed, and the VM boots cold.
    struct Unusable: Error, CustomStringConvertible {
        let description: String
    }

    /// The entry for `key`, when there is one that is kiln's user's alone. Its files are
    /// checked against their digests where they are used (``QemuProvider``'s resume), on
    /// links or copies of them: the bytes checked are the bytes loaded, whatever happens to the
    /// shared entry meanwhile.
    static func open(_ directory: String, key: String) -> Lookup {
        let manifestPath = directory + "/" + manifestFile
        var info = stat()
        guard lstat(manifestPath, &info) == 0 else { return .missing }
        // A snapshot is a guest's memory and disk: one another user could plant or change
        // (a group-writable cache) would put their bytes in a signed image.
        let parent = (directory as NSString).deletingLastPathComponent
        for (path, kind) in [(parent, PrivatePath.Kind.directory), (directory, .directory)]
            + [stateFile, diskFile, keyFile, manifestFile].map({ (directory + "/" + $0, PrivatePath.Kind.file) })
        where !PrivatePath.isOwn(path, kind) {
            return .unusable("\(path) is not kiln's user's alone (a link, another owner, or writable by others)")
        }
        guard let data = FileManager.default.contents(atPath: manifestPath),
            let manifest = try? decoder.decode(Manifest.self, from: data)
        else { return .unusable("its manifest cannot be read") }
        guard manifest.format == format, manifest.key == key else { return .unusable("it was saved for another machine") }
        return .found(WarmSnapshot(directory: directory, manifest: manifest))
    }

    /// Saves the running guest behind `qmp` as the entry `key`: pauses it, streams its state
    /// to a file, copies the overlay it booted on, and resumes it. The entry appears whole
    /// (renamed into place) or not at all; a kiln killed halfway leaves a `.tmp-` directory
    /// that ``SourceCache`` prunes. Returns how long the guest was paused.
    static func save(
        qmp: String, key: String, root: String, manifest base: Manifest, disk: String, privateKey: String, buildID: String
    ) async throws -> (paused: Duration, total: Duration) {
        let started = ContinuousClock.now
        try makePrivateDirectory(root)
        let temporary = root + "/.tmp-\(getpid())-\(buildID)"
        try? FileManager.default.removeItem(atPath: temporary)
        try makePrivateDirectory(temporary)
        let state = temporary + "/" + stateFile
        // QEMU closes the channel once the migration completes, and may stop a `cat` that
        // has not exited yet: `state` appears only when cat wrote the whole stream.
        let partial = state + ".part"
        let command = "cat > \(ShellQuote.quote(partial)) && mv \(ShellQuote.quote(partial)) \(ShellQuote.quote(state))"
        do {
            let paused = try await blocking {
                let connection = try QMPConnection(path: qmp, timeout: .seconds(10))
                let pausedAt = ContinuousClock.now
                try connection.execute("stop")
                do {
                    // QEMU's default limit (32 MiB/s) is for a live migration over a network;
                    // a stopped guest into a local file goes as fast as the disk takes it.
                    try connection.execute("migrate-set-parameters", ["max-bandwidth": Int64(1) << 40])
                    try connection.execute("migrate", ["uri": "exec:" + command])
                    let deadline = ContinuousClock.now + .seconds(120)
                    while true {
                        let (status, error) = try connection.migration()
                        if status == "completed" { break }
                        if status == "failed" || status == "cancelled" {
                            throw KilnError(.providerFailed, "QEMU could not save the guest's state: \(error ?? status)")
                        }
                        guard ContinuousClock.now < deadline else { throw KilnError(.timeout, "saving the guest's state took over 120 s") }
                        usleep(20_000)
                    }
                    // The overlay as the saved memory knows it: QEMU flushed it when the
                    // migration completed, and the paused guest writes nothing more.
                    try FileManager.default.copyItem(atPath: disk, toPath: temporary + "/" + diskFile)
                } catch {
                    // A migration still under way would pause the guest again when it ends.
                    _ = try? connection.execute("migrate_cancel")
                    for _ in 0..<500 where ((try? connection.migration().status) ?? "") == "active" { usleep(20_000) }
                    try resumeGuest(connection)
                    throw error
                }
                // `cont` after a completed migration takes the disk back and runs the guest on.
                try resumeGuest(connection)
                return ContinuousClock.now - pausedAt
            }
            for _ in 0..<500 {
                if FileManager.default.fileExists(atPath: state) { break }
                try await Task.sleep(for: .milliseconds(20))
            }
            guard FileManager.default.fileExists(atPath: state) else {
                throw KilnError(.providerFailed, "the guest's state was not written whole")
            }
            try await testDelay("KILN_TEST_DELAY_WARM_SAVE_MS")
            var manifest = base
            manifest.key = key
            (manifest.stateSHA256, manifest.diskSHA256) = try await blocking {
                (try Hashing.sha256Hex(fileAt: state), try Hashing.sha256Hex(fileAt: temporary + "/" + diskFile))
            }
            try FileManager.default.copyItem(atPath: privateKey, toPath: temporary + "/" + keyFile)
            for name in [stateFile, diskFile, keyFile] { chmod(temporary + "/" + name, 0o600) }
            let total = ContinuousClock.now - started
            manifest.pausedSeconds = paused.seconds
            manifest.saveSeconds = total.seconds
            try encoder.encode(manifest).write(to: URL(fileURLWithPath: temporary + "/" + manifestFile))
            chmod(temporary + "/" + manifestFile, 0o600)
            // Another build on the same parent may have saved first: its entry stands.
            if rename(temporary, root + "/" + key) != 0 { try? FileManager.default.removeItem(atPath: temporary) }
            return (paused, total)
        } catch {
            try? FileManager.default.removeItem(atPath: temporary)
            throw error
        }
    }

    /// The guest paused for a save, running again; a guest that is not is a failed build VM.
    private static func resumeGuest(_ connection: QMPConnection) throws {
        _ = try? connection.execute("cont")
        let status = try connection.status()
        guard status == "running" else { throw StillPaused(status: status) }
    }

    /// The save left the guest stopped: the build cannot go on with this VM.
    struct StillPaused: Error, CustomStringConvertible {
        let status: String
        var description: String { "the VM did not run again after a warm snapshot's save (QEMU says \(status))" }
    }

    /// Marks the entry used now: the cache prunes the least recently used first.
    func touch() { utimes(directory, nil) }

    static func makePrivateDirectory(_ path: String) throws {
        if mkdir(path, 0o700) != 0 && errno != EEXIST {
            throw KilnError(.io, "cannot create \(path): \(String(cString: strerror(errno)))")
        }
    }

    /// `qemu-system-x86_64 --version`'s first line, asked once per kiln process.
    static func qemuVersion() async throws -> String {
        if let known = knownVersion.value { return known }
        let result = try await ProcessRunner.run("qemu-system-x86_64", ["--version"], timeout: .seconds(30))
        guard result.succeeded, let line = result.stdout.split(separator: "\n").first else {
            throw KilnError(.providerFailed, "qemu-system-x86_64 --version failed: \(result.stderr)")
        }
        knownVersion.set(String(line))
        return String(line)
    }
    private static let knownVersion = Locked<String?>(nil)

    private static var encoder: JSONEncoder {
        let encoder = JSONEncoder()
        encoder.dateEncodingStrategy = .iso8601
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        return encoder
    }
    static var decoder: JSONDecoder {
        let decoder = JSONDecoder()
        decoder.dateDecodingStrategy = .iso8601
        return decoder
    }
}

/// What `kiln cache list` shows of the warm snapshots, and what the cache prune removes.
public struct WarmSnapshotEntry: Sendable {
    public var path: String
    /// The blob the snapshot's boot stands on; nil for a save that never finished.
    public var parent: String?
    public var memoryMiB: Int
    public var cpus: Int
    public var lastUsed: Date
    /// An unfinished save (`.tmp-PID-BUILD`) whose kiln is still running.
    public var saving: Bool

    /// Every entry under `directory` (the store's ``WarmCache/directory``).
    public static func list(in directory: String) -> [WarmSnapshotEntry] {
        let fm = FileManager.default
        var entries: [WarmSnapshotEntry] = []
        for name in (try? fm.contentsOfDirectory(atPath: directory)) ?? [] {
            let path = directory + "/" + name
            let modified = (try? fm.attributesOfItem(atPath: path)[.modificationDate] as? Date) ?? .distantPast
            if name.hasPrefix(".tmp-") {
                let pid = name.dropFirst(5).split(separator: "-").first.flatMap { pid_t($0) } ?? 0
                // Signal 0 asks only whether the process is there.
                let running = pid > 0 && kill(pid, 0) == 0
                entries.append(WarmSnapshotEntry(path: path, parent: nil, memoryMiB: 0, cpus: 0, lastUsed: modified, saving: running))
                continue
            }
            let manifest = fm.contents(atPath: path + "/" + WarmSnapshot.manifestFile).flatMap {
                try? WarmSnapshot.decoder.decode(WarmSnapshot.Manifest.self, from: $0)
            }
            entries.append(
                WarmSnapshotEntry(
                    path: path, parent: manifest?.parent, memoryMiB: manifest?.memoryMiB ?? 0, cpus: manifest?.cpus ?? 0,
                    lastUsed: modified, saving: false))
        }
        return entries
    }
}
