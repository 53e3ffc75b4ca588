import Foundation
import KilnCore
import KilnModel

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
            throw KilnError(.storeInconsistent, "the catalog names an unknown image state \(excerpt(stateText))")
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
            throw KilnError(.storeInconsistent, "the catalog names an unknown build status \(excerpt(statusText))")
        }
        self.init(
            id: try row.required("id", row.string), family: try row.required("family", row.string), image: try row.string("image"),
            status: status, started: try row.required("started", row.date), finished: try row.date("finished"),
            failedStep: try row.string("failedStep"), message: try row.string("message"), log: try row.string("log"),
            pid: Int32(truncatingIfNeeded: try row.required("pid", row.int64)), host: try row.string("host"))
    }
}
