import Foundation
import KilnCore
import KilnModel

/// Test runs (docs/testing.md): each run of an image's `test:` steps on a test boot, and the
/// state change its result makes, in one transaction.
extension Catalog {
    public func insert(_ run: TestRunRecord) throws {
        try db.write { db in
            try db.execute(
                "INSERT INTO test_run (" + TestRunRecord.columns.joined(separator: ", ") + ") VALUES ("
                    + TestRunRecord.columns.map { _ in "?" }.joined(separator: ", ") + ")", run.values)
        }
    }

    /// Records how `run` ended and moves its image as the result says (``stateAfter(_:from:hold:)``),
    /// with an event naming the run. Returns the image as it is afterwards.
    /// - Parameter hold: a passing run leaves a TESTING image TESTING (`kiln refresh` makes every
    ///   image it rebuilt READY together, once all of them passed: ``markReady(_:reason:actor:now:)``).
    @discardableResult
    public func finish(
        _ run: TestRunRecord, hold: Bool = false, actor: String = Transition.defaultActor(), now: Date = Date()
    ) throws -> ImageRecord {
        try db.write { db in
            let assignments = TestRunRecord.columns.dropFirst().map { "\($0) = ?" }.joined(separator: ", ")
            try db.execute("UPDATE test_run SET \(assignments) WHERE id = ?", Array(run.values.dropFirst()) + [.text(run.id)])
            guard var image = try Catalog.image(named: run.image, db) else {
                throw KilnError(.notFound, "no image named '\(run.image)' (see kiln images)")
            }
            guard let next = Self.stateAfter(run.status, from: image.state, hold: hold), next != image.state else { return image }
            let reason =
                run.status == .passed
                ? "tests passed (test run \(run.id))"
                : "tests failed at \(run.failedStep ?? "?") (test run \(run.id))"
            try Self.record(image, to: next, reason: reason, actor: actor, now: now, db)
            image.state = next
            return image
        }
    }

    /// The state a test result moves an image to; nil: it stays as it is. Passing makes a
    /// TESTING or FAILED image READY (TESTING when held); failing makes a TESTING or READY one FAILED (a READY
    /// image that fails changed tests is no longer what its family resolves to). An image on
    /// its way out (DEPRECATED, OBSOLETE, DELETED) keeps its state: the run is only recorded.
    public static func stateAfter(_ status: TestStatus, from state: ImageState, hold: Bool = false) -> ImageState? {
        switch (status, state) {
        case (.passed, .testing): return hold ? nil : .ready
        // Held too: a refresh makes what it rebuilt READY together, or nothing.
        case (.passed, .failed): return hold ? .testing : .ready
        case (.failed, .testing), (.failed, .ready): return .failed
        default: return nil
        }
    }

    /// Makes TESTING images whose tests passed READY, all in one transaction.
    public func markReady(_ names: [String], reason: String, actor: String = Transition.defaultActor(), now: Date = Date()) throws {
        try db.write { db in
            for name in names {
                guard let image = try Catalog.image(named: name, db) else {
                    throw KilnError(.notFound, "no image named '\(name)' (see kiln images)")
                }
                guard image.state == .testing else { continue }
                guard let run = try Self.latestTestRun(of: name, db), run.passed else {
                    throw KilnError(.invalidInput, "\(name) has not passed its tests: it cannot become READY")
                }
                try Self.record(image, to: .ready, reason: reason, actor: actor, now: now, db)
            }
        }
    }

    private static func record(
        _ image: ImageRecord, to state: ImageState, reason: String, actor: String, now: Date, _ db: any SQLConnection
    ) throws {
        try db.execute("UPDATE image SET state = ? WHERE name = ?", [.text(state.rawValue), .text(image.name)])
        try db.execute(
            "INSERT INTO event (image, family, fromState, toState, at, actor, reason) VALUES (?, ?, ?, ?, ?, ?, ?)",
            [
                .text(image.name), .text(image.family), .text(image.state.rawValue), .text(state.rawValue), .date(now),
                .text(actor), .text(reason),
            ])
    }

    /// Whether the image was ever READY: committed READY (a template without tests then), or
    /// made READY since. Either way some state change starts or ends at READY.
    public func wasReady(_ name: String) throws -> Bool {
        try db.read { db in try Self.wasReady(name, db) }
    }

    static func wasReady(_ name: String, _ db: any SQLConnection) throws -> Bool {
        try db.count(
            "SELECT count(*) AS n FROM event WHERE image = ? AND (fromState = ? OR toState = ?)",
            [.text(name), .text(ImageState.ready.rawValue), .text(ImageState.ready.rawValue)]) > 0
    }

    /// Whether an image on its way out (DEPRECATED, OBSOLETE) may be READY again: it was READY
    /// once, and its newest run that decided anything passed. A TESTING or FAILED image an
    /// obsolete cascade carried along never was; a DEPRECATED image whose changed tests failed
    /// (it keeps its state: see ``stateAfter(_:from:hold:)``) must pass them first.
    static func mayReturnToReady(_ name: String, _ db: any SQLConnection) throws -> String? {
        guard try wasReady(name, db) else { return "it never passed its tests (it was never READY)" }
        let decided = try db.row(
            TestRunRecord.select + " WHERE image = ? AND status IN (?, ?) ORDER BY started DESC, id DESC LIMIT 1",
            [.text(name), .text(TestStatus.passed.rawValue), .text(TestStatus.failed.rawValue)]
        ).decoded(TestRunRecord.init(row:))
        if let decided, decided.status == .failed {
            return "its newest tests failed at \(decided.failedStep ?? "?") (test run \(decided.id)); kiln test \(name) first"
        }
        return nil
    }

    /// The image's newest test run; nil when its tests never ran.
    public func latestTestRun(of image: String) throws -> TestRunRecord? {
        try db.read { db in try Self.latestTestRun(of: image, db) }
    }

    static func latestTestRun(of image: String, _ db: any SQLConnection) throws -> TestRunRecord? {
        try db.row(TestRunRecord.select + " WHERE image = ? ORDER BY started DESC, id DESC LIMIT 1", [.text(image)])
            .decoded(TestRunRecord.init(row:))
    }

    public func testRun(id: String) throws -> TestRunRecord? {
        try db.read { db in try db.row(TestRunRecord.select + " WHERE id = ?", [.text(id)]).decoded(TestRunRecord.init(row:)) }
    }

    /// Every image's newest test run, by image name (`kiln images`): one query for the listing.
    public func latestTestRuns() throws -> [String: TestRunRecord] {
        try db.read { db in
            // Oldest first: each image's newest run is the last one written into the dictionary.
            try db.rows(TestRunRecord.select + " ORDER BY started, id").decoded(TestRunRecord.init(row:)).reduce(into: [:]) {
                $0[$1.image] = $1
            }
        }
    }

    /// The newest image of `family` built from exactly these inputs that is waiting for or
    /// failed its tests (TESTING, FAILED): a build with the same key tests it again instead of
    /// building it again.
    public func untestedImage(family: String, buildKey: String) throws -> ImageRecord? {
        try db.read { db in
            try db.row(
                ImageRecord.select
                    + " WHERE family = ? AND buildKey = ? AND state IN (?, ?) AND purged = ? ORDER BY created DESC, version DESC LIMIT 1",
                [.text(family), .text(buildKey), .text(ImageState.testing.rawValue), .text(ImageState.failed.rawValue), .bool(false)]
            ).decoded(ImageRecord.init(row:))
        }
    }
}

extension TestRunRecord {
    static let columns = [
        "id", "image", "build", "status", "started", "finished", "failedStep", "message", "log", "testsHash", "steps",
    ]
    static let select = "SELECT " + columns.joined(separator: ", ") + " FROM test_run"

    var values: [SQLValue] {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        let steps = String(decoding: (try? encoder.encode(self.steps)) ?? Data("[]".utf8), as: UTF8.self)
        return [
            .text(id), .text(image), .optional(build), .text(status.rawValue), .date(started), .optional(finished),
            .optional(failedStep), .optional(message), .optional(log), .text(testsHash), .text(steps),
        ]
    }

    init(row: any SQLRow) throws {
        let statusText = try row.required("status", row.string)
        guard let status = TestStatus(rawValue: statusText) else {
            throw KilnError(.storeInconsistent, "the catalog names an unknown test status \(excerpt(statusText))")
        }
        let stepsText = try row.required("steps", row.string)
        guard let steps = try? JSONDecoder().decode([TestStepResult].self, from: Data(stepsText.utf8)) else {
            throw KilnError(.storeInconsistent, "the catalog's steps of test run \(excerpt(try row.string("id") ?? "?")) cannot be read")
        }
        self.init(
            id: try row.required("id", row.string), image: try row.required("image", row.string), build: try row.string("build"),
            status: status, started: try row.required("started", row.date), testsHash: try row.required("testsHash", row.string),
            steps: steps)
        finished = try row.date("finished")
        failedStep = try row.string("failedStep")
        message = try row.string("message")
        log = try row.string("log")
    }
}
