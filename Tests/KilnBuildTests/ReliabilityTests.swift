import Foundation
import KilnModel
import KilnStore
import KilnTestSupport
import Testing

@testable import KilnBuild
@testable import KilnCore

@Suite("Reliability: concurrent builds, damaged blobs, dead kiln processes")
struct ReliabilityTests {
    @Test(
        "two builders on one store (as two kiln processes would) build each family once; the second finds it up to date",
        arguments: CatalogBackend.allCases)
    func concurrentBuildersBuildOnce(backend: CatalogBackend) async throws {
        let workspace = try Workspace(product: "echo SLOW product", backend: backend)
        defer { workspace.remove() }
        let (set, graph) = try workspace.graph()
        // A second Store on the same root and catalog: its own catalog connection and its own
        // locks (lock files; on PostgreSQL, advisory locks on connections of its own).
        let other = try Store(root: workspace.store.root, catalog: workspace.catalog)
        let first = Builder(store: workspace.store, provider: FakeProvider(), options: BuildOptions(), reporter: nil)
        let second = Builder(store: other, provider: FakeProvider(), options: BuildOptions(), reporter: nil)
        async let a = first.build(graph, secrets: set.sensitiveValues)
        async let b = second.build(graph, secrets: set.sensitiveValues)
        let results = try await [a, b]
        let built = results.flatMap { $0 }.filter { if case .built = $0 { true } else { false } }
        #expect(built.map(\.image.family).sorted() == ["app", "base"])
        for family in ["base", "app"] {
            #expect(try workspace.store.catalog.images().filter { $0.family == family }.count == 1)
        }
        #expect(try workspace.store.catalog.builds().allSatisfy { $0.status == .succeeded })
    }

    @Test("a parent blob whose bytes changed fails the child's build before any machine starts")
    func damagedParentIsRefused() async throws {
        let workspace = try Workspace()
        defer { workspace.remove() }
        let (set, graph) = try workspace.graph()
        let provider = FakeProvider()
        let builder = Builder(store: workspace.store, provider: provider, options: BuildOptions(), reporter: nil)
        let images = try await builder.build(graph, secrets: set.sensitiveValues).map(\.image)
        let base = workspace.store.diskPath(of: images[0])
        try FileManager.default.setAttributes([.posixPermissions: 0o644], ofItemAtPath: base)
        let handle = try #require(FileHandle(forWritingAtPath: base))
        try handle.seekToEnd()
        try handle.write(contentsOf: Data("bit rot".utf8))
        try handle.close()
        let starts = provider.events.value.filter { $0.hasPrefix("start") }.count
        // A fresh Builder and Store: nothing remembered from the first build.
        let store = try Store(root: workspace.store.root)
        let again = Builder(store: store, provider: provider, options: BuildOptions(), reporter: nil)
        let error = await #expect(throws: KilnError.self) {
            _ = try await again.build(graph, secrets: set.sensitiveValues, force: true, selected: ["app"])
        }
        #expect(error?.message.contains("failed at verify") == true, "\(String(describing: error))")
        #expect(error?.message.contains("is damaged") == true, "\(String(describing: error))")
        #expect(provider.events.value.filter { $0.hasPrefix("start") }.count == starts)
    }

    /// The pid of a process that has exited: a kiln that died, as recovery finds it.
    static func deadPID() async throws -> Int32 {
        let dead = try await ProcessRunner.run("sh", ["-c", "echo $$"])
        return try #require(Int32(dead.stdout.trimmingCharacters(in: .whitespacesAndNewlines)))
    }

    @Test("the next kiln kills what a dead kiln left running, records its build as failed with its log, and clears its directories")
    func recoveryAfterADeadKiln() async throws {
        let workspace = try Workspace()
        defer { workspace.remove() }
        let store = workspace.store
        // A kiln process that has exited, and a child it left behind (a real process).
        let deadPID = try await Self.deadPID()
        let orphan = try await ProcessRunner.run("sh", ["-c", "setsid sleep 1000 > /dev/null 2>&1 < /dev/null & echo $!"])
        let orphanPID = try #require(Int32(orphan.stdout.trimmingCharacters(in: .whitespacesAndNewlines)))
        defer { kill(orphanPID, SIGKILL) }
        var start: UInt64?
        for _ in 0..<50 where start == nil {
            start = ProcessRegistry.startTime(of: orphanPID)
            if start == nil { try await Task.sleep(for: .milliseconds(20)) }
        }
        FileManager.default.createFile(atPath: store.runDirectory + "/\(deadPID).lock", contents: nil)
        let started = try #require(start)
        try "\(orphanPID) \(started)\n".write(
            toFile: store.runDirectory + "/\(deadPID).children", atomically: true, encoding: .utf8)
        let id = "20261123T000000-app-dead"
        try store.catalog.insert(BuildRecord(id: id, family: "app", status: .running, started: Date(), pid: deadPID))
        try FileManager.default.createDirectory(atPath: store.scratchDirectory(buildID: id), withIntermediateDirectories: true)
        try FileManager.default.createDirectory(atPath: store.stagingDirectory(buildID: id), withIntermediateDirectories: true)
        try "2026-11-23T00:00:00.000 [app] [kiln] booting VM (TCG)\n".write(
            toFile: store.scratchDirectory(buildID: id) + "/build.log", atomically: true, encoding: .utf8)
        // A build of this (live) process is left alone.
        try store.catalog.insert(
            BuildRecord(id: "20261123T000000-base-live", family: "base", status: .running, started: Date(), pid: getpid()))

        let report = try Recovery.run(store)
        #expect(report.reaped == [ProcessRegistry.Reaped(owner: deadPID, killed: [orphanPID])])
        var gone = false
        for _ in 0..<50 where !gone {
            gone =
                ProcessRegistry.startTime(of: orphanPID) == nil
                || (try? String(contentsOfFile: "/proc/\(orphanPID)/stat", encoding: .utf8))?.contains(" Z ") == true
            if !gone { try await Task.sleep(for: .milliseconds(20)) }
        }
        #expect(gone, "the orphan survived")
        let record = try #require(try store.catalog.build(id: id))
        #expect(record.status == .failed)
        #expect(record.failedStep == "boot")
        #expect(record.message?.contains("pid \(deadPID)") == true)
        let archive = try #require(record.log)
        let log = try #require(try LogArchive.read(store.absolute(archive), entry: "build.log"))
        #expect(String(decoding: log, as: UTF8.self).contains("interrupted"))
        #expect(!FileManager.default.fileExists(atPath: store.scratchDirectory(buildID: id)))
        #expect(!FileManager.default.fileExists(atPath: store.stagingDirectory(buildID: id)))
        #expect(!FileManager.default.fileExists(atPath: store.runDirectory + "/\(deadPID).lock"))
        #expect(try store.catalog.build(id: "20261123T000000-base-live")?.status == .running)
        #expect(FileManager.default.fileExists(atPath: store.runDirectory + "/\(getpid()).lock"))
    }

    @Test(
        "a build killed after its output's reader went away is recorded at the stage it reached, as its phase file says, not where its log stops"
    )
    func recoveryReadsThePhase() async throws {
        let workspace = try Workspace()
        defer { workspace.remove() }
        let store = workspace.store
        let deadPID = try await Self.deadPID()
        let id = "20261204T000000-app-piped"
        try store.catalog.insert(BuildRecord(id: id, family: "app", status: .running, started: Date(), pid: deadPID))
        let scratch = store.scratchDirectory(buildID: id)
        try FileManager.default.createDirectory(atPath: scratch, withIntermediateDirectories: true)
        try "2026-12-04T00:00:00.000 [app] [kiln] building app\n".write(toFile: scratch + "/build.log", atomically: true, encoding: .utf8)
        try "verify".write(toFile: scratch + "/" + StepTracker.phaseFileName, atomically: true, encoding: .utf8)
        _ = try Recovery.run(store)
        #expect(try store.catalog.build(id: id)?.failedStep == "verify")
    }

    @Test("the stage tracker writes the stage it enters where recovery reads it")
    func trackerWritesThePhase() throws {
        let dir = NSTemporaryDirectory() + "kiln-phase-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let steps = StepTracker(family: "app", build: "b", reporter: nil, phaseFile: dir + "/" + StepTracker.phaseFileName)
        steps.enter("verify")
        steps.enter("provision[0] shell echo hi")
        #expect(try String(contentsOfFile: dir + "/phase", encoding: .utf8) == "provision[0] shell echo hi")
    }

    @Test(
        "a host disk that fills up during the snapshot fails the build cleanly: no image, no blob, no staging; the next build succeeds",
        .enabled(if: getuid() == 0, "mounting a small tmpfs needs root"))
    func hostDiskFullDuringSnapshot() async throws {
        let workspace = try Workspace()
        defer { workspace.remove() }
        let small = workspace.dir + "/small"
        try FileManager.default.createDirectory(atPath: small, withIntermediateDirectories: true)
        try await ProcessRunner.check("mount", ["-t", "tmpfs", "-o", "size=48m", "tmpfs", small])
        defer { _ = umount2(small, Int32(MNT_DETACH)) }
        let store = try Store(root: small + "/home")
        let (set, graph) = try workspace.graph()
        let provider = FakeProvider()
        let builder = Builder(store: store, provider: provider, options: BuildOptions(), reporter: nil)
        let first = try await builder.build(graph, secrets: set.sensitiveValues)
        #expect(first.count == 2)
        // The app's VM stops; then the host's disk is full while kiln seals and names the image.
        let filler = small + "/filler"
        provider.onShutdown.set {
            FileManager.default.createFile(atPath: filler, contents: nil)
            guard let handle = FileHandle(forWritingAtPath: filler) else { return }
            let chunk = Data(repeating: 1, count: 1 << 20)
            while (try? handle.write(contentsOf: chunk)) != nil {}
            try? handle.close()
        }
        let blobsBefore = Set(try FileManager.default.contentsOfDirectory(atPath: store.imagesDirectory))
        let error = await #expect(throws: KilnError.self) {
            _ = try await builder.build(graph, secrets: set.sensitiveValues, force: true, selected: ["app"])
        }
        #expect(error?.message.contains("failed at snapshot") == true, "\(String(describing: error))")
        #expect(try store.catalog.images().filter { $0.family == "app" }.count == 1)
        #expect(Set(try FileManager.default.contentsOfDirectory(atPath: store.imagesDirectory)) == blobsBefore)
        try FileManager.default.removeItem(atPath: filler)
        provider.onShutdown.set(nil)
        let again = try await builder.build(graph, secrets: set.sensitiveValues, force: true, selected: ["app"])
        #expect(again.map(\.image.family) == ["app"])
        #expect(try store.catalog.images().filter { $0.family == "app" }.count == 2)
    }

    @Test("a sensitive value reaches the step, but not the live output, the archived log, the catalog or kiln inspect --json")
    func sensitiveValuesStayRedacted() async throws {
        // The value written into the script itself: its step title carries it, to be redacted.
        let workspace = try Workspace(product: "echo product hunter2")
        defer { workspace.remove() }
        let (set, graph) = try workspace.graph()
        let provider = FakeProvider()
        let reporter = CollectingReporter()
        let builder = Builder(store: workspace.store, provider: provider, options: BuildOptions(), reporter: reporter)
        let images = try await builder.build(graph, secrets: set.sensitiveValues).map(\.image)
        // The step itself gets the value: redaction is for what people and files see.
        #expect(provider.events.value.contains { $0.contains("TOKEN=hunter2") })
        let lines = reporter.events.value.map { $0.jsonLine() }
        #expect(!lines.isEmpty)
        #expect(!lines.contains { $0.contains("hunter2") })
        #expect(lines.contains { $0.contains("<sensitive>") })
        let app = try #require(images.last)
        let log = try #require(try LogArchive.read(workspace.store.absolute(app.log), entry: "build.log"))
        #expect(!String(decoding: log, as: UTF8.self).contains("hunter2"))
        for file in ["catalog.sqlite", "catalog.sqlite-wal"] {
            let bytes = (try? Data(contentsOf: URL(fileURLWithPath: workspace.store.root + "/" + file))) ?? Data()
            #expect(bytes.range(of: Data("hunter2".utf8)) == nil, "\(file) holds the sensitive value")
        }
        let inspect = try await CLI.kiln(["inspect", app.name, "--json", "--home", workspace.store.root])
        #expect(inspect.status == 0)
        #expect(inspect.stdout.contains("<sensitive>") && !inspect.stdout.contains("hunter2"), "\(inspect.stdout)")
    }

    @Test(
        "removing a dead build's directory detaches what is mounted inside it instead of deleting through a bind mount",
        .enabled(if: getuid() == 0, "bind mounts need root"))
    func removeTreeDetachesMounts() async throws {
        let base = NSTemporaryDirectory() + "kiln-mounts-" + UUID().uuidString
        let host = base + "/host"
        let tree = base + "/store/images/.tmp-dead/rootfs/dev"
        try FileManager.default.createDirectory(atPath: host, withIntermediateDirectories: true)
        try FileManager.default.createDirectory(atPath: tree, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: base) }
        try "keep me".write(toFile: host + "/sentinel", atomically: true, encoding: .utf8)
        // What a killed mmdebstrap leaves: the host's directory bound into its chroot.
        try await ProcessRunner.check("mount", ["--bind", host, tree])
        try Store.removeTree(base + "/store/images/.tmp-dead")
        #expect(!FileManager.default.fileExists(atPath: base + "/store/images/.tmp-dead"))
        #expect(try String(contentsOfFile: host + "/sentinel", encoding: .utf8) == "keep me")
        #expect(try !String(contentsOfFile: "/proc/self/mountinfo", encoding: .utf8).contains(base + "/store"))
    }
}
