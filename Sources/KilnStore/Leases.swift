import Foundation
import KilnCore
import KilnModel

/// Leases: what a running build stands on (its parent's blob chain, its source disk, a
/// downloaded source file) is recorded against the build before the build trusts it, and gc and
/// the cache prune remove nothing a build that may still be running holds.
///
/// A lease needs no release: it lapses when its build stops running, however it stopped (a
/// crashed kiln's build is not running once its process lock is gone, ``Store/mayBeRunning(_:)``).
/// Taking a lease and removing a blob both happen under the store's `blobs` lock, so a blob is
/// either leased before the remover looks, or removed before the build checks it is there.
extension Store {
    /// A leased blob, by digest.
    public static func blobResource(_ digest: String) -> String { "blob:" + digest }
    /// A leased download in the cache, by file name (its sha256).
    public static func downloadResource(_ name: String) -> String { "download:" + name }

    /// Runs `body` holding the store's `blobs` lock (every kiln process sharing the catalog).
    public func withBlobLock<T: Sendable>(_ body: () async throws -> T) async throws -> T {
        let lock = try await catalog.lockNamed("blobs", waiting: {})
        defer { withExtendedLifetime(lock) {} }
        return try await body()
    }

    /// Records that build `buildID` stands on `resources`. Under ``withBlobLock(_:)``.
    public func lease(_ resources: [String], buildID: String) throws {
        try catalog.lease(resources, buildID: buildID)
    }

    /// Everything a build that may still be running holds.
    public func leasedResources() throws -> Set<String> {
        let running = Set(try catalog.builds(status: .running).filter(mayBeRunning).map(\.id))
        return try catalog.leases().reduce(into: Set<String>()) { held, lease in
            if running.contains(lease.build) { held.insert(lease.resource) }
        }
    }
}

extension Catalog {
    /// An exclusive lock named `name` among every kiln process using this catalog.
    public func lockNamed(_ name: String, waiting: @Sendable () -> Void) async throws -> any Sendable {
        try await db.lock(name, waiting: waiting)
    }

    func lease(_ resources: [String], buildID: String) throws {
        try db.write { db in
            for resource in resources {
                try db.execute(
                    "INSERT INTO lease (build, resource) VALUES (?, ?) ON CONFLICT DO NOTHING", [.text(buildID), .text(resource)])
            }
        }
    }

    func leases() throws -> [(build: String, resource: String)] {
        try db.read { db in
            try db.rows("SELECT build, resource FROM lease").map {
                (try $0.required("build", $0.string), try $0.required("resource", $0.string))
            }
        }
    }

    /// Drops the leases of builds that are no longer running (they hold nothing).
    public func dropLeases(except running: Set<String>) throws {
        try db.write { db in
            for build in try db.strings("SELECT DISTINCT build FROM lease", column: "build") where !running.contains(build) {
                try db.execute("DELETE FROM lease WHERE build = ?", [.text(build)])
            }
        }
    }
}

extension Catalog {
    /// Records that `name`'s provenance was signed by `keyID`.
    public func markSigned(_ name: String, keyID: String) throws {
        try db.write { db in try db.execute("UPDATE image SET signer = ? WHERE name = ?", [.text(keyID), .text(name)]) }
    }

    /// The key that signed `name`, when it was signed.
    public func signer(of name: String) throws -> String? {
        try db.read { db in try db.row("SELECT signer FROM image WHERE name = ?", [.text(name)])?.string("signer") }
    }
}
