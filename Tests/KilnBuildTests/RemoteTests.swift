import Foundation
import KilnCore
import KilnGraph
import KilnModel
import KilnRegistry
import KilnStore
import KilnTemplates
import KilnTestSupport
import Testing

@testable import KilnBuild
@testable import KilnRemote

#if canImport(FoundationNetworking)
    import FoundationNetworking
#endif

/// A loopback docker-registry behind token auth (the test proxy), a remote on it, and a way to
/// read what the registry was asked.
final class RemoteFixture {
    let registry: LocalRegistry
    let proxy: AuthProxy
    let location: RemoteLocation

    init(deletes: Bool = true) async throws {
        registry = try await LocalRegistry.start(deletes: deletes)
        proxy = try AuthProxy(upstream: registry, user: "ci", password: "s3cret", mode: "bearer")
        location = try RemoteLocation(
            parsing: "oci://\(proxy.host)/team/kiln", credentials: RegistryCredentials(username: "ci", password: "s3cret"),
            origin: "test")
    }

    /// A remote on `store` that retries quickly and fetches `chunk` bytes per request.
    func remote(_ store: Store, chunk: Int = 16 << 20) -> Remote {
        Remote(location: location, store: store, client: location.client(chunkSize: chunk, retryDelays: [.milliseconds(20)]))
    }

    /// The proxy's log lines from `mark` (a count of lines read before) on.
    func proxyLines(after mark: Int = 0) -> [Substring] { Array(proxy.log.split(separator: "\n").dropFirst(mark)) }
    var proxyMark: Int { proxy.log.split(separator: "\n").count }

    func tags() async throws -> [String] {
        let (data, _) = try await URLSession.shared.data(from: URL(string: "http://\(registry.host)/v2/team/kiln/tags/list")!)
        return (try JSONSerialization.jsonObject(with: data) as? [String: Any])?["tags"] as? [String] ?? []
    }

    func remove() {
        proxy.stop()
        registry.remove()
    }
}

/// The usual start of these tests: a registry, the two-layer workspace, and its graph built with
/// the remote (base, then app).
final class RemoteScenario {
    let fixture: RemoteFixture
    let workspace: Workspace
    let set: TemplateSet
    let graph: ImageGraph
    let remote: Remote
    let builder: Builder
    private(set) var images: [ImageRecord] = []

    init(deletes: Bool = true) async throws {
        fixture = try await RemoteFixture(deletes: deletes)
        workspace = try Workspace()
        (set, graph) = try workspace.graph()
        remote = fixture.remote(workspace.store)
        var options = BuildOptions()
        options.remote = remote
        builder = Builder(store: workspace.store, provider: FakeProvider(), options: options, reporter: nil)
        images = try await builder.build(graph, secrets: set.sensitiveValues).map(\.image)
    }

    func remove() {
        workspace.remove()
        fixture.remove()
    }
}

/// Blob directories a store holds (finished ones; not `.pull-` or `.tmp-`).
private func blobs(in store: Store) -> Set<String> {
    Set(((try? FileManager.default.contentsOfDirectory(atPath: store.imagesDirectory)) ?? []).filter { !$0.hasPrefix(".") })
}

@Suite("Blobs in an OCI registry, the local store as their cache (fake provider, docker-registry behind token auth)")
struct RemoteTests {
    @Test(
        "a build pushes its blobs before the catalog names the image; an empty store pulls only its parent's chain; nothing changed means nothing pulled or pushed"
    )
    func pushPullRoundTrip() async throws {
        let scenario = try await RemoteScenario()
        defer { scenario.remove() }
        let (fixture, workspace) = (scenario.fixture, scenario.workspace)
        let (base, app) = (scenario.images[0], scenario.images[1])
        let source = try #require(base.backingDigest)
        // Every sealed blob has its manifest; every image its name; the source disk went up with the base.
        let tags = Set(try await fixture.tags())
        for digest in [source, base.digest, app.digest] { #expect(tags.contains(RemoteArtifact.blobTag(digest)), "\(tags)") }
        #expect(tags.isSuperset(of: [base.name, app.name]))
        // Pushed before the commit: the blob's manifest PUT comes before anything names the image.
        let log = fixture.proxyLines()
        let pushed = try #require(log.firstIndex { $0.contains("PUT /v2/team/kiln/manifests/\(RemoteArtifact.blobTag(app.digest))") })
        let named = try #require(log.firstIndex { $0.contains("PUT /v2/team/kiln/manifests/\(app.name) ") })
        #expect(pushed < named)

        // A second runner: the same catalog, an empty store. The app changes; the base does not.
        let catalog = "sqlite:" + workspace.store.root + "/catalog.sqlite"
        let runner = try Store(root: workspace.dir + "/runner", catalog: catalog)
        try "image: app\nfrom: {image: base}\nprovision:\n  - shell: echo changed\n".write(
            toFile: workspace.dir + "/t/app.yaml", atomically: true, encoding: .utf8)
        let (changedSet, changedGraph) = try workspace.graph()
        var runnerOptions = BuildOptions()
        runnerOptions.remote = fixture.remote(runner)
        let mark = fixture.proxyMark
        let second = try await Builder(store: runner, provider: FakeProvider(), options: runnerOptions, reporter: nil)
            .build(changedGraph, secrets: changedSet.sensitiveValues)
        #expect(second.map(\.image.family) == ["base", "app"])
        let rebuilt = second[1].image
        #expect(rebuilt.digest != app.digest)
        // Its parent's chain and its own blob, nothing else (the old app never came).
        #expect(blobs(in: runner) == [source, base.digest, rebuilt.digest])
        let fetched = fixture.proxyLines(after: mark).filter { $0.contains("GET /v2/team/kiln/blobs/sha256:") }
        #expect(!fetched.isEmpty)
        #expect(try await fixture.tags().contains(RemoteArtifact.blobTag(rebuilt.digest)))

        // kiln push writes the name's manifest apart from the blob's: gc deletes the one by digest
        // and must not take the other with it.
        _ = try await fixture.remote(runner).push(rebuilt)
        let client = fixture.location.client()
        let byName = try #require(try await client.fetchManifest(rebuilt.name))
        let byBlob = try #require(try await client.fetchManifest(RemoteArtifact.blobTag(rebuilt.digest)))
        #expect(byName.digest != byBlob.digest)

        // Nothing changed: a third store builds nothing, pulls nothing, pushes nothing.
        let idle = try Store(root: workspace.dir + "/idle", catalog: catalog)
        var idleOptions = BuildOptions()
        idleOptions.remote = fixture.remote(idle)
        let idleMark = fixture.proxyMark
        let third = try await Builder(store: idle, provider: FakeProvider(), options: idleOptions, reporter: nil)
            .build(changedGraph, secrets: changedSet.sensitiveValues)
        #expect(third.allSatisfy { if case .upToDate = $0 { true } else { false } })
        #expect(blobs(in: idle).isEmpty)
        #expect(fixture.proxyLines(after: idleMark).isEmpty, "\(fixture.proxyLines(after: idleMark))")

        // kiln verify on the empty store checks the remote instead; the runner's blobs locally.
        let idleRemote = try #require(idleOptions.remote)
        let report = try await Verifier.run(idle, name: nil) { image, digest in
            await idleRemote.problems(of: image, digest: digest)
        }
        #expect(report.problemCount == 0, "\(report.results.filter { !$0.problems.isEmpty })")
        #expect(report.results.allSatisfy { $0.subject.hasSuffix("(remote)") })
    }

    @Test("an outside client (skopeo) pulls what kiln pushed by its digest, and the disk layer is the store's blob byte for byte")
    func skopeoReadsIt() async throws {
        let scenario = try await RemoteScenario()
        defer { scenario.remove() }
        let (fixture, workspace) = (scenario.fixture, scenario.workspace)
        let app = scenario.images[1]
        let out = workspace.dir + "/skopeo"
        // By digest: the manifest kiln tagged with the image's name, as a deployment pins it.
        let named = try #require(try await fixture.location.client().fetchManifest(app.name))
        let copied = try await ProcessRunner.run(
            try requiredTool("skopeo"),
            [
                "copy", "--src-tls-verify=false", "--src-creds", "ci:s3cret", "docker://\(fixture.proxy.host)/team/kiln@\(named.digest)",
                "dir:" + out,
            ],
            timeout: .seconds(120))
        try #require(copied.status == 0, "\(copied.stdout)\(copied.stderr)")
        let manifest = try JSONDecoder().decode(OCIManifest.self, from: Data(contentsOf: URL(fileURLWithPath: out + "/manifest.json")))
        #expect(manifest.artifactType == RemoteArtifact.imageType)
        #expect(manifest.annotations?[RemoteArtifact.imageAnnotation] == app.name)
        #expect(manifest.annotations?[RemoteArtifact.familyAnnotation] == "app")
        #expect(manifest.annotations?[RemoteArtifact.versionAnnotation] == app.version)
        #expect(manifest.annotations?[RemoteArtifact.parentDigestAnnotation] == app.backingDigest)
        let disk = try #require(manifest.layers.first { $0.annotations?[RemoteArtifact.title] == ImageFiles.disk })
        #expect(disk.mediaType == "application/vnd.kiln.disk.qcow2")
        let pulled = try Data(contentsOf: URL(fileURLWithPath: out + "/" + disk.hex))
        let stored = try Data(contentsOf: URL(fileURLWithPath: workspace.store.diskPath(of: app)))
        #expect(pulled == stored)
        // The build record hangs off the image (the registry has no referrers API: the fallback tag).
        let subject = "sha256:" + Hashing.sha256Hex(try Data(contentsOf: URL(fileURLWithPath: out + "/manifest.json")))
        #expect(subject == named.digest)
        #expect(try await fixture.tags().contains(RegistryClient.referrersTag(subject)))
    }

    @Test("wrong bytes are refused with nothing installed; a pull cut off resumes from its partial file; a registry that is down is named")
    func faults() async throws {
        let scenario = try await RemoteScenario()
        defer { scenario.remove() }
        let (fixture, workspace) = (scenario.fixture, scenario.workspace)
        let base = scenario.images[0]
        let source = try #require(base.backingDigest)
        let catalog = "sqlite:" + workspace.store.root + "/catalog.sqlite"

        // A registry that serves changed bytes: refused by digest, nothing kept.
        let victim = try Store(root: workspace.dir + "/victim", catalog: catalog)
        try fixture.proxy.setFaults(["corrupt-blobs"])
        let wrong = await #expect(throws: KilnError.self) { try await fixture.remote(victim).pull(chainOf: base) }
        #expect(wrong?.message.contains("refused") == true, "\(String(describing: wrong))")
        #expect(blobs(in: victim).isEmpty)

        // Cut off half-way (every range from 128 KiB on fails): the pull fails, its partial file stays.
        let resumer = try Store(root: workspace.dir + "/resumer", catalog: catalog)
        try fixture.proxy.setFaults(["fail-ranges-from=131072"])
        // The source disk alone: a pull of the chain would cancel its other downloads at the first failure.
        let interrupted = await #expect(throws: KilnError.self) {
            try await fixture.remote(resumer, chunk: 65536).pullBlob(source)
        }
        #expect(interrupted?.message.contains("HTTP 500") == true, "\(String(describing: interrupted))")
        let partial = resumer.imagesDirectory + "/.pull-\(source)/\(ImageFiles.disk).partial"
        let kept = try #require(try FileManager.default.attributesOfItem(atPath: partial)[.size] as? Int)
        #expect(kept == 131072)
        // The next pull asks only for the rest, and the blob it installs is the one the catalog names.
        try fixture.proxy.setFaults([])
        let mark = fixture.proxyMark
        let report = try await fixture.remote(resumer, chunk: 65536).pull(chainOf: base)
        #expect(Set(report.pulled) == [source, base.digest])
        #expect(report.cached.isEmpty)
        let diskLayer = try RemoteArtifact.layers(of: source, in: workspace.store).map(\.descriptor).first {
            $0.annotations?[RemoteArtifact.title] == ImageFiles.disk
        }
        let asked = fixture.proxyLines(after: mark).filter { $0.contains("GET /v2/team/kiln/blobs/\(diskLayer?.digest ?? "?")") }
        #expect(asked.first?.hasSuffix("bytes=131072-196607") == true, "\(asked)")
        #expect(!asked.contains { $0.hasSuffix("bytes=0-65535") })
        try resumer.verifyBlob(source)
        try resumer.verifyBlob(base.digest)
        #expect(!FileManager.default.fileExists(atPath: resumer.imagesDirectory + "/.pull-\(source)"))

        // A connection that drops half-way through an answer is retried from that chunk.
        let cut = try Store(root: workspace.dir + "/cut", catalog: catalog)
        try fixture.proxy.setFaults(["cut-blobs-once"])
        try await fixture.remote(cut).pull(chainOf: base)
        #expect(fixture.proxy.log.contains("FAULT cut"))
        try cut.verifyBlob(base.digest)

        // Down: the error names the registry; the command exits non-zero and the catalog is as it was.
        try fixture.proxy.setFaults([])
        fixture.proxy.stop()
        let down = try Store(root: workspace.dir + "/down", catalog: catalog)
        let gone = await #expect(throws: KilnError.self) { try await fixture.remote(down).pull(chainOf: base) }
        #expect(gone?.message.contains(fixture.proxy.host) == true, "\(String(describing: gone))")
        let cli = try await KilnBinary.run(
            [
                "pull", base.name, "--home", workspace.dir + "/down", "--catalog", catalog, "--remote",
                "oci://\(fixture.proxy.host)/team/kiln",
            ],
            timeout: .seconds(120))
        #expect(cli.status != 0)
        #expect(cli.stderr.contains("registry \(fixture.proxy.host)"), "\(cli.stderr)")
        #expect(try workspace.store.catalog.images().count == 2)
    }

    @Test(
        "a hostile registry's manifest (a path for a file name, a layer the blob does not list, another digest) is refused before anything is written"
    )
    func hostileManifests() async throws {
        let scenario = try await RemoteScenario()
        defer { scenario.remove() }
        let (fixture, workspace) = (scenario.fixture, scenario.workspace)
        let base = scenario.images[0]
        let source = try #require(base.backingDigest)
        let client = fixture.location.client()
        let honest = try #require(try await client.fetchManifest(RemoteArtifact.blobTag(source))).decode()
        let catalog = "sqlite:" + workspace.store.root + "/catalog.sqlite"
        var variants: [(String, OCIManifest)] = []
        var escape = honest
        escape.layers[0].annotations = [RemoteArtifact.title: "../../escape"]
        variants.append(("not a file name", escape))
        var extra = honest
        extra.layers.append(honest.layers[0])
        extra.layers[1].annotations = [RemoteArtifact.title: "planted"]
        variants.append(("are not those", extra))
        var other = honest
        // A blob the registry has (it checks that much), but not this one.
        other.layers[0].digest = OCIDescriptor.emptyConfig.digest
        variants.append(("no file of it has the digest", other))
        var untyped = honest
        untyped.artifactType = nil
        variants.append(("artifactType", untyped))
        for (why, manifest) in variants {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.sortedKeys]
            try await client.putManifest(
                data: try encoder.encode(manifest), mediaType: OCIMediaType.manifest, reference: RemoteArtifact.blobTag(source))
            let victim = try Store(root: workspace.dir + "/victim-" + UUID().uuidString, catalog: catalog)
            let error = await #expect(throws: KilnError.self) { try await fixture.remote(victim).pull(chainOf: base) }
            #expect(error?.message.contains(why) == true, "\(why): \(String(describing: error))")
            #expect(blobs(in: victim).subtracting([base.digest]).isEmpty)
            #expect(!FileManager.default.fileExists(atPath: workspace.dir + "/escape"))
        }
    }

    @Test("what lies in a pull's staging directory is not trusted: a planted link is not followed, a planted kernel is not installed")
    func plantedStaging() async throws {
        let scenario = try await RemoteScenario()
        defer { scenario.remove() }
        let (fixture, workspace) = (scenario.fixture, scenario.workspace)
        let base = scenario.images[0]
        let victim = try Store(root: workspace.dir + "/victim", catalog: "sqlite:" + workspace.store.root + "/catalog.sqlite")
        let staging = victim.imagesDirectory + "/.pull-\(base.digest)"
        try FileManager.default.createDirectory(atPath: staging, withIntermediateDirectories: true)
        let outside = workspace.dir + "/outside.txt"
        try "keep me".write(toFile: outside, atomically: true, encoding: .utf8)
        try FileManager.default.createSymbolicLink(atPath: staging + "/disk.qcow2.partial", withDestinationPath: outside)
        try "a kernel nobody sealed".write(toFile: staging + "/vmlinuz", atomically: true, encoding: .utf8)
        try await fixture.remote(victim).pull(chainOf: base)
        #expect(try String(contentsOfFile: outside, encoding: .utf8) == "keep me")
        let installed = try FileManager.default.contentsOfDirectory(atPath: victim.blobDirectory(digest: base.digest))
        #expect(installed == [ImageFiles.disk], "\(installed)")
        try victim.verifyBlob(base.digest)
    }

    @Test("gc deletes a purged image's manifests in the remote (name, build record, blob); a registry that refuses deletes is named")
    func gcDeletesRemoteManifests() async throws {
        for deletes in [true, false] {
            let scenario = try await RemoteScenario(deletes: deletes)
            defer { scenario.remove() }
            let (fixture, workspace) = (scenario.fixture, scenario.workspace)
            let app = scenario.images[1]
            // A newer head, so the first may be deleted.
            _ = try await scenario.builder.build(scenario.graph, secrets: scenario.set.sensitiveValues, force: true, selected: ["app"])
            let client = fixture.location.client()
            let named = try #require(try await client.fetchManifest(app.name))
            #expect(try await !client.referrers(of: named.digest).isEmpty)
            var change = Transition(to: .deleted, reason: "test", now: Date())
            change.purgeOn = Date()
            try workspace.store.catalog.transition(app.name, change, dryRun: false)
            let warnings = Locked<[String]>([])
            let report = try await GarbageCollector.run(
                workspace.store, now: Date().addingTimeInterval(1), dryRun: false, cacheLimit: 1 << 40, remote: scenario.remote,
                warn: { line in warnings.withLock { $0.append(line) } })
            #expect(report.purged == [app.name])
            if deletes {
                #expect(try await client.fetchManifest(app.name) == nil)
                #expect(try await client.fetchManifest(RemoteArtifact.blobTag(app.digest)) == nil)
                #expect(try await client.fetchManifest(RegistryClient.referrersTag(named.digest)) == nil)
                #expect(warnings.value.isEmpty, "\(warnings.value)")
                // The base is untouched: it is not purged.
                #expect(try await client.fetchManifest(RemoteArtifact.blobTag(app.backingDigest ?? "")) != nil)
            } else {
                #expect(try await client.fetchManifest(app.name) != nil)
                #expect(warnings.value.contains { $0.contains("refused to delete") && $0.contains(fixture.location.description) })
            }
        }
    }

    @Test(
        "with a remote, image blobs are cache entries: pruned least recently used, leaves first, never one a running build stands on or one the remote lacks"
    )
    func cachePrune() async throws {
        let scenario = try await RemoteScenario()
        defer { scenario.remove() }
        let (fixture, workspace) = (scenario.fixture, scenario.workspace)
        let (base, app) = (scenario.images[0], scenario.images[1])
        let remote = scenario.remote
        // Nothing pruned beyond the limit, and nothing without a remote: there the store is the only copy.
        #expect(try await SourceCache.prune(workspace.store, limit: 1 << 40, remote: remote).isEmpty)
        #expect(try await SourceCache.prune(workspace.store, limit: 0).allSatisfy { $0.kind != .imageBlob })
        // A running build stands on the base: the app goes (a leaf, in the remote), the base stays.
        var running = BuildRecord(id: "holder", family: "other", status: .running, started: Date(), pid: getpid())
        try workspace.store.catalog.insert(running)
        try workspace.store.lease([Store.blobResource(base.digest)], buildID: running.id)
        let first = try await SourceCache.prune(workspace.store, limit: 0, remote: remote)
        #expect(first.filter { $0.kind == .imageBlob }.map(\.description) == [app.name])
        #expect(blobs(in: workspace.store).contains(base.digest))
        #expect(!blobs(in: workspace.store).contains(app.digest))
        // Once that build ends, the base goes too; a pull brings both back, checked.
        running.status = .succeeded
        running.finished = Date()
        try workspace.store.catalog.update(running)
        let second = try await SourceCache.prune(workspace.store, limit: 0, remote: remote)
        #expect(second.filter { $0.kind == .imageBlob }.map(\.description) == [base.name])
        let back = try await remote.pull(chainOf: app)
        #expect(Set(back.pulled) == [base.digest, app.digest])
        // A blob the remote does not hold stays, however old.
        _ = try await fixture.location.client().deleteManifest(
            try #require(try await fixture.location.client().fetchManifest(RemoteArtifact.blobTag(app.digest))).digest)
        _ = try await SourceCache.prune(workspace.store, limit: 0, remote: remote)
        #expect(blobs(in: workspace.store).contains(app.digest))
        #expect(blobs(in: workspace.store).contains(base.digest))
    }

    @Test("the remote comes from --remote, KILN_REMOTE or a GitLab job's registry; none turns it off; a bad one says how to write it")
    func resolution() throws {
        let flag = try #require(try RemoteLocation.resolve(flag: "oci://registry.example:5000/team/kiln", environment: [:]))
        #expect(flag.reference.host == "registry.example:5000")
        #expect(flag.reference.repository == "team/kiln")
        #expect(flag.reference.scheme == "https")
        #expect(try RemoteLocation.resolve(flag: "oci+http://10.0.0.5/k", environment: [:])?.reference.scheme == "http")
        #expect(try RemoteLocation.resolve(flag: "none", environment: ["KILN_REMOTE": "oci://a.example/b"]) == nil)
        #expect(try RemoteLocation.resolve(flag: nil, environment: ["KILN_REMOTE": "oci://a.example/b"])?.origin == "KILN_REMOTE")
        let gitlab = [
            "GITLAB_CI": "true", "CI_REGISTRY_IMAGE": "registry.example/group/project", "CI_REGISTRY_USER": "gitlab-ci-token",
            "CI_REGISTRY_PASSWORD": "job-token",
        ]
        let ci = try #require(try RemoteLocation.resolve(flag: nil, environment: gitlab))
        #expect(ci.description == "oci://registry.example/group/project/kiln")
        #expect(ci.credentials == RegistryCredentials(username: "gitlab-ci-token", password: "job-token"))
        #expect(try RemoteLocation.resolve(flag: nil, environment: gitlab.merging(["KILN_REMOTE": "none"]) { $1 }) == nil)
        // The job's own credentials go to the project's registry, not KILN_REGISTRY_* (meant for another).
        let both = gitlab.merging(["KILN_REGISTRY_USER": "exporter", "KILN_REGISTRY_PASSWORD": "elsewhere"]) { $1 }
        #expect(try RemoteLocation.resolve(flag: nil, environment: both)?.credentials?.username == "gitlab-ci-token")
        // A password in the URL is refused without being repeated.
        let userinfo = #expect(throws: KilnError.self) {
            try RemoteLocation.resolve(flag: nil, environment: ["KILN_REMOTE": "oci://ci:hunter2@registry.example/team"])
        }
        #expect(userinfo?.message.contains("KILN_REGISTRY_PASSWORD") == true)
        #expect(userinfo?.message.contains("hunter2") == false)
        #expect(try RemoteLocation.resolve(flag: nil, environment: ["CI_REGISTRY_IMAGE": "registry.example/x"]) == nil)
        for bad in ["registry.example/team", "https://registry.example/team", "oci://registry.example/team:v1", "oci://Registry/x"] {
            let error = #expect(throws: KilnError.self) { try RemoteLocation.resolve(flag: bad, environment: [:]) }
            #expect(error?.code == .invalidInput)
            #expect(error?.message.hasPrefix("--remote") == true, "\(String(describing: error))")
        }
    }
}
