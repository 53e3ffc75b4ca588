import Foundation
import KilnCore
import KilnGraph
import KilnModel
import KilnStore
import KilnTemplates
import KilnTestSupport
import Testing

@testable import KilnBuild

/// A template directory whose base comes from a small local disk file (`from: file`), so the
/// orchestration runs end to end with qemu-img but without a VM.
final class Workspace {
    let dir: String
    let store: Store
    /// Where the store's catalog is (nil: its own SQLite file).
    let catalog: String?

    deinit { try? FileManager.default.removeItem(atPath: dir) }

    init(product: String = "echo product ${var.token}", backend: CatalogBackend = .sqlite) throws {
        dir = NSTemporaryDirectory() + "kiln-builder-" + UUID().uuidString
        let fm = FileManager.default
        try fm.createDirectory(atPath: dir + "/t/files", withIntermediateDirectories: true)
        let disk = Data(repeating: 7, count: 1 << 20)
        try disk.write(to: URL(fileURLWithPath: dir + "/t/base.raw"))
        try "hello".write(toFile: dir + "/t/files/motd", atomically: true, encoding: .utf8)
        try """
        image: base
        from: {file: {path: base.raw, sha256: \(Hashing.sha256Hex(disk))}}
        provision:
          - shell: echo base
        labels: {layer: base}
        """.write(toFile: dir + "/t/base.yaml", atomically: true, encoding: .utf8)
        try """
        image: app
        description: "app with ${var.token}"
        from: {image: base}
        vars:
          token: {sensitive: true, default: hunter2}
        provision:
          - file: {src: files/motd, dest: /etc/motd}
          - shell: {inline: "\(product)", env: {TOKEN: "${var.token}"}}
          - shell: echo after
        labels: {secret: "${var.token}"}
        """.write(toFile: dir + "/t/app.yaml", atomically: true, encoding: .utf8)
        catalog = try backend.newCatalog()
        store = try Store(root: dir + "/home", catalog: catalog)
    }

    func graph() throws -> (TemplateSet, ImageGraph) {
        let set = try TemplateLoader(environment: [:]).load(path: dir + "/t")
        return (set, try ImageGraph(set))
    }

    func remove() { try? FileManager.default.removeItem(atPath: dir) }
}

@Suite("Build orchestration (fake provider)")
struct BuilderTests {
    @Test("layers build in order, each child booted on its parent's disk, named and logged")
    func buildsInOrder() async throws {
        let workspace = try Workspace()
        defer { workspace.remove() }
        let provider = FakeProvider()
        let (set, graph) = try workspace.graph()
        let builder = Builder(store: workspace.store, provider: provider, options: BuildOptions(), reporter: nil)
        let results = try await builder.build(graph, secrets: set.sensitiveValues)
        let images = results.map(\.image)
        #expect(images.map(\.family) == ["base", "app"])
        #expect(images.allSatisfy { $0.buildKey != nil && $0.keyInputs != nil })
        #expect(images[0].parent == nil)
        #expect(images[1].parent == images[0].name)
        #expect(images.allSatisfy { $0.name.hasPrefix($0.family + "-v") && $0.name.hasSuffix("-1") })
        let events = provider.events.value
        let key = try await SourceDisk.identity(of: set.template(family: "base")!).key
        let source = try #require(try workspace.store.catalog.sourceDigest(key: key))
        #expect(events.first == "start backing=../\(source)/disk.qcow2")
        #expect(events.contains("start backing=../\(images[0].digest)/disk.qcow2"))
        #expect(events.contains("upload motd -> /etc/motd"))
        // A variable in script text reaches the guest through the step's environment (docs/templates.md).
        #expect(
            events.contains {
                $0.hasPrefix("run echo product ${KILN_VAR_token} env=") && $0.contains("TOKEN=hunter2")
                    && $0.contains("KILN_VAR_token=hunter2")
            })
        #expect(events.filter { $0 == "shutdown" }.count == 2)
        // Blobs are sealed under their digest, read-only.
        for image in images {
            let disk = workspace.store.diskPath(of: image)
            #expect(try Hashing.sha256Hex(fileAt: disk) == image.digest)
        }
        // Sensitive values stay out of the log and the catalog.
        #expect(images[1].labelDictionary == ["secret": "<sensitive>"])
        #expect(images[1].description == "app with <sensitive>")
        let log = try #require(try LogArchive.read(workspace.store.absolute(images[1].log), entry: "build.log"))
        let text = String(decoding: log, as: UTF8.self)
        #expect(text.contains("[provision[1] shell echo product ${KILN_VAR_token}] ran: echo product ${KILN_VAR_token}"))
        #expect(!text.contains("hunter2"))
        #expect(try workspace.store.catalog.builds().allSatisfy { $0.status == .succeeded && $0.log != nil })
    }

    @Test("every committed image gets its provenance record, signed when the build has a key; a sensitive label stays redacted")
    func provenanceAtCommit() async throws {
        let workspace = try Workspace()
        defer { workspace.remove() }
        let (set, graph) = try workspace.graph()
        var options = BuildOptions()
        let key = SigningKey.generate()
        options.signingKey = key
        let builder = Builder(store: workspace.store, provider: FakeProvider(), options: options, reporter: nil)
        let images = try await builder.build(graph, secrets: set.sensitiveValues).map(\.image)
        for image in images {
            let data = try #require(workspace.store.provenanceData(of: image.name))
            let record = try Provenance.decode(data, path: image.name)
            #expect(record.mismatches(with: image).isEmpty && record.build.provider == "fake")
            #expect(record.build.key == image.buildKey.map { "sha256:" + $0 } && record.build.started != nil)
            let envelope = try SignatureEnvelope.load(workspace.store.signaturePath(of: image.name))
            #expect(envelope.problem(payload: data, subject: image.name, trusted: [key.publicKey]) == nil)
            #expect(envelope.problem(payload: data, subject: "other", trusted: [key.publicKey]) != nil)
            #expect(!String(decoding: data, as: UTF8.self).contains("hunter2"))
        }
        let app = try #require(images.last)
        let record = try Provenance.decode(try #require(workspace.store.provenanceData(of: app.name)), path: app.name)
        #expect(record.parents.map(\.name) == [images[0].name] && record.source.kind == "image")
        // The fake provider's disks are not real overlays, so only the record and signature are checked here.
        for image in images {
            let checked = Verifier.checkProvenance(workspace.store, image, trusted: [key.publicKey], requireSignature: true)
            #expect(checked.problems.isEmpty && checked.signedBy == key.publicKey.id, "\(checked.problems)")
            let untrusted = Verifier.checkProvenance(workspace.store, image, trusted: [], requireSignature: true)
            #expect(untrusted.problems.contains { $0.contains("not trusted") })
        }
    }

    @Test("a second build with no change boots nothing; --force rebuilds, reusing the source disk")
    func rebuild() async throws {
        let workspace = try Workspace()
        defer { workspace.remove() }
        let (set, graph) = try workspace.graph()
        let provider = FakeProvider()
        let builder = Builder(store: workspace.store, provider: provider, options: BuildOptions(), reporter: nil)
        let first = try await builder.build(graph, secrets: set.sensitiveValues).map(\.image)
        let starts = provider.events.value.filter { $0.hasPrefix("start") }.count
        let again = try await builder.build(graph, secrets: set.sensitiveValues)
        #expect(provider.events.value.filter { $0.hasPrefix("start") }.count == starts, "an up-to-date build booted a machine")
        #expect(again.map(\.image.name) == first.map(\.name))
        #expect(again.allSatisfy { if case .upToDate = $0 { true } else { false } })
        let forced = try await builder.build(graph, secrets: set.sensitiveValues, force: true).map(\.image)
        #expect(forced.map { $0.name.hasSuffix("-2") } == [true, true])
        #expect(try workspace.store.catalog.head(of: "app")?.name == forced[1].name)
        let log = try #require(try LogArchive.read(workspace.store.absolute(forced[0].log), entry: "build.log"))
        #expect(String(decoding: log, as: UTF8.self).contains("source disk up to date"))
    }

    @Test("a change to the child rebuilds only the child; a change to the base rebuilds both, in order")
    func incremental() async throws {
        let workspace = try Workspace()
        defer { workspace.remove() }
        let provider = FakeProvider()
        let builder = Builder(store: workspace.store, provider: provider, options: BuildOptions(), reporter: nil)
        let (set, graph) = try workspace.graph()
        let first = try await builder.build(graph, secrets: set.sensitiveValues).map(\.image)
        // The uploaded file of the child changes.
        try "changed".write(toFile: workspace.dir + "/t/files/motd", atomically: true, encoding: .utf8)
        let (set2, graph2) = try workspace.graph()
        let plan = try await Planner(store: workspace.store, secrets: set2.sensitiveValues).plan(graph2, force: false)
        #expect(plan.map(\.action) == [.upToDate, .build])
        #expect(plan[1].reasons == ["provision[0].src files/motd changed"])
        let second = try await builder.build(graph2, secrets: set2.sensitiveValues)
        #expect(second[0].image.name == first[0].name)
        guard case .built(let app) = second[1] else {
            Issue.record("app should be rebuilt")
            return
        }
        #expect(app.parent == first[0].name)
        // The base's step changes: both rebuild, the child on the new base.
        let baseFile = workspace.dir + "/t/base.yaml"
        let base = try String(contentsOfFile: baseFile, encoding: .utf8)
        try base.replacingOccurrences(of: "echo base", with: "echo base v2").write(toFile: baseFile, atomically: true, encoding: .utf8)
        let (set3, graph3) = try workspace.graph()
        let plan3 = try await Planner(store: workspace.store, secrets: set3.sensitiveValues).plan(graph3, force: false)
        #expect(plan3.map(\.action) == [.build, .build])
        #expect(plan3[0].reasons == ["provision[0].shell changed"])
        #expect(plan3[1].reasons == ["parent base is rebuilt first"])
        let third = try await builder.build(graph3, secrets: set3.sensitiveValues).map(\.image)
        #expect(third[1].parent == third[0].name)
        #expect(third[0].name.hasSuffix("-2") && third[1].name.hasSuffix("-3"))
        // Now that the base moved, the reason names the new parent.
        try "changed again".write(toFile: workspace.dir + "/t/files/motd", atomically: true, encoding: .utf8)
        let (set4, graph4) = try workspace.graph()
        let plan4 = try await Planner(store: workspace.store, secrets: set4.sensitiveValues).plan(graph4, force: false)
        #expect(plan4[1].reasons == ["provision[0].src files/motd changed"])
    }

    @Test("-j 2 builds independent images at once; children still wait for their parent")
    func parallel() async throws {
        let workspace = try Workspace(product: "echo SLOW product")
        defer { workspace.remove() }
        for name in ["left", "right"] {
            try "image: \(name)\nfrom: {image: base}\nprovision:\n  - shell: echo SLOW \(name)\n".write(
                toFile: workspace.dir + "/t/\(name).yaml", atomically: true, encoding: .utf8)
        }
        let provider = FakeProvider()
        let builder = Builder(store: workspace.store, provider: provider, options: BuildOptions(), reporter: nil)
        let (set, graph) = try workspace.graph()
        let results = try await builder.build(graph, secrets: set.sensitiveValues, jobs: 2)
        #expect(results.map(\.image.family) == graph.order.map(\.family))
        let events = provider.events.value
        let baseDone = try #require(events.firstIndex(of: "shutdown"))
        let starts = events.indices.filter { events[$0].hasPrefix("start") }
        #expect(starts.count == 4)
        #expect(starts[0] < baseDone && starts.dropFirst().allSatisfy { $0 > baseDone }, "children started before their parent was done")
        // Three children of base, two slots: the first two overlap, the third waits for a slot.
        let shutdowns = events.indices.filter { events[$0] == "shutdown" }
        #expect(shutdowns.count == 4)
        #expect(starts[2] < shutdowns[1], "the first two children did not run at once: \(events)")
        #expect(starts[3] > shutdowns[1], "a third machine started while two were running: \(events)")
    }

    @Test("a layer builds on a DEPRECATED parent with a warning in its log, and never on an OBSOLETE one")
    func parentStates() async throws {
        let workspace = try Workspace()
        defer { workspace.remove() }
        let builder = Builder(store: workspace.store, provider: FakeProvider(), options: BuildOptions(), reporter: nil)
        let (set, graph) = try workspace.graph()
        let first = try await builder.build(graph, secrets: set.sensitiveValues).map(\.image)
        var deprecate = Transition(to: .deprecated, reason: "test")
        deprecate.replacement = nil
        try workspace.store.catalog.transition(first[0].name, deprecate)
        let onDeprecated = try await builder.build(graph, secrets: set.sensitiveValues, force: true, selected: ["app"])
        let log = try #require(try LogArchive.read(workspace.store.absolute(onDeprecated[0].image.log), entry: "build.log"))
        #expect(String(decoding: log, as: UTF8.self).contains("warning: parent \(first[0].name) is DEPRECATED"))
        var obsolete = Transition(to: .obsolete, reason: "test")
        obsolete.cascade = true
        try workspace.store.catalog.transition(first[0].name, obsolete)
        let provider = FakeProvider()
        let refusing = Builder(store: workspace.store, provider: provider, options: BuildOptions(), reporter: nil)
        await #expect(throws: KilnError.self) {
            _ = try await refusing.build(graph, secrets: set.sensitiveValues, force: true, selected: ["app"])
        }
        #expect(provider.events.value.isEmpty, "a machine started for a build on an OBSOLETE parent")
    }

    @Test("--only builds the named family on its parent from the catalog, and needs no image of families it is not built on")
    func only() async throws {
        let workspace = try Workspace()
        defer { workspace.remove() }
        let provider = FakeProvider()
        let builder = Builder(store: workspace.store, provider: provider, options: BuildOptions(), reporter: nil)
        let (set, graph) = try workspace.graph()
        await #expect(throws: KilnError.self) {
            _ = try await builder.build(graph, secrets: set.sensitiveValues, selected: ["app"])
        }
        // The base's job of a per-image pipeline: app has no image yet, and the base does not need one.
        let baseOnly = try await builder.build(graph, secrets: set.sensitiveValues, selected: ["base"])
        #expect(baseOnly.map(\.image.family) == ["base"])
        let first = try await builder.build(graph, secrets: set.sensitiveValues).map(\.image)
        #expect(first[0].name == baseOnly[0].image.name)
        let onlyApp = try await builder.build(graph, secrets: set.sensitiveValues, force: true, selected: ["app"])
        #expect(onlyApp.map(\.image.family) == ["app"])
        #expect(onlyApp[0].image.parent == first[0].name)
    }

    @Test("a failing step names itself, destroys the machine, stages nothing and archives the log")
    func failingStep() async throws {
        let workspace = try Workspace(product: "echo FAIL-HERE")
        defer { workspace.remove() }
        let provider = FakeProvider()
        let (set, graph) = try workspace.graph()
        let builder = Builder(store: workspace.store, provider: provider, options: BuildOptions(), reporter: nil)
        do {
            _ = try await builder.build(graph, secrets: set.sensitiveValues)
            Issue.record("the build should fail")
        } catch let error as KilnError {
            #expect(error.code == .buildFailed)
            #expect(error.message.hasPrefix("build of app failed at provision[1] shell echo FAIL-HERE: exit status 3"))
            #expect(error.message.contains("ran: echo FAIL-HERE"))
        }
        let events = provider.events.value
        #expect(events.last == "destroy")
        #expect(!events.contains { $0.contains("echo after") })
        #expect(try workspace.store.catalog.images().map(\.family) == ["base"])
        let failed = try #require(try workspace.store.catalog.builds(status: .failed).first)
        #expect(failed.family == "app")
        // The base is kept: the next build starts from it.
        let retry = try await Planner(store: workspace.store, secrets: set.sensitiveValues).plan(graph, force: false)
        #expect(retry.map(\.action) == [.upToDate, .build])
        #expect(failed.failedStep == "provision[1] shell echo FAIL-HERE")
        let archive = try #require(failed.log)
        let log = try #require(try LogArchive.read(workspace.store.absolute(archive), entry: "build.log"))
        #expect(String(decoding: log, as: UTF8.self).contains("failed at provision[1]"))
        let leftovers = try FileManager.default.contentsOfDirectory(atPath: workspace.store.imagesDirectory)
            .filter { $0.hasPrefix(".tmp-") }
        #expect(leftovers.isEmpty)
        #expect(try FileManager.default.contentsOfDirectory(atPath: workspace.store.root + "/builds").isEmpty)
    }

    @Test("--on-error=keep leaves the failed VM's disk and scratch in place and says how to boot it")
    func keepOnError() async throws {
        let workspace = try Workspace(product: "echo FAIL-HERE")
        defer { workspace.remove() }
        let (set, graph) = try workspace.graph()
        var options = BuildOptions()
        options.onError = .keep
        let builder = Builder(store: workspace.store, provider: FakeProvider(), options: options, reporter: nil)
        do {
            _ = try await builder.build(graph, secrets: set.sensitiveValues)
            Issue.record("the build should fail")
        } catch let error as KilnError {
            let failed = try #require(try workspace.store.catalog.builds(status: .failed).first)
            let staging = workspace.store.stagingDirectory(buildID: failed.id)
            #expect(error.message.contains("VM disk kept at \(staging)/disk.qcow2; boot \(staging)"))
            #expect(FileManager.default.fileExists(atPath: staging + "/disk.qcow2"))
            #expect(FileManager.default.fileExists(atPath: workspace.store.scratchDirectory(buildID: failed.id)))
            #expect(try workspace.store.catalog.images().map(\.family) == ["base"])
        }
    }

    @Test("the host's Debian mirror is read from apt's deb822 and one-line sources")
    func mirrorDetection() {
        let deb822 = """
            Types: deb
            URIs: http://mirror.example/debian
            Suites: bookworm bookworm-updates
            Components: main

            Types: deb
            URIs: http://mirror.example/debian-security
            Suites: bookworm-security
            """
        #expect(DebianMirror.fromDeb822(deb822) == "http://mirror.example/debian")
        #expect(DebianMirror.fromDeb822(deb822, suite: "bookworm-security") == "http://mirror.example/debian-security")
        #expect(DebianMirror.fromDeb822(deb822, suite: "trixie") == nil)
        #expect(
            DebianMirror.fromOneLine(
                "deb http://m.example/debian-security bookworm-security main\ndeb [arch=amd64] http://m.example/debian bookworm main\n")
                == "http://m.example/debian")
        #expect(
            DebianMirror.fromOneLine("deb http://m.example/debian-security bookworm-security main\n", suite: "bookworm-security")
                == "http://m.example/debian-security")
        #expect(DebianMirror.host(environment: ["KILN_MIRROR": "http://mine.example/debian"]) == "http://mine.example/debian")
    }
}
