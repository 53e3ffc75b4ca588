import Foundation
import KilnCore
import KilnModel
import KilnProviders
import KilnRemote
import KilnStore

/// One thing the cache holds: a source disk (debootstrap tree, file or URL made into a disk)
/// or a downloaded file. Entries are rebuilt on demand, so removing one costs time, not data.
public struct CacheEntry: Sendable, Codable, Equatable {
    public enum Kind: String, Sendable, Codable {
        case sourceDisk = "source disk"
        case download
        /// With a remote (docs/remote.md): an image's blob, fetched again on demand.
        case imageBlob = "image blob"
        /// A booted build VM saved for the next build on the same parent (docs/building.md).
        case warmSnapshot = "warm snapshot"
    }

    public var kind: Kind
    public var description: String
    public var path: String
    public var bytes: UInt64
    public var lastUsed: Date
    /// An image's disk is backed by it, or a running build stands on it (a lease): never
    /// removed while that lasts.
    public var inUse: Bool
    var sourceKey: String?
    /// Of an image blob: its digest, and the blob its disk is an overlay on.
    var digest: String?
    var backing: String?
    /// Of no use any more: a warm snapshot whose parent blob is gone, or a save whose kiln
    /// died. Every prune removes these, whatever the limit.
    var stale = false
}

/// The source cache, bounded in size: `kiln cache`, `kiln cache prune`, and the prune that
/// follows every build.
public enum SourceCache {
    /// 20 GiB unless `KILN_CACHE_MAX_SIZE` (bytes, or 10G-style) says otherwise.
    public static func defaultLimit(environment: [String: String] = ProcessInfo.processInfo.environment) -> UInt64 {
        environment["KILN_CACHE_MAX_SIZE"].flatMap(parseSize) ?? 20 << 30
    }

    /// `10G`, `512M`, `1048576`.
    public static func parseSize(_ text: String) -> UInt64? {
        let units: [Character: UInt64] = ["K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40]
        let trimmed = text.trimmingCharacters(in: .whitespaces).uppercased()
        guard let last = trimmed.last else { return nil }
        if let unit = units[last] { return UInt64(trimmed.dropLast()).map { $0 * unit } }
        return UInt64(trimmed)
    }

    /// - Parameter remote: with one, the store's image blobs are cache entries too (their
    ///   last use is their directory's modification time, which a pull or a build touches).
    public static func entries(in store: Store, remote: Bool = false) throws -> [CacheEntry] {
        let fm = FileManager.default
        let backing = try store.catalog.backingDigests()
        let leased = try store.leasedResources()
        // Bases made before kiln recorded backing digests: any source disk may be theirs.
        let legacyBases = try store.catalog.hasBasesWithoutBacking()
        var entries: [CacheEntry] = []
        // Read once: the source disks are entries themselves and name warm snapshots' parents.
        let sourceRecords = try store.catalog.sources()
        for source in sourceRecords {
            let directory = store.blobDirectory(digest: source.digest)
            guard fm.fileExists(atPath: directory) else { continue }
            entries.append(
                CacheEntry(
                    kind: .sourceDisk, description: source.description, path: directory, bytes: try size(of: directory),
                    lastUsed: source.lastUsed,
                    inUse: legacyBases || backing.contains(source.digest) || leased.contains(Store.blobResource(source.digest)),
                    sourceKey: source.key))
        }
        let downloads = store.cacheDirectory + "/downloads"
        for name in (try? fm.contentsOfDirectory(atPath: downloads)) ?? [] {
            let path = downloads + "/" + name
            let modified = (try? fm.attributesOfItem(atPath: path)[.modificationDate] as? Date) ?? Date.distantPast
            entries.append(
                CacheEntry(
                    kind: .download, description: name, path: path, bytes: try size(of: path), lastUsed: modified,
                    inUse: leased.contains(Store.downloadResource(name))))
        }
        for snapshot in WarmSnapshotEntry.list(in: store.warmSnapshotsDirectory) {
            var entry = CacheEntry(
                // A save may finish (renamed) or be pruned while this looks.
                kind: .warmSnapshot, description: "", path: snapshot.path, bytes: (try? size(of: snapshot.path)) ?? 0,
                lastUsed: snapshot.lastUsed, inUse: snapshot.saving)
            if let parent = snapshot.parent {
                let name =
                    try store.catalog.image(digest: parent)?.name
                    ?? sourceRecords.first { $0.digest == parent }.map { "source disk \($0.description)" }
                entry.description = "booted on \(name ?? String(parent.prefix(12))), \(snapshot.cpus) CPUs, \(snapshot.memoryMiB) MiB"
                entry.stale = !fm.fileExists(atPath: store.blobDirectory(digest: parent))
            } else {
                entry.description = snapshot.saving ? "being saved" : "unfinished save"
                entry.stale = !snapshot.saving
            }
            entries.append(entry)
        }
        if remote {
            let sources = Set(sourceRecords.map(\.digest))
            for name in (try? fm.contentsOfDirectory(atPath: store.imagesDirectory)) ?? []
            where !name.hasPrefix(".") && !sources.contains(name) {
                guard let image = try store.catalog.image(digest: name) else { continue }
                let path = store.blobDirectory(digest: name)
                let modified = (try? fm.attributesOfItem(atPath: path)[.modificationDate] as? Date) ?? Date.distantPast
                var entry = CacheEntry(
                    kind: .imageBlob, description: image.name, path: path, bytes: try size(of: path), lastUsed: modified,
                    inUse: leased.contains(Store.blobResource(name)))
                (entry.digest, entry.backing) = (name, image.backingDigest)
                entries.append(entry)
            }
        }
        return entries.sorted { $0.lastUsed < $1.lastUsed }
    }

    /// Removes unused entries, least recently used first, until the cache holds at most `limit` bytes.
    /// - Returns: what was (or, with `dryRun`, would be) removed.
    /// Under the store's blob lock: what a build leases is either leased before this looks, or
    /// gone before that build checks it (and made again).
    @discardableResult
    ///
    /// With a remote, image blobs are pruned too, but only one the remote holds (checked there:
    /// an image built before the remote was set has no other copy), and only a blob no other
    /// blob here stands on, so the store keeps whole chains.
    public static func prune(_ store: Store, limit: UInt64, dryRun: Bool = false, remote: Remote? = nil) async throws
        -> [CacheEntry]
    {
        // What the remote holds is asked before the store's blob lock is taken: that lock is
        // every machine's (PostgreSQL), and a slow registry must not hold up their builds.
        var held: Set<String> = []
        if let remote {
            for entry in try entries(in: store, remote: true) where !entry.inUse {
                if let digest = entry.digest, (try? await remote.holds(digest)) == true { held.insert(digest) }
            }
        }
        return try await store.withBlobLock {
            let all = try entries(in: store, remote: remote != nil)
            var total = all.reduce(0) { $0 + $1.bytes }
            var removed: [CacheEntry] = []
            var kept = Set(all.compactMap(\.digest))
            for entry in all where entry.stale && !entry.inUse {
                if !dryRun { try FileManager.default.removeItem(atPath: entry.path) }
                total -= entry.bytes
                removed.append(entry)
            }
            var progress = true
            while total > limit && progress {
                progress = false
                for entry in all where total > limit && !entry.inUse && !removed.contains(entry) {
                    if let digest = entry.digest {
                        // A leaf of what is left, and safe in the remote.
                        let standsOnIt = all.contains { $0.backing == digest && kept.contains($0.digest ?? "") }
                        guard !standsOnIt, held.contains(digest) else { continue }
                        kept.remove(digest)
                    }
                    if !dryRun {
                        if let key = entry.sourceKey { try store.catalog.forgetSource(key: key) }
                        try FileManager.default.removeItem(atPath: entry.path)
                    }
                    total -= entry.bytes
                    removed.append(entry)
                    progress = true
                }
            }
            return removed
        }
    }

    static func size(of path: String) throws -> UInt64 {
        var isDirectory: ObjCBool = false
        _ = FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory)
        guard isDirectory.boolValue else { return try Store.allocatedBytes(path) }
        return try FileManager.default.contentsOfDirectory(atPath: path).reduce(0) {
            $0 + (try Store.allocatedBytes(path + "/" + $1))
        }
    }
}
