import Foundation
import KilnCore
import KilnTemplates

/// Lifecycle states of an image (docs/lifecycle.md). Only READY images are built from by default.
public enum ImageState: String, Codable, Sendable, CaseIterable {
    case ready = "READY"
    case deprecated = "DEPRECATED"
    case obsolete = "OBSOLETE"
    case deleted = "DELETED"
}

/// One immutable image: a row of the catalog's `image` table.
public struct ImageRecord: Codable, Sendable, Equatable {

    /// `family-vYYYYMMDD-N`: unique, what deploy tools name.
    public var name: String
    public var family: String
    /// `vYYYYMMDD-N`.
    public var version: String
    /// SHA-256 of the image's disk blob; the blob lives in `images/<digest>/`.
    public var digest: String
    /// Name of the image this one is a layer on; nil for a base image.
    public var parent: String?
    public var state: ImageState
    public var created: Date
    /// JSON object of the template's labels.
    public var labels: String
    public var description: String?
    public var templateHash: String
    /// Bytes of this image's own blob (an overlay holds only what the layer changed).
    public var size: Int64
    /// Build log archive, relative to the store root.
    public var log: String
    public var buildID: String
    /// debootstrap, file, url or image.
    public var sourceKind: String
    /// SHA-256 over the key's inputs (docs/build-keys.md); nil for images made before keys existed.
    public var buildKey: String?
    /// JSON object of the inputs, kept to explain the next rebuild.
    public var keyInputs: String?
    /// The blob this image's disk is an overlay on: the parent's disk, or a base's source disk.
    public var backingDigest: String?
    /// Set when deprecated: the image to use instead.
    public var replacement: String?
    public var obsoleteOn: Date?
    public var deleteOn: Date?
    /// JSON of the template's lifecycle policy when it was built.
    public var policy: String?
    /// When `kiln gc` may remove the disk of this DELETED image.
    public var purgeOn: Date?
    public var purged: Bool = false
    /// JSON of the ``BuildOrigin``: commit, branch, CI job; nil for images made before it was recorded.
    public var origin: String? = nil

    public var buildOrigin: BuildOrigin? { origin.flatMap(BuildOrigin.init(json:)) }

    public var labelDictionary: [String: String] {
        (try? JSONDecoder().decode([String: String].self, from: Data(labels.utf8))) ?? [:]
    }

    /// The label `pinned: "true"`, read exactly: labels the catalog cannot read are an error,
    /// never "not pinned" (a guard that fails open would let rotation delete a kept image).
    public func isPinned() throws -> Bool {
        // Labels whose text lacks the word cannot hold the key (kiln writes them with
        // JSONEncoder, which escapes no letters): no JSON decode per image in a rotation.
        guard labels.contains("pinned") else { return false }
        guard let labels = try? JSONDecoder().decode([String: String].self, from: Data(labels.utf8)) else {
            throw KilnError(
                .storeInconsistent,
                "the catalog's labels of \(name) cannot be read, so whether it is pinned is unknown: \(labels.prefix(200))")
        }
        return labels["pinned"] == "true"
    }

    /// The lifecycle policy this image was built with; nil for none recorded. A recorded one
    /// the catalog cannot read is an error, never the default policy: rotating by `keep: 2`
    /// a family whose template said `keep: 10` deprecates images its team meant to keep.
    public func lifecyclePolicy() throws -> LifecyclePolicy? {
        guard let policy else { return nil }
        do {
            return try JSONDecoder().decode(LifecyclePolicy.self, from: Data(policy.utf8))
        } catch {
            throw KilnError(
                .storeInconsistent,
                "the lifecycle policy of \(family) recorded with \(name) cannot be read (\(error)): rotation of \(family) stops here rather than fall back to the default policy; rebuild the family to record its policy again"
            )
        }
    }
}

/// A cached source disk (`images/<digest>/`), made from a debootstrap tree, a file or a URL.
public struct SourceRecord: Sendable, Equatable {
    public var key: String
    public var digest: String
    public var description: String
    public var lastUsed: Date
}

public enum BuildStatus: String, Codable, Sendable {
    case running, succeeded, failed, cancelled
}

/// One attempt at building one image, kept for failed builds too so their logs can be found.
public struct BuildRecord: Codable, Sendable, Equatable {

    public var id: String
    public var family: String
    public var image: String?
    public var status: BuildStatus
    public var started: Date
    public var finished: Date?
    public var failedStep: String?
    public var message: String?
    /// Build log archive, relative to the store root; nil until archived.
    public var log: String?
    public var pid: Int32
    /// The machine `pid` lives on; nil for builds recorded before kiln kept it.
    public var host: String?

    public init(
        id: String, family: String, image: String? = nil, status: BuildStatus, started: Date,
        finished: Date? = nil, failedStep: String? = nil, message: String? = nil, log: String? = nil, pid: Int32,
        host: String? = ProcessRegistry.hostName
    ) {
        self.host = host
        self.id = id
        self.family = family
        self.image = image
        self.status = status
        self.started = started
        self.finished = finished
        self.failedStep = failedStep
        self.message = message
        self.log = log
        self.pid = pid
    }
}

// MARK: - Rows

extension ImageRecord {
    /// The `image` table's columns, in the order of ``values``.
    static let columns = [
        "name", "family", "version", "digest", "parent", "state", "created", "labels", "description", "templateHash", "size",
        "log", "buildID", "sourceKind", "buildKey", "keyInputs", "backingDigest", "replacement", "obsoleteOn", "deleteOn",
        "policy", "purgeOn", "purged", "origin",
    ]
    static let select = "SELECT " + columns.joined(separator: ", ") + " FROM image"
    static let insert =
        "INSERT INTO image (" + columns.joined(separator: ", ") + ") VALUES (" + columns.map { _ in "?" }.joined(separator: ", ") + ")"

    var values: [SQLValue] {
        [
            .text(name), .text(family), .text(version), .text(digest), .optional(parent), .text(state.rawValue), .date(created),
            .text(labels), .optional(description), .text(templateHash), .integer(size), .text(log), .text(buildID),
            .text(sourceKind), .optional(buildKey), .optional(keyInputs), .optional(backingDigest), .optional(replacement),
            .optional(obsoleteOn), .optional(deleteOn), .optional(policy), .optional(purgeOn), .bool(purged), .optional(origin),
        ]
    }

    init(row: any SQLRow) throws {
        let stateText = try row.required("state", row.string)
        guard let state = ImageState(rawValue: stateText) else {
            throw KilnError(.storeInconsistent, "the catalog names an unknown image state '\(stateText)'")
        }
        self.init(
            name: try row.required("name", row.string), family: try row.required("family", row.string),
            version: try row.required("version", row.string), digest: try row.required("digest", row.string),
            parent: try row.string("parent"), state: state, created: try row.required("created", row.date),
            labels: try row.required("labels", row.string), description: try row.string("description"),
            templateHash: try row.required("templateHash", row.string), size: try row.required("size", row.int64),
            log: try row.required("log", row.string), buildID: try row.required("buildID", row.string),
            sourceKind: try row.required("sourceKind", row.string), buildKey: try row.string("buildKey"),
            keyInputs: try row.string("keyInputs"), backingDigest: try row.string("backingDigest"),
            replacement: try row.string("replacement"), obsoleteOn: try row.date("obsoleteOn"), deleteOn: try row.date("deleteOn"),
            policy: try row.string("policy"), purgeOn: try row.date("purgeOn"), purged: try row.bool("purged") ?? false,
            origin: try row.string("origin"))
    }
}

extension BuildRecord {
    static let columns = ["id", "family", "image", "status", "started", "finished", "failedStep", "message", "log", "pid", "host"]
    static let select = "SELECT " + columns.joined(separator: ", ") + " FROM build"

    var values: [SQLValue] {
        [
            .text(id), .text(family), .optional(image), .text(status.rawValue), .date(started), .optional(finished),
            .optional(failedStep), .optional(message), .optional(log), .integer(Int64(pid)), .optional(host),
        ]
    }

    init(row: any SQLRow) throws {
        let statusText = try row.required("status", row.string)
        guard let status = BuildStatus(rawValue: statusText) else {
            throw KilnError(.storeInconsistent, "the catalog names an unknown build status '\(statusText)'")
        }
        self.init(
            id: try row.required("id", row.string), family: try row.required("family", row.string), image: try row.string("image"),
            status: status, started: try row.required("started", row.date), finished: try row.date("finished"),
            failedStep: try row.string("failedStep"), message: try row.string("message"), log: try row.string("log"),
            pid: Int32(truncatingIfNeeded: try row.required("pid", row.int64)), host: try row.string("host"))
    }
}
