import Foundation
import KilnCore
import KilnModel
import KilnRemote
import KilnStore

/// `kiln gc`: removes the disks of purged images, the leftovers of builds that are no longer
/// running, and bounds the source cache.
public enum GarbageCollector {
    public struct Report: Sendable {
        /// FAILED images (docs/testing.md), and TESTING ones a newer image replaced before their
        /// tests finished, deleted; their disks then purged with the rest.
        public var failed: [String] = []
        public var purged: [String] = []
        public var staleDirectories: [String] = []
        /// Interrupted pulls' staging directories (docs/remote.md).
        public var pulls: [String] = []
        public var cache: [CacheEntry] = []
        public var bytes: UInt64 = 0
    }

    /// - Parameter remote: where purged images' manifests are deleted too (docs/remote.md).
    public static func run(
        _ store: Store, now: Date, dryRun: Bool, cacheLimit: UInt64, remote: Remote? = nil,
        warn: @escaping @Sendable (String) -> Void = { _ in }
    ) async throws -> Report {
        var report = Report()
        let fm = FileManager.default
        // Images whose tests failed were kept for inspection until now. One that a later
        // image stands on, a channel points at or that is pinned stays (the guards say why),
        // and so does one that was READY before changed tests failed it: it may be deployed,
        // and a test boot that failed for the host's reasons must not cost it its disk.
        // A TESTING image whose tests never finished (its kiln died during them) is the same
        // garbage once a newer image of its family exists and no kiln is working on the family:
        // nothing builds on it, and nothing will test it again.
        let images = try store.catalog.images()
        let busyFamilies = Set(try store.catalog.builds(status: .running).filter(store.mayBeRunning).map(\.family))
        let superseded = { (image: ImageRecord) in
            !busyFamilies.contains(image.family)
                && images.contains { $0.family == image.family && ($0.created, $0.version) > (image.created, image.version) }
        }
        for image in images where image.state == .failed || (image.state == .testing && superseded(image)) {
            if try store.catalog.wasReady(image.name) {
                warn("\(image.name) is FAILED but was READY before: it stays until kiln delete \(image.name)")
                continue
            }
            let reason = image.state == .failed ? "its tests failed" : "its tests never finished and a newer image replaced it"
            var change = Transition(to: .deleted, reason: "kiln gc: \(reason)", now: now)
            change.purgeOn = now
            do {
                try store.catalog.transition(image.name, change, dryRun: dryRun)
                report.failed.append(image.name)
            } catch let error as KilnError {
                warn("\(image.name) is \(image.state.rawValue) but stays: \(error.message)")
            }
        }
        // Purged images' blobs: under the blob lock, leaving what a running build leased.
        (report.purged, report.bytes) = try await store.withBlobLock {
            try await purge(store, now: now, dryRun: dryRun, remote: remote, warn: warn)
        }
        // Staging and scratch directories of builds that are not running any more.
        let running = Set(try store.catalog.builds(status: .running).filter(store.mayBeRunning).map(\.id))
        if !dryRun { try store.catalog.dropLeases(except: running) }
        let staging = (try? fm.contentsOfDirectory(atPath: store.imagesDirectory)) ?? []
        for name in staging where name.hasPrefix(".tmp-") {
            let id = String(name.dropFirst(5)).replacingOccurrences(of: "-source", with: "")
            if !running.contains(id) { report.staleDirectories.append(store.imagesDirectory + "/" + name) }
        }
        // A pull that was interrupted; one under way holds its lock (and is left alone).
        for name in staging where name.hasPrefix(".pull-") && !name.hasSuffix(".lock") {
            let path = store.imagesDirectory + "/" + name
            // Removed while the lock is held, so no pull can start in it meanwhile; the lock
            // file itself stays (deleting it would let two holders lock two different files).
            if let lock = FileLock.tryAcquire(path + ".lock") {
                report.bytes += (try? SourceCache.size(of: path)) ?? 0
                if !dryRun { try Store.removeTree(path) }
                report.pulls.append(path)
                withExtendedLifetime(lock) {}
            }
        }
        for id in (try? fm.contentsOfDirectory(atPath: store.root + "/builds")) ?? []
        where !running.contains(id) && !Store.isLiveExportScratch(id) {
            report.staleDirectories.append(store.scratchDirectory(buildID: id))
        }
        for path in report.staleDirectories {
            report.bytes += (try? SourceCache.size(of: path)) ?? 0
            if !dryRun { try Store.removeTree(path) }
        }
        report.cache = try await SourceCache.prune(store, limit: cacheLimit, dryRun: dryRun, remote: remote)
        report.bytes += report.cache.reduce(0) { $0 + $1.bytes }
        return report
    }

    /// Removes the blobs of images past their purge date (unless another image or a running
    /// build still needs them) and marks them purged. Under the store's blob lock.
    private static func purge(
        _ store: Store, now: Date, dryRun: Bool, remote: Remote?, warn: @escaping @Sendable (String) -> Void
    ) async throws -> ([String], UInt64) {
        let fm = FileManager.default
        let leased = try store.leasedResources()
        var purged: [String] = []
        var bytes: UInt64 = 0
        for image in try store.catalog.purgeable(now: now) {
            if leased.contains(Store.blobResource(image.digest)) {
                warn("\(image.name) stays until the build standing on it finishes")
                continue
            }
            let shared = try store.catalog.blobNeeded(image.digest, except: image.name)
            if !dryRun && !shared {
                do {
                    // The provider's copy (an AMI and its snapshots) goes first: a blob removed
                    // before it would leave kiln nothing to find it by.
                    try await ProviderSync.delete(image, in: store, warn: warn)
                } catch {
                    warn("\(image.name) stays until its provider's copy can be deleted: \(error)")
                    continue
                }
            }
            if !dryRun, let remote {
                // The remote's copy goes first too: once purged, nothing would find it again.
                do {
                    let deletion = try await remote.delete(image, keepBlob: shared)
                    for refusal in deletion.refused {
                        warn("\(remote.location) refused to delete \(refusal); delete it there by hand or enable deletes")
                    }
                } catch {
                    warn("\(image.name) stays until its manifests in \(remote.location) can be deleted: \(error)")
                    continue
                }
            }
            let blob = store.blobDirectory(digest: image.digest)
            if !shared, fm.fileExists(atPath: blob) {
                bytes += try SourceCache.size(of: blob)
                if !dryRun { try fm.removeItem(atPath: blob) }
            }
            if !dryRun { try store.catalog.markPurged(image.name) }
            purged.append(image.name)
        }
        return (purged, bytes)
    }
}
