import Foundation
import KilnCore
import KilnGraph
import KilnStore
import KilnTemplates
import Testing

@testable import KilnBuild

/// A template directory whose base comes from a small local disk file (`from: file`), so the
/// orchestration runs end to end with qemu-img but without a VM.
struct Workspace {
    let dir: String
    let store: Store

    init(product: String = "echo product ${var.token}") throws {
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
        from: {image: base}
        vars:
          token: {sensitive: true, default: hunter2}
        provision:
          - file: {src: files/motd, dest: /etc/motd}
          - shell: {inline: "\(product)", env: {TOKEN: "${var.token}"}}
          - shell: echo after
        labels: {secret: "${var.token}"}
        """.write(toFile: dir + "/t/app.yaml", atomically: true, encoding: .utf8)
        store = try Store(root: dir + "/home")
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
        let images = try await builder.build(graph, secrets: set.sensitiveValues)
        #expect(images.map(\.family) == ["base", "app"])
        #expect(images[0].parent == nil)
        #expect(images[1].parent == images[0].name)
        #expect(images.allSatisfy { $0.name.hasPrefix($0.family + "-v") && $0.name.hasSuffix("-1") })
        let events = provider.events.value
        let source = try #require(
            try workspace.store.catalog.sourceDigest(
                key: SourceDisk(store: workspace.store).identity(of: set.template(family: "base")!).key))
        #expect(events.first == "start backing=../\(source)/disk.qcow2")
        #expect(events.contains("start backing=../\(images[0].digest)/disk.qcow2"))
        #expect(events.contains("upload motd -> /etc/motd"))
        #expect(events.contains { $0.hasPrefix("run echo product hunter2 env=") && $0.contains("TOKEN=hunter2") })
        #expect(events.filter { $0 == "shutdown" }.count == 2)
        // Blobs are sealed under their digest, read-only.
        for image in images {
            let disk = workspace.store.diskPath(of: image)
            #expect(try Hashing.sha256Hex(fileAt: disk) == image.digest)
        }
        // Sensitive values stay out of the log and the catalog.
        #expect(images[1].labelDictionary == ["secret": "<sensitive>"])
        let log = try #require(try LogArchive.read(workspace.store.absolute(images[1].log), entry: "build.log"))
        let text = String(decoding: log, as: UTF8.self)
        #expect(text.contains("[provision[1] shell echo product <sensitive>] ran: echo product <sensitive>"))
        #expect(!text.contains("hunter2"))
        #expect(try workspace.store.catalog.builds().allSatisfy { $0.status == .succeeded && $0.log != nil })
    }

    @Test("a second build reuses the source disk and takes the next version")
    func rebuild() async throws {
        let workspace = try Workspace()
        defer { workspace.remove() }
        let (set, graph) = try workspace.graph()
        let builder = Builder(store: workspace.store, provider: FakeProvider(), options: BuildOptions(), reporter: nil)
        _ = try await builder.build(graph, secrets: set.sensitiveValues)
        let second = try await builder.build(graph, secrets: set.sensitiveValues)
        #expect(second.map { $0.name.hasSuffix("-2") } == [true, true])
        #expect(try workspace.store.catalog.head(of: "app")?.name == second[1].name)
        let log = try #require(try LogArchive.read(workspace.store.absolute(second[0].log), entry: "build.log"))
        #expect(String(decoding: log, as: UTF8.self).contains("source disk up to date"))
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
        #expect(
            DebianMirror.fromOneLine(
                "deb http://m.example/debian-security bookworm-security main\ndeb [arch=amd64] http://m.example/debian bookworm main\n")
                == "http://m.example/debian")
        #expect(DebianMirror.host(environment: ["KILN_MIRROR": "http://mine.example/debian"]) == "http://mine.example/debian")
    }
}
