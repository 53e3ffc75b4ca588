import Foundation
import KilnCore
import KilnModel

/// What `kiln rotate` did, or would do, to one image.
public struct RotationAction: Sendable, Equatable, Codable {
    public var image: String
    public var family: String
    public var from: ImageState
    public var to: ImageState
    public var note: String
}

/// The image rotator of seed 004, with the dates enforced: for every family, every image but
/// the protected ones moves one step along READY -> DEPRECATED -> OBSOLETE -> DELETED when its
/// date has come.
extension Catalog {
    public func rotate(family only: String? = nil, now: Date, dryRun: Bool, actor: String = Transition.defaultActor()) throws -> (
        actions: [RotationAction], skipped: [RotationAction]
    ) {
        // One transaction for the whole rotation: all of it happens, as of one `now`, or none.
        try db.write { db in
            let all = try db.rows(ImageRecord.select + " WHERE purged = ? ORDER BY created DESC, version DESC", [.bool(false)])
                .decoded(ImageRecord.init(row:))
            let channelTargets = try Catalog.channelTargets(db)
            var actions: [RotationAction] = []
            var skipped: [RotationAction] = []
            for (family, images) in Dictionary(grouping: all, by: \.family).sorted(by: { $0.key < $1.key })
            where only == nil || only == family {
                // The newest image's recorded policy, read exactly (see ImageRecord.lifecyclePolicy).
                let policy = try images.first(where: { $0.policy != nil })?.lifecyclePolicy() ?? LifecyclePolicy()
                let ready = images.filter { $0.state == .ready }
                let kept = Set(ready.prefix(max(policy.keep, 1)).map(\.name))
                let head = ready.first
                for image in images {
                    // Protected: the head, the newest `keep` READY images, channel targets, pinned images.
                    if try kept.contains(image.name) || channelTargets.contains(image.name) || image.isPinned() {
                        continue
                    }
                    guard let change = Self.nextStep(for: image, policy: policy, head: head, now: now, actor: actor) else {
                        if !dryRun, let dated = Self.dated(image, policy: policy, now: now) {
                            try db.execute(
                                "UPDATE image SET obsoleteOn = ?, deleteOn = ?, purgeOn = ? WHERE name = ?",
                                [.optional(dated.obsoleteOn), .optional(dated.deleteOn), .optional(dated.purgeOn), .text(dated.name)])
                        }
                        continue
                    }
                    let action = RotationAction(image: image.name, family: family, from: image.state, to: change.to, note: change.reason)
                    do {
                        _ = try Self.apply(
                            image.name, change, dryRun: dryRun, channelTargets: channelTargets, db: db, known: image, knownReplacement: head
                        )
                        actions.append(action)
                    } catch let error as KilnError {
                        // A guard said no (live children, ...): the image waits for the next rotation.
                        skipped.append(
                            RotationAction(image: image.name, family: family, from: image.state, to: change.to, note: error.message))
                    }
                }
            }
            return (actions, skipped)
        }
    }

    /// The step `image` takes now, if its date has come.
    static func nextStep(for image: ImageRecord, policy: LifecyclePolicy, head: ImageRecord?, now: Date, actor: String) -> Transition? {
        switch image.state {
        case .ready where now.timeIntervalSince(image.created) >= Double(policy.deprecateAfter):
            var t = Transition(
                to: .deprecated, reason: "rotation: older than the newest \(policy.keep) READY images", actor: actor, now: now)
            t.replacement = head?.name
            t.obsoleteOn = now.addingTimeInterval(Double(policy.obsoleteAfter))
            t.deleteOn = t.obsoleteOn!.addingTimeInterval(Double(policy.deleteAfter))
            return t
        case .deprecated where (image.obsoleteOn ?? .distantFuture) <= now:
            var t = Transition(to: .obsolete, reason: "rotation: obsolete date passed", actor: actor, now: now)
            t.deleteOn = image.deleteOn ?? now.addingTimeInterval(Double(policy.deleteAfter))
            return t
        case .obsolete where (image.deleteOn ?? .distantFuture) <= now:
            var t = Transition(to: .deleted, reason: "rotation: delete date passed", actor: actor, now: now)
            t.purgeOn = now.addingTimeInterval(Double(policy.purgeAfter))
            return t
        default:
            return nil
        }
    }

    /// Images deprecated, obsoleted or deleted by hand without a date get one from the policy,
    /// so rotation moves them on in time.
    static func dated(_ image: ImageRecord, policy: LifecyclePolicy, now: Date) -> ImageRecord? {
        var updated = image
        switch image.state {
        case .deprecated where image.obsoleteOn == nil: updated.obsoleteOn = now.addingTimeInterval(Double(policy.obsoleteAfter))
        case .obsolete where image.deleteOn == nil: updated.deleteOn = now.addingTimeInterval(Double(policy.deleteAfter))
        case .deleted where image.purgeOn == nil: updated.purgeOn = now.addingTimeInterval(Double(policy.purgeAfter))
        default: return nil
        }
        return updated
    }

    /// DELETED images whose purge date has passed and that no unpurged image is built on.
    public func purgeable(now: Date) throws -> [ImageRecord] {
        try db.read { db in
            try db.rows(
                ImageRecord.select + """
                     i WHERE state = ? AND purged = ? AND purgeOn <= ?
                      AND NOT EXISTS (SELECT 1 FROM image c WHERE c.parent = i.name AND c.purged = ?)
                    """, [.text(ImageState.deleted.rawValue), .bool(false), .date(now), .bool(false)]
            ).decoded(ImageRecord.init(row:))
        }
    }

    public func markPurged(_ name: String) throws {
        try db.write { db in try db.execute("UPDATE image SET purged = ? WHERE name = ?", [.bool(true), .text(name)]) }
    }

    /// Whether any image other than `name` still needs the blob `digest` (as its own disk or as a backing file).
    /// True when an image row (purged or not) or a source disk names the blob `digest`: a blob
    /// nobody names is garbage a failed or killed build left.
    public func namesBlob(_ digest: String) throws -> Bool {
        try db.read { db in
            try db.count("SELECT count(*) AS n FROM image WHERE digest = ?", [.text(digest)]) > 0
                || db.count("SELECT count(*) AS n FROM source WHERE digest = ?", [.text(digest)]) > 0
        }
    }

    public func blobNeeded(_ digest: String, except name: String) throws -> Bool {
        try db.read { db in
            try db.count(
                "SELECT count(*) AS n FROM image WHERE name <> ? AND purged = ? AND (digest = ? OR backingDigest = ?)",
                [.text(name), .bool(false), .text(digest), .text(digest)]) > 0
        }
    }
}
