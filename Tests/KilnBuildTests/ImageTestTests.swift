import Foundation
import KilnCore
import KilnGraph
import KilnModel
import KilnStore
import KilnTemplates
import Testing

@testable import KilnBuild

/// The `test:` section's orchestration with the fake provider: states, records, gates and
/// reruns. What a test boot boots is tested with real VMs (KilnVMTests/ImageTestVMTests).
@Suite("Image tests (fake provider)")
struct ImageTestTests {
    /// The workspace's app with a `test:` section: a guest step, a host step that records what
    /// it was given, and `step` (FAIL-HERE fails it) last.
    static func withTests(_ workspace: Workspace, step: String = "echo fine") throws {
        let file = workspace.dir + "/t/app.yaml"
        let text = try String(contentsOfFile: file, encoding: .utf8)
        try
            (text + "\n" + """
                test:
                  ports: [80, 8443]
                  steps:
                    - shell: systemctl is-active nginx
                    - name: from the host
                      shell-local: echo "$KILN_TEST_HOST $KILN_PORT_80 $KILN_PORT_8443" > \(workspace.dir)/host-env
                    - shell: \(step)

                """).write(toFile: file, atomically: true, encoding: .utf8)
    }

    static func build(
        _ workspace: Workspace, _ provider: FakeProvider, options: BuildOptions = BuildOptions(), force: Bool = false
    ) async throws -> ([BuildResult], [BuildEvent]) {
        let (set, graph) = try workspace.graph()
        let reporter = CollectingReporter()
        let builder = Builder(store: workspace.store, provider: provider, options: options, reporter: reporter)
        do {
            return (try await builder.build(graph, secrets: set.sensitiveValues, force: force), reporter.events.value)
        } catch {
            throw Failure(error: error, events: reporter.events.value)
        }
    }

    struct Failure: Error {
        let error: any Error
        let events: [BuildEvent]
    }

    @Test("an image with tests is TESTING until its test boot passes, then READY, with every step recorded")
    func passingTests() async throws {
        let workspace = try Workspace()
        defer { workspace.remove() }
        try Self.withTests(workspace)
        let provider = FakeProvider()
        let (results, events) = try await Self.build(workspace, provider)
        let app = results[1].image
        #expect(app.state == .ready)
        #expect(results[0].image.state == .ready)
        let bootEvents = provider.events.value.filter { $0.hasPrefix("test boot") }
        #expect(bootEvents == ["test boot backing=\(workspace.store.diskPath(of: app)) grow=\(1 << 30) ports=[80, 8443]"])
        // The base has no tests: no test boot, no run.
        #expect(try workspace.store.catalog.latestTestRun(of: results[0].image.name) == nil)
        let run = try #require(try workspace.store.catalog.latestTestRun(of: app.name))
        #expect(run.status == .passed && run.build == app.buildID && run.id == app.buildID)
        #expect(run.steps.map(\.title) == ["test[0] shell systemctl is-active nginx", "test[1] from the host", "test[2] shell echo fine"])
        #expect(run.steps.allSatisfy { $0.ok == true && $0.seconds != nil })
        #expect(
            try String(contentsOfFile: workspace.dir + "/host-env", encoding: .utf8) == "127.0.0.1 10080 18443\n")
        let kinds = events.filter { $0.family == "app" }.map(\.event)
        let started = try #require(kinds.firstIndex(of: .testsStarted))
        let passed = try #require(kinds.firstIndex(of: .testsPassed))
        let ready = try #require(kinds.firstIndex(of: .imageReady))
        #expect(started < passed && passed < ready)
        // The catalog's event says why the image became READY.
        let history = try workspace.store.catalog.history(family: "app")
        #expect(history.map { "\($0.fromState.rawValue)->\($0.toState.rawValue)" } == ["TESTING->READY"])
        #expect(history.first?.reason == "tests passed (test run \(run.id))")
        let archive = workspace.store.absolute(try #require(run.log))
        let testLog = String(decoding: try #require(try LogArchive.read(archive, entry: "tests.log")), as: UTF8.self)
        #expect(testLog.contains("[test[2] shell echo fine] ran: echo fine"))
        #expect(try LogArchive.read(archive, entry: "build.log") != nil)
    }

    @Test("a failing test leaves the image FAILED: not resolved, not a parent, not promoted; its disk and log stay")
    func failingTests() async throws {
        let workspace = try Workspace()
        defer { workspace.remove() }
        try Self.withTests(workspace, step: "FAIL-HERE")
        let provider = FakeProvider()
        var caught: Failure?
        do { _ = try await Self.build(workspace, provider) } catch let failure as Failure { caught = failure }
        let failure = try #require(caught)
        let error = try #require(failure.error as? KilnError)
        #expect(error.code == .buildFailed)
        #expect(error.message.contains("failed at test[2] shell FAIL-HERE"))
        let catalog = workspace.store.catalog
        let app = try #require(try catalog.images().first { $0.family == "app" })
        #expect(app.state == .failed)
        #expect(try catalog.head(of: "app") == nil)
        #expect(try catalog.buildParent(of: "app") == nil)
        #expect(throws: KilnError.self) { try catalog.promote(app.name, channel: "prod") }
        #expect(throws: KilnError.self) { try catalog.transition(app.name, Transition(to: .ready, reason: "by hand")) }
        #expect(FileManager.default.fileExists(atPath: workspace.store.diskPath(of: app)))
        let run = try #require(try catalog.latestTestRun(of: app.name))
        #expect(run.status == .failed && run.failedStep == "test[2] shell FAIL-HERE")
        #expect(run.steps.map(\.ok) == [true, true, false])
        let build = try #require(try catalog.build(id: app.buildID))
        #expect(build.status == .failed && build.failedStep == "test[2] shell FAIL-HERE")
        #expect(try LogArchive.read(workspace.store.absolute(try #require(build.log)), entry: "tests.log") != nil)
        // The test VM is gone, as the build VM is.
        #expect(provider.running.value == 0)
        #expect(failure.events.contains { $0.event == .testsFailed && $0.step == "test[2] shell FAIL-HERE" })
        #expect(!failure.events.contains { $0.event == .imageReady && $0.family == "app" })

        // Kept for inspection until gc, which deletes and purges it (and nothing else).
        let report = try await GarbageCollector.run(workspace.store, now: Date(), dryRun: false, cacheLimit: 1 << 40)
        #expect(report.failed == [app.name] && report.purged == [app.name])
        #expect(try catalog.image(named: app.name)?.state == .deleted)
        #expect(!FileManager.default.fileExists(atPath: workspace.store.diskPath(of: app)))
        #expect(try catalog.head(of: "base") != nil)
    }

    @Test("editing only a test reruns the tests on the same image: no build VM, one test boot, the digest unchanged")
    func changedTestsRerun() async throws {
        let workspace = try Workspace()
        defer { workspace.remove() }
        try Self.withTests(workspace, step: "FAIL-HERE")
        let provider = FakeProvider()
        _ = try? await Self.build(workspace, provider)
        let failed = try #require(try workspace.store.catalog.images().first { $0.family == "app" })
        #expect(failed.state == .failed)
        let digest = try Hashing.sha256Hex(fileAt: workspace.store.diskPath(of: failed))

        // The failing step fixed: only the test section changed.
        let file = workspace.dir + "/t/app.yaml"
        try (try String(contentsOfFile: file, encoding: .utf8)).replacingOccurrences(of: "FAIL-HERE", with: "echo fixed")
            .write(toFile: file, atomically: true, encoding: .utf8)
        let (set, graph) = try workspace.graph()
        let planned = try await Planner(store: workspace.store, secrets: set.sensitiveValues).plan(graph, force: false)
        #expect(planned.map(\.action) == [.upToDate, .test])
        #expect(planned[1].image?.name == failed.name)
        #expect(planned[1].reasons.first?.contains("FAILED its tests: they run again") == true)

        let before = provider.events.value.count
        let (results, _) = try await Self.build(workspace, provider)
        let after = Array(provider.events.value.dropFirst(before))
        #expect(after.filter { $0.hasPrefix("start ") }.isEmpty)
        #expect(after.filter { $0.hasPrefix("test boot ") }.count == 1)
        guard case .tested(let tested) = results[1] else { throw KilnError(.internalError, "expected a test run, got \(results[1])") }
        #expect(tested.name == failed.name && tested.state == .ready)
        #expect(try Hashing.sha256Hex(fileAt: workspace.store.diskPath(of: tested)) == digest)
        #expect(try workspace.store.catalog.head(of: "app")?.name == failed.name)

        // Nothing changed since: up to date, no test boot.
        let again = provider.events.value.count
        let (third, _) = try await Self.build(workspace, provider)
        guard case .upToDate = third[1] else { throw KilnError(.internalError, "expected up to date, got \(third[1])") }
        #expect(provider.events.value.count == again)

        // A test changed again and now fails: the READY image becomes FAILED; the family has no head.
        try (try String(contentsOfFile: file, encoding: .utf8)).replacingOccurrences(of: "echo fixed", with: "FAIL-HERE again")
            .write(toFile: file, atomically: true, encoding: .utf8)
        _ = try? await Self.build(workspace, provider)
        #expect(try workspace.store.catalog.image(named: failed.name)?.state == .failed)
        #expect(try workspace.store.catalog.head(of: "app") == nil)
        // It was READY (it may be deployed): gc leaves it and its disk to kiln delete.
        let report = try await GarbageCollector.run(workspace.store, now: Date(), dryRun: false, cacheLimit: 1 << 40)
        #expect(report.failed.isEmpty && report.purged.isEmpty)
        #expect(FileManager.default.fileExists(atPath: workspace.store.diskPath(of: failed)))
    }

    @Test("a READY image built before its template had tests, failing the tests added since, is FAILED but gc keeps its disk")
    func committedReadyThenFailed() async throws {
        let workspace = try Workspace()
        defer { workspace.remove() }
        let provider = FakeProvider()
        let (first, _) = try await Self.build(workspace, provider)
        let app = first[1].image
        #expect(app.state == .ready)
        try Self.withTests(workspace, step: "FAIL-HERE")
        _ = try? await Self.build(workspace, provider)
        #expect(try workspace.store.catalog.image(named: app.name)?.state == .failed)
        let report = try await GarbageCollector.run(workspace.store, now: Date(), dryRun: false, cacheLimit: 1 << 40)
        #expect(report.failed.isEmpty && report.purged.isEmpty)
        #expect(FileManager.default.fileExists(atPath: workspace.store.diskPath(of: app)))
    }

    @Test("a refresh's hold keeps passing images TESTING until markReady makes them READY together")
    func holdReady() async throws {
        let workspace = try Workspace()
        defer { workspace.remove() }
        try Self.withTests(workspace)
        var options = BuildOptions()
        options.holdReady = true
        let (results, events) = try await Self.build(workspace, FakeProvider(), options: options)
        let images = results.map(\.image)
        // The base has no tests, but is held too: no family moves before every image passed.
        #expect(images.map(\.state) == [.testing, .testing])
        #expect(try workspace.store.catalog.latestTestRun(of: images[1].name)?.steps.count == 3)
        #expect(try workspace.store.catalog.latestTestRun(of: images[0].name)?.steps.isEmpty == true)
        #expect(try images.allSatisfy { try workspace.store.catalog.latestTestRun(of: $0.name)?.status == .passed })
        #expect(!events.contains { $0.event == .imageReady })
        #expect(try workspace.store.catalog.head(of: "base") == nil)
        try workspace.store.catalog.markReady(images.map(\.name), reason: "refresh: every rebuilt image passed its tests")
        #expect(try workspace.store.catalog.head(of: "app")?.name == images[1].name)
        #expect(try workspace.store.catalog.head(of: "base")?.name == images[0].name)
    }
}

/// The review's cases: results that must not move an image, and ways back to READY that
/// must not skip the tests.
@Suite("Image test states hold against every way around them (fake provider)")
struct ImageTestStateTests {
    static func rewrite(_ workspace: Workspace, _ from: String, _ to: String) throws {
        let file = workspace.dir + "/t/app.yaml"
        try (try String(contentsOfFile: file, encoding: .utf8)).replacingOccurrences(of: from, with: to)
            .write(toFile: file, atomically: true, encoding: .utf8)
    }

    static func failingBuild(_ workspace: Workspace, _ provider: FakeProvider, force: Bool = false) async throws
        -> ImageTestTests.Failure
    {
        do { _ = try await ImageTestTests.build(workspace, provider, force: force) } catch let failure as ImageTestTests.Failure {
            return failure
        }
        throw KilnError(.internalError, "the build passed")
    }

    @Test("a host error during the tests moves nothing: the run is `error`, the image stays TESTING, the next build tests it again")
    func hostErrorMovesNothing() async throws {
        let workspace = try Workspace()
        defer { workspace.remove() }
        try ImageTestTests.withTests(workspace, step: "HOST-ERROR")
        let provider = FakeProvider()
        let failure = try await Self.failingBuild(workspace, provider)
        #expect("\(failure.error)".contains("could not run (at test[2] shell HOST-ERROR)"), "\(failure.error)")
        let catalog = workspace.store.catalog
        let app = try #require(try catalog.images().first { $0.family == "app" })
        #expect(app.state == .testing)
        let run = try #require(try catalog.latestTestRun(of: app.name))
        #expect(run.status == .error && run.failedStep == "test[2] shell HOST-ERROR")
        #expect(try catalog.history(family: "app").isEmpty, "no state change")
        try Self.rewrite(workspace, "HOST-ERROR", "echo fine")
        let (results, _) = try await ImageTestTests.build(workspace, provider)
        #expect(results[1].image.name == app.name && results[1].image.state == .ready)
        #expect(TestStatus.after(KilnError(.timeout, "t"), cancelled: false) == .failed)
        #expect(TestStatus.after(KilnError(.providerFailed, "VM stopped"), cancelled: false) == .failed)
        #expect(TestStatus.after(KilnError(.storeInconsistent, "s"), cancelled: false) == .error)
        #expect(TestStatus.after(CancellationError(), cancelled: true) == .cancelled)
    }

    @Test("undeprecate returns to READY only an image that was READY and whose newest decided run passed")
    func returnToReadyNeedsPassedTests() async throws {
        let workspace = try Workspace()
        defer { workspace.remove() }
        try ImageTestTests.withTests(workspace, step: "FAIL-HERE")
        let provider = FakeProvider()
        _ = try await Self.failingBuild(workspace, provider)
        _ = try await Self.failingBuild(workspace, provider, force: true)
        let catalog = workspace.store.catalog
        let bases = try catalog.images().filter { $0.family == "base" }.sorted { $0.version < $1.version }
        let apps = try catalog.images().filter { $0.family == "app" }.sorted { $0.version < $1.version }
        try #require(bases.count == 2 && apps.count == 2 && apps.allSatisfy { $0.state == .failed })
        // An obsolete cascade carries the FAILED child along; it never passed, so it stays out.
        var obsolete = Transition(to: .obsolete, reason: "old base")
        obsolete.cascade = true
        try catalog.transition(bases[0].name, obsolete)
        #expect(try catalog.image(named: apps[0].name)?.state == .obsolete)
        let never = #expect(throws: KilnError.self) { try catalog.transition(apps[0].name, Transition(to: .ready, reason: "back")) }
        #expect(never?.message.contains("never passed its tests") == true, "\(String(describing: never))")
        #expect(try catalog.transition(bases[0].name, Transition(to: .ready, reason: "back")).count == 1)

        // A READY image deprecated, whose changed tests then fail: it stays DEPRECATED, and
        // comes back only after they pass.
        try Self.rewrite(workspace, "FAIL-HERE", "echo fine")
        let passed = try #require(try await ImageTestTests.build(workspace, provider).0.last?.image)
        #expect(passed.state == .ready)
        try catalog.transition(passed.name, Transition(to: .deprecated, reason: "replaced"))
        var run = TestRunRecord(id: "run-failed", image: passed.name, build: nil, status: .running, started: Date(), testsHash: "x")
        try catalog.insert(run)
        run.status = .failed
        run.failedStep = "test[0] shell systemctl is-active nginx"
        #expect(try catalog.finish(run).state == .deprecated)
        let failed = #expect(throws: KilnError.self) { try catalog.transition(passed.name, Transition(to: .ready, reason: "back")) }
        #expect(failed?.message.contains("newest tests failed at test[0]") == true, "\(String(describing: failed))")
        var again = TestRunRecord(id: "run-passed", image: passed.name, build: nil, status: .running, started: Date(), testsHash: "x")
        try catalog.insert(again)
        again.status = .passed
        try catalog.finish(again)
        try catalog.transition(passed.name, Transition(to: .ready, reason: "back"))
        #expect(try catalog.image(named: passed.name)?.state == .ready)
    }

    @Test("a refresh's hold keeps a FAILED image that passes TESTING, like the rest it holds")
    func holdCoversFailed() {
        #expect(Catalog.stateAfter(.passed, from: .failed, hold: true) == .testing)
        #expect(Catalog.stateAfter(.passed, from: .failed) == .ready)
        #expect(Catalog.stateAfter(.error, from: .testing) == nil && Catalog.stateAfter(.error, from: .ready) == nil)
    }

    @Test(
        "a kiln that dies during a build's tests: the next one records the build failed and the run cancelled; gc removes the TESTING image once replaced"
    )
    func interruptedTests() async throws {
        let workspace = try Workspace()
        defer { workspace.remove() }
        try ImageTestTests.withTests(workspace)
        let provider = FakeProvider()
        var hold = BuildOptions()
        hold.holdReady = true
        let (held, _) = try await ImageTestTests.build(workspace, provider, options: hold)
        let app = held[1].image
        let catalog = workspace.store.catalog
        // As a kill -9 during the test phase leaves it: the build running under a dead pid, its run too.
        var build = try #require(try catalog.build(id: app.buildID))
        build.status = .running
        build.finished = nil
        build.pid = Int32.max
        try catalog.update(build)
        var run = try #require(try catalog.latestTestRun(of: app.name))
        run.status = .running
        try catalog.finish(run, hold: true)
        _ = try Recovery.run(workspace.store)
        let recovered = try #require(try catalog.build(id: app.buildID))
        #expect(recovered.status == .failed, "\(recovered)")
        #expect(recovered.message?.contains("its tests were interrupted") == true)
        #expect(try catalog.latestTestRun(of: app.name)?.status == .cancelled)
        #expect(try catalog.image(named: app.name)?.state == .testing)

        // Still the newest: gc keeps it (its next build tests it). Replaced: gc collects it.
        var report = try await GarbageCollector.run(workspace.store, now: Date(), dryRun: true, cacheLimit: 1 << 40)
        #expect(!report.failed.contains(app.name))
        _ = try await ImageTestTests.build(workspace, provider, force: true)
        report = try await GarbageCollector.run(workspace.store, now: Date(), dryRun: false, cacheLimit: 1 << 40)
        #expect(report.failed.contains(app.name), "\(report.failed)")
        #expect(try catalog.image(named: app.name)?.state == .deleted)
    }
}

@Suite("JUnit reports (fake provider, read by junitparser)")
struct JUnitReportTests {
    @Test("kiln build --junit: one suite per image, one case per stage and test step, the failed test named; junitparser agrees")
    func failedTestReport() async throws {
        let workspace = try Workspace()
        defer { workspace.remove() }
        try ImageTestTests.withTests(workspace, step: "FAIL-HERE")
        let collected = CollectingReporter()
        let report = JUnitReport(forwardingTo: collected)
        let (set, graph) = try workspace.graph()
        let builder = Builder(store: workspace.store, provider: FakeProvider(), options: BuildOptions(), reporter: report)
        await #expect(throws: KilnError.self) { _ = try await builder.build(graph, secrets: set.sensitiveValues) }
        let file = workspace.dir + "/junit.xml"
        try report.write(to: file)
        // What the events say, counted here; what the XML says, counted by junitparser.
        let events = collected.events.value
        let stages = Dictionary(grouping: events.filter { $0.event == .stepStarted }, by: \.family).mapValues(\.count)
        let script = """
            import json, sys
            from junitparser import JUnitXml, Failure, Skipped
            xml = JUnitXml.fromfile(sys.argv[1])
            out = {}
            for suite in xml:
                cases = list(suite)
                out[suite.name] = {
                    "tests": suite.tests, "failures": suite.failures,
                    "cases": len(cases),
                    "test_cases": sum(1 for c in cases if c.classname.startswith("kiln.test.")),
                    "failed": [c.name for c in cases if any(isinstance(r, Failure) for r in c.result)],
                    "messages": [r.message for c in cases for r in c.result if isinstance(r, Failure)],
                }
            print(json.dumps(out))
            """
        let result = try await ProcessRunner.run("python3", ["-c", script, file])
        #expect(result.succeeded, "\(result.stderr)")
        let parsed = try #require(try JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [String: [String: Any]])
        #expect(Set(parsed.keys) == ["base", "app"])
        for family in ["base", "app"] {
            #expect(parsed[family]?["tests"] as? Int == stages[family], "\(family): \(parsed[family] ?? [:])")
            #expect(parsed[family]?["cases"] as? Int == stages[family])
        }
        #expect(parsed["base"]?["failures"] as? Int == 0)
        #expect(parsed["app"]?["failures"] as? Int == 1)
        #expect(parsed["app"]?["failed"] as? [String] == ["test[2] shell FAIL-HERE"])
        // The test boot and the three steps that ran.
        #expect(parsed["app"]?["test_cases"] as? Int == 4)
        let message = (parsed["app"]?["messages"] as? [String])?.first ?? ""
        #expect(message.contains("exit status 3"), "\(message)")
    }

    @Test("an up-to-date image is one skipped case")
    func upToDateReport() async throws {
        let workspace = try Workspace()
        defer { workspace.remove() }
        let (set, graph) = try workspace.graph()
        _ = try await Builder(store: workspace.store, provider: FakeProvider(), options: BuildOptions(), reporter: nil)
            .build(graph, secrets: set.sensitiveValues)
        let report = JUnitReport(forwardingTo: nil)
        _ = try await Builder(store: workspace.store, provider: FakeProvider(), options: BuildOptions(), reporter: report)
            .build(graph, secrets: set.sensitiveValues)
        let xml = report.xml()
        #expect(xml.contains("tests=\"2\""))
        #expect(xml.contains("skipped=\"2\""))
        #expect(xml.components(separatedBy: "<skipped ").count == 3)
    }
}

@Suite("Image tests keep secrets (fake provider)")
struct ImageTestSecretTests {
    @Test("a sensitive variable in a test step reaches no test record, test log, event or JUnit report")
    func sensitiveValueInTests() async throws {
        let workspace = try Workspace()
        defer { workspace.remove() }
        // The workspace's app has `token` (sensitive, hunter2); the step's name holds it, and its
        // script reaches it through the environment (and the fake guest prints that).
        let file = workspace.dir + "/t/app.yaml"
        try
            (try String(contentsOfFile: file, encoding: .utf8) + "\n" + """
                test:
                  steps:
                    - name: "token ${var.token}"
                      shell: echo "$KILN_VAR_token" FAIL-HERE

                """).write(toFile: file, atomically: true, encoding: .utf8)
        let collected = CollectingReporter()
        let report = JUnitReport(forwardingTo: collected)
        let (set, graph) = try workspace.graph()
        let builder = Builder(store: workspace.store, provider: FakeProvider(), options: BuildOptions(), reporter: report)
        await #expect(throws: KilnError.self) { _ = try await builder.build(graph, secrets: set.sensitiveValues) }
        let app = try #require(try workspace.store.catalog.images().first { $0.family == "app" })
        let run = try #require(try workspace.store.catalog.latestTestRun(of: app.name))
        #expect(run.failedStep?.contains("<sensitive>") == true, "\(run.failedStep ?? "")")
        let record = String(decoding: try JSONEncoder().encode(run), as: UTF8.self)
        let archive = workspace.store.absolute(try #require(run.log))
        let log = String(decoding: try #require(try LogArchive.read(archive, entry: "tests.log")), as: UTF8.self)
        let events = collected.events.value.map { $0.jsonLine() }.joined(separator: "\n")
        for (what, text) in [("test run", record), ("tests.log", log), ("events", events), ("JUnit", report.xml())] {
            #expect(!text.contains("hunter2"), "\(what) holds the sensitive value")
        }
        #expect(log.contains("<sensitive>"))
    }
}
