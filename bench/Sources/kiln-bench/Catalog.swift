// B9, catalog operations at scale: resolve on 100,000 images, rotate over 10,000.
import Foundation
import GRDB
import KilnModel
import KilnStore

/// Fills a fresh store's catalog with `families` x `perFamily` READY images, one transaction;
/// with `first`, the first family has that many instead (one long family among short ones).
func populate(families: Int, perFamily: Int, first: Int? = nil, root: String? = nil) throws -> Store {
    let store = try Store(root: root ?? NSTemporaryDirectory() + "kiln-bench-" + UUID().uuidString)
    let pool = try DatabasePool(path: store.root + "/catalog.sqlite")
    let start = Date(timeIntervalSince1970: 1_790_000_000)
    try pool.write { db in
        let statement = try db.makeStatement(
            sql: """
                INSERT INTO image (name, family, version, digest, state, created, labels, templateHash, size, log, buildID,
                                   sourceKind, purged)
                VALUES (?, ?, ?, ?, 'READY', ?, '{}', 't', 0, 'l', 'b', 'image', 0)
                """)
        for f in 0..<families {
            for v in 0..<(f == 0 ? first ?? perFamily : perFamily) {
                let version = String(format: "v%08d-1", v)
                try statement.execute(arguments: [
                    "fam\(f)-\(version)", "fam\(f)", version, "d\(f)-\(v)", start.addingTimeInterval(Double(v) * 3600),
                ])
            }
        }
    }
    return store
}

/// Prints one Markdown table row per measurement.
func catalogBenchmark() throws {
    // Resolve: the newest READY image of a family among 100,000 images (1,000 families x 100).
    let big = try populate(families: 1_000, perFamily: 100)
    var timings: [Double] = []
    for i in 0..<1_000 {
        timings.append(try seconds { _ = try big.catalog.head(of: "fam\((i * 7919) % 1_000)") } * 1000)
    }
    let (rmin, rmed, rmax) = summary(timings)
    print(
        String(format: "| resolve FAMILY, 100,000 images (1,000 runs) | %.3f ms | %.3f ms | %.3f ms | ", rmin, rmed, rmax)
            + verdict(rmed, goal: 10, "< 10 ms") + " |")
    try? FileManager.default.removeItem(atPath: big.root)

    // Rotate: 10,000 images (100 families x 100), a third of them then a second rotation later.
    var rotations: [Double] = []
    for _ in 0..<3 {
        let store = try populate(families: 100, perFamily: 100)
        let now = Date(timeIntervalSince1970: 1_800_000_000)
        var changed = 0
        rotations.append(try seconds { changed = try store.catalog.rotate(now: now, dryRun: false, actor: "bench").actions.count })
        precondition(changed == 100 * 98, "rotate changed \(changed) images")
        try? FileManager.default.removeItem(atPath: store.root)
    }
    let (tmin, tmed, tmax) = summary(rotations)
    print(
        String(format: "| rotate, 10,000 images, 9,800 deprecated (3 runs) | %.3f s | %.3f s | %.3f s | ", tmin, tmed, tmax)
            + verdict(tmed, goal: 2, "< 2 s") + " |")
}
